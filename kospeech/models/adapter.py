"""Per-user adapters for DeepSpeech2 and the registry that is the one place knowing each adapter type.

An adapter type is one entry of the registry (:func:`register_adapter`, in the spirit of PEFT's
``register_peft_method`` and NeMo's adapter strategies): its module class, its config dataclass, its
*placement* (where in the model it is called), its *merge rule* (how its output combines with the base value
there), its *cache point* (the last frozen value before it, which adapter training may compute once) and whether
a fresh module *starts at the base* (gives the base model's output before any training). The model, the trunk
cache, the adapter files and the trainers read these fields; nothing else in the library tests an adapter type's
name. An entry also carries the type's training *recipe*: the adapter-training settings it is best trained with
(measured on held-out users, see ADAPTER_README.md), which ``train.adapter_type=<type>`` applies.

Built-in types (one file format, see :mod:`kospeech.models.adapter_manager`):

- ``head`` (:class:`MLPAdapter`, the original design): placed at the head, an MLP from the RNN output to
  log-probabilities that *replaces* the base head's output.
- ``residual_head`` (:class:`ResidualHeadAdapter`): placed at the head, an MLP whose output is *added* to the
  base head's logits before ``log_softmax``; its last Linear starts at zero, so at first the output is the base's.
- ``encoder`` (:class:`EncoderAdapter`): placed on the trunk, one residual bottleneck (:class:`BottleneckAdapter`)
  *added* to the extractor's output (before RNN layer 0: where a channel's mark on the features is still local) and
  one after every RNN layer; the up-projections start at zero.

Call conventions by placement (what a new type's module implements):

- :attr:`Placement.HEAD`: ``module(features)`` with features (B, T', F) the trunk output; returns (B, T', C):
  log-probabilities for :attr:`MergeStrategy.REPLACE`, a logit correction for :attr:`MergeStrategy.RESIDUAL`.
- :attr:`Placement.RNN_LAYERS`: ``module(hidden, layer_index)`` with hidden (B, T', F) the output of RNN layer
  ``layer_index``, or with ``layer_index`` :data:`EXTRACTOR_OUTPUT` (-1) the extractor's output (B, T', F_conv);
  returns a tensor of the same shape: the new output (REPLACE) or a correction (RESIDUAL), or ``None`` for a point
  the module leaves alone. Padded frames keep the base value either way.

Every adapter module also has a class attribute ``adapter_type`` (its registry name) and ``adapter_config()``,
the plain values an adapter file stores (``adapter_type, input_dim, hidden_dims, output_dim, dropout_p,
num_layers``, and ``extractor_dim`` for a module that adapts the extractor's output), which the entry's
``from_fields`` turns back into an identical untrained module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ADAPTER_TYPES",
    "EXTRACTOR_OUTPUT",
    "DEFAULT_ADAPTER_HIDDEN_DIMS",
    "Placement",
    "MergeStrategy",
    "CachePoint",
    "TrunkDims",
    "AdapterType",
    "register_adapter",
    "unregister_adapter",
    "registered_adapter",
    "adapter_type_of",
    "registered_adapter_types",
    "adapter_config_for",
    "placement_problems",
    "merge_adapter_output",
    "apply_head_adapter",
    "apply_layer_adapter",
    "apply_encoder_adapter",
    "GroupedCall",
    "AdapterSettings",
    "HeadAdapterConfig",
    "EncoderAdapterConfig",
    "MLPAdapter",
    "ResidualHeadAdapter",
    "BottleneckAdapter",
    "EncoderAdapter",
    "AdapterModule",
    "build_adapter",
]

DEFAULT_ADAPTER_HIDDEN_DIMS = (512, 256)


class Placement(str, Enum):
    """Where the model calls an adapter."""

    HEAD = "head"
    """On the trunk output, merged with the base head's logits."""
    RNN_LAYERS = "rnn_layers"
    """After every RNN layer, on that layer's output (valid frames only)."""


class MergeStrategy(str, Enum):
    """How an adapter's output combines with the base value at its call point."""

    REPLACE = "replace"
    RESIDUAL = "residual"


EXTRACTOR_OUTPUT = -1
"""The ``layer_index`` of the extractor's output (before RNN layer 0) in the call of a trunk-placed adapter."""


