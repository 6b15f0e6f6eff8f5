"""DeepSpeech2, its per-user adapters (registry, router) and the adapter file manager."""

from kospeech.models.adapter import (
    ADAPTER_TYPES,
    AdapterType,
    BottleneckAdapter,
    CachePoint,
    EncoderAdapter,
    EncoderAdapterConfig,
    HeadAdapterConfig,
    MergeStrategy,
    MLPAdapter,
    Placement,
    ResidualHeadAdapter,
    TrunkDims,
    adapter_type_of,
    build_adapter,
    merge_adapter_output,
    register_adapter,
    registered_adapter,
    registered_adapter_types,
    unregister_adapter,
)
from kospeech.models.adapter_manager import AdapterManager, validate_adapter_name
from kospeech.models.deepspeech2 import AdapterCompatibilityError, DeepSpeech2
from kospeech.models.modules import BNReluRNN, MaskConv2d
from kospeech.models.router import AdapterRouter, RowBlock
from kospeech.models.utils import count_parameters

__all__ = [
    "ADAPTER_TYPES",
    "AdapterCompatibilityError",
    "AdapterManager",
    "AdapterRouter",
    "AdapterType",
    "BNReluRNN",
    "BottleneckAdapter",
    "CachePoint",
    "DeepSpeech2",
    "EncoderAdapter",
    "EncoderAdapterConfig",
    "HeadAdapterConfig",
    "MLPAdapter",
    "MaskConv2d",
    "MergeStrategy",
    "Placement",
    "ResidualHeadAdapter",
    "RowBlock",
    "TrunkDims",
    "adapter_type_of",
    "build_adapter",
    "count_parameters",
    "merge_adapter_output",
    "register_adapter",
    "registered_adapter",
    "registered_adapter_types",
    "unregister_adapter",
    "validate_adapter_name",
]
