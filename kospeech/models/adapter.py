"""Per-user adapters for DeepSpeech2 and the one place that decides how their outputs are merged.

Three adapter types share one file format (see :mod:`kospeech.models.adapter_manager`):

- ``head`` (:class:`MLPAdapter`, the original design): an MLP from the RNN output to log-probabilities that
  *replaces* the base head's output.
- ``residual_head`` (:class:`ResidualHeadAdapter`): an MLP whose output is *added* to the base head's logits
  before ``log_softmax``; its last Linear starts at zero, so at initialization the output equals the base's.
- ``encoder`` (:class:`EncoderAdapter`): one residual bottleneck (:class:`BottleneckAdapter`) after each RNN
  layer, *added* to that layer's output; the up-projection starts at zero, so it is an exact no-op at first.

Every adapter module knows how to describe itself (``adapter_config()``) in the plain values that
:func:`build_adapter` takes back, which is what an adapter file stores to rebuild it.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Dict, List, Optional, Sequence, Union

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ADAPTER_TYPES",
    "MergeStrategy",
    "MERGE_STRATEGIES",
    "merge_adapter_output",
    "apply_head_adapter",
    "apply_encoder_adapter",
    "MLPAdapter",
    "ResidualHeadAdapter",
    "BottleneckAdapter",
    "EncoderAdapter",
    "AdapterModule",
    "build_adapter",
]


class MergeStrategy(str, Enum):
    """How an adapter's output combines with the base value at its call point."""

    REPLACE = "replace"
    RESIDUAL = "residual"


MERGE_STRATEGIES: Dict[str, MergeStrategy] = {
    "head": MergeStrategy.REPLACE,
    "residual_head": MergeStrategy.RESIDUAL,
    "encoder": MergeStrategy.RESIDUAL,
}
ADAPTER_TYPES = tuple(MERGE_STRATEGIES)


def merge_adapter_output(adapter_type: str, base: Tensor, adapter_output: Tensor) -> Tensor:
    """Combine an adapter's output with the base value it adapts.

    ``head`` replaces the base log-probabilities; ``residual_head`` adds a correction to the base logits;
    ``encoder`` adds a correction to an RNN layer's output.

    Args:
        adapter_type: one of ``ADAPTER_TYPES``.
        base: the base model's tensor at the call point, any shape.
        adapter_output: the adapter's tensor, same shape as ``base``.

    Returns:
        The merged tensor, same shape as ``base``.
    """
    if adapter_type not in MERGE_STRATEGIES:
        raise ValueError(f"unknown adapter_type {adapter_type!r}; choose one of {list(ADAPTER_TYPES)}")
    if MERGE_STRATEGIES[adapter_type] is MergeStrategy.REPLACE:
        return adapter_output
    return base + adapter_output


def _check_dims(input_dim: int, hidden_dims: Sequence[int], output_dim: int, dropout_p: float) -> List[int]:
    for name, value in (("input_dim", input_dim), ("output_dim", output_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"adapter {name} must be a positive int, got {value!r}")
    if isinstance(hidden_dims, (str, bytes)) or not isinstance(hidden_dims, Sequence):
        raise ValueError(f"adapter hidden_dims must be a list of positive ints, got {hidden_dims!r}")
    dims = list(hidden_dims)
    if any(isinstance(dim, bool) or not isinstance(dim, int) or dim < 1 for dim in dims):
        raise ValueError(f"adapter hidden_dims must be a list of positive ints, got {hidden_dims!r}")
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)) or not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"adapter dropout_p must be a number in [0, 1), got {dropout_p!r}")
    return dims


def _mlp_layers(input_dim: int, hidden_dims: List[int], output_dim: int, dropout_p: float) -> List[nn.Module]:
    layers: List[nn.Module] = []
    previous = input_dim
    for dim in hidden_dims:
        layers += [nn.Linear(previous, dim), nn.ReLU(), nn.Dropout(p=dropout_p)]
        previous = dim
    layers.append(nn.Linear(previous, output_dim))
    return layers


class _FreezeMixin:
    """``freeze()`` / ``unfreeze()`` toggle ``requires_grad`` of every parameter of the adapter."""

    def freeze(self) -> None:
        """Stop training this adapter: ``requires_grad=False`` on all its parameters."""
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    def unfreeze(self) -> None:
        """Train this adapter again: ``requires_grad=True`` on all its parameters."""
        for parameter in self.parameters():
            parameter.requires_grad_(True)


class _MLPStack(_FreezeMixin, nn.Sequential):
    """``[Linear -> ReLU -> Dropout]`` per hidden dim, then a Linear, then the ``final`` modules."""

    adapter_type = ""

    def __init__(
        self, input_dim: int, hidden_dims: Sequence[int], output_dim: int, dropout_p: float, final: List[nn.Module]
    ) -> None:
        dims = _check_dims(input_dim, hidden_dims, output_dim, dropout_p)
        super().__init__(*_mlp_layers(input_dim, dims, output_dim, dropout_p), *final)
        self.input_dim = input_dim
        self.hidden_dims = dims
        self.output_dim = output_dim
        self.dropout_p = float(dropout_p)

    def adapter_config(self) -> Dict[str, Any]:
        """Plain values that :func:`build_adapter` turns back into an identical (untrained) adapter."""
        return {
            "adapter_type": self.adapter_type,
            "input_dim": self.input_dim,
            "hidden_dims": list(self.hidden_dims),
            "output_dim": self.output_dim,
            "dropout_p": self.dropout_p,
            "num_layers": None,
        }


