"""Character and word error rates (edit distances from python-Levenshtein).

Conventions:

- Corpus level: the total edit distance over all utterances divided by the total reference length, not the mean
  of per-utterance rates (short utterances would otherwise weigh as much as long ones).
- CER follows KoSpeech: all whitespace is removed from reference and hypothesis before the character edit distance,
  and reference length counts non-whitespace characters only. Word spacing in Korean is inconsistent between
  transcribers, so spacing differences are not counted as character errors; WER measures them instead.
- Two more CER figures, for comparison with published numbers: ``cer_kospeech`` is upstream KoSpeech's formula to
  the letter (only ``' '`` and ``'_'`` removed, its subword marker; it equals ``cer`` unless a transcript holds ``_``
  or a tab-like whitespace), and ``cer_with_spaces`` counts the space as a character (whitespace runs read as one
  space, ends stripped), as ESPnet-style character scoring does.
- WER splits on whitespace (``str.split()``) and counts word substitutions, insertions and deletions.
- Text is compared in Unicode NFC: a syllable written as conjoining jamo (NFD, as macOS file names and some tools
  give it) is the same character as its precomposed form, not two or three characters that all differ.
- Empty references: an utterance with an empty reference simply adds its hypothesis length as insertions. If the
  whole corpus has zero reference characters (or words), the rate is 0.0 when every hypothesis is empty too, and a
  ``ValueError`` otherwise (insertions over nothing have no finite rate). A corpus with no utterances raises.
"""

from __future__ import annotations

import unicodedata
from typing import Dict, Mapping, Optional, Sequence, Tuple

import Levenshtein

__all__ = [
    "ErrorRateMeter",
    "char_errors",
    "character_error_rate",
    "kospeech_char_errors",
    "spaced_char_errors",
    "word_error_rate",
    "word_errors",
]


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def char_errors(reference: str, hypothesis: str) -> Tuple[int, int]:
    """Character edit distance and reference length of one utterance, whitespace removed from both.

    Args:
        reference: ground-truth transcript.
        hypothesis: decoded transcript.

    Returns:
        ``(edit_distance, num_reference_chars)``.
    """
    ref = "".join(_nfc(reference).split())
    hyp = "".join(_nfc(hypothesis).split())
    return Levenshtein.distance(ref, hyp), len(ref)


def kospeech_char_errors(reference: str, hypothesis: str) -> Tuple[int, int]:
    """Character edit distance and reference length as upstream KoSpeech's ``CharacterErrorRate`` counts them.

    Spaces and ``_`` (its subword marker) are removed from both, nothing else.

    Args:
        reference: ground-truth transcript.
        hypothesis: decoded transcript.

    Returns:
        ``(edit_distance, num_reference_chars)``.
    """
    ref = _nfc(reference).replace(" ", "").replace("_", "")
    hyp = _nfc(hypothesis).replace(" ", "").replace("_", "")
    return Levenshtein.distance(ref, hyp), len(ref)


def spaced_char_errors(reference: str, hypothesis: str) -> Tuple[int, int]:
    """Character edit distance and reference length with the space counted as a character.

    Whitespace runs read as one space and the ends are stripped, so only word spacing itself is scored.

    Args:
        reference: ground-truth transcript.
        hypothesis: decoded transcript.

    Returns:
        ``(edit_distance, num_reference_chars)``, spaces included.
    """
    ref = " ".join(_nfc(reference).split())
    hyp = " ".join(_nfc(hypothesis).split())
    return Levenshtein.distance(ref, hyp), len(ref)


def word_errors(reference: str, hypothesis: str) -> Tuple[int, int]:
    """Word edit distance and reference word count of one utterance (whitespace-split words).

    Args:
        reference: ground-truth transcript.
        hypothesis: decoded transcript.

    Returns:
        ``(edit_distance, num_reference_words)``.
    """
    ref = _nfc(reference).split()
    return Levenshtein.distance(ref, _nfc(hypothesis).split()), len(ref)


def _check_pair(references: Sequence[str], hypotheses: Sequence[str]) -> None:
    for name, value in (("references", references), ("hypotheses", hypotheses)):
        if isinstance(value, str):
            raise TypeError(f"{name} must be a sequence of transcripts, got a single str {value!r}")
        if not hasattr(value, "__len__"):
            raise TypeError(f"{name} must be a sequence (list or tuple) of transcripts, got {type(value).__name__}")
    if len(references) != len(hypotheses):
        raise ValueError(f"got {len(references)} references but {len(hypotheses)} hypotheses; they must pair up")
    for index, (ref, hyp) in enumerate(zip(references, hypotheses)):
        if not isinstance(ref, str) or not isinstance(hyp, str):
            raise TypeError(
                f"utterance {index}: reference and hypothesis must be str, got {type(ref).__name__} "
                f"and {type(hyp).__name__}"
            )


def _rate(errors: int, total: int, num_utterances: int, unit: str, label: str) -> float:
    if num_utterances == 0:
        raise ValueError(f"{label}: no utterances, the {unit} error rate is undefined")
    if total == 0:
        if errors == 0:
            return 0.0
        raise ValueError(
            f"{label}: references contain no {unit}s but hypotheses have {errors} {unit} insertions; "
            "the error rate is undefined"
        )
    return errors / total


