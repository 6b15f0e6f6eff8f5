"""Files in, results out: finding audio files, reading a user map, transcribing many files with per-file errors.

The helpers behind ``bin/inference.py``: :func:`collect_audio_files` expands files and directories,
:func:`read_user_map` reads ``AUDIO_PATH<TAB>USER`` lines, and :func:`transcribe_files` runs a
:class:`~kospeech.inference.recognizer.Recognizer` over the files in mixed-user batches, an unusable file yielding
its error instead of stopping the run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from kospeech.errors import InputError
from kospeech.inference.recognizer import Recognizer
from kospeech.inference.records import Transcription
from kospeech.models import validate_adapter_name

__all__ = ["AUDIO_EXTENSIONS", "collect_audio_files", "read_user_map", "transcribe_files"]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".pcm")
"""File extensions :func:`collect_audio_files` picks up from a directory."""


def collect_audio_files(inputs: Iterable[PathLike], extensions: Sequence[str] = AUDIO_EXTENSIONS) -> List[Path]:
    """Files given directly, plus every audio file under given directories (recursive, sorted).

    Args:
        inputs: files and directories.
        extensions: lower-case suffixes picked up from directories (files given directly are always kept).

    Raises:
        FileNotFoundError: an input does not exist.
    """
    files: List[Path] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
            if not found:
                logger.warning("no audio files (%s) under %s", ", ".join(extensions), path)
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
    return files


def read_user_map(path: PathLike) -> Dict[Path, str]:
    """Read a user map: one ``AUDIO_PATH<TAB>USER`` per line (blank lines and ``#`` comments skipped).

    Relative audio paths are relative to the map file's directory; keys are resolved absolute paths.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a malformed line, an invalid user name, or a path listed twice (naming ``file:line``).
    """
    path = Path(path)
    mapping: Dict[Path, str] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            columns = line.split("\t")
            if len(columns) != 2 or not columns[0].strip() or not columns[1].strip():
                raise InputError(f"{path}:{number}: expected AUDIO_PATH<TAB>USER, got {line!r}")
            user = columns[1].strip()
            try:
                validate_adapter_name(user)
            except ValueError as exc:
                raise InputError(f"{path}:{number}: {exc}") from exc
            audio = (path.parent / columns[0].strip()).resolve()
            if audio in mapping:
                raise InputError(f"{path}:{number}: {audio} is listed twice")
            mapping[audio] = user
    return mapping


def transcribe_files(
    recognizer: Recognizer,
    files: Sequence[Path],
    users: Sequence[Optional[str]],
    *,
    files_per_call: Optional[int] = None,
    return_timestamps: bool = False,
) -> Iterator[Tuple[Path, Optional[str], Union[Transcription, Exception]]]:
    """Transcribe files in mixed-user batches; an unusable file yields its error instead of stopping the run.

    Users are checked (and adapters loaded) up front, so an unknown user raises before any audio is read. Files are
    sent ``files_per_call`` at a time (default: the recognizer's batch size); when a call fails on a bad file,
    its files are retried one by one so that only the bad ones report an error.

    Args:
        recognizer: the recognizer.
        files: audio files.
        users: one user (or ``None``) per file.
        files_per_call: files per :meth:`Recognizer.transcribe` call.
        return_timestamps: request token timestamps.

    Yields:
        ``(file, user, Transcription or the FileNotFoundError / InputError (e.g. AudioError) it raised)`` in file
        order. Other errors (an adapter that no longer fits, a library bug) propagate.
    """
    if len(users) != len(files):
        raise ValueError(f"got {len(users)} users for {len(files)} files")
    recognizer.resolve_users(users)
    step = files_per_call or recognizer.batch_size
    for start in range(0, len(files), step):
        chunk, chunk_users = list(files[start : start + step]), list(users[start : start + step])
        try:
            results: List[Union[Transcription, Exception]] = list(
                recognizer.transcribe(chunk, user=chunk_users, return_timestamps=return_timestamps)
            )
        except (FileNotFoundError, InputError) as exc:
            if len(chunk) == 1:
                results = [exc]
            else:
                results = []
                for path, user in zip(chunk, chunk_users):
                    try:
                        results.append(recognizer.transcribe(path, user=user, return_timestamps=return_timestamps))
                    except (FileNotFoundError, InputError) as error:
                        results.append(error)
        yield from zip(chunk, chunk_users, results)
