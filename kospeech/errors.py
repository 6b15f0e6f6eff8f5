"""The library's exceptions: one base class, and input errors a caller can act on per input.

::

    KospeechError
    ├── InputError (also ValueError)      a file, manifest line, transcript or value given to us is unusable
    │   ├── AudioError                    unreadable, corrupt, truncated, empty, non-finite or too short audio
    │   ├── ManifestError                 a malformed manifest line, or one disagreeing with the vocabulary
    │   ├── TranscriptError               a transcript file that decodes neither as cp949 nor as UTF-8
    │   ├── UnknownCharacterError         a transcript character the vocabulary lacks
    │   ├── VocabularyError               a vocabulary file or token list that cannot be a vocabulary
    │   ├── CheckpointError               not a valid checkpoint / adapter / cache file
    │   ├── InvalidNameError              an adapter (user) name that breaks the naming rule
    │   └── ConfigError                   a feature, model or corpus setting that is unknown or out of range
    ├── AdapterCompatibilityError (also ValueError)   an adapter made for another base, vocabulary, features or size
    ├── UnknownUserError (also LookupError)           a user without an adapter
    ├── TrunkCacheTooLargeError (also ValueError)     cached trunk outputs would exceed their memory bound
    ├── TrainingError (also RuntimeError)             a training run that trained nothing (nothing is saved)
    └── EspeakError (also RuntimeError)               espeak-ng failed

Every class keeps the built-in base it had before this module existed, so ``except ValueError`` callers keep
working. The rule for callers: catch :class:`InputError` (and ``FileNotFoundError``) where one input may fail and the
others go on (a file of a batch, a line of a manifest); never catch :class:`KospeechError` or ``ValueError`` broadly
there, which would turn a mismatched adapter or a library bug into a per-file result.

This module imports nothing from kospeech: every layer may raise these.
"""

from __future__ import annotations

from typing import Sequence

__all__ = [
    "KospeechError",
    "InputError",
    "AudioError",
    "AudioTooLongError",
    "ManifestError",
    "TranscriptError",
    "UnknownCharacterError",
    "VocabularyError",
    "CheckpointError",
    "InvalidNameError",
    "ConfigError",
    "AdapterCompatibilityError",
    "UnknownUserError",
    "TrunkCacheTooLargeError",
    "TrainingError",
    "TrainingInterrupted",
    "SchemaError",
    "EspeakError",
]

MAX_LISTED_NAMES = 20
"""The most names an error message lists (a folder may hold thousands of adapters)."""


def name_list(names: Sequence[str], limit: int = MAX_LISTED_NAMES) -> str:
    """``names`` for a message: all of them up to ``limit``, else the first ``limit`` and how many more.

    Example:
        >>> name_list(["a", "b", "c"], limit=2)
        "['a', 'b'] and 1 more (3 in all)"
    """
    names = list(names)
    if len(names) <= limit:
        return repr(names)
    return f"{names[:limit]!r} and {len(names) - limit} more ({len(names)} in all)"


class KospeechError(Exception):
    """Base class of every exception the library raises on purpose."""


class InputError(KospeechError, ValueError):
    """Something given to the library (a file, a line, a value) is unusable; the message names it and the problem."""


class AudioError(InputError):
    """An audio file cannot be used: unreadable, corrupt, truncated, empty, non-finite or too short."""


class AudioTooLongError(AudioError):
    """An audio file is longer than the caller's limit (``load_audio(max_duration_s=...)``).

    Attributes:
        seconds: the file's length where its header states it; where it does not, the audio decoded when the limit
            was passed (the rest is not decoded).
        limit: the limit, in seconds.
    """

    def __init__(self, message: str, seconds: float, limit: float) -> None:
        super().__init__(message)
        self.seconds = seconds
        self.limit = limit

    @classmethod
    def exceeding(cls, where: object, seconds: float, limit: float, counted: bool = False) -> AudioTooLongError:
        """The error for audio at ``where`` (a path or an upload's name) found longer than ``limit`` seconds.

        Args:
            where: what the message names first.
            seconds: the length the header states, or (``counted``) the audio decoded when the limit was passed.
            limit: the limit, in seconds.
            counted: the length was counted while decoding (the header does not state it), and decoding stopped.
        """
        if counted:
            message = f"the audio goes on past the limit of {limit:g} s (decoding stopped there)"
        else:
            message = f"{seconds:.1f} s of audio is longer than the limit of {limit:g} s"
        return cls(f"{where}: {message}", seconds, limit)


class ManifestError(InputError):
    """A manifest line is malformed or disagrees with the vocabulary."""


class TranscriptError(InputError):
    """A transcript file cannot be decoded as cp949 or UTF-8 text."""


class UnknownCharacterError(InputError):
    """A transcript holds a character that the vocabulary does not have."""


class VocabularyError(InputError):
    """A vocabulary file or token list is unusable: not UTF-8, bad header, ids out of order, misplaced specials."""


class CheckpointError(InputError):
    """A file is not a valid checkpoint, adapter or cache entry (refused by the weights-only loader, wrong layout)."""


class InvalidNameError(InputError):
    """An adapter (user) name breaks the naming rule, so it cannot become part of a path."""


class ConfigError(InputError):
    """A configuration (features, model architecture, corpus sizes) has an unknown key or a value out of range."""


class AdapterCompatibilityError(KospeechError, ValueError):
    """An adapter does not fit a model (different base weights, vocabulary, features or sizes).

    Attributes:
        mismatches: one human-readable line per difference.
    """

    def __init__(self, message: str, mismatches: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.mismatches = list(mismatches)


class UnknownUserError(KospeechError, LookupError):
    """A user has no adapter in the adapter directory (and falling back to the base model is not enabled).

    Attributes:
        user: the requested name.
        available: the adapter names that exist.
    """

    def __init__(self, user: str, available: Sequence[str], reason: str) -> None:
        super().__init__(
            f"unknown user {user!r}: {reason}; available adapters: {name_list(available)} "
            "(Recognizer(fallback_to_base=True), kospeech-transcribe --fallback-to-base or kospeech-eval "
            "fallback_to_base=true uses the base model for such users)"
        )
        self.user = user
        self.available = list(available)


class TrunkCacheTooLargeError(KospeechError, ValueError):
    """The cached trunk outputs would exceed the memory bound and spilling to disk is off."""


class TrainingError(KospeechError, RuntimeError):
    """A training run trained nothing (every step skipped, every utterance excluded, too few utterances to hold some
    out): no model or adapter is saved."""


class TrainingInterrupted(KospeechError, RuntimeError):
    """Training was asked to stop from outside (its trainer's ``interrupt`` event was set) and stopped after a step."""


class SchemaError(KospeechError, RuntimeError):
    """The service's database cannot be brought to this release's schema: data a migration refuses, or a schema
    newer than this release knows. The message says what to do."""


class EspeakError(KospeechError, RuntimeError):
    """espeak-ng failed to initialize, to select a voice or to synthesize."""
