"""Files in, results out: finding audio files, reading a user map, transcribing many files with per-file errors.

The helpers behind ``bin/inference.py``: :func:`collect_audio_files` expands files and directories,
:func:`read_user_map` reads ``AUDIO_PATH<TAB>USER`` lines, and :func:`transcribe_files` runs a
:class:`~kospeech.inference.recognizer.Recognizer` over the files in mixed-user batches, an unusable file yielding
its error instead of stopping the run.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from kospeech.errors import AdapterCompatibilityError, InputError, UnknownUserError, name_list
from kospeech.inference.recognizer import Recognizer
from kospeech.inference.records import Transcription
from kospeech.models import validate_adapter_name
from kospeech.text_files import read_lines

__all__ = [
    "AUDIO_EXTENSIONS",
    "collect_audio_files",
    "read_user_map",
    "transcribe_files",
    "user_map_key",
    "users_for_files",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".pcm")
"""File extensions :func:`collect_audio_files` picks up from a directory."""


def collect_audio_files(inputs: Iterable[PathLike], extensions: Sequence[str] = AUDIO_EXTENSIONS) -> List[Path]:
    """Files given directly, plus every audio file under given directories (recursive, sorted), each file once.

    Args:
        inputs: files and directories.
        extensions: lower-case suffixes picked up from directories (files given directly are always kept); one
            suffix may be given as a string.

    Returns:
        The files in the order given, a file named again (directly or inside a directory given too) left out.

    Raises:
        FileNotFoundError: an input does not exist.
    """
    suffixes = (extensions,) if isinstance(extensions, str) else tuple(extensions)
    files: List[Path] = []
    seen = set()
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                logger.warning("no audio files (%s) under %s", ", ".join(suffixes), path)
        elif path.is_file():
            found = [path]
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
        for file in found:
            resolved = file.resolve()
            if resolved not in seen:
                seen.add(resolved)
                files.append(file)
    return files


def user_map_key(path: PathLike) -> Path:
    """How a user map names an audio file: its resolved path in precomposed Unicode (NFC).

    The map's text is read as NFC while a file made on macOS (or unpacked from an archive made there) has its Hangul
    name decomposed (NFD) on disk: both spellings of one name give one key.
    """
    return Path(unicodedata.normalize("NFC", str(Path(path).resolve())))


def read_user_map(path: PathLike) -> Dict[Path, str]:
    """Read a user map: one ``AUDIO_PATH<TAB>USER`` per line (blank lines and ``#`` comments skipped).

    The file is read by :mod:`kospeech.text_files` (UTF-8 with or without a BOM, LF or CRLF, NFC). Relative audio
    paths are relative to the map file's directory; keys are :func:`user_map_key` (resolved, NFC). Columns are taken
    as they are (a path may begin or end with a space; a user name may not).

    Raises:
        FileNotFoundError: no such file.
        InputError: (a ValueError) text that is not UTF-8, a malformed line, an invalid user name, or a path listed
            twice (naming ``file:line``).
    """
    path = Path(path)
    mapping: Dict[Path, str] = {}
    for number, line in read_lines(path, "user map"):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) != 2 or not columns[0].strip() or not columns[1]:
            raise InputError(f"{path}:{number}: expected AUDIO_PATH<TAB>USER, got {line!r}")
        try:
            user = validate_adapter_name(columns[1])
        except ValueError as exc:
            raise InputError(f"{path}:{number}: {exc}") from exc
        audio = user_map_key(path.parent / columns[0])
        if audio in mapping:
            raise InputError(f"{path}:{number}: {audio} is listed twice")
        mapping[audio] = user
    return mapping


def users_for_files(
    files: Sequence[Path], user_map: Dict[Path, str], default_user: Optional[str]
) -> List[Optional[str]]:
    """Each file's user: its user-map entry, else ``default_user`` (``None``: the base model).

    Map entries that name none of the files are logged as one warning (the first 10 shown): a map written for other
    paths would otherwise silently transcribe everything with the default.
    """
    resolved = [user_map_key(path) for path in files]
    unmatched = sorted(set(user_map) - set(resolved))
    if unmatched:
        shown = name_list([str(path) for path in unmatched], limit=10)
        logger.warning("%d user-map entries match no input file: %s", len(unmatched), shown)
    return [user_map.get(path, default_user) for path in resolved]


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
    sent ``files_per_call`` at a time (default: the recognizer's batch size); when a call fails, its files are retried
    one by one so that only the failing ones report an error. Any exception one file raises becomes that file's
    result: an :class:`InputError` / ``FileNotFoundError`` is the input's fault; anything else (out of memory, a
    library bug) is also logged with its traceback, and the run goes on with the next file. A user's adapter that
    stops fitting the base mid-run (:class:`AdapterCompatibilityError`) ends the run: it is not one file's fault.

    Args:
        recognizer: the recognizer.
        files: audio files.
        users: one user (or ``None``) per file.
        files_per_call: files per :meth:`Recognizer.transcribe` call (>= 1).
        return_timestamps: request token timestamps.

    Yields:
        ``(file, user, Transcription or the exception transcribing it raised)`` in file order.

    Raises:
        ValueError: ``users`` and ``files`` differ in length, or ``files_per_call`` is not a positive int.
        UnknownUserError: a user without an adapter (and no fallback), before any file is read.
        AdapterCompatibilityError: an adapter replaced mid-run by one for another base.
    """
    if len(users) != len(files):
        raise ValueError(f"got {len(users)} users for {len(files)} files")
    step = recognizer.batch_size if files_per_call is None else files_per_call
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"files_per_call must be a positive int, got {files_per_call!r}")
    recognizer.resolve_users(users)
    for start in range(0, len(files), step):
        chunk, chunk_users = list(files[start : start + step]), list(users[start : start + step])
        try:
            results: List[Union[Transcription, Exception]] = list(
                recognizer.transcribe(chunk, user=chunk_users, return_timestamps=return_timestamps)
            )
        except Exception:  # which file failed is found by retrying them one by one
            results = [
                _transcribe_one(recognizer, path, user, return_timestamps) for path, user in zip(chunk, chunk_users)
            ]
        yield from zip(chunk, chunk_users, results)


def _transcribe_one(
    recognizer: Recognizer, path: Path, user: Optional[str], return_timestamps: bool
) -> Union[Transcription, Exception]:
    """One file's transcription, or the exception it raised (logged with its traceback unless it is an input fault)."""
    try:
        return recognizer.transcribe(path, user=user, return_timestamps=return_timestamps)
    except (AdapterCompatibilityError, UnknownUserError):
        raise  # a user's adapter stopped fitting (it was replaced mid-run): every later file of it would fail too
    except (FileNotFoundError, InputError) as error:
        return error
    except Exception as error:  # one file's failure must not end the run over the others
        logger.exception("%s: transcription failed", path)
        return error
