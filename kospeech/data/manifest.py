"""KoSpeech manifests: ``AUDIO_PATH<TAB>TRANSCRIPT<TAB>LABEL_IDS[<TAB>SPEAKER]``, one utterance per line.

Relative audio paths are relative to the manifest's directory. Files may be UTF-8 with or without
a BOM, with LF or CRLF line ends. Every problem is reported as ``file:line: what is wrong``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Tuple, Union

from kospeech.errors import ManifestError
from kospeech.fileio import atomic_write_text
from kospeech.vocabs import UnknownCharacterError, Vocabulary

__all__ = ["ManifestEntry", "ManifestError", "read_manifest", "write_manifest"]


@dataclass(frozen=True)
class ManifestEntry:
    """One utterance.

    Args:
        audio_path: absolute path of the audio file.
        transcript: the reference text.
        label_ids: vocabulary ids of ``transcript`` (without special tokens).
        speaker: optional speaker (or user) id from the fourth column.
    """

    audio_path: Path
    transcript: str
    label_ids: Tuple[int, ...]
    speaker: Optional[str] = None


def read_manifest(
    path: Union[str, os.PathLike],
    vocab: Optional[Vocabulary] = None,
    check_audio_exists: bool = True,
    relabel: bool = False,
) -> List[ManifestEntry]:
    """Parse a manifest.

    Args:
        path: the ``.tsv`` manifest.
        vocab: when given, the label ids of each line must equal ``vocab.encode(transcript)``;
            a line whose id column is empty gets its ids from the vocabulary.
        check_audio_exists: refuse lines whose audio file does not exist.
        relabel: ignore the stored label ids and encode each transcript with ``vocab`` (to train with
            other output units than the manifest was written for, e.g. jamo from a syllable manifest).

    Returns:
        The entries in file order.

    Raises:
        FileNotFoundError: the manifest does not exist.
        ManifestError: a line is malformed (columns, ids, empty transcript, missing audio, unknown characters).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text ({exc}); convert it (e.g. from cp949) first") from exc
    entries = []
    # only "\n" ends a line: str.splitlines() would also split inside a transcript at U+2028, U+0085, \f, \v, ...
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        entries.append(_parse_line(line, f"{path}:{line_number}", path.parent, vocab, check_audio_exists, relabel))
    return entries


def _parse_line(
    line: str, where: str, root: Path, vocab: Optional[Vocabulary], check_audio_exists: bool, relabel: bool
) -> ManifestEntry:
    columns = line.rstrip("\r").split("\t")
    if len(columns) < 2 or len(columns) > 4:
        raise ManifestError(
            f"{where}: expected 3 tab-separated columns (audio path, transcript, label ids) and an optional "
            f"speaker column, found {len(columns)}"
        )
    audio_column, transcript = columns[0].strip(), columns[1].strip()
    ids_column = columns[2].strip() if len(columns) > 2 else ""
    speaker = columns[3].strip() or None if len(columns) > 3 else None
    if not audio_column:
        raise ManifestError(f"{where}: empty audio path")
    if not transcript:
        raise ManifestError(f"{where}: empty transcript")
    audio_path = Path(audio_column)
    if not audio_path.is_absolute():
        audio_path = root / audio_path
    audio_path = Path(os.path.normpath(audio_path))
    if check_audio_exists and not audio_path.is_file():
        raise ManifestError(f"{where}: audio file not found: {audio_path}")
    try:
        label_ids = tuple(int(token) for token in ids_column.split())
    except ValueError as exc:
        raise ManifestError(f"{where}: label ids must be space-separated integers, got {ids_column!r}") from exc
    if relabel and vocab is None:
        raise ValueError("relabel=True needs a vocabulary")
    if vocab is not None:
        try:
            expected = tuple(vocab.encode(transcript, where=where))
        except UnknownCharacterError as exc:
            raise ManifestError(str(exc)) from exc
        if relabel or not label_ids:
            label_ids = expected
        elif label_ids != expected:
            raise ManifestError(
                f"{where}: label ids {ids_column!r} disagree with the transcript {transcript!r} "
                f"(the vocabulary gives {' '.join(map(str, expected))!r})"
            )
    elif not label_ids:
        raise ManifestError(f"{where}: no label ids (pass a vocabulary to compute them from the transcript)")
    return ManifestEntry(audio_path=audio_path, transcript=transcript, label_ids=label_ids, speaker=speaker)


def write_manifest(path: Union[str, os.PathLike], entries: Iterable[ManifestEntry]) -> Path:
    """Write entries atomically; audio under the manifest's directory is stored relative to it.

    Raises:
        ManifestError: a transcript or speaker contains a tab or newline, or an entry has no label ids.
    """
    path = Path(path)
    root = path.parent.resolve()
    lines = []
    for index, entry in enumerate(entries):
        for name, value in (("transcript", entry.transcript), ("speaker", entry.speaker or "")):
            if any(ch in value for ch in "\t\r\n"):
                raise ManifestError(f"{path}: entry {index}: {name} {value!r} contains a tab or newline")
        if not entry.label_ids:
            raise ManifestError(f"{path}: entry {index} ({entry.audio_path}) has no label ids")
        audio_path = Path(entry.audio_path)
        resolved = audio_path.resolve() if audio_path.is_absolute() else (root / audio_path).resolve()
        stored = resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(resolved)
        columns = [stored, entry.transcript, " ".join(str(i) for i in entry.label_ids)]
        if entry.speaker:
            columns.append(entry.speaker)
        lines.append("\t".join(columns))
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
