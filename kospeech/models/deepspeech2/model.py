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

from kospeech.errors import AdapterCompatibilityError
from kospeech.models.adapter import (
    DEFAULT_ADAPTER_HIDDEN_DIMS,
    AdapterModule,
    CachePoint,
    TrunkDims,
    adapter_config_for,
    placement_problems,
    registered_adapter,
)
from kospeech.models.modules import ACTIVATIONS, RNN_TYPES, BNReluRNN, MaskConv2d
from kospeech.models.router import AdapterGroup, AdapterRouter
from kospeech.models.utils import describe_state_dict_problems, state_dict_problems

__all__ = ["DeepSpeech2", "AdapterCompatibilityError", "AdapterGroup", "DEFAULT_ADAPTER_HIDDEN_DIMS"]

_ADAPTER_ATTRIBUTE = "adapter"


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class DeepSpeech2(nn.Module):
    """DeepSpeech2 CTC acoustic model: masked conv extractor, BatchNorm-ReLU-RNN layers, LayerNorm + Linear head.

    The base model is ``conv`` (:class:`MaskConv2d`), ``rnn_layers`` (:class:`BNReluRNN` each) and ``fc``
    (LayerNorm + Linear without bias); ``log_softmax`` gives log-probabilities. An optional adapter lives in
    ``self.adapter``; every adapter parameter name starts with ``adapter.`` and no base parameter name contains
    ``adapter``. Adapter types come from the registry (:mod:`kospeech.models.adapter`): ``head``,
    ``residual_head``, ``encoder`` and any registered later; where each is called and how it merges is its entry's.

    Seams: :meth:`run` is the one trunk loop (extractor, RNN layers, the call point after each layer; ranges of it
    for caching a frozen prefix), :meth:`classify` the head with its call point; both take an
    :class:`~kospeech.models.router.AdapterRouter` saying which rows go through which adapter. :meth:`forward`,
    :meth:`encode` and :meth:`head` route every row through the attached adapter; :meth:`forward_mixed` serves a
    batch whose rows use different adapter modules (or none) without attaching them: the trunk runs once.

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
        adapter_type: a registered adapter type (``"head"``, ``"residual_head"``, ``"encoder"``, ...).
        adapter_dropout_p: dropout inside the adapter.
        adapter_bottleneck_dim: bottleneck width of ``encoder`` adapters; not used by the head types.
        adapter_extractor_bottleneck_dim: bottleneck width of an ``encoder`` adapter's part on the extractor's
            output (0: none); not used by the head types.
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
        adapter_extractor_bottleneck_dim: int = 32,
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
        registered_adapter(adapter_type)

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
            self.add_adapter(
                adapter_type,
                adapter_hidden_dims,
                adapter_dropout_p,
                adapter_bottleneck_dim,
                extractor_bottleneck_dim=adapter_extractor_bottleneck_dim,
            )
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
    def adapters_enabled(self) -> bool:
        """False inside :meth:`disable_adapter`: every pass that honours it gives the base model's output."""
        return self._adapter_enabled

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
        for name, value in (("inputs", inputs), ("input_lengths", input_lengths)):
            if not isinstance(value, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if inputs.dim() != 3 or inputs.size(-1) != self.input_dim:
            raise ValueError(f"inputs must have shape (B, T, {self.input_dim}), got {tuple(inputs.shape)}")
        if not inputs.is_floating_point():
            raise ValueError(f"inputs must be a floating point tensor, got {inputs.dtype}")
        weights = self.conv.blocks[0][0].weight.dtype
        if inputs.dtype != weights and not torch.is_autocast_enabled(inputs.device.type):  # autocast casts them
            raise ValueError(f"inputs are {inputs.dtype} but the model's weights are {weights}: convert one of them")
        self._check_lengths(inputs, input_lengths, "T")

    @staticmethod
    def _check_lengths(inputs: Tensor, input_lengths: Tensor, frames: str) -> None:
        """``input_lengths``: (B,) integers in ``[1, inputs.size(1)]``; ``frames`` names the time axis in messages."""
        if not isinstance(input_lengths, Tensor):
            raise TypeError(f"input_lengths must be a torch.Tensor, got {type(input_lengths).__name__}")
        if input_lengths.dim() != 1 or input_lengths.size(0) != inputs.size(0):
            raise ValueError(
                f"input_lengths must have shape ({inputs.size(0)},) to match inputs, got {tuple(input_lengths.shape)}"
            )
        if input_lengths.is_floating_point() or input_lengths.is_complex() or input_lengths.dtype == torch.bool:
            raise ValueError(f"input_lengths must be an integer tensor, got {input_lengths.dtype}")
        lengths = input_lengths.cpu()
        if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > inputs.size(1)):
            raise ValueError(
                f"input_lengths must lie in [1, {frames}={inputs.size(1)}], got min {int(lengths.min())}, "
                f"max {int(lengths.max())}"
            )

    def _check_layer_range(self, inputs: Tensor, from_layer: Optional[int], to_layer: int) -> None:
        last = self.num_rnn_layers
        if isinstance(to_layer, bool) or not isinstance(to_layer, int):
            raise ValueError(f"to_layer must be an int, got {to_layer!r}")
        if from_layer is None:
            if not 0 <= to_layer <= last:
                raise ValueError(f"to_layer must lie in [0, {last}], got {to_layer}")
            return
        if isinstance(from_layer, bool) or not isinstance(from_layer, int) or not 0 <= from_layer < to_layer <= last:
            raise ValueError(
                f"need 0 <= from_layer < to_layer <= {last}, got from_layer={from_layer!r}, to_layer={to_layer}"
            )
        width = self.point_dim(from_layer)
        if inputs.dim() != 3 or inputs.size(-1) != width:
            raise ValueError(
                f"inputs at from_layer={from_layer} must have shape (B, T', {width}), got {tuple(inputs.shape)}"
            )

    def run(
        self,
        inputs: Tensor,
        input_lengths: Tensor,
        *,
        from_layer: Optional[int] = None,
        to_layer: Optional[int] = None,
        router: Optional[AdapterRouter] = None,
    ) -> Tuple[Tensor, Tensor]:
        """The trunk loop: extractor, then RNN layers ``from_layer .. to_layer - 1``, each followed by its adapters.

        The only loop over the model's submodules; every forward pass, trunk cache and trainer goes through it.
        Trunk *points* name the values between the parts: point 0 is the extractor's output, point ``k`` (1..N) the
        output of RNN layer ``k - 1``, both *before* the adapters at that point (called with ``layer_index = k - 1``,
        -1 for the extractor's output), and the trunk output (``to_layer=N``) comes after the adapters of the last
        layer. So ``run(x, L, to_layer=k)`` without a router computes what
        ``run(h, L', from_layer=k, router=r)`` continues from, which is how a frozen prefix is cached once, as long
        as no adapter of ``r`` is called before point ``k`` (its type's cache point; a later start raises).

        Inputs:
            inputs: (B, T, D) float padded features when ``from_layer`` is ``None``; otherwise the value at point
                ``from_layer``, (B, T', F) with F the extractor's or the RNN layer's output size.
            input_lengths: (B,) int64 valid frames per row (input frames, or T' frames with ``from_layer``), any
                order, any device.
            from_layer: ``None`` to start from features (the extractor runs), or a point in ``[0, N)``.
            to_layer: the point to stop at, ``(from_layer, N]`` (``[0, N]`` from features); default N.
            router: the adapters placed after the RNN layers and the rows they serve; ``None`` runs the base alone.
                Adapters placed at the head are ignored here (see :meth:`classify`).

        Returns:
            hidden: (B, T', F) the value at ``to_layer``, zero at padded frames.
            output_lengths: (B,) int64 valid frames T'_i on ``input_lengths.device``.

        Raises:
            ValueError: a layer range outside the model, ``from_layer`` past the first call point of a routed
                adapter, inputs of another shape, or lengths that are not (B,) integers in ``[1, T]`` (``[1, T']``).
        """
        stop = self.num_rnn_layers if to_layer is None else to_layer
        self._check_layer_range(inputs, from_layer, stop)
        for route in [] if router is None or from_layer is None else router.layer_routes:
            first = self.cache_layer(route.entry.cache_point)
            if from_layer > first:
                raise ValueError(
                    f"from_layer={from_layer} is past point {first}, where {route.entry.name!r} adapters are first "
                    f"called: their calls before it would be skipped; start at point {first} or earlier"
                )
        if from_layer is None:
            self._check_inputs(inputs, input_lengths)
            hidden, lengths = self.conv(inputs, input_lengths)  # (B, T', F_conv)
            start = 0
        else:
            self._check_lengths(inputs, input_lengths, "T'")
            hidden, lengths, start = inputs, input_lengths, from_layer
        mask = None if router is None else router.layer_mask(lengths, hidden.size(1), hidden.device)
        if mask is not None and stop > start:  # the adapters at the starting point (-1: the extractor's output)
            hidden = router.apply_layer(start - 1, hidden, mask)
        for index in range(start, stop):
            hidden = self.rnn_layers[index](hidden, lengths)  # (B, T', H * num_directions)
            if mask is not None and (index + 1 < stop or stop == self.num_rnn_layers):
                hidden = router.apply_layer(index, hidden, mask)
        return hidden, lengths

    def classify(self, features: Tensor, router: Optional[AdapterRouter] = None) -> Tensor:
        """The head: LayerNorm + Linear + log_softmax, merged with the router's head adapters on their rows.

        Inputs:
            features: (B, T', H * num_directions) the trunk output (:meth:`run`).
            router: head-placed adapters and their rows; ``None`` gives the base head's output.

        Returns:
            log-probabilities (B, T', C).
        """
        if router is None or not router.head_routes:
            return F.log_softmax(self.fc(features), dim=-1)
        return router.apply_head(features, self.fc)

    def active_router(self) -> Optional[AdapterRouter]:
        """The attached adapter on every row, or ``None`` when none is attached or it is disabled."""
        return AdapterRouter.single(self.adapter) if self.adapter_active else None

    def encode(self, inputs: Tensor, input_lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """Trunk output with the attached adapter's layer adapters (when it is enabled).

        Inputs:
            inputs: (B, T, D) float, padded features.
            input_lengths: (B,) int64, valid frames per row, any order, any device, 1 <= L <= T.

        Returns:
            features: (B, T', H * num_directions) float, zero at padded frames, ``T' = ceil(T / 2)``.
            output_lengths: (B,) int64 on ``input_lengths.device``, ``ceil(L / 2)``.
        """
        return self.run(inputs, input_lengths, router=self.active_router())

    def head(self, features: Tensor) -> Tensor:
        """Head with the attached adapter's head adapter (when it is enabled).

        ``head(encode(x)[0])`` is the model's active output: the adapter's when one is attached and enabled,
        the base model's otherwise.

        Inputs:
            features: (B, T', H * num_directions) float, as returned by :meth:`encode`.

        Returns:
            log-probabilities (B, T', C).
        """
        return self.classify(features, self.active_router())

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

        For an adapter placed after the RNN layers the base and the adapted trunk differ from the first RNN layer
        on, so the extractor runs once and the RNN layers run twice (the base pass is the unadapted trunk); in
        training mode with an unfrozen base, their BatchNorm statistics then update on both passes. Callers that only
        need the adapted output can use ``head(encode(inputs, input_lengths)[0])``, and callers that only need the
        base output can call the model inside :meth:`disable_adapter` (as base training does): each runs the trunk
        once.
        """
        extracted, lengths = self.run(inputs, input_lengths, to_layer=0)  # (B, T', F_conv)
        base_features, _ = self.run(extracted, lengths, from_layer=0)
        base_logits = self.fc(base_features)
        base_log_probs = F.log_softmax(base_logits, dim=-1)
        if self.adapter is None:
            return base_log_probs, lengths
        if not self._adapter_enabled:
            return base_log_probs, lengths, base_log_probs
        router = AdapterRouter.single(self.adapter)
        if router.layer_routes:
            adapted, _ = self.run(extracted, lengths, from_layer=0, router=router)
            return base_log_probs, lengths, self.classify(adapted, router)
        return base_log_probs, lengths, router.apply_head(base_features, lambda _: base_logits)

    def forward_mixed(
        self,
        inputs: Tensor,
        input_lengths: Tensor,
        groups: Union[Sequence[AdapterGroup], AdapterRouter],
        from_layer: Optional[int] = None,
    ) -> Tuple[Tensor, Tensor]:
        """Run a batch whose rows use different adapters (or none), in eval mode only.

        The extractor and every RNN layer run once for the whole batch. Layer adapters adapt their group's rows of
        each RNN layer's output before the next layer; head adapters adapt their group's rows of the trunk output at
        the head. The groups of one type whose registry entry can stack them are computed together (one batched
        computation per call point, see :attr:`AdapterRouter.planned_routes`), the others one group at a time. Rows
        in no group get the base model's output, bitwise equal to that row of ``forward`` of the same batch on this
        model without an adapter when autograd is off (``torch.no_grad`` / ``inference_mode``, as in inference; with
        autograd on a CPU, adapters that need gradients move the RNN layers to their padded path, equal within float
        rounding). Each adapted row equals (within float rounding, ~1e-6) the row of a model with that adapter
        attached. The adapter attached to this model (``self.adapter``), if any, is not
        used; the adapters' dropout is off because they must be in eval mode.

        Inputs:
            inputs: (B, T, D) float, padded features; with ``from_layer``, the value at that trunk point (see
                :meth:`run`), e.g. the extractor's output (B, T', F_conv) for ``from_layer=0``, computed without
                adapters (every adapter comes after the extractor, so that value is the same for every user).
            input_lengths: (B,) int64, valid frames per row (of ``inputs``), any order, any device, 1 <= L <= T.
            groups: an :class:`AdapterRouter`, or ``(rows, adapter)`` pairs: ``rows`` a (n,) integer tensor or list
                of distinct batch row indices, ``adapter`` a module of a registered adapter type that fits this
                model, on its device, in eval mode. A row belongs to at most one group; types may be mixed.
            from_layer: ``None`` to start from features, or the trunk point ``inputs`` holds.

        Returns:
            log_probs: (B, T', C) log-probabilities, ``T' = ceil(T / 2)`` (``T`` itself with ``from_layer``).
            output_lengths: (B,) int64 on ``input_lengths.device``.

        Raises:
            ValueError: the model or an adapter is in training mode, or a group's rows are invalid or overlap.
            AdapterCompatibilityError: an adapter's sizes do not fit this model.
        """
        if self.training:
            raise ValueError("mixed-adapter batches are for inference only: call model.eval() first")
        router = groups if isinstance(groups, AdapterRouter) else AdapterRouter(groups, inputs.size(0))
        for position, adapter in enumerate(router.adapters):
            if adapter.training:
                raise ValueError(
                    f"group {position}: the {adapter.adapter_type!r} adapter is in training mode; call adapter.eval()"
                )
            self.check_adapter_fits(adapter)
        features, lengths = self.run(inputs, input_lengths, from_layer=from_layer, router=router)
        return self.classify(features, router), lengths

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

    @property
    def trunk_dims(self) -> TrunkDims:
        """The sizes an adapter must fit (RNN output width, classes, RNN layers)."""
        return TrunkDims(self.rnn_output_dim, self.num_classes, self.num_rnn_layers, self.conv.output_dim)

    def cache_layer(self, point: CachePoint) -> int:
        """The trunk point (see :meth:`run`) of a cache point: N for the trunk output, 1 for RNN layer 0's output,
        0 for the extractor's output."""
        point = CachePoint(point)
        return {CachePoint.TRUNK_OUTPUT: self.num_rnn_layers, CachePoint.FIRST_RNN_LAYER: 1}.get(point, 0)

    def point_dim(self, layer: int) -> int:
        """Features of the value at trunk point ``layer`` (see :meth:`run`): F_conv at 0, F after an RNN layer."""
        return self.conv.output_dim if layer == 0 else self.rnn_layers[layer - 1].output_dim

    def check_adapter_fits(self, adapter: AdapterModule) -> None:
        """Raise :class:`AdapterCompatibilityError` naming every size of ``adapter`` that does not fit this model."""
        config = adapter.adapter_config()
        problems = placement_problems(config, self.trunk_dims)
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
        extractor_bottleneck_dim: Optional[int] = None,
        config: Any = None,
        replace: bool = False,
    ) -> AdapterModule:
        """Build and attach a fresh adapter of a registered type (e.g. to a base loaded from a plain checkpoint).

        The sizes come from ``config`` (the type's config dataclass) when given, otherwise from whichever of
        ``hidden_dims``, ``dropout_p`` and ``bottleneck_dim`` the type's config has fields for
        (:func:`~kospeech.models.adapter.adapter_config_for`); the model supplies input and output sizes.

        Args:
            adapter_type: a registered type: ``"head"``, ``"residual_head"``, ``"encoder"``, ...
            hidden_dims: MLP hidden sizes of the head types (``None``: ``[512, 256]``).
            dropout_p: dropout inside the adapter.
            bottleneck_dim: bottleneck width of ``encoder``.
            extractor_bottleneck_dim: bottleneck width of ``encoder``'s part on the extractor's output (0: none;
                ``None``: the config's default).
            config: an instance of the type's config dataclass, used instead of the settings above.
            replace: replace an attached adapter instead of raising.

        Returns:
            The new adapter (also ``self.adapter``).
        """
        entry = registered_adapter(adapter_type)
        if config is None:
            config = adapter_config_for(
                adapter_type,
                hidden_dims=hidden_dims,
                dropout_p=dropout_p,
                bottleneck_dim=bottleneck_dim,
                extractor_bottleneck_dim=extractor_bottleneck_dim,
            )
        elif not isinstance(config, entry.config_class):
            raise ValueError(
                f"config of a {adapter_type!r} adapter must be a {entry.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        return self.attach_adapter(entry.create(config, self.trunk_dims), replace=replace)

    def remove_adapter(self) -> Optional[AdapterModule]:
        """Detach the adapter; returns it (``None`` if there was none)."""
        adapter = self.adapter
        self.adapter = None
        return adapter

    @contextmanager
    def disable_adapter(self) -> Iterator[DeepSpeech2]:
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
            digest.update(f"{name}\0{tuple(tensor.shape)}\0{tensor.dtype}\0".encode())
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

    def train(self, mode: bool = True) -> DeepSpeech2:
        """Set train/eval mode; while the base is frozen only the adapter (and the RNN cells) follow ``mode``."""
        super().train(mode)
        if self._base_frozen:
            for child in self._base_children():
                for module in child.modules():
                    module.training = mode and isinstance(module, nn.RNNBase)
        return self
