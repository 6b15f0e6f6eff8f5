"""KoSpeech manifests: ``AUDIO_PATH<TAB>TRANSCRIPT<TAB>LABEL_IDS[<TAB>SPEAKER]``, one utterance per line.

Relative audio paths are relative to the manifest's directory. The file is read by :mod:`kospeech.text_files` (UTF-8
with or without a BOM, LF or CRLF, only ``\n`` ends a line, NFC). Columns are split at tabs and taken as they are:
an audio path keeps leading and trailing spaces (they are part of a file name), a transcript has its surrounding
whitespace removed. Every problem is reported as ``file:line: what is wrong``.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Tuple, Union

from kospeech.errors import ManifestError
from kospeech.fileio import atomic_write_text
from kospeech.text_files import read_lines
from kospeech.vocabs import UnknownCharacterError, Vocabulary

__all__ = ["ManifestEntry", "ManifestError", "MAX_LABEL_ID", "read_manifest", "write_manifest"]

logger = logging.getLogger(__name__)

MAX_LABEL_ID = 2**31 - 1
"""The largest label id a manifest may hold (checked even without a vocabulary: ids become int32/int64 tensors)."""


@dataclass(frozen=True)
class ManifestEntry:
    """One utterance.

    Args:
        audio_path: absolute path of the audio file.
        transcript: the reference text.
        label_ids: vocabulary ids of ``transcript`` (without special tokens).
        speaker: optional speaker (or user) id from the fourth column.
        speed: playback speed of the audio; 1.0 as recorded, another value for a speed-perturbed training copy
            (:mod:`kospeech.data.perturbation`), which exists in memory only (:func:`write_manifest` refuses it).
    """

    audio_path: Path
    transcript: str
    label_ids: Tuple[int, ...]
    speaker: Optional[str] = None
    speed: float = 1.0


def read_manifest(
    path: Union[str, os.PathLike],
    vocab: Optional[Vocabulary] = None,
    check_audio_exists: bool = True,
    relabel: Optional[bool] = None,
) -> List[ManifestEntry]:
    """Parse a manifest.

    The transcript is the truth; the label ids are derived from it. With a vocabulary (a checkpoint's, or the CSV of
    a base training run), every line's ids are the vocabulary's encoding of its transcript: a manifest written with
    syllable ids reads with a jamo checkpoint's vocabulary, and the other way round. That is one rule for the library
    and every CLI.

    Args:
        path: the ``.tsv`` manifest.
        vocab: the vocabulary the ids must come from; a line whose id column is empty gets its ids from it.
        check_audio_exists: refuse lines whose audio file does not exist.
        relabel: what to do with stored ids that disagree with ``vocab``: ``None`` (default) re-encode them and log one
            warning naming the file and how many lines; ``True`` re-encode them silently (the manifest was written
            for other units on purpose); ``False`` refuse the line (a strict check that the manifest was written
            with this very vocabulary).

    Returns:
        The entries in file order.

    Raises:
        FileNotFoundError: the manifest does not exist.
        ManifestError: a line is malformed (columns, ids, empty transcript, missing audio, unknown characters), or
            (``relabel=False``) its ids disagree with ``vocab``.
    """
    path = Path(path)
    if relabel and vocab is None:
        raise ValueError("relabel=True needs a vocabulary")
    entries = []
    relabelled = 0
    root = path.absolute().parent  # relative audio paths are relative to it; absolute ones whatever the working folder
    for line_number, line in read_lines(path, "manifest", ManifestError):
        if not line.strip():
            continue
        entry, changed = _parse_line(line, f"{path}:{line_number}", root, vocab, check_audio_exists, relabel)
        entries.append(entry)
        relabelled += changed
    if relabelled and relabel is None:
        logger.warning(
            "%s: the label ids of %d of %d lines were written for another vocabulary (e.g. syllables for a jamo "
            "model); re-encoded from their transcripts with this one",
            path,
            relabelled,
            len(entries),
        )
    return entries


def _parse_line(
    line: str,
    where: str,
    root: Path,
    vocab: Optional[Vocabulary],
    check_audio_exists: bool,
    relabel: Optional[bool],
) -> Tuple[ManifestEntry, bool]:
    """One entry, and whether its stored ids were replaced by the vocabulary's."""
    columns = line.split("\t")
    if len(columns) < 2 or len(columns) > 4:
        raise ManifestError(
            f"{where}: expected 3 tab-separated columns (audio path, transcript, label ids) and an optional "
            f"speaker column, found {len(columns)}"
        )
    audio_column, transcript = columns[0], columns[1].strip()
    ids_column = columns[2].strip() if len(columns) > 2 else ""
    speaker = columns[3].strip() or None if len(columns) > 3 else None
    if not audio_column.strip():
        raise ManifestError(f"{where}: empty audio path")
    if not transcript:
        raise ManifestError(f"{where}: empty transcript")
    audio_path = Path(audio_column)
    if not audio_path.is_absolute():
        audio_path = root / audio_path
    audio_path = Path(os.path.normpath(audio_path))
    if check_audio_exists:
        audio_path = _existing_audio(audio_path, where)
    label_ids = _parse_label_ids(ids_column, where)
    changed = False
    if vocab is not None:
        try:
            expected = tuple(vocab.encode(transcript, where=where))
        except UnknownCharacterError as exc:
            raise ManifestError(str(exc)) from exc
        if label_ids and label_ids != expected:
            if relabel is False:
                raise ManifestError(
                    f"{where}: label ids {ids_column!r} disagree with the transcript {transcript!r} "
                    f"(the vocabulary gives {' '.join(map(str, expected))!r})"
                )
            changed = True
        label_ids = expected
    elif not label_ids:
        raise ManifestError(f"{where}: no label ids (pass a vocabulary to compute them from the transcript)")
    return ManifestEntry(audio_path=audio_path, transcript=transcript, label_ids=label_ids, speaker=speaker), changed


