"""DeepSpeech2, its per-user adapters and the adapter file manager."""

from kospeech.models.adapter import (
    ADAPTER_TYPES,
    BottleneckAdapter,
    EncoderAdapter,
    MLPAdapter,
    ResidualHeadAdapter,
    build_adapter,
    merge_adapter_output,
)
from kospeech.models.adapter_manager import AdapterManager, validate_adapter_name
from kospeech.models.deepspeech2 import AdapterCompatibilityError, DeepSpeech2
from kospeech.models.modules import BNReluRNN, MaskConv2d
from kospeech.models.utils import count_parameters

__all__ = [
    "ADAPTER_TYPES",
    "AdapterCompatibilityError",
    "AdapterManager",
    "BNReluRNN",
    "BottleneckAdapter",
    "DeepSpeech2",
    "EncoderAdapter",
    "MLPAdapter",
    "MaskConv2d",
    "ResidualHeadAdapter",
    "build_adapter",
    "count_parameters",
    "merge_adapter_output",
    "validate_adapter_name",
]
