"""Output-unit vocabularies: Hangul syllables (``character``) or jamo (``grapheme``).

A vocabulary is stored as a CSV with columns ``id,char,freq``. Ids 0..3 are always the
special tokens ``<pad>``, ``<sos>``, ``<eos>``, ``<blank>`` (the CTC blank), in that order.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from kospeech.errors import UnknownCharacterError, VocabularyError
from kospeech.fileio import atomic_write_text
from kospeech.text_files import read_text
from kospeech.vocabs.hangul import compose_jamo

__all__ = ["Vocabulary", "UnknownCharacterError", "VocabularyError", "SPECIAL_TOKENS", "OUTPUT_UNITS"]

SPECIAL_TOKENS = ("<pad>", "<sos>", "<eos>", "<blank>")
OUTPUT_UNITS = ("character", "grapheme")


class Vocabulary:
    """Maps transcripts to label ids and back.

    Args:
        tokens: every token in id order, starting with the four special tokens.
        unit: ``"character"`` (one token per Hangul syllable, space included) or ``"grapheme"``
            (one token per jamo after Unicode NFD decomposition).
        freqs: optional corpus frequency of each token (same length as ``tokens``).

    Raises:
        ValueError: unknown unit.
        VocabularyError: (a ValueError) special tokens missing or out of place, duplicate tokens, or ``freqs``
            of another length than ``tokens``.
    """

    pad_id = 0
    sos_id = 1
    eos_id = 2
    blank_id = 3

    def __init__(self, tokens: Sequence[str], unit: str = "character", freqs: Optional[Sequence[int]] = None) -> None:
        if unit not in OUTPUT_UNITS:
            raise ValueError(f"unknown output unit {unit!r}; expected one of {OUTPUT_UNITS}")
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise VocabularyError(f"vocabulary must start with {SPECIAL_TOKENS} at ids 0..3, got {tokens[:4]}")
        duplicates = [token for token, count in Counter(tokens).items() if count > 1]
        if duplicates:
            raise VocabularyError(f"duplicate tokens in vocabulary: {duplicates}")
        if freqs is not None and len(freqs) != len(tokens):
            raise VocabularyError(f"{len(freqs)} frequencies given for {len(tokens)} tokens")
        self.unit = unit
        self.tokens: List[str] = tokens
        self.freqs: List[int] = [int(f) for f in freqs] if freqs is not None else [0] * len(tokens)
        self._token_to_id: Dict[str, int] = {token: index for index, token in enumerate(tokens)}

    @classmethod
    def build(cls, transcripts: Iterable[str], unit: str = "character") -> Vocabulary:
        """Build a vocabulary from transcripts; tokens are ordered by frequency (then by code point)."""
        if unit not in OUTPUT_UNITS:
            raise ValueError(f"unknown output unit {unit!r}; expected one of {OUTPUT_UNITS}")
        counts: Counter = Counter()
        for transcript in transcripts:
            counts.update(_split(transcript, unit))
        return cls._from_counts(counts, unit)

    @classmethod
    def _from_counts(cls, counts: Counter, unit: str) -> Vocabulary:
        reserved = [token for token in counts if token in SPECIAL_TOKENS]
        if reserved:
            raise VocabularyError(f"transcripts contain reserved tokens {reserved}")
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        tokens = list(SPECIAL_TOKENS) + [token for token, _ in ordered]
        freqs = [0] * len(SPECIAL_TOKENS) + [count for _, count in ordered]
        return cls(tokens, unit=unit, freqs=freqs)

    def with_unit(self, unit: str) -> Vocabulary:
        """A vocabulary of another output unit that can encode every text this one can.

        Frequencies carry over (a syllable seen N times adds N to each of its jamo), so the order is the
        one :meth:`build` would give on the same transcripts. Returns ``self`` for the same unit.
        """
        if unit not in OUTPUT_UNITS:
            raise ValueError(f"unknown output unit {unit!r}; expected one of {OUTPUT_UNITS}")
        if unit == self.unit:
            return self
        counts: Counter = Counter()
        for token, freq in zip(self.tokens[len(SPECIAL_TOKENS) :], self.freqs[len(SPECIAL_TOKENS) :]):
            for piece in _split(token, unit):
                counts[piece] += max(freq, 1)
        return self._from_counts(counts, unit)

    @classmethod
    def from_csv(cls, path: Union[str, os.PathLike], unit: Optional[str] = None) -> Vocabulary:
        """Read an ``id,char,freq`` CSV (read by :mod:`kospeech.text_files`: UTF-8, optional BOM, NFC). Ids must be
        0..N-1 in order.

        Args:
            path: the CSV file.
            unit: ``"character"`` or ``"grapheme"``; ``None`` infers it: a file whose tokens include
                conjoining jamo (U+1100..U+11FF) and no precomposed syllable is a grapheme vocabulary.

        Raises:
            FileNotFoundError: no such file.
            VocabularyError: (a ValueError) not UTF-8, no ``id,char`` header, a bad or out-of-order id, a bad
                frequency, an empty token, or a token list that is not a vocabulary (names the file and line).
            ValueError: ``unit`` is not one of ``OUTPUT_UNITS``.
        """
        path = Path(path)
        content = read_text(path, "vocabulary file", VocabularyError)
        with io.StringIO(content, newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"id", "char"} <= set(reader.fieldnames):
                raise VocabularyError(f"{path}: expected a header 'id,char,freq', got {reader.fieldnames}")
            tokens: List[str] = []
            freqs: List[int] = []
            for line_number, row in enumerate(reader, start=2):
                try:
                    token_id = int(row["id"])
                    freq = int(row.get("freq") or 0)
                except ValueError as exc:
                    raise VocabularyError(f"{path}:{line_number}: bad id or freq in {row}") from exc
                if token_id != len(tokens):
                    raise VocabularyError(f"{path}:{line_number}: id {token_id} out of order, expected {len(tokens)}")
                if row["char"] is None or row["char"] == "":
                    raise VocabularyError(f"{path}:{line_number}: empty token")
                tokens.append(row["char"])
                freqs.append(freq)
        if unit is None:
            unit = _infer_unit(tokens[len(SPECIAL_TOKENS) :])
        try:
            return cls(tokens, unit=unit, freqs=freqs)
        except VocabularyError as exc:
            raise VocabularyError(f"{path}: {exc}") from exc

    def to_csv(self, path: Union[str, os.PathLike]) -> Path:
        """Write the vocabulary as an ``id,char,freq`` CSV (atomically)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        # the minimal quoting leaves a lone \r unquoted (it is not the line terminator), and a reader ends the row there
        quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(["id", "char", "freq"])
        for index, (token, freq) in enumerate(zip(self.tokens, self.freqs)):
            (quoted if "\r" in token else writer).writerow([index, token, freq])
        return atomic_write_text(path, buffer.getvalue())

    def to_dict(self) -> Dict[str, Any]:
        """Plain-container form, stored inside checkpoints."""
        return {"unit": self.unit, "tokens": list(self.tokens), "freqs": list(self.freqs)}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> Vocabulary:
        """Inverse of :meth:`to_dict`."""
        return cls(data["tokens"], unit=data.get("unit", "character"), freqs=data.get("freqs"))

    def fingerprint(self) -> str:
        """SHA-256 of the unit and the token list: equal fingerprints mean identical id assignments."""
        payload = json.dumps({"unit": self.unit, "tokens": self.tokens}, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def tokenize(self, text: str) -> List[str]:
        """Split text into output units (NFC syllables, or NFD jamo for ``grapheme``)."""
        return _split(text, self.unit)

    def encode(self, text: str, where: Optional[str] = None) -> List[int]:
        """Label ids of ``text``.

        Args:
            text: the transcript.
            where: where the text comes from (e.g. ``"train.tsv:12"``), named in errors.

        Raises:
            UnknownCharacterError: a unit of ``text`` is not in the vocabulary.
        """
        ids = []
        for position, token in enumerate(self.tokenize(text)):
            token_id = self._token_to_id.get(token)
            if token_id is None or token_id < len(SPECIAL_TOKENS):
                location = f"{where}: " if where else ""
                raise UnknownCharacterError(
                    f"{location}character {token!r} (U+{ord(token[0]):04X}) at position {position} of {text!r} "
                    f"is not in the vocabulary ({len(self)} tokens)"
                )
            ids.append(token_id)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of label ids; special tokens are skipped.

        Grapheme output is composed into well-formed syllables (:func:`~kospeech.vocabs.hangul.compose_jamo`): a
        jamo sequence that is not onset-vowel-(coda) is repaired, never left as stray jamo.
        """
        pieces = []
        for token_id in ids:
            token_id = int(token_id)
            if token_id < len(SPECIAL_TOKENS):
                continue
            if token_id >= len(self.tokens):
                raise ValueError(f"label id {token_id} out of range for a vocabulary of {len(self)} tokens")
            pieces.append(self.tokens[token_id])
        text = "".join(pieces)
        return compose_jamo(text) if self.unit == "grapheme" else text

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.unit == other.unit and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocabulary(unit={self.unit!r}, size={len(self)})"


def _split(text: str, unit: str) -> List[str]:
    if unit == "grapheme":
        return list(unicodedata.normalize("NFD", text))
    return list(unicodedata.normalize("NFC", text))


def _infer_unit(tokens: Sequence[str]) -> str:
    has_jamo = any("\u1100" <= token <= "\u11ff" for token in tokens)
    has_syllables = any("\uac00" <= token <= "\ud7a3" for token in tokens)
    return "grapheme" if has_jamo and not has_syllables else "character"
