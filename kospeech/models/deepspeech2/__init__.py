"""DeepSpeech2 (KoSpeech flavour): the model lives in :mod:`kospeech.models.deepspeech2.model`."""

from kospeech.models.deepspeech2.model import (
    DEFAULT_ADAPTER_HIDDEN_DIMS,
    AdapterCompatibilityError,
    AdapterGroup,
    DeepSpeech2,
)

__all__ = ["DeepSpeech2", "AdapterCompatibilityError", "AdapterGroup", "DEFAULT_ADAPTER_HIDDEN_DIMS"]