class MLPAdapter(_MLPStack):
    """The original head adapter: ``[Linear -> ReLU -> Dropout]`` per hidden dim, then ``Linear -> LogSoftmax``.

    State-dict keys are ``'0.weight', '0.bias', '3.weight', '3.bias', ...`` (every third module is a Linear).

    Args:
        input_dim: features of the RNN output it reads (``rnn_hidden_dim * 2`` when bidirectional).
        hidden_dims: sizes of the hidden layers, e.g. ``[512, 256]`` (may be empty: one Linear).
        output_dim: C, number of classes.
        dropout_p: dropout after each hidden layer.

    Inputs:
        features: (B, T', input_dim) float.

    Returns:
        log-probabilities (B, T', C).
    """

    adapter_type = "head"

    def __init__(self, input_dim: int, hidden_dims: Sequence[int], output_dim: int, dropout_p: float = 0.1) -> None:
        super().__init__(input_dim, hidden_dims, output_dim, dropout_p, [nn.LogSoftmax(dim=-1)])


class ResidualHeadAdapter(_MLPStack):
    """Correction to the base head's logits: the :class:`MLPAdapter` layers without ``LogSoftmax``.

    The last Linear's weight and bias start at zero, so the correction is exactly zero at initialization.
    Same arguments and state-dict keys as :class:`MLPAdapter`.

    Inputs:
        features: (B, T', input_dim) float.

    Returns:
        logit correction (B, T', C), added to the base logits by :func:`merge_adapter_output`.
    """

    adapter_type = "residual_head"

    def __init__(self, input_dim: int, hidden_dims: Sequence[int], output_dim: int, dropout_p: float = 0.1) -> None:
        super().__init__(input_dim, hidden_dims, output_dim, dropout_p, [])
        nn.init.zeros_(self[-1].weight)
        nn.init.zeros_(self[-1].bias)


class BottleneckAdapter(nn.Module):
    """Residual bottleneck for one RNN layer: ``LayerNorm -> down Linear -> ReLU -> Dropout -> up Linear``.

    The up-projection starts at zero, so the returned correction is exactly zero at initialization.

    Args:
        dim: features of the RNN layer's output (``rnn_hidden_dim * 2`` when bidirectional).
        bottleneck_dim: width of the bottleneck.
        dropout_p: dropout inside the bottleneck.

    Inputs:
        hidden: (B, T', dim) float.

    Returns:
        correction (B, T', dim), added to ``hidden`` by :func:`merge_adapter_output`.
    """

    def __init__(self, dim: int, bottleneck_dim: int, dropout_p: float = 0.1) -> None:
        super().__init__()
        _check_dims(dim, [bottleneck_dim], dim, dropout_p)
        self.norm = nn.LayerNorm(dim)
        self.down = nn.Linear(dim, bottleneck_dim)
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout(p=dropout_p)
        self.up = nn.Linear(bottleneck_dim, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.up(self.dropout(self.activation(self.down(self.norm(hidden)))))


class EncoderAdapter(_FreezeMixin, nn.Module):
    """One :class:`BottleneckAdapter` per RNN layer, keyed by the layer index.

    State-dict keys: ``'layers.<i>.norm.weight'``, ``'layers.<i>.norm.bias'``, ``'layers.<i>.down.weight'``,
    ``'layers.<i>.down.bias'``, ``'layers.<i>.up.weight'``, ``'layers.<i>.up.bias'`` for ``i`` in
    ``0 .. num_layers - 1``.

    Args:
        dim: features of every RNN layer's output.
        bottleneck_dim: width of each bottleneck.
        num_layers: number of RNN layers adapted (one adapter after each).
        dropout_p: dropout inside each bottleneck.
    """

    adapter_type = "encoder"

    def __init__(self, dim: int, bottleneck_dim: int, num_layers: int, dropout_p: float = 0.1) -> None:
        super().__init__()
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"encoder adapter num_layers must be a positive int, got {num_layers!r}")
        self.layers = nn.ModuleDict(
            {str(index): BottleneckAdapter(dim, bottleneck_dim, dropout_p) for index in range(num_layers)}
        )
        self.dim = dim
        self.bottleneck_dim = bottleneck_dim
        self.num_layers = num_layers
        self.dropout_p = float(dropout_p)

    def forward(self, hidden: Tensor, layer_index: int) -> Tensor:
        """Correction for the output of RNN layer ``layer_index``.

        Inputs:
            hidden: (B, T', dim) float, the layer's output.
            layer_index: which RNN layer produced ``hidden``.

        Returns:
            correction (B, T', dim).
        """
        return self.layers[str(layer_index)](hidden)

    def adapter_config(self) -> Dict[str, Any]:
        """Plain values that :func:`build_adapter` turns back into an identical (untrained) adapter.

        ``hidden_dims`` is ``[bottleneck_dim]`` and ``input_dim == output_dim == dim``.
        """
        return {
            "adapter_type": self.adapter_type,
            "input_dim": self.dim,
            "hidden_dims": [self.bottleneck_dim],
            "output_dim": self.dim,
            "dropout_p": self.dropout_p,
            "num_layers": self.num_layers,
        }