class CachePoint(str, Enum):
    """The last frozen value before an adapter's first call point: what adapter training may compute once.

    The values are the names recorded in training statistics and trunk-cache descriptions.
    """

    TRUNK_OUTPUT = "rnn_output"
    """The output of the whole unadapted trunk (extractor and every RNN layer)."""
    FIRST_RNN_LAYER = "rnn_layer_0"
    """The output of RNN layer 0, before any adapter: the input of the first adapter after an RNN layer."""
    EXTRACTOR = "extractor"
    """The output of the convolutional extractor, before any adapter: for adapters that start there."""


class TrunkDims(NamedTuple):
    """The sizes of a model that an adapter must fit.

    Attributes:
        rnn_output_dim: F, features of every RNN layer's output (``2 * H`` when bidirectional).
        num_classes: C, output classes.
        num_rnn_layers: N, RNN layers.
        extractor_output_dim: F_conv, features of the extractor's output (``None``: unknown, e.g. a model of a
            plugin that has no extractor).
    """

    rnn_output_dim: int
    num_classes: int
    num_rnn_layers: int
    extractor_output_dim: Optional[int] = None


GroupedCall = Callable[..., Optional[Tensor]]
"""Several modules of one type computed together: ``call(which, *inputs)`` with ``which`` (N,) int64, row ``r``'s
module index, and ``inputs`` the module's usual inputs for those N rows (e.g. ``(hidden, layer_index)`` with
hidden (N, T', F)); returns what each row's own module returns on that row (``None`` where the modules leave the
point alone). For inference: the modules are in eval mode (no dropout)."""


@dataclass(frozen=True)
class AdapterType:
    """One registry entry: everything the library knows about one adapter type.

    Attributes:
        name: the type's name, stored as ``adapter_type`` in adapter files.
        module_class: the adapter module's class (its ``adapter_type`` class attribute equals ``name``).
        config_class: a dataclass of the sizes a user chooses (e.g. hidden dims, dropout); every field has a default.
        placement: where the model calls the module.
        merge: how the module's output combines with the base value.
        cache_point: the last frozen value before the module's first call point.
        starts_at_base: a fresh module leaves the model's output exactly the base model's (a zero-initialized
            residual). A type that does not is first trained to reproduce the base's output (distillation, see
            :class:`~kospeech.trainer.AdapterTrainer`), so its supervised steps start where the base is.
        create: builds a fresh module for a model from ``(config, dims)``.
        from_fields: rebuilds a module from the file fields ``(input_dim, hidden_dims, output_dim, dropout_p,
            num_layers)`` (and ``extractor_dim=`` when a file records one); raises ``ValueError`` for sizes the type
            cannot take.
        recipe: adapter-training settings (field names and values of
            :class:`~kospeech.trainer.AdapterTrainConfig`) this type trains best with; settings it leaves out keep
            the config's defaults, which are the original design's (the ``head`` type's).
        grouped: how several modules of this type are computed together (mixed-user inference): ``grouped(modules)``
            returns a :data:`GroupedCall` over them, or ``None`` when these modules cannot be stacked (e.g. their
            sizes differ); ``None`` for a type computed one module at a time.
    """

    name: str
    module_class: Type[nn.Module]
    config_class: type
    placement: Placement
    merge: MergeStrategy
    cache_point: CachePoint
    starts_at_base: bool
    create: Callable[[Any, TrunkDims], nn.Module]
    from_fields: Callable[..., nn.Module]
    recipe: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    grouped: Optional[Callable[[Sequence[nn.Module]], Optional[GroupedCall]]] = field(
        default=None, compare=False, hash=False
    )


_REGISTRY: Dict[str, AdapterType] = {}


