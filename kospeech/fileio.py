"""Atomic writes and safe loading of ``.pt`` files.

Every file kospeech writes goes to a temporary file in the destination directory and is then
``os.replace``-d into place, so a crash never leaves a half-written checkpoint or adapter: a
reader sees either the previous file or the new one. Every ``.pt`` file is read with
``torch.load(..., weights_only=True)``, so a hostile pickle cannot execute code.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import stat
import tempfile
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from kospeech.errors import CheckpointError

__all__ = [
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_torch_save",
    "plain_values",
    "process_status_field",
    "safe_torch_load",
    "sha256_file",
    "strict_json",
]

PathLike = Union[str, os.PathLike]


def atomic_write(path: PathLike, write_fn: Callable[[Any], None], mode: str = "wb", *, replace: bool = True) -> Path:
    """Call ``write_fn(file_object)`` on a temp file next to ``path``, fsync it, rename it over ``path``, then fsync
    the folder (so that the rename, too, survives a power loss: a database row may name the file next).

    Args:
        path: destination file; its parent directory is created if needed.
        write_fn: writes the whole content to the open file object it is given.
        mode: ``"wb"`` or ``"w"`` (text, UTF-8).
        replace: replace an existing ``path``; ``False`` publishes the file only where none exists yet (a hard link,
            atomic on POSIX), so of two writers racing for one name exactly one succeeds. A file replaced keeps its
            permission bits (a key file of mode 0600 stays 0600); a symbolic link at ``path`` is replaced by the
            new file, its target left as it was.

    Returns:
        The destination as a ``Path``.

    Raises:
        FileExistsError: ``replace=False`` and ``path`` exists (nothing is changed).
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
        os.chmod(tmp_name, _mode_for(path))  # mkstemp creates 0600
        if replace:
            os.replace(tmp_name, path)
        else:
            _publish_new(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    _fsync_folder(path.parent)
    return path


def _mode_for(path: Path) -> int:
    """The permission bits of the regular file at ``path``, else the usual ones of a new file (0666 less the umask)."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        status = None
    if status is not None and stat.S_ISREG(status.st_mode):
        return stat.S_IMODE(status.st_mode)
    return 0o666 & ~_current_umask()


def _publish_new(tmp_name: str, path: Path) -> None:
    """Give the finished temp file the name ``path`` only if no file has it (``FileExistsError`` otherwise)."""
    try:
        os.link(tmp_name, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links (some SMB or FAT mounts): reserve the name, then fill it
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        try:
            os.replace(tmp_name, path)
        except BaseException:
            os.unlink(path)  # the empty reservation, never left to pass for a file
            raise
    else:
        os.unlink(tmp_name)


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries to disk (POSIX); where folders cannot be opened (Windows) there is nothing to do."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems refuse fsync on a folder; the rename itself is done
        pass
    finally:
        os.close(descriptor)


_PROCESS_STATUS = Path("/proc/self/status")

_UMASK_LOCK = threading.Lock()


def process_status_field(key: str) -> Optional[str]:
    """The value of ``key`` (``"Umask"``, ``"VmHWM"``, ...) in Linux' ``/proc/self/status``, without its unit; ``None``
    where the file or the key is missing (not Linux)."""
    try:
        lines = _PROCESS_STATUS.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name == key and value.split():
            return value.split()[0]
    return None


def _current_umask() -> int:
    """The process' umask, read without changing it where the kernel tells (Linux' ``Umask:`` line): setting it, even
    for an instant, would give files that other threads create meanwhile the wrong mode (0666)."""
    umask = process_status_field("Umask")
    if umask is not None and umask.isdigit():
        return int(umask, 8)
    with _UMASK_LOCK:  # elsewhere the only way to read it is to set it and put it back
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return atomic_write(path, lambda handle: handle.write(text), mode="w")


def _finite_or_none(value: Any) -> Any:
    """``value`` with every NaN / infinite float (in nested dicts, lists and tuples) replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def strict_json(obj: Any, indent: Optional[int] = 2, sort_keys: bool = False) -> str:
    """Strict JSON text of ``obj`` (UTF-8 characters kept): every NaN or infinite float becomes ``null``.

    Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which no strict JSON parser (``jq``, browsers,
    most languages) reads; a figure that is not a number (a CER over no utterances) is recorded as missing instead.
    """
    return json.dumps(_finite_or_none(obj), indent=indent, ensure_ascii=False, allow_nan=False, sort_keys=sort_keys)


def atomic_write_json(path: PathLike, obj: Any, sort_keys: bool = False) -> Path:
    """Atomically write ``obj`` as strict JSON (:func:`strict_json`, indented, final newline) to ``path``."""
    return atomic_write_text(path, strict_json(obj, sort_keys=sort_keys) + "\n")


