"""Model configuration (Hydra group ``model``) and the factory that turns it into a :class:`DeepSpeech2`.

Only this module and the CLIs read configs; the model itself takes plain typed arguments.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Union

import torch
from omegaconf import DictConfig, OmegaConf

from kospeech.errors import ConfigError
from kospeech.models.adapter import AdapterSettings, registered_adapter_types
from kospeech.models.deepspeech2 import DeepSpeech2
from kospeech.models.modules import ACTIVATIONS, RNN_TYPES

__all__ = ["DeepSpeech2Config", "build_deepspeech2"]


@dataclass
class DeepSpeech2Config(AdapterSettings):
    """DeepSpeech2 architecture and adapter settings (Hydra group ``model``; YAML files in ``configs/model/``)."""

    rnn_type: str = field(default="gru", metadata={"help": f"Recurrent cell: one of {sorted(RNN_TYPES)}."})
    num_rnn_layers: int = field(default=5, metadata={"help": "Number of BatchNorm-ReLU-RNN layers."})
    rnn_hidden_dim: int = field(default=512, metadata={"help": "Hidden units per direction of each RNN layer."})
    dropout_p: float = field(default=0.1, metadata={"help": "Dropout after each RNN layer, in [0, 1)."})
    bidirectional: bool = field(default=True, metadata={"help": "Use bidirectional RNN layers."})
    activation: str = field(
        default="hardtanh", metadata={"help": f"Conv extractor activation: one of {sorted(ACTIVATIONS)}."}
    )
    use_adapter: bool = field(default=False, metadata={"help": "Attach a per-user adapter at construction."})


_FIELD_NAMES = tuple(item.name for item in dataclasses.fields(DeepSpeech2Config))


def _check_field_type(name: str, value: Any, kind: str) -> None:
    """Type check one config value; ``kind`` is the field's annotation as written in the dataclass."""
    if kind == "bool":
        valid = isinstance(value, bool)
    elif kind == "int":
        valid = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        valid = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind == "str":
        valid = isinstance(value, str)
    else:  # List[int]
        valid = isinstance(value, (list, tuple)) and all(
            isinstance(item, int) and not isinstance(item, bool) for item in value
        )
    if not valid:
        raise TypeError(f"model config field {name!r} must be {kind}, got {value!r} ({type(value).__name__})")


def _as_config(config: Union[DeepSpeech2Config, Mapping[str, Any], DictConfig, None]) -> DeepSpeech2Config:
    if config is None:
        return DeepSpeech2Config()
    if isinstance(config, DeepSpeech2Config):
        values: Dict[str, Any] = dataclasses.asdict(config)
    elif isinstance(config, DictConfig):
        values = OmegaConf.to_container(config, resolve=True)
    elif isinstance(config, Mapping):
        values = dict(config)
    else:
        raise TypeError(f"config must be a DeepSpeech2Config, a dict or a DictConfig, got {type(config).__name__}")
    unknown = sorted(str(key) for key in values if key not in _FIELD_NAMES)
    if unknown:
        raise ConfigError(f"unknown model config fields {unknown}; allowed fields are {list(_FIELD_NAMES)}")
    result = DeepSpeech2Config(**values)
    for item in dataclasses.fields(result):
        _check_field_type(item.name, getattr(result, item.name), str(item.type))
    return result


def _check_values(config: DeepSpeech2Config) -> None:
    problems = []
    if config.rnn_type not in RNN_TYPES:
        problems.append(f"rnn_type {config.rnn_type!r} is not one of {sorted(RNN_TYPES)}")
    if config.activation not in ACTIVATIONS:
        problems.append(f"activation {config.activation!r} is not one of {sorted(ACTIVATIONS)}")
    if config.adapter_type not in registered_adapter_types():
        problems.append(f"adapter_type {config.adapter_type!r} is not one of {list(registered_adapter_types())}")
    for name in ("num_rnn_layers", "rnn_hidden_dim", "adapter_bottleneck_dim"):
        if getattr(config, name) < 1:
            problems.append(f"{name} must be >= 1, got {getattr(config, name)}")
    if config.adapter_extractor_bottleneck_dim < 0:
        problems.append(
            f"adapter_extractor_bottleneck_dim must be >= 0 (0: no part on the extractor), got "
            f"{config.adapter_extractor_bottleneck_dim}"
        )
    for name in ("dropout_p", "adapter_dropout_p"):
        if not 0.0 <= getattr(config, name) < 1.0:
            problems.append(f"{name} must be in [0, 1), got {getattr(config, name)}")
    if any(dim < 1 for dim in config.adapter_hidden_dims):
        problems.append(f"adapter_hidden_dims must be positive, got {list(config.adapter_hidden_dims)}")
    if problems:
        raise ConfigError("invalid model config: " + "; ".join(problems))


def build_deepspeech2(
    input_dim: int,
    num_classes: int,
    config: Union[DeepSpeech2Config, Mapping[str, Any], DictConfig, None] = None,
    device: Union[str, torch.device] = "cpu",
) -> DeepSpeech2:
    """Build a :class:`DeepSpeech2` from a model config.

    Args:
        input_dim: D, feature bins per frame (``FeatureConfig.feature_dim``).
        num_classes: C, vocabulary size including the CTC blank (``len(vocab)``).
        config: a :class:`DeepSpeech2Config`, a dict or a DictConfig with any subset of its fields
            (missing fields take the defaults); ``None`` uses the defaults.
        device: where to create the parameters.

    Returns:
        The model (in train mode).

    Raises:
        TypeError: a field has the wrong type (the message names it).
        ConfigError: (a ValueError) unknown fields or out-of-range values (all named at once).
    """
    settings = _as_config(config)
    _check_values(settings)
    return DeepSpeech2(
        input_dim=input_dim,
        num_classes=num_classes,
        rnn_type=settings.rnn_type,
        num_rnn_layers=settings.num_rnn_layers,
        rnn_hidden_dim=settings.rnn_hidden_dim,
        dropout_p=settings.dropout_p,
        bidirectional=settings.bidirectional,
        activation=settings.activation,
        device=device,
        use_adapter=settings.use_adapter,
        adapter_hidden_dims=list(settings.adapter_hidden_dims),
        adapter_type=settings.adapter_type,
        adapter_dropout_p=settings.adapter_dropout_p,
        adapter_bottleneck_dim=settings.adapter_bottleneck_dim,
        adapter_extractor_bottleneck_dim=settings.adapter_extractor_bottleneck_dim,
    )