def register_adapter(
    name: str,
    *,
    module_class: Type[nn.Module],
    config_class: type,
    placement: Placement,
    merge: MergeStrategy,
    create: Callable[[Any, TrunkDims], nn.Module],
    from_fields: Callable[..., nn.Module],
    cache_point: Optional[CachePoint] = None,
    starts_at_base: Optional[bool] = None,
    recipe: Optional[Mapping[str, Any]] = None,
    grouped: Optional[Callable[[Sequence[nn.Module]], Optional[GroupedCall]]] = None,
) -> AdapterType:
    """Register an adapter type; the model, files, trunk cache and trainers then handle it like a built-in one.

    Args:
        name: the type's name (a new one; a duplicate is refused).
        module_class: the module class; must have a class attribute ``adapter_type == name`` and an
            ``adapter_config()`` method (see the module docstring).
        config_class: a dataclass whose fields all have defaults.
        placement: :attr:`Placement.HEAD` or :attr:`Placement.RNN_LAYERS`.
        merge: :attr:`MergeStrategy.REPLACE` or :attr:`MergeStrategy.RESIDUAL`.
        create: ``create(config, dims) -> module``.
        from_fields: ``from_fields(input_dim, hidden_dims, output_dim, dropout_p, num_layers) -> module``.
        cache_point: defaults to :attr:`CachePoint.TRUNK_OUTPUT` for head placement and
            :attr:`CachePoint.FIRST_RNN_LAYER` for layer placement; :attr:`CachePoint.EXTRACTOR` for a layer-placed
            type that also adapts the extractor's output.
        starts_at_base: whether a fresh module is an exact no-op on the base's output; defaults to True for the
            residual merge rule (whose modules start at zero by convention) and False for replacing ones.
        recipe: the type's training settings (see :class:`AdapterType`); default: none of its own.
        grouped: how several of its modules are computed together (see :class:`AdapterType`); default: one at a
            time.

    Returns:
        The new entry.

    Raises:
        ValueError: a duplicate or empty name, a module class whose ``adapter_type`` differs, a config class that
            is not a dataclass, or an unknown placement / merge rule / cache point.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"an adapter type needs a non-empty name, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"adapter type {name!r} is already registered (by {_REGISTRY[name].module_class.__name__})")
    if getattr(module_class, "adapter_type", None) != name:
        raise ValueError(f"{module_class.__name__}.adapter_type must be {name!r} to register it as that type")
    if not dataclasses.is_dataclass(config_class):
        raise ValueError(f"config_class of adapter type {name!r} must be a dataclass, got {config_class!r}")
    placement, merge = Placement(placement), MergeStrategy(merge)
    if cache_point is None:
        cache_point = CachePoint.TRUNK_OUTPUT if placement is Placement.HEAD else CachePoint.FIRST_RNN_LAYER
    if starts_at_base is None:
        starts_at_base = merge is MergeStrategy.RESIDUAL
    entry = AdapterType(
        name,
        module_class,
        config_class,
        placement,
        merge,
        CachePoint(cache_point),
        bool(starts_at_base),
        create,
        from_fields,
        dict(recipe or {}),
        grouped,
    )
    _REGISTRY[name] = entry
    return entry


def unregister_adapter(name: str) -> AdapterType:
    """Remove a registered type (for plugins and tests); returns its entry."""
    return _REGISTRY.pop(registered_adapter(name).name)


def registered_adapter_types() -> Tuple[str, ...]:
    """Names of every registered type, in registration order."""
    return tuple(_REGISTRY)


def registered_adapter(name: str) -> AdapterType:
    """The registry entry of ``name``.

    Raises:
        ValueError: no type of that name is registered (the message lists the registered ones).
    """
    entry = _REGISTRY.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ValueError(f"unknown adapter_type {name!r}; choose one of {list(_REGISTRY)}")
    return entry


def adapter_type_of(module: nn.Module) -> AdapterType:
    """The registry entry of an adapter module (by its ``adapter_type`` attribute).

    Raises:
        TypeError: ``module`` is not an adapter module of a registered type.
    """
    name = getattr(module, "adapter_type", None)
    if (
        not isinstance(module, nn.Module)
        or not callable(getattr(module, "adapter_config", None))
        or name not in _REGISTRY
    ):
        raise TypeError(f"expected an adapter module of a registered type, got {type(module).__name__}")
    return _REGISTRY[name]


def adapter_config_for(name: str, **settings: Any) -> Any:
    """The config dataclass of type ``name`` from whichever of ``settings`` it has fields for.

    Settings the type has no field for, and settings given as ``None``, are ignored (the field's default applies),
    so one flat set of options (``hidden_dims``, ``bottleneck_dim``, ``dropout_p``, ...) serves every type.
    """
    config_class = registered_adapter(name).config_class
    names = {item.name for item in dataclasses.fields(config_class)}
    return config_class(**{key: value for key, value in settings.items() if key in names and value is not None})


def placement_problems(fields: Mapping[str, Any], dims: TrunkDims) -> List[str]:
    """What keeps an adapter (described by its ``adapter_config()`` fields) from fitting a model of ``dims``.

    A head adapter reads the trunk output and produces C classes; a layer adapter reads and writes every RNN
    layer's output and has one part per layer.

    Returns:
        One line per size that does not fit (empty when it fits).
    """
    placement = registered_adapter(fields["adapter_type"]).placement
    problems = []
    if fields["input_dim"] != dims.rnn_output_dim:
        problems.append(f"input_dim {fields['input_dim']} != RNN output size {dims.rnn_output_dim}")
    if placement is Placement.RNN_LAYERS:
        if fields["num_layers"] != dims.num_rnn_layers:
            problems.append(f"num_layers {fields['num_layers']} != num_rnn_layers {dims.num_rnn_layers}")
        extractor_dim = fields.get("extractor_dim")
        if extractor_dim is not None and extractor_dim != dims.extractor_output_dim:
            problems.append(f"extractor_dim {extractor_dim} != extractor output size {dims.extractor_output_dim}")
    elif fields["output_dim"] != dims.num_classes:
        problems.append(f"output_dim {fields['output_dim']} != num_classes {dims.num_classes}")
    return problems


def merge_adapter_output(adapter_type_name: str, base: Tensor, adapter_output: Tensor) -> Tensor:
    """Combine an adapter's output with the base value it adapts, by the type's merge rule.

    ``REPLACE`` returns the adapter's output; ``RESIDUAL`` adds it to the base value.

    Args:
        adapter_type_name: a registered type.
        base: the base model's tensor at the call point, any shape.
        adapter_output: the adapter's tensor, same shape as ``base``.

    Returns:
        The merged tensor, same shape as ``base``.
    """
    if registered_adapter(adapter_type_name).merge is MergeStrategy.REPLACE:
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
    """One :class:`BottleneckAdapter` per RNN layer, keyed by the layer index, and optionally one on the extractor's
    output (before RNN layer 0).

    State-dict keys: ``'layers.<i>.norm.weight'``, ``'layers.<i>.norm.bias'``, ``'layers.<i>.down.weight'``,
    ``'layers.<i>.down.bias'``, ``'layers.<i>.up.weight'``, ``'layers.<i>.up.bias'`` for ``i`` in
    ``0 .. num_layers - 1``; with an extractor part also ``'extractor.norm.weight'`` ... ``'extractor.up.bias'``.

    Args:
        dim: features of every RNN layer's output.
        bottleneck_dim: width of each RNN layer's bottleneck.
        num_layers: number of RNN layers adapted (one adapter after each).
        dropout_p: dropout inside each bottleneck.
        extractor_dim: features of the extractor's output (F_conv), or ``None`` for no extractor part.
        extractor_bottleneck_dim: width of the extractor part's bottleneck (with ``extractor_dim``).
    """

    adapter_type = "encoder"

    def __init__(
        self,
        dim: int,
        bottleneck_dim: int,
        num_layers: int,
        dropout_p: float = 0.1,
        extractor_dim: Optional[int] = None,
        extractor_bottleneck_dim: Optional[int] = None,
    ) -> None:
        super().__init__()
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"encoder adapter num_layers must be a positive int, got {num_layers!r}")
        if (extractor_dim is None) != (extractor_bottleneck_dim is None):
            raise ValueError(
                "an encoder adapter's extractor part needs both extractor_dim and extractor_bottleneck_dim, got "
                f"{extractor_dim!r} and {extractor_bottleneck_dim!r}"
            )
        self.layers = nn.ModuleDict(
            {str(index): BottleneckAdapter(dim, bottleneck_dim, dropout_p) for index in range(num_layers)}
        )
        self.extractor = (
            None if extractor_dim is None else BottleneckAdapter(extractor_dim, extractor_bottleneck_dim, dropout_p)
        )
        self.dim = dim
        self.bottleneck_dim = bottleneck_dim
        self.num_layers = num_layers
        self.dropout_p = float(dropout_p)
        self.extractor_dim = extractor_dim
        self.extractor_bottleneck_dim = extractor_bottleneck_dim

    def forward(self, hidden: Tensor, layer_index: int) -> Optional[Tensor]:
        """Correction for the output of RNN layer ``layer_index`` (or of the extractor).

        Inputs:
            hidden: (B, T', dim) float, the layer's output; (B, T', extractor_dim) for the extractor's.
            layer_index: which RNN layer produced ``hidden``, or :data:`EXTRACTOR_OUTPUT`.

        Returns:
            correction of ``hidden``'s shape; ``None`` at the extractor's output without an extractor part.
        """
        if layer_index == EXTRACTOR_OUTPUT:
            return None if self.extractor is None else self.extractor(hidden)
        return self.layers[str(layer_index)](hidden)

    def adapter_config(self) -> Dict[str, Any]:
        """Plain values that :func:`build_adapter` turns back into an identical (untrained) adapter.

        ``hidden_dims`` is ``[bottleneck_dim]`` (``[bottleneck_dim, extractor_bottleneck_dim]`` with an extractor
        part) and ``input_dim == output_dim == dim``; ``extractor_dim`` is recorded only with an extractor part.
        """
        config = {
            "adapter_type": self.adapter_type,
            "input_dim": self.dim,
            "hidden_dims": [self.bottleneck_dim],
            "output_dim": self.dim,
            "dropout_p": self.dropout_p,
            "num_layers": self.num_layers,
        }
        if self.extractor is not None:
            config["hidden_dims"].append(self.extractor_bottleneck_dim)
            config["extractor_dim"] = self.extractor_dim
        return config


AdapterModule = Union[MLPAdapter, ResidualHeadAdapter, EncoderAdapter]
"""The built-in adapter modules (any module of a registered type works wherever an adapter is taken)."""


@dataclass
class HeadAdapterConfig:
    """Sizes of a ``head`` / ``residual_head`` adapter (the model supplies its input and output sizes)."""

    hidden_dims: List[int] = field(
        default_factory=lambda: list(DEFAULT_ADAPTER_HIDDEN_DIMS), metadata={"help": "Hidden sizes of the MLP."}
    )
    dropout_p: float = field(default=0.1, metadata={"help": "Dropout after each hidden layer, in [0, 1)."})


@dataclass
class EncoderAdapterConfig:
    """Sizes of an ``encoder`` adapter (one bottleneck per RNN layer; the model supplies the layer width)."""

    bottleneck_dim: int = field(default=64, metadata={"help": "Bottleneck width of each layer's adapter."})
    dropout_p: float = field(default=0.1, metadata={"help": "Dropout inside each bottleneck, in [0, 1)."})
    extractor_bottleneck_dim: int = field(
        default=32, metadata={"help": "Bottleneck width of the adapter on the extractor's output; 0: none."}
    )


@dataclass
class AdapterSettings:
    """The adapter options that the model config (``model.*``) and adapter training (``train.*``) share.

    Declared once here; :class:`~kospeech.model_builder.DeepSpeech2Config` and
    :class:`~kospeech.trainer.configs.AdapterTrainConfig` inherit them, and the ``DeepSpeech2`` constructor takes the
    same names with the same defaults (a test checks that). Which of them a type uses is up to its config dataclass
    (:meth:`adapter_config`).
    """

    adapter_type: str = field(
        default="head", metadata={"help": "a registered adapter type: head, residual_head, encoder, ..."}
    )
    adapter_hidden_dims: List[int] = field(
        default_factory=lambda: list(DEFAULT_ADAPTER_HIDDEN_DIMS),
        metadata={"help": "hidden sizes of the MLP of head and residual_head adapters"},
    )
    adapter_dropout_p: float = field(default=0.1, metadata={"help": "dropout inside the adapter, in [0, 1)"})
    adapter_bottleneck_dim: int = field(default=64, metadata={"help": "bottleneck width of each encoder adapter"})
    adapter_extractor_bottleneck_dim: int = field(
        default=32, metadata={"help": "bottleneck width of the encoder adapter on the extractor's output; 0: none"}
    )

    def adapter_config(self) -> Any:
        """The config dataclass of ``adapter_type`` filled from these settings."""
        return adapter_config_for(
            self.adapter_type,
            hidden_dims=list(self.adapter_hidden_dims),
            dropout_p=self.adapter_dropout_p,
            bottleneck_dim=self.adapter_bottleneck_dim,
            extractor_bottleneck_dim=self.adapter_extractor_bottleneck_dim,
        )


def _no_layers(adapter_type_name: str, num_layers: Optional[int]) -> None:
    if num_layers is not None:
        raise ValueError(f"num_layers applies to encoder adapters only, got {num_layers!r} for {adapter_type_name!r}")


def _head_from_fields(module_class: Type[_MLPStack]) -> Callable[..., nn.Module]:
    def from_fields(
        input_dim: int, hidden_dims: Sequence[int], output_dim: int, dropout_p: float, num_layers: Optional[int]
    ) -> nn.Module:
        _no_layers(module_class.adapter_type, num_layers)
        return module_class(input_dim, hidden_dims, output_dim, dropout_p)

    return from_fields


def _head_create(module_class: Type[_MLPStack]) -> Callable[[HeadAdapterConfig, TrunkDims], nn.Module]:
    def create(config: HeadAdapterConfig, dims: TrunkDims) -> nn.Module:
        return module_class(dims.rnn_output_dim, list(config.hidden_dims), dims.num_classes, config.dropout_p)

    return create


def _encoder_from_fields(
    input_dim: int,
    hidden_dims: Sequence[int],
    output_dim: int,
    dropout_p: float,
    num_layers: Optional[int],
    extractor_dim: Optional[int] = None,
) -> EncoderAdapter:
    if num_layers is None:
        raise ValueError("an encoder adapter needs num_layers (the number of RNN layers)")
    expected = 1 if extractor_dim is None else 2
    if isinstance(hidden_dims, (str, bytes)) or not isinstance(hidden_dims, Sequence) or len(hidden_dims) != expected:
        form = "[bottleneck_dim]" if extractor_dim is None else "[bottleneck_dim, extractor_bottleneck_dim]"
        raise ValueError(f"an encoder adapter takes hidden_dims={form}, got {hidden_dims!r}")
    if input_dim != output_dim:
        raise ValueError(f"an encoder adapter has input_dim == output_dim, got {input_dim} and {output_dim}")
    extractor_bottleneck_dim = None if extractor_dim is None else hidden_dims[1]
    return EncoderAdapter(input_dim, hidden_dims[0], num_layers, dropout_p, extractor_dim, extractor_bottleneck_dim)


def _encoder_create(config: EncoderAdapterConfig, dims: TrunkDims) -> EncoderAdapter:
    extractor = config.extractor_bottleneck_dim > 0 and dims.extractor_output_dim is not None
    return EncoderAdapter(
        dims.rnn_output_dim,
        config.bottleneck_dim,
        dims.num_rnn_layers,
        config.dropout_p,
        dims.extractor_output_dim if extractor else None,
        config.extractor_bottleneck_dim if extractor else None,
    )


class _RowLinear:
    """The same Linear of K modules, stacked: each row through its own module's weights (one batched matmul).

    Args:
        linears: K ``nn.Linear`` of one size.
    """

    def __init__(self, linears: Sequence[nn.Linear]) -> None:
        self.weight = torch.stack([linear.weight.transpose(0, 1) for linear in linears])  # (K, in, out)
        self.bias = torch.stack([linear.bias for linear in linears])  # (K, out)

    def __call__(self, which: Tensor, inputs: Tensor) -> Tensor:
        """Inputs: which (N,) int64 module per row; inputs (N, T', in). Returns: (N, T', out)."""
        return torch.baddbmm(self.bias[which].unsqueeze(1), inputs, self.weight[which])


class _RowBottleneck:
    """K :class:`BottleneckAdapter` of one size, stacked: ``LayerNorm -> down -> ReLU -> up`` per row's own one."""

    def __init__(self, parts: Sequence[BottleneckAdapter]) -> None:
        self.norm_weight = torch.stack([part.norm.weight for part in parts])  # (K, dim)
        self.norm_bias = torch.stack([part.norm.bias for part in parts])  # (K, dim)
        self.eps = parts[0].norm.eps
        self.down = _RowLinear([part.down for part in parts])
        self.up = _RowLinear([part.up for part in parts])

    def __call__(self, which: Tensor, hidden: Tensor) -> Tensor:
        """Inputs: which (N,) int64 module per row; hidden (N, T', dim). Returns: the corrections (N, T', dim)."""
        normed = F.layer_norm(hidden, hidden.shape[-1:], eps=self.eps)
        normed = torch.addcmul(self.norm_bias[which].unsqueeze(1), normed, self.norm_weight[which].unsqueeze(1))
        return self.up(which, torch.relu(self.down(which, normed)))


def _group_encoders(modules: Sequence[nn.Module]) -> Optional[GroupedCall]:
    """Several :class:`EncoderAdapter` of one size computed together: every point's bottlenecks stacked.

    Returns ``None`` (compute one at a time) when the modules' sizes differ, e.g. some lack the extractor part.
    """
    sizes = {
        (
            type(module),
            module.dim,
            module.bottleneck_dim,
            module.num_layers,
            module.extractor_dim,
            module.extractor_bottleneck_dim,
        )
        for module in modules
    }
    if len(sizes) != 1:
        return None
    stacked: Dict[int, _RowBottleneck] = {}

    def call(which: Tensor, hidden: Tensor, layer_index: int) -> Optional[Tensor]:
        if layer_index == EXTRACTOR_OUTPUT and modules[0].extractor is None:
            return None
        if layer_index not in stacked:
            stacked[layer_index] = _RowBottleneck(
                [
                    module.extractor if layer_index == EXTRACTOR_OUTPUT else module.layers[str(layer_index)]
                    for module in modules
                ]
            )
        return stacked[layer_index](which, hidden)

    return call


def _group_mlp_stacks(modules: Sequence[nn.Module]) -> Optional[GroupedCall]:
    """Several head MLPs (:class:`MLPAdapter` or :class:`ResidualHeadAdapter`) of one size computed together.

    Every Linear is stacked; the other layers (ReLU, Dropout in eval mode, LogSoftmax) are applied to all rows at
    once. Returns ``None`` when the modules' sizes differ.
    """
    if len({(type(module), module.input_dim, tuple(module.hidden_dims), module.output_dim) for module in modules}) != 1:
        return None
    layers = [
        _RowLinear([module[index] for module in modules]) if isinstance(layer, nn.Linear) else layer
        for index, layer in enumerate(modules[0])
    ]

    def call(which: Tensor, features: Tensor) -> Tensor:
        for layer in layers:
            features = layer(which, features) if isinstance(layer, _RowLinear) else layer(features)
        return features

    return call


_SHORT_RUN_SCHEDULE = {
    # an enrollment set gives a few steps per epoch: a short warm-up to a high peak, then decay; up to 20 epochs,
    # which early stopping on the held-out part cuts per user (8 epochs left the hardest users still improving)
    "num_epochs": 20,
    "batch_size": 16,
    "init_lr": 1e-4,
    "peak_lr": 2e-3,
    "final_lr": 1e-4,
    "warmup_steps": 10,
    "alignment_steps": 0,  # the CTC alignment steps the head needs: for types starting at the base, no better
}

# the original design: configs/train/adapter_train.yaml's values are its recipe
register_adapter(
    "head",
    module_class=MLPAdapter,
    config_class=HeadAdapterConfig,
    placement=Placement.HEAD,
    merge=MergeStrategy.REPLACE,
    create=_head_create(MLPAdapter),
    from_fields=_head_from_fields(MLPAdapter),
    grouped=_group_mlp_stacks,
)
register_adapter(
    "residual_head",
    module_class=ResidualHeadAdapter,
    config_class=HeadAdapterConfig,
    placement=Placement.HEAD,
    merge=MergeStrategy.RESIDUAL,
    create=_head_create(ResidualHeadAdapter),
    from_fields=_head_from_fields(ResidualHeadAdapter),
    grouped=_group_mlp_stacks,
    recipe={"adapter_hidden_dims": [128], **_SHORT_RUN_SCHEDULE},
)
register_adapter(
    "encoder",
    module_class=EncoderAdapter,
    config_class=EncoderAdapterConfig,
    placement=Placement.RNN_LAYERS,
    merge=MergeStrategy.RESIDUAL,
    create=_encoder_create,
    from_fields=_encoder_from_fields,
    cache_point=CachePoint.EXTRACTOR,
    grouped=_group_encoders,
    recipe={
        "adapter_bottleneck_dim": 24,
        "adapter_extractor_bottleneck_dim": 32,
        "adapter_dropout_p": 0.3,
        **_SHORT_RUN_SCHEDULE,
        # more voices of the same words (cached like the recordings): the most measured gain on unseen channels
        "speed_perturbation": [0.9, 1.1],
        "early_stopping_patience": 4,
    },
)

ADAPTER_TYPES = registered_adapter_types()
"""The built-in types; :func:`registered_adapter_types` also lists types registered later."""


def apply_head_adapter(
    adapter: nn.Module, features: Tensor, base_logits: Optional[Tensor], call: Optional[Callable[..., Tensor]] = None
) -> Tensor:
    """The output of a head-placed adapter, as log-probabilities, merged by its type's rule.

    ``REPLACE`` returns the module's log-probabilities (``base_logits`` may then be ``None``); ``RESIDUAL`` adds the
    module's correction to the base logits and takes ``log_softmax``. Shared by every forward pass that serves an
    adapter, so single-adapter, cached and mixed-adapter batches compute exactly the same function.

    Args:
        adapter: a module of a type placed at the head.
        features: (B, T', F) trunk output.
        base_logits: (B, T', C) logits of the base head for the same rows.
        call: how to call the module (default: ``adapter`` itself), e.g. inside a random stream of its own.

    Returns:
        (B, T', C) log-probabilities.
    """
    entry = adapter_type_of(adapter)
    if entry.placement is not Placement.HEAD:
        raise ValueError(f"apply_head_adapter takes an adapter placed at the head, got an {entry.name!r} adapter")
    output = (call or adapter)(features)
    if entry.merge is MergeStrategy.REPLACE:
        return output
    return F.log_softmax(base_logits + output, dim=-1)


def apply_layer_adapter(
    adapter: nn.Module,
    layer_index: int,
    hidden: Tensor,
    mask: Tensor,
    call: Optional[Callable[..., Tensor]] = None,
) -> Tensor:
    """RNN layer ``layer_index``'s output after a layer-placed adapter; padded frames keep the base value.

    Args:
        adapter: a module of a type placed after the RNN layers.
        layer_index: index of the RNN layer whose output is ``hidden``.
        hidden: (B, T', F) the layer's output.
        mask: (B, T', 1) bool, True on valid frames.
        call: how to call the module (default: ``adapter`` itself), e.g. inside a random stream of its own.

    Returns:
        (B, T', F) the merged output.
    """
    entry = adapter_type_of(adapter)
    if entry.placement is not Placement.RNN_LAYERS:
        raise ValueError(
            f"apply_layer_adapter takes an 'encoder' adapter or another type placed after the RNN layers, "
            f"got a {entry.name!r} adapter"
        )
    output = (call or adapter)(hidden, layer_index)
    if output is None:  # the module leaves this point alone
        return hidden
    if entry.merge is MergeStrategy.REPLACE:
        return torch.where(mask, output, hidden)
    return hidden + output.masked_fill(~mask, 0.0)


apply_encoder_adapter = apply_layer_adapter
"""The name of :func:`apply_layer_adapter` for the built-in ``encoder`` type."""


def build_adapter(
    adapter_type_name: str,
    input_dim: int,
    hidden_dims: Sequence[int],
    output_dim: int,
    dropout_p: float = 0.1,
    num_layers: Optional[int] = None,
    extractor_dim: Optional[int] = None,
) -> nn.Module:
    """Build an adapter from the plain values of ``adapter_config()`` (what an adapter file records).

    Args:
        adapter_type_name: a registered type, e.g. ``"head"``, ``"residual_head"`` or ``"encoder"``.
        input_dim: features the adapter reads (the RNN output size).
        hidden_dims: MLP hidden sizes; for ``encoder`` exactly one value, the bottleneck width.
        output_dim: C for head-placed types; for ``encoder`` it must equal ``input_dim``.
        dropout_p: dropout probability inside the adapter.
        num_layers: layer-placed types: the number of RNN layers; ``None`` for head-placed types.
        extractor_dim: for a module that also adapts the extractor's output, its width; ``None`` otherwise (and for
            types that never do: it is not passed to their ``from_fields`` then).

    Returns:
        A freshly initialized adapter module.
    """
    extra = {} if extractor_dim is None else {"extractor_dim": extractor_dim}
    return registered_adapter(adapter_type_name).from_fields(
        input_dim, hidden_dims, output_dim, dropout_p, num_layers, **extra
    )
