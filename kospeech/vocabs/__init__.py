"""Vocabularies of output units (Hangul syllables or jamo) with CSV load/save."""

from kospeech.vocabs.vocabulary import OUTPUT_UNITS, SPECIAL_TOKENS, UnknownCharacterError, Vocabulary

__all__ = ["Vocabulary", "UnknownCharacterError", "SPECIAL_TOKENS", "OUTPUT_UNITS"]