def _existing_audio(audio_path: Path, where: str) -> Path:
    """``audio_path``, or its NFD spelling when only that exists (the reader NFC-normalizes the line; a file made on
    macOS has its name stored decomposed)."""
    if audio_path.is_file():
        return audio_path
    decomposed = Path(unicodedata.normalize("NFD", str(audio_path)))
    if decomposed.is_file():
        return decomposed
    raise ManifestError(f"{where}: audio file not found: {audio_path}")


def _parse_label_ids(ids_column: str, where: str) -> Tuple[int, ...]:
    """The ids column as ints, each in ``[0, MAX_LABEL_ID]``."""
    try:
        label_ids = tuple(int(token) for token in ids_column.split())
    except ValueError as exc:
        raise ManifestError(f"{where}: label ids must be space-separated integers, got {ids_column!r}") from exc
    for position, label in enumerate(label_ids, start=1):
        if not 0 <= label <= MAX_LABEL_ID:
            shown = str(label) if len(str(label)) <= 20 else f"{str(label)[:20]}... ({len(str(label))} digits)"
            raise ManifestError(f"{where}: label id {position} is {shown}; ids are integers from 0 to {MAX_LABEL_ID}")
    return label_ids


def write_manifest(path: Union[str, os.PathLike], entries: Iterable[ManifestEntry]) -> Path:
    """Write entries atomically; audio under the manifest's directory is stored relative to it.

    Raises:
        ManifestError: a transcript or speaker contains a tab or newline, an entry has no label ids, or an entry is a
            speed-perturbed copy (a manifest has no column for the speed).
    """
    path = Path(path)
    root = path.parent.resolve()
    lines = []
    for index, entry in enumerate(entries):
        if entry.speed != 1.0:
            raise ManifestError(
                f"{path}: entry {index} ({entry.audio_path}) is a copy at speed {entry.speed}, which a manifest "
                "cannot record"
            )
        for name, value in (("transcript", entry.transcript), ("speaker", entry.speaker or "")):
            if any(ch in value for ch in "\t\r\n"):
                raise ManifestError(f"{path}: entry {index}: {name} {value!r} contains a tab or newline")
        if not entry.label_ids:
            raise ManifestError(f"{path}: entry {index} ({entry.audio_path}) has no label ids")
        audio_path = Path(entry.audio_path)
        resolved = audio_path.resolve() if audio_path.is_absolute() else (root / audio_path).resolve()
        stored = resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(resolved)
        if any(ch in stored for ch in "\t\r\n"):  # the columns and lines of a manifest could not hold it
            raise ManifestError(f"{path}: entry {index}: audio path {stored!r} contains a tab or newline")
        columns = [stored, entry.transcript, " ".join(str(i) for i in entry.label_ids)]
        if entry.speaker:
            columns.append(entry.speaker)
        lines.append("\t".join(columns))
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