AdapterModule = Union[MLPAdapter, ResidualHeadAdapter, EncoderAdapter]


def apply_head_adapter(adapter: AdapterModule, features: Tensor, base_logits: Tensor) -> Tensor:
    """The output of a ``head`` / ``residual_head`` adapter at the model's head, as log-probabilities.

    ``head`` replaces the base output with the :class:`MLPAdapter`'s log-probabilities; ``residual_head`` adds its
    correction to the base logits and takes ``log_softmax`` (via :func:`merge_adapter_output`). Shared by the
    single-adapter forward pass and mixed-adapter batches, so both compute exactly the same function.

    Args:
        adapter: a :class:`MLPAdapter` or :class:`ResidualHeadAdapter`.
        features: (B, T', H * num_directions) trunk output.
        base_logits: (B, T', C) logits of the base head for the same rows.

    Returns:
        (B, T', C) log-probabilities.
    """
    adapter_type = adapter.adapter_type
    if adapter_type == "encoder":
        raise ValueError("apply_head_adapter takes a 'head' or 'residual_head' adapter, got an 'encoder' adapter")
    merged = merge_adapter_output(adapter_type, base_logits, adapter(features))
    if MERGE_STRATEGIES[adapter_type] is MergeStrategy.REPLACE:
        return merged  # the MLPAdapter ends in LogSoftmax
    return F.log_softmax(merged, dim=-1)


def apply_encoder_adapter(adapter: EncoderAdapter, layer_index: int, hidden: Tensor, mask: Tensor) -> Tensor:
    """RNN layer ``layer_index``'s output after its ``encoder`` adapter; padded frames stay unchanged.

    Shared by the single-adapter forward pass and mixed-adapter batches.

    Args:
        adapter: an :class:`EncoderAdapter`.
        layer_index: index of the RNN layer whose output is ``hidden``.
        hidden: (B, T', H * num_directions) the layer's output.
        mask: (B, T', 1) bool, True on valid frames.

    Returns:
        (B, T', H * num_directions) ``hidden`` plus the correction on valid frames.
    """
    if adapter.adapter_type != "encoder":
        raise ValueError(f"apply_encoder_adapter takes an 'encoder' adapter, got a {adapter.adapter_type!r} adapter")
    correction = adapter(hidden, layer_index).masked_fill(~mask, 0.0)
    return merge_adapter_output(adapter.adapter_type, hidden, correction)


def build_adapter(
    adapter_type: str,
    input_dim: int,
    hidden_dims: Sequence[int],
    output_dim: int,
    dropout_p: float = 0.1,
    num_layers: Optional[int] = None,
) -> AdapterModule:
    """Build an adapter from the plain values of ``adapter_config()`` (what an adapter file records).

    Args:
        adapter_type: ``"head"``, ``"residual_head"`` or ``"encoder"``.
        input_dim: features the adapter reads (the RNN output size).
        hidden_dims: MLP hidden sizes; for ``encoder`` exactly one value, the bottleneck width.
        output_dim: C for the head types; for ``encoder`` it must equal ``input_dim``.
        dropout_p: dropout probability inside the adapter.
        num_layers: ``encoder`` only: the number of RNN layers; must be ``None`` for the head types.

    Returns:
        A freshly initialized adapter module.
    """
    if adapter_type not in MERGE_STRATEGIES:
        raise ValueError(f"unknown adapter_type {adapter_type!r}; choose one of {list(ADAPTER_TYPES)}")
    if adapter_type == "encoder":
        if num_layers is None:
            raise ValueError("an encoder adapter needs num_layers (the number of RNN layers)")
        if isinstance(hidden_dims, (str, bytes)) or not isinstance(hidden_dims, Sequence) or len(hidden_dims) != 1:
            raise ValueError(f"an encoder adapter takes hidden_dims=[bottleneck_dim], got {hidden_dims!r}")
        if input_dim != output_dim:
            raise ValueError(f"an encoder adapter has input_dim == output_dim, got {input_dim} and {output_dim}")
        return EncoderAdapter(input_dim, hidden_dims[0], num_layers, dropout_p)
    if num_layers is not None:
        raise ValueError(f"num_layers applies to encoder adapters only, got {num_layers!r} for {adapter_type!r}")
    if adapter_type == "head":
        return MLPAdapter(input_dim, hidden_dims, output_dim, dropout_p)
    return ResidualHeadAdapter(input_dim, hidden_dims, output_dim, dropout_p)