class _WriteErrorKeeper:
    """The file-like object ``torch.save`` writes through, keeping the ``OSError`` a write raised: torch's writer turns
    it into a RuntimeError that no longer says why (a full disk)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.error: Optional[OSError] = None

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def plain_values(value: Any, where: str, what: str = "a .pt file", tensors: bool = False) -> Any:
    """A copy of ``value`` in the types the weights-only loader reads back.

    str, int, float, bool and None stay; numpy and other number types become Python's; lists, tuples (as lists),
    dicts with str keys and OmegaConf containers are copied item by item; tensors are kept where ``tensors``.
    Checked when a file is written: a value the loader would refuse is otherwise found only when the file is read.

    Args:
        value: what is to be stored.
        where: how messages name it (e.g. ``"metrics"``); nested items are named below it (``metrics.cer``).
        what: the kind of file, for messages.
        tensors: whether tensors may be stored.

    Raises:
        TypeError: a value of another type, or a key that is not a str, naming where it is.
    """
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0:  # numpy scalars, np.bool_ included
        value = value.item()
    if value is None or isinstance(value, bool) or (tensors and isinstance(value, torch.Tensor)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: keys must be str, found {key!r} ({type(key).__name__})")
            plain[str(key)] = plain_values(item, f"{where}.{key}", what, tensors)
        return plain
    if isinstance(value, (list, tuple)):
        return [plain_values(item, f"{where}[{index}]", what, tensors) for index, item in enumerate(value)]
    allowed = "str, int, float, bool, None, " + ("tensors, " if tensors else "") + "lists and dicts"
    kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
    raise TypeError(f"{where}: a {kind} cannot be stored in {what}; use {allowed}")


def atomic_torch_save(obj: Dict[str, Any], path: PathLike) -> Path:
    """Atomically ``torch.save`` a plain dict (tensors, numbers, strings, lists, dicts) to ``path``.

    Raises:
        OSError: the file could not be written (e.g. ``ENOSPC``, the disk is full), as Python raised it.
    """

    def save(handle: Any) -> None:
        writer = _WriteErrorKeeper(handle)
        try:
            torch.save(obj, writer)
        except RuntimeError as exc:
            if writer.error is not None:
                raise writer.error from exc
            raise

    return atomic_write(path, save)


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
            pickle that would need to execute code), does not hold a dict, or holds a tensor that is not dense
            memory on the CPU (meta, sparse, quantized, complex, a subclass or an expanded view; named by key).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    _refuse_compressed_entries(path, what)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # on arbitrary bytes the weights-only unpickler fails with many types (IndexError, ...)
        raise CheckpointError(
            f"{path}: not a valid {what} (refused by the weights-only loader: {_loader_reason(exc)})"
        ) from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: a {what} must hold a dict, found {type(obj).__name__}")
    _refuse_unusual_tensors(obj, f"{path}: {what} entry", "")
    return obj


_TORCH_LOADER_ADVICE = ("Weights only load failed", "Please file an issue", "Check the documentation")
"""How the paragraphs of torch's weights-only refusals that are advice, not the reason, begin."""


def _loader_reason(exc: Exception) -> str:
    """The weights-only loader's reason in one line, without torch's advice to load with ``weights_only=False``
    (which would run the file's code: never done here)."""
    lines = (line.strip() for line in str(exc).split("WeightsUnpickler error:")[-1].splitlines())
    reasons = [line for line in lines if line and not line.startswith(_TORCH_LOADER_ADVICE)]
    return f"{type(exc).__name__}: {reasons[0] if reasons else 'no reason given'}"


def _refuse_unusual_tensors(value: Any, where: str, key: str) -> None:
    """Refuse any tensor in ``value`` (nested dicts, lists, tuples) that is not dense memory on the CPU.

    The weights-only loader rebuilds meta, sparse, quantized and expanded tensors as readily as ordinary ones; every
    later step (finiteness checks, ``load_state_dict``, arithmetic) would then fail far from the file, or an expanded
    view of a few bytes would claim gigabytes once copied. The message names the file and the entry's key.
    """
    if isinstance(value, dict):
        for name, item in value.items():
            _refuse_unusual_tensors(item, where, f"{key}.{name}" if key else str(name))
    elif isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            _refuse_unusual_tensors(item, where, f"{key}[{position}]")
    elif isinstance(value, torch.Tensor):
        problem = _unusual_tensor(value)
        if problem:
            raise CheckpointError(f"{where} {key!r}: {problem}; only dense tensors on the CPU are accepted")


def _unusual_tensor(tensor: torch.Tensor) -> Optional[str]:
    """Why ``tensor`` is not a plain dense CPU tensor (``None`` when it is one)."""
    if type(tensor) not in (torch.Tensor, torch.nn.Parameter):
        return f"a tensor subclass {type(tensor).__name__}"
    if tensor.layout != torch.strided:
        return f"a {str(tensor.layout).replace('torch.', '')} tensor"
    if tensor.device.type != "cpu":
        return f"a tensor on the {tensor.device.type!r} device"
    if tensor.is_quantized:
        return "a quantized tensor"
    if tensor.dtype.is_complex:
        return f"a complex tensor ({tensor.dtype})"
    if tensor.numel() and any(stride == 0 for size, stride in zip(tensor.shape, tensor.stride()) if size > 1):
        return f"an expanded view (shape {tuple(tensor.shape)}, strides {tensor.stride()}) of smaller storage"
    return None


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
