"""kospeech: personalized Korean speech recognition (DeepSpeech2 + per-user adapters)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
