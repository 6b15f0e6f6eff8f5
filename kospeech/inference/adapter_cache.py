"""The bounded, thread-safe LRU cache of per-user adapters that a :class:`Recognizer` serves from.

Adapters are loaded on first use, by a loader the cache is given (for the
:class:`~kospeech.inference.recognizer.Recognizer`: :meth:`AdapterManager.load_adapter`, which checks each file
against the base weights, the vocabulary and the feature settings), and kept until the cache is full, least
recently used first out. Every lookup compares the file's identity, modification time and size with those seen
when it was loaded, so a file replaced on disk (also by an atomic replace) is loaded again. A loader may answer
``None`` for a file that must not be served (an adapter rejected at training): that answer is cached like an adapter
and counted in :attr:`CacheStats.rejected` at every lookup.

Another cache can serve a :class:`Recognizer` in this one's place (a service that keeps each user's file in its own
folder and bounds memory in bytes, say): anything with the interface :class:`AdapterSource`, built by the factory
given as ``Recognizer(adapter_cache_factory=...)`` from the recognizer's :data:`AdapterLoader`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Protocol, Tuple, Union, runtime_checkable

from kospeech.inference.records import CacheStats
from kospeech.models import AdapterManager
from kospeech.models.adapter import AdapterModule

__all__ = ["AdapterCache", "AdapterLoader", "AdapterSource"]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

AdapterLoader = Callable[[Path], Optional[AdapterModule]]
"""Turns an adapter file into a checked module ready to serve, or ``None`` for a file that must not be served
(:meth:`Recognizer.load_adapter <kospeech.inference.Recognizer.load_adapter>`)."""


@runtime_checkable
class AdapterSource(Protocol):
    """What a :class:`~kospeech.inference.Recognizer` asks of its adapter cache (:class:`AdapterCache` has it).

    Attributes:
        adapter_dir: the folder named in the Recognizer's messages about users without an adapter.
    """

    adapter_dir: Path

    def get(self, name: str) -> Optional[AdapterModule]:
        """The adapter of ``name`` (``None``: serve the base model). Raises ``FileNotFoundError`` when it has none."""

    def available(self) -> List[str]:
        """Names that have an adapter (for messages listing them)."""

    def stats(self) -> CacheStats:
        """The cache's counters."""


@dataclass
class _CacheEntry:
    adapter: Optional[AdapterModule]  # None: the file is not to be served (rejected at training)
    stamp: Tuple[int, int, int, int]


def _file_stamp(path: Path) -> Tuple[int, int, int, int]:
    """(device, inode, mtime_ns, size): changes when the file is rewritten, also by an atomic replace."""
    status = path.stat()
    return status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size


class AdapterCache:
    """Bounded LRU cache of loaded adapters, keyed by user (adapter) name; thread-safe.

    Each lookup finds ``{adapter_dir}/{name}_adapter.pt`` by exact name and compares the file's identity,
    modification time and size with those seen when it was loaded, so a file replaced on disk is loaded again.

    Args:
        adapter_dir: directory of ``<name>_adapter.pt`` files.
        loader: turns an adapter file into a ready-to-use module (for :class:`Recognizer`: loaded and checked with
            :meth:`AdapterManager.load_adapter`, eval mode, on the model's device), or ``None`` for a file that must
            not be served.
        capacity: the most adapters held at once (>= 1).
    """

    def __init__(
        self, adapter_dir: PathLike, loader: Callable[[Path], Optional[AdapterModule]], capacity: int = 32
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"cache capacity must be an int >= 1, got {capacity!r}")
        self.adapter_dir = Path(adapter_dir)
        if not self.adapter_dir.is_dir():
            raise FileNotFoundError(f"adapter directory not found: {self.adapter_dir}")
        self.capacity = capacity
        self._loader = loader
        self._entries: OrderedDict[str, _CacheEntry] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = self._reloads = self._rejected = 0

    def available(self) -> List[str]:
        """Sorted names of the adapter files in the directory (files are not opened)."""
        return AdapterManager.adapter_names(self.adapter_dir)

    def get(self, name: str) -> Optional[AdapterModule]:
        """The adapter of ``name``, loading it on a miss or when its file changed; ``None`` when it is not served.

        Raises:
            ValueError: invalid name.
            FileNotFoundError: no ``<name>_adapter.pt`` in the directory (the folder is not listed).
            AdapterCompatibilityError / ValueError: from the loader (wrong base, vocabulary, features, bad file).
        """
        # no folder listing on a miss: a caller falling back to the base model must not list thousands of files
        path = AdapterManager.find_adapter(self.adapter_dir, name, list_available=False)
        stamp = _file_stamp(path)  # taken before reading, so a concurrent replace is picked up next time
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and entry.stamp == stamp:
                self._entries.move_to_end(name)
                self._hits += 1
                self._rejected += entry.adapter is None
                return entry.adapter
            self._misses += 1
            if entry is not None:
                self._reloads += 1
                logger.info("adapter file of %r changed on disk; reloading %s", name, path)
                del self._entries[name]
            adapter = self._loader(path)
            self._rejected += adapter is None
            self._entries[name] = _CacheEntry(adapter, stamp)
            while len(self._entries) > self.capacity:
                evicted, _ = self._entries.popitem(last=False)
                self._evictions += 1
                logger.debug("adapter cache full (%d): evicted %r", self.capacity, evicted)
            return adapter

    def names(self) -> List[str]:
        """Cached names, least recently used first."""
        with self._lock:
            return list(self._entries)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        """Drop every cached adapter (the counters are kept)."""
        with self._lock:
            self._entries.clear()

    def stats(self) -> CacheStats:
        """Current counters."""
        with self._lock:
            return CacheStats(
                self._hits,
                self._misses,
                self._evictions,
                self._reloads,
                len(self._entries),
                self.capacity,
                self._rejected,
            )
