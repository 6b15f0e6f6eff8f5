"""DeepSpeech2 (KoSpeech flavour) with optional per-user adapters.

Shapes: B batch, T input frames, T' = ceil(T / 2) frames after the conv stride, D feature bins, H RNN hidden
units per direction, C classes. Tensors are batch-major. Length tensors are (B,) integers holding the number of
valid frames per row, in any order and on any device.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kospeech.models.adapter import (
    ADAPTER_TYPES,
    AdapterModule,
    apply_encoder_adapter,
    apply_head_adapter,
    build_adapter,
)
from kospeech.models.modules import ACTIVATIONS, RNN_TYPES, BNReluRNN, MaskConv2d
from kospeech.models.utils import describe_state_dict_problems, lengths_to_mask, state_dict_problems

__all__ = ["DeepSpeech2", "AdapterCompatibilityError", "AdapterGroup", "DEFAULT_ADAPTER_HIDDEN_DIMS"]

DEFAULT_ADAPTER_HIDDEN_DIMS = (512, 256)
_ADAPTER_ATTRIBUTE = "adapter"

AdapterGroup = Tuple[Union[Tensor, Sequence[int]], AdapterModule]
"""One group of a mixed-adapter batch: the batch rows (indices) that go through one adapter module."""


class AdapterCompatibilityError(ValueError):
    """An adapter does not fit a model (different base weights, vocabulary, features or sizes).

    Attributes:
        mismatches: one human-readable line per difference.
    """

    def __init__(self, message: str, mismatches: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.mismatches = list(mismatches)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class DeepSpeech2(nn.Module):
    """DeepSpeech2 CTC acoustic model: masked conv extractor, BatchNorm-ReLU-RNN layers, LayerNorm + Linear head.

    The base model is ``conv`` (:class:`MaskConv2d`), ``rnn_layers`` (:class:`BNReluRNN` each) and ``fc``
    (LayerNorm + Linear without bias); ``log_softmax`` gives log-probabilities. An optional adapter lives in
    ``self.adapter``; every adapter parameter name starts with ``adapter.`` and no base parameter name contains
    ``adapter``. Adapter types (see :mod:`kospeech.models.adapter`):

    - ``head``: :class:`MLPAdapter` on the trunk output replaces the base head's output.
    - ``residual_head``: base logits plus a zero-initialized MLP correction, then ``log_softmax``.
    - ``encoder``: a zero-initialized residual bottleneck after each RNN layer (call point: ``_encoder_adapter``).

    For serving many users, :meth:`forward_mixed` runs one batch whose rows use different adapter modules (or
    none) without attaching them: the trunk runs once and each group of rows goes through its own adapter.

    Args:
        input_dim: D, feature bins per input frame.
        num_classes: C, output classes (vocabulary size including the CTC blank).
        rnn_type: ``"gru"``, ``"lstm"`` or ``"rnn"``.
        num_rnn_layers: number of BatchNorm-ReLU-RNN layers.
        rnn_hidden_dim: H, hidden units per direction.
        dropout_p: dropout after each RNN layer.
        bidirectional: bidirectional RNN layers (output ``2 * H`` features).
        activation: conv activation, one of ``ACTIVATIONS`` (``"hardtanh"`` clamps to [0, 20]).
        device: where the parameters are created.
        use_adapter: attach an adapter at construction (see :meth:`add_adapter` to attach one later).
        adapter_hidden_dims: MLP hidden sizes for ``head`` / ``residual_head`` (``None``: ``[512, 256]``);
            not used by ``encoder``.
        adapter_type: ``"head"``, ``"residual_head"`` or ``"encoder"``.
        adapter_dropout_p: dropout inside the adapter.
        adapter_bottleneck_dim: bottleneck width of ``encoder`` adapters; not used by the head types.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        rnn_type: str = "gru",
        num_rnn_layers: int = 5,
        rnn_hidden_dim: int = 512,
        dropout_p: float = 0.1,
        bidirectional: bool = True,
        activation: str = "hardtanh",
        device: Union[str, torch.device] = "cpu",
        use_adapter: bool = False,
        adapter_hidden_dims: Optional[Sequence[int]] = None,
        adapter_type: str = "head",
        adapter_dropout_p: float = 0.1,
        adapter_bottleneck_dim: int = 64,
    ) -> None:
        super().__init__()
        _positive_int("input_dim", input_dim)
        _positive_int("num_classes", num_classes)
        _positive_int("num_rnn_layers", num_rnn_layers)
        _positive_int("rnn_hidden_dim", rnn_hidden_dim)
        if rnn_type not in RNN_TYPES:
            raise ValueError(f"unknown rnn_type {rnn_type!r}; choose one of {sorted(RNN_TYPES)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)) or not 0.0 <= dropout_p < 1.0:
            raise ValueError(f"dropout_p must be a number in [0, 1), got {dropout_p!r}")
        if not isinstance(bidirectional, bool):
            raise ValueError(f"bidirectional must be a bool, got {bidirectional!r}")
        if not isinstance(use_adapter, bool):
            raise ValueError(f"use_adapter must be a bool, got {use_adapter!r}")
        if adapter_type not in ADAPTER_TYPES:
            raise ValueError(f"unknown adapter_type {adapter_type!r}; choose one of {list(ADAPTER_TYPES)}")

        self.input_dim = input_dim
        self.num_classes = num_classes
        self.rnn_type = rnn_type
        self.num_rnn_layers = num_rnn_layers
        self.rnn_hidden_dim = rnn_hidden_dim
        self.dropout_p = float(dropout_p)
        self.bidirectional = bidirectional
        self.activation = activation

        self.conv = MaskConv2d(input_dim, activation=activation)
        self.rnn_layers = nn.ModuleList()
        size = self.conv.output_dim
        for _ in range(num_rnn_layers):
            layer = BNReluRNN(size, rnn_hidden_dim, rnn_type, bidirectional, dropout_p)
            self.rnn_layers.append(layer)
            size = layer.output_dim
        self.rnn_output_dim = size
        self.fc = nn.Sequential(nn.LayerNorm(size), nn.Linear(size, num_classes, bias=False))
        self.register_module(_ADAPTER_ATTRIBUTE, None)
        self._base_frozen = False
        self._adapter_enabled = True
        if use_adapter:
            self.add_adapter(adapter_type, adapter_hidden_dims, adapter_dropout_p, adapter_bottleneck_dim)
        self.to(device)

    # ------------------------------------------------------------------ properties

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.parameters()).device

    @property
    def use_adapter(self) -> bool:
        """Whether an adapter is attached (``forward`` then returns three values)."""
        return self.adapter is not None

    @property
    def adapter_type(self) -> Optional[str]:
        """Type of the attached adapter, or ``None``."""
        return None if self.adapter is None else self.adapter.adapter_type

    @property
    def base_frozen(self) -> bool:
        """Whether :meth:`freeze_base_model` is in effect."""
        return self._base_frozen

    @property
    def adapter_active(self) -> bool:
        """An adapter is attached and not bypassed by :meth:`disable_adapter`."""
        return self.adapter is not None and self._adapter_enabled

    # ------------------------------------------------------------------ forward passes

    def output_lengths(self, input_lengths: Tensor) -> Tensor:
        """Valid output frames per row, ``ceil(L / 2)``.

        Args:
            input_lengths: (B,) int64 valid input frames per row.

        Returns:
            (B,) int64 on the same device.
        """
        return self.conv.output_lengths(input_lengths)

    def _check_inputs(self, inputs: Tensor, input_lengths: Tensor) -> None:
        if inputs.dim() != 3 or inputs.size(-1) != self.input_dim:
            raise ValueError(f"inputs must have shape (B, T, {self.input_dim}), got {tuple(inputs.shape)}")
        if not inputs.is_floating_point():
            raise ValueError(f"inputs must be a floating point tensor, got {inputs.dtype}")
        if input_lengths.dim() != 1 or input_lengths.size(0) != inputs.size(0):
            raise ValueError(
                f"input_lengths must have shape ({inputs.size(0)},) to match inputs, got {tuple(input_lengths.shape)}"
            )
        if input_lengths.is_floating_point() or input_lengths.is_complex() or input_lengths.dtype == torch.bool:
            raise ValueError(f"input_lengths must be an integer tensor, got {input_lengths.dtype}")
        lengths = input_lengths.cpu()
        if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > inputs.size(1)):
            raise ValueError(
                f"input_lengths must lie in [1, T={inputs.size(1)}], got min {int(lengths.min())}, "
                f"max {int(lengths.max())}"
            )

    def _encoder_adapter(self, layer_index: int, hidden: Tensor, mask: Tensor) -> Tensor:
        """Call point of the encoder adapter after RNN layer ``layer_index``; padded frames stay unchanged.

        Args:
            layer_index: index of the RNN layer whose output is ``hidden``.
            hidden: (B, T', H * num_directions).
            mask: (B, T', 1) bool, True on valid frames.
        """
        return apply_encoder_adapter(self.adapter, layer_index, hidden, mask)

    def _rnn_stack(self, hidden: Tensor, lengths: Tensor, adapt: bool) -> Tensor:
        mask = lengths_to_mask(lengths.to(hidden.device), hidden.size(1)).unsqueeze(-1) if adapt else None
        for index, layer in enumerate(self.rnn_layers):
            hidden = layer(hidden, lengths)
            if adapt:
                hidden = self._encoder_adapter(index, hidden, mask)
        return hidden

    def _head_adapter(self, features: Tensor, base_logits: Tensor) -> Tensor:
        """Call point of ``head`` / ``residual_head`` adapters: merged log-probabilities (B, T', C)."""
        return apply_head_adapter(self.adapter, features, base_logits)

    def encode(self, inputs: Tensor, input_lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """Trunk: extractor and RNN layers (with ``encoder`` adapters applied when attached and enabled).

        Inputs:
            inputs: (B, T, D) float, padded features.
            input_lengths: (B,) int64, valid frames per row, any order, any device, 1 <= L <= T.

        Returns:
            features: (B, T', H * num_directions) float, zero at padded frames, ``T' = ceil(T / 2)``.
            output_lengths: (B,) int64 on ``input_lengths.device``, ``ceil(L / 2)``.
        """
        self._check_inputs(inputs, input_lengths)
        hidden, lengths = self.conv(inputs, input_lengths)
        adapt = self.adapter_active and self.adapter.adapter_type == "encoder"
        return self._rnn_stack(hidden, lengths, adapt), lengths

    def head(self, features: Tensor) -> Tensor:
        """Head: LayerNorm + Linear + log_softmax (with a ``head`` / ``residual_head`` adapter when active).

        ``head(encode(x)[0])`` is the model's active output: the adapter's when one is attached and enabled,
        the base model's otherwise.

        Inputs:
            features: (B, T', H * num_directions) float, as returned by :meth:`encode`.

        Returns:
            log-probabilities (B, T', C).
        """
        logits = self.fc(features)
        if self.adapter_active and self.adapter.adapter_type != "encoder":
            return self._head_adapter(features, logits)
        return F.log_softmax(logits, dim=-1)

    def forward(
        self, inputs: Tensor, input_lengths: Tensor
    ) -> Union[Tuple[Tensor, Tensor], Tuple[Tensor, Tensor, Tensor]]:
        """Run the model.

        Inputs:
            inputs: (B, T, D) float, padded features.
            input_lengths: (B,) int64, valid frames per row, any order, any device, 1 <= L <= T.

        Returns:
            Without an adapter: ``(log_probs (B, T', C), output_lengths (B,))``.
            With an adapter: ``(base_log_probs, output_lengths, adapter_log_probs)``, both (B, T', C). Inside
            :meth:`disable_adapter` the third value is the base output too. ``output_lengths`` is int64 on
            ``input_lengths.device`` and ``T' = ceil(T / 2)``.

        For ``encoder`` adapters the base and the adapted trunk differ from the first RNN layer on, so the
        extractor runs once and the RNN layers run twice (the base pass is the unadapted trunk). Callers that
        only need the adapted output can use ``head(encode(inputs, input_lengths)[0])``, which runs the trunk
        once.
        """
        self._check_inputs(inputs, input_lengths)
        hidden, lengths = self.conv(inputs, input_lengths)
        base_features = self._rnn_stack(hidden, lengths, adapt=False)
        base_logits = self.fc(base_features)
        base_log_probs = F.log_softmax(base_logits, dim=-1)
        if self.adapter is None:
            return base_log_probs, lengths
        if not self._adapter_enabled:
            return base_log_probs, lengths, base_log_probs
        if self.adapter.adapter_type == "encoder":
            adapted = self._rnn_stack(hidden, lengths, adapt=True)
            adapter_log_probs = F.log_softmax(self.fc(adapted), dim=-1)
        else:
            adapter_log_probs = self._head_adapter(base_features, base_logits)
        return base_log_probs, lengths, adapter_log_probs

    def _check_groups(
        self, groups: Sequence[AdapterGroup], batch_size: int, device: torch.device
    ) -> List[Tuple[Tensor, AdapterModule]]:
        """Validate the groups of :meth:`forward_mixed`; returns them with (n,) int64 row tensors on ``device``."""
        if self.training:
            raise ValueError("mixed-adapter batches are for inference only: call model.eval() first")
        checked = []
        taken = torch.zeros(batch_size, dtype=torch.bool)
        for position, group in enumerate(groups):
            if not isinstance(group, (tuple, list)) or len(group) != 2:
                raise ValueError(f"group {position} must be a (row indices, adapter) pair, got {type(group).__name__}")
            rows, adapter = group
            if not isinstance(adapter, nn.Module) or not hasattr(adapter, "adapter_config"):
                raise TypeError(f"group {position}: expected an adapter module, got {type(adapter).__name__}")
            if adapter.training:
                raise ValueError(
                    f"group {position}: the {adapter.adapter_type!r} adapter is in training mode; call adapter.eval()"
                )
            self.check_adapter_fits(adapter)
            rows = torch.as_tensor(rows).reshape(-1).cpu()
            if rows.is_floating_point() or rows.is_complex() or rows.dtype == torch.bool:
                raise ValueError(f"group {position}: row indices must be integers, got {rows.dtype}")
            rows = rows.long()
            if rows.numel() == 0:
                continue
            if int(rows.min()) < 0 or int(rows.max()) >= batch_size:
                raise ValueError(f"group {position}: row indices must lie in [0, {batch_size}), got {rows.tolist()}")
            if len(set(rows.tolist())) != rows.numel() or bool(taken[rows].any()):
                raise ValueError(f"group {position}: rows {rows.tolist()} repeat a row of this or an earlier group")
            taken[rows] = True
            checked.append((rows.to(device), adapter))
        return checked

    def forward_mixed(
        self, inputs: Tensor, input_lengths: Tensor, groups: Sequence[AdapterGroup]
    ) -> Tuple[Tensor, Tensor]:
        """Run a batch whose rows use different adapters (or none), in eval mode only.

        The extractor and every RNN layer run once for the whole batch. For each ``encoder`` group, each RNN
        layer's output rows of that group get the group's bottleneck adapter before the next layer; for each
        ``head`` / ``residual_head`` group, the group's rows of the trunk output go through its adapter at the
        head. Rows in no group get the base model's output, bitwise equal to that row of ``forward`` of the same
        batch on this model without an adapter. Each adapted row equals (within float rounding, ~1e-6) the row of
        a model with that adapter attached. The adapter attached to this model (``self.adapter``), if any, is not
        used; the adapters' dropout is off because they must be in eval mode.

        Inputs:
            inputs: (B, T, D) float, padded features.
            input_lengths: (B,) int64, valid frames per row, any order, any device, 1 <= L <= T.
            groups: ``(rows, adapter)`` pairs: ``rows`` a (n,) integer tensor or list of distinct batch row
                indices, ``adapter`` an :class:`MLPAdapter`, :class:`ResidualHeadAdapter` or
                :class:`EncoderAdapter` that fits this model, on its device, in eval mode. A row belongs to at
                most one group; types may be mixed within one batch.

        Returns:
            log_probs: (B, T', C) log-probabilities, ``T' = ceil(T / 2)``.
            output_lengths: (B,) int64 on ``input_lengths.device``.

        Raises:
            ValueError: the model or an adapter is in training mode, or a group's rows are invalid or overlap.
            AdapterCompatibilityError: an adapter's sizes do not fit this model.
        """
        self._check_inputs(inputs, input_lengths)
        routes = self._check_groups(groups, inputs.size(0), inputs.device)
        encoder_routes = [(rows, adapter) for rows, adapter in routes if adapter.adapter_type == "encoder"]
        head_routes = [(rows, adapter) for rows, adapter in routes if adapter.adapter_type != "encoder"]
        hidden, lengths = self.conv(inputs, input_lengths)
        mask = lengths_to_mask(lengths.to(hidden.device), hidden.size(1)).unsqueeze(-1) if encoder_routes else None
        for index, layer in enumerate(self.rnn_layers):
            hidden = layer(hidden, lengths)  # (B, T', H * num_directions)
            for rows, adapter in encoder_routes:
                adapted = apply_encoder_adapter(
                    adapter, index, hidden.index_select(0, rows), mask.index_select(0, rows)
                )  # (n, T', H * num_directions)
                hidden = hidden.index_copy(0, rows, adapted)
        logits = self.fc(hidden)  # (B, T', C)
        log_probs = F.log_softmax(logits, dim=-1)
        for rows, adapter in head_routes:
            adapted = apply_head_adapter(adapter, hidden.index_select(0, rows), logits.index_select(0, rows))
            log_probs = log_probs.index_copy(0, rows, adapted)
        return log_probs, lengths

    @torch.no_grad()
    def recognize(self, inputs: Tensor, input_lengths: Tensor) -> Tensor:
        """Greedy frame labels, as KoSpeech's ``recognize``: argmax of the active output.

        Uses the adapter's output when an adapter is attached and enabled. Does not change train/eval mode:
        call ``model.eval()`` first for inference.

        Inputs:
            inputs: (B, T, D) float, padded features.
            input_lengths: (B,) int64, valid frames per row.

        Returns:
            (B, T') int64 label ids; frames at or beyond ``output_lengths(input_lengths)`` are padding.
        """
        features, _ = self.encode(inputs, input_lengths)
        return self.head(features).argmax(dim=-1)

    # ------------------------------------------------------------------ adapters

    def check_adapter_fits(self, adapter: AdapterModule) -> None:
        """Raise :class:`AdapterCompatibilityError` naming every size of ``adapter`` that does not fit this model."""
        config = adapter.adapter_config()
        problems = []
        if config["input_dim"] != self.rnn_output_dim:
            problems.append(f"input_dim {config['input_dim']} != RNN output size {self.rnn_output_dim}")
        if config["adapter_type"] == "encoder":
            if config["num_layers"] != self.num_rnn_layers:
                problems.append(f"num_layers {config['num_layers']} != num_rnn_layers {self.num_rnn_layers}")
        elif config["output_dim"] != self.num_classes:
            problems.append(f"output_dim {config['output_dim']} != num_classes {self.num_classes}")
        if problems:
            raise AdapterCompatibilityError(
                f"{config['adapter_type']} adapter does not fit this model: " + "; ".join(problems), problems
            )

    def attach_adapter(self, adapter: AdapterModule, *, replace: bool = False) -> AdapterModule:
        """Attach an already built adapter (e.g. from :func:`kospeech.models.adapter.build_adapter`).

        The adapter is moved to the model's device and floating dtype and follows the model's train/eval mode.

        Args:
            adapter: an :class:`MLPAdapter`, :class:`ResidualHeadAdapter` or :class:`EncoderAdapter`.
            replace: replace an attached adapter instead of raising.

        Returns:
            The attached adapter.

        Raises:
            ValueError: an adapter is already attached and ``replace`` is False.
            AdapterCompatibilityError: the adapter's sizes do not fit this model.
        """
        if self.adapter is not None and not replace:
            raise ValueError(
                f"this model already has a {self.adapter.adapter_type!r} adapter; pass replace=True "
                "or call remove_adapter() first"
            )
        self.check_adapter_fits(adapter)
        reference = next(self.fc.parameters())
        adapter.to(device=reference.device, dtype=reference.dtype)
        adapter.train(self.training)
        self.adapter = adapter
        return adapter

    def add_adapter(
        self,
        adapter_type: str = "head",
        hidden_dims: Optional[Sequence[int]] = None,
        dropout_p: float = 0.1,
        bottleneck_dim: int = 64,
        *,
        replace: bool = False,
    ) -> AdapterModule:
        """Build and attach a fresh adapter (e.g. to a base model loaded from a plain checkpoint).

        Args:
            adapter_type: ``"head"``, ``"residual_head"`` or ``"encoder"``.
            hidden_dims: MLP hidden sizes for the head types (``None``: ``[512, 256]``); not used by ``encoder``.
            dropout_p: dropout inside the adapter.
            bottleneck_dim: bottleneck width for ``encoder``; not used by the head types.
            replace: replace an attached adapter instead of raising.

        Returns:
            The new adapter (also ``self.adapter``).
        """
        if adapter_type not in ADAPTER_TYPES:
            raise ValueError(f"unknown adapter_type {adapter_type!r}; choose one of {list(ADAPTER_TYPES)}")
        if adapter_type == "encoder":
            adapter = build_adapter(
                adapter_type,
                self.rnn_output_dim,
                [bottleneck_dim],
                self.rnn_output_dim,
                dropout_p,
                num_layers=self.num_rnn_layers,
            )
        else:
            dims = list(DEFAULT_ADAPTER_HIDDEN_DIMS if hidden_dims is None else hidden_dims)
            adapter = build_adapter(adapter_type, self.rnn_output_dim, dims, self.num_classes, dropout_p)
        return self.attach_adapter(adapter, replace=replace)

    def remove_adapter(self) -> Optional[AdapterModule]:
        """Detach the adapter; returns it (``None`` if there was none)."""
        adapter = self.adapter
        self.adapter = None
        return adapter

    @contextmanager
    def disable_adapter(self) -> Iterator["DeepSpeech2"]:
        """Bypass the adapter inside the ``with`` block (the previous state is restored even on errors).

        Inside the block :meth:`encode`, :meth:`head` and :meth:`recognize` give the base model's results and
        ``forward`` returns the base log-probabilities in place of the adapter's.
        """
        previous = self._adapter_enabled
        self._adapter_enabled = False
        try:
            yield self
        finally:
            self._adapter_enabled = previous

    def adapter_state_dict(self) -> Dict[str, Tensor]:
        """The adapter's weights with keys relative to the adapter module.

        Keys: ``'0.weight', '0.bias', '3.weight', ...`` for ``head`` / ``residual_head``;
        ``'layers.<i>.norm.weight', 'layers.<i>.down.weight', 'layers.<i>.up.bias', ...`` for ``encoder``.
        """
        if self.adapter is None:
            raise ValueError("this model has no adapter; call add_adapter() first")
        return dict(self.adapter.state_dict())

    def load_adapter_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True) -> Any:
        """Load adapter weights (keys as in :meth:`adapter_state_dict`).

        Args:
            state_dict: the adapter's weights.
            strict: refuse missing or unexpected keys (shape mismatches are always refused).

        Returns:
            torch's ``(missing_keys, unexpected_keys)`` named tuple.

        Raises:
            ValueError: no adapter is attached, or keys / shapes do not match (names every offending key).
        """
        if self.adapter is None:
            raise ValueError("this model has no adapter; call add_adapter() first")
        missing, unexpected, mismatched = state_dict_problems(self.adapter.state_dict(), state_dict)
        if mismatched or (strict and (missing or unexpected)):
            raise ValueError(
                f"adapter state_dict does not fit the {self.adapter.adapter_type!r} adapter: "
                + describe_state_dict_problems(missing if strict else [], unexpected if strict else [], mismatched)
            )
        return self.adapter.load_state_dict(dict(state_dict), strict=strict)

    # ------------------------------------------------------------------ base model

    def base_state_dict(self) -> Dict[str, Tensor]:
        """Every non-adapter entry of ``state_dict()`` (parameters and buffers of the base model)."""
        return {key: value for key, value in self.state_dict().items() if _ADAPTER_ATTRIBUTE not in key}

    def load_base_state_dict(self, state_dict: Mapping[str, Tensor]) -> List[str]:
        """Load a base model's weights, e.g. a plain (no adapter) checkpoint into a model with an adapter.

        Every base key must be present with the right shape. Adapter keys may be absent (the adapter keeps its
        weights) or present when this model has a matching adapter. Nothing is loaded if anything is wrong.

        Args:
            state_dict: a ``DeepSpeech2.state_dict()`` (keys such as ``'conv.blocks.0.0.weight'``).

        Returns:
            The adapter keys that were not in ``state_dict`` (empty without an adapter).

        Raises:
            ValueError: base keys missing, unknown keys, or shape mismatches (each named).
        """
        expected = self.state_dict()
        missing, unexpected, mismatched = state_dict_problems(expected, state_dict)
        missing_base = [key for key in missing if _ADAPTER_ATTRIBUTE not in key]
        if missing_base or unexpected or mismatched:
            hint = ""
            if any(key.startswith(f"{_ADAPTER_ATTRIBUTE}.") for key in unexpected):
                hint = " (the state_dict holds adapter weights: attach a matching adapter first)"
            raise ValueError(
                "state_dict does not fit this DeepSpeech2 base model: "
                + describe_state_dict_problems(missing_base, unexpected, mismatched)
                + hint
            )
        self.load_state_dict(dict(state_dict), strict=False)
        return missing

    def base_fingerprint(self) -> str:
        """SHA-256 hex digest identifying the base model's weights.

        Covers the name, shape, dtype and bytes of every non-adapter parameter and buffer (BatchNorm running
        statistics and ``num_batches_tracked`` included), in sorted name order; independent of the device.
        """
        digest = hashlib.sha256()
        state = self.base_state_dict()
        for name in sorted(state):
            tensor = state[name].detach().to("cpu").contiguous()
            digest.update(f"{name}\0{tuple(tensor.shape)}\0{tensor.dtype}\0".encode("utf-8"))
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def _base_children(self) -> Iterator[nn.Module]:
        for name, child in self.named_children():
            if name != _ADAPTER_ATTRIBUTE and child is not None:
                yield child

    def freeze_base_model(self) -> None:
        """Freeze the base model in every sense while an adapter trains.

        Sets ``requires_grad=False`` on every parameter whose name lacks ``'adapter'`` and keeps the base
        modules in eval mode from now on, also across ``model.train()``: BatchNorm running statistics,
        ``num_batches_tracked`` and dropout of the base never change. Only the recurrent cells (``nn.GRU`` /
        ``nn.LSTM`` / ``nn.RNN``) keep following the requested mode: a single-layer RNN without internal dropout
        computes the same function in both modes, and cuDNN refuses the RNN backward pass in eval mode, which
        ``encoder`` adapters need.
        """
        for name, parameter in self.named_parameters():
            if _ADAPTER_ATTRIBUTE not in name:
                parameter.requires_grad_(False)
        self._base_frozen = True
        self.train(self.training)

    def unfreeze_base_model(self) -> None:
        """Undo :meth:`freeze_base_model`: base parameters trainable again and following ``train()``/``eval()``."""
        for name, parameter in self.named_parameters():
            if _ADAPTER_ATTRIBUTE not in name:
                parameter.requires_grad_(True)
        self._base_frozen = False
        self.train(self.training)

    def train(self, mode: bool = True) -> "DeepSpeech2":
        """Set train/eval mode; while the base is frozen only the adapter (and the RNN cells) follow ``mode``."""
        super().train(mode)
        if self._base_frozen:
            for child in self._base_children():
                for module in child.modules():
                    module.training = mode and isinstance(module, nn.RNNBase)
        return self