def character_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus CER: total character edit distance / total reference characters, whitespace removed.

    Args:
        references: ground-truth transcripts.
        hypotheses: decoded transcripts, paired with ``references`` by position.

    Returns:
        The CER as a fraction (can exceed 1.0 with many insertions).

    Raises:
        TypeError: inputs are not sequences of str.
        ValueError: lengths differ, no utterances, or zero reference characters with a non-empty hypothesis.
    """
    meter = ErrorRateMeter()
    meter.update(references, hypotheses)
    return meter.cer


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER: total word edit distance / total reference words (whitespace-split).

    Args:
        references: ground-truth transcripts.
        hypotheses: decoded transcripts, paired with ``references`` by position.

    Returns:
        The WER as a fraction.

    Raises:
        TypeError: inputs are not sequences of str.
        ValueError: lengths differ, no utterances, or zero reference words with a non-empty hypothesis.
    """
    meter = ErrorRateMeter()
    meter.update(references, hypotheses)
    return meter.wer


class ErrorRateMeter:
    """Accumulates corpus CER and WER over batches; use one meter per data split and never mix splits.

    Args:
        name: label for error messages and ``to_dict`` (e.g. ``"dev"``).
    """

    def __init__(self, name: Optional[str] = None) -> None:
        self.name = name
        self.reset()

    COUNTS = (
        "num_utterances",
        "char_errors",
        "num_chars",
        "word_errors",
        "num_words",
        "kospeech_char_errors",
        "kospeech_num_chars",
        "spaced_char_errors",
        "spaced_num_chars",
    )
    """The counters every rate is computed from."""

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        for name in self.COUNTS:
            setattr(self, name, 0)

    def counts(self) -> Dict[str, int]:
        """The counters as plain ints (e.g. to carry a running figure across a checkpoint)."""
        return {name: getattr(self, name) for name in self.COUNTS}

    def add_counts(self, counts: Mapping[str, int]) -> None:
        """Add counters that :meth:`counts` gave (missing ones count 0)."""
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + int(counts.get(name, 0)))

    def update(self, references: Sequence[str], hypotheses: Sequence[str]) -> None:
        """Add a batch of paired transcripts.

        Args:
            references: ground-truth transcripts.
            hypotheses: decoded transcripts, same length as ``references``.

        Raises:
            TypeError: inputs are not sequences of str.
            ValueError: the two sequences have different lengths (nothing is accumulated then).
        """
        _check_pair(references, hypotheses)
        for ref, hyp in zip(references, hypotheses):
            edits, chars = char_errors(ref, hyp)
            self.char_errors += edits
            self.num_chars += chars
            edits, words = word_errors(ref, hyp)
            self.word_errors += edits
            self.num_words += words
            edits, chars = kospeech_char_errors(ref, hyp)
            self.kospeech_char_errors += edits
            self.kospeech_num_chars += chars
            edits, chars = spaced_char_errors(ref, hyp)
            self.spaced_char_errors += edits
            self.spaced_num_chars += chars
        self.num_utterances += len(references)

    @property
    def _label(self) -> str:
        return f"ErrorRateMeter({self.name!r})" if self.name else "ErrorRateMeter"

    @property
    def cer(self) -> float:
        """Corpus character error rate so far (see the module docstring for empty cases)."""
        return _rate(self.char_errors, self.num_chars, self.num_utterances, "character", self._label)

    @property
    def wer(self) -> float:
        """Corpus word error rate so far (see the module docstring for empty cases)."""
        return _rate(self.word_errors, self.num_words, self.num_utterances, "word", self._label)

    @property
    def cer_kospeech(self) -> float:
        """Corpus CER by upstream KoSpeech's formula (:func:`kospeech_char_errors`)."""
        return _rate(self.kospeech_char_errors, self.kospeech_num_chars, self.num_utterances, "character", self._label)

    @property
    def cer_with_spaces(self) -> float:
        """Corpus CER with the space counted as a character (:func:`spaced_char_errors`)."""
        return _rate(self.spaced_char_errors, self.spaced_num_chars, self.num_utterances, "character", self._label)

    def to_dict(self) -> Dict[str, object]:
        """Counts and rates as plain values (for results JSON and checkpoints).

        A rate that is undefined (no utterances, or insertions over references without a character or word: where
        the property raises) is ``None``, beside the counts that show why; the other rates are still given.
        """
        rates = {}
        for name in ("cer", "wer", "cer_kospeech", "cer_with_spaces"):
            try:
                rates[name] = getattr(self, name)
            except ValueError:
                rates[name] = None
        return {
            "name": self.name,
            "num_utterances": self.num_utterances,
            "char_errors": self.char_errors,
            "num_chars": self.num_chars,
            "word_errors": self.word_errors,
            "num_words": self.num_words,
            **rates,
            "num_chars_with_spaces": self.spaced_num_chars,
        }
