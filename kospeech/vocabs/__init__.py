"""Vocabularies of output units (Hangul syllables or jamo) with CSV load/save."""

from kospeech.vocabs.vocabulary import (
    OUTPUT_UNITS,
    SPECIAL_TOKENS,
    UnknownCharacterError,
    Vocabulary,
    VocabularyError,
)

__all__ = ["Vocabulary", "UnknownCharacterError", "VocabularyError", "SPECIAL_TOKENS", "OUTPUT_UNITS"]
