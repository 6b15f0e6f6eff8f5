"""Atomic writes and safe loading of ``.pt`` files.

Every file kospeech writes goes to a temporary file in the destination directory and is then
``os.replace``-d into place, so a crash never leaves a half-written checkpoint or adapter: a
reader sees either the previous file or the new one. Every ``.pt`` file is read with
``torch.load(..., weights_only=True)``, so a hostile pickle cannot execute code.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Union

import torch

from kospeech.errors import CheckpointError

__all__ = ["atomic_write", "atomic_write_text", "atomic_torch_save", "safe_torch_load", "sha256_file"]

PathLike = Union[str, os.PathLike]


def atomic_write(path: PathLike, write_fn: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write_fn(file_object)`` on a temp file next to ``path``, fsync it, then rename it over ``path``.

    Args:
        path: destination file; its parent directory is created if needed.
        write_fn: writes the whole content to the open file object it is given.
        mode: ``"wb"`` or ``"w"`` (text, UTF-8).

    Returns:
        The destination as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            write_fn(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_current_umask())  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return atomic_write(path, lambda handle: handle.write(text), mode="w")


def atomic_torch_save(obj: Dict[str, Any], path: PathLike) -> Path:
    """Atomically ``torch.save`` a plain dict (tensors, numbers, strings, lists, dicts) to ``path``."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def safe_torch_load(path: PathLike, what: str = "file") -> Dict[str, Any]:
    """Load a ``.pt`` file with ``weights_only=True`` on the CPU.

    Args:
        path: the file to read.
        what: what the file is supposed to be ("checkpoint", "adapter"), used in error messages.

    Returns:
        The stored dict.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable weights-only torch file (corrupt, truncated, or a
            pickle that would need to execute code), or does not hold a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    _refuse_compressed_entries(path, what)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # on arbitrary bytes the weights-only unpickler fails with many types (IndexError, ...)
        raise CheckpointError(f"{path}: not a valid {what} (refused by the weights-only loader): {exc}") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: a {what} must hold a dict, found {type(obj).__name__}")
    return obj


def _refuse_compressed_entries(path: Path, what: str) -> None:
    """Refuse a zip-format file with a compressed entry before ``torch.load`` inflates it.

    ``torch.save`` stores every entry uncompressed, so what a genuine file holds is bounded by its size. A compressed
    entry can inflate a few hundred kilobytes into gigabytes (a zip bomb), which ``torch.load`` would allocate.
    """
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path}: not a valid {what} (unreadable zip archive): {exc}") from exc
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED or entry.file_size != entry.compress_size:
            raise CheckpointError(
                f"{path}: not a valid {what}: entry {entry.filename!r} is compressed ({entry.compress_size} bytes "
                f"inflating to {entry.file_size}); torch.save never compresses, so the file is refused unread"
            )


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
