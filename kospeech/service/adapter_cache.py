"""The process-wide cache of users' adapters that the service's :class:`~kospeech.inference.Recognizer` serves from.

The library's :class:`~kospeech.inference.AdapterCache` finds ``<name>_adapter.pt`` in one folder and bounds the
number of adapters. The service keeps every version of a user's adapter in that user's own folder, knows from the
database which one is in force, and bounds the cache in bytes. So this cache has the library's
:class:`~kospeech.inference.adapter_cache.AdapterSource` interface (the Recognizer builds it around its loader,
``Recognizer(adapter_cache_factory=...)``) and serves *versions*: a request names ``<user key>-<version>``
(:func:`serving_name`), and the batch it joins binds those names to their files (:meth:`ByteBoundedAdapterCache.bind`)
just before the Recognizer looks them up, on the one model thread. A response therefore always names the version
that served it; a newly activated version has a new name and is loaded at its first request, without a restart; the
older versions of that user leave the cache then. Least recently used adapters are evicted while the tensors held
exceed ``max_bytes``. Like the library's cache it compares the file's identity, modification time and size at every
lookup, so a file that changes on disk is never served stale.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from torch import nn

from kospeech.inference.adapter_cache import AdapterLoader
from kospeech.inference.records import CacheStats
from kospeech.models.adapter import AdapterModule

__all__ = ["ByteBoundedAdapterCache", "module_bytes", "serving_name"]

logger = logging.getLogger(__name__)

Stamp = Tuple[int, int, int, int]


def serving_name(user_key: str, version: int) -> str:
    """The name a user's adapter version is served under (``user_key`` is the user's database id)."""
    return f"{user_key}-{version}"


def _user_key(name: str) -> str:
    return name.rsplit("-", 1)[0]


def module_bytes(module: Optional[nn.Module]) -> int:
    """Bytes of the parameters and buffers of ``module`` (0 for ``None``)."""
    if module is None:
        return 0
    tensors = [*module.parameters(), *module.buffers()]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def _stamp(path: Path) -> Stamp:
    status = path.stat()
    return status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size


@dataclass
class _Entry:
    path: Path
    stamp: Stamp
    adapter: Optional[AdapterModule]  # None: the file must not be served (rejected at training)
    size: int


class ByteBoundedAdapterCache:
    """LRU cache of loaded adapter versions bounded in bytes, keyed by serving name; thread-safe.

    Args:
        root: the folder under which every adapter lies (reported as ``adapter_dir`` in the Recognizer's messages).
        loader: turns an adapter file into a checked module in eval mode, or ``None`` for a rejected adapter (the
            Recognizer's :meth:`~kospeech.inference.Recognizer.load_adapter`).
        max_bytes: the most bytes of adapter tensors held; the adapter just loaded is kept even when it alone is
            larger.
    """

    def __init__(self, root: Path, loader: AdapterLoader, max_bytes: int) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes must be an int >= 1, got {max_bytes!r}")
        self.adapter_dir = Path(root)
        self.max_bytes = max_bytes
        self._loader = loader
        self._paths: Dict[str, Path] = {}
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = 0
        self._hits = self._misses = self._evictions = self._reloads = self._rejected = 0

    def bind(self, files: Mapping[str, Path]) -> None:
        """Say where the adapter files of the next batch's serving names are (replacing the previous batch's)."""
        with self._lock:
            self._paths = {name: Path(path) for name, path in files.items()}

    def forget_user(self, user_key: str) -> None:
        """Drop every cached version of a user (deleted)."""
        with self._lock:
            for name in [name for name in self._entries if _user_key(name) == user_key]:
                self._drop(name)

    def _drop(self, name: str) -> None:
        entry = self._entries.pop(name)
        self._bytes -= entry.size

    def available(self) -> List[str]:
        """Serving names bound for the current batch."""
        with self._lock:
            return sorted(self._paths)

    def get(self, name: str) -> Optional[AdapterModule]:
        """The adapter served as ``name``, loaded on a miss or when its file changed; ``None`` when it is not served.

        Raises:
            FileNotFoundError: ``name`` is not bound, or its file does not exist (any more).
            AdapterCompatibilityError / ValueError: from the loader.
        """
        with self._lock:
            path = self._paths.get(name)
        if path is None:
            raise FileNotFoundError(f"no adapter file bound to {name!r}")
        stamp = _stamp(path)  # FileNotFoundError when it is gone; taken before reading, so a change is seen next time
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and entry.stamp == stamp and entry.path == path:
                self._entries.move_to_end(name)
                self._hits += 1
                self._rejected += entry.adapter is None
                return entry.adapter
            self._misses += 1
            if entry is not None:
                self._reloads += 1
                self._drop(name)
                logger.info("adapter file of %r changed on disk; reloading %s", name, path)
            adapter = self._loader(path)
            self._rejected += adapter is None
            for older in [other for other in self._entries if _user_key(other) == _user_key(name)]:
                self._drop(older)
                logger.debug("adapter %r superseded by %r", older, name)
            size = module_bytes(adapter)
            self._entries[name] = _Entry(path, stamp, adapter, size)
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                evicted = next(iter(self._entries))
                self._drop(evicted)
                self._evictions += 1
                logger.debug("adapter cache over %d bytes: evicted %r", self.max_bytes, evicted)
            return adapter

    def names(self) -> List[str]:
        """Cached names, least recently used first."""
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._entries

    @property
    def bytes(self) -> int:
        """Bytes of adapter tensors held now."""
        with self._lock:
            return self._bytes

    def clear(self) -> None:
        """Drop every cached adapter (bindings and counters are kept)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        """The counters, in the library's record (``capacity`` is the byte bound here)."""
        with self._lock:
            return CacheStats(
                self._hits,
                self._misses,
                self._evictions,
                self._reloads,
                len(self._entries),
                self.max_bytes,
                self._rejected,
            )
