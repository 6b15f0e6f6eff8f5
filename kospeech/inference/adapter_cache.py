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
given as ``Recognizer(adapter_cache_factory=...)`` from the recognizer's :data:`AdapterLoader`. Such a cache can be
built on :class:`LruAdapterCache`, the core :class:`AdapterCache` is built on (the LRU order, the file checks, the
loader and the counters), saying how a name finds its file and what an adapter weighs against the bound.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Protocol, Set, Tuple, Union, runtime_checkable

from kospeech.inference.records import CacheStats
from kospeech.models import AdapterManager
from kospeech.models.adapter import AdapterModule

__all__ = ["MAX_REMEMBERED_FAILURES", "AdapterCache", "AdapterLoader", "AdapterSource", "LruAdapterCache"]

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


def _file_stamp(path: Path) -> Tuple[int, int, int, int]:
    """(device, inode, mtime_ns, size): changes when the file is rewritten, also by an atomic replace."""
    status = path.stat()
    return status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size


MAX_REMEMBERED_FAILURES = 1024
"""How many unusable adapter files (damaged, or for another base) a cache remembers, so that a user's requests do not
read the same bad file again and again; a file that changes on disk is read again."""


@dataclass
class _CacheEntry:
    path: Path
    stamp: Tuple[int, int, int, int]
    adapter: Optional[AdapterModule]  # None: the file is not to be served (rejected at training)
    weight: int


class LruAdapterCache:
    """The core of the adapter caches: a thread-safe LRU of loaded adapters keyed by name, bounded in total weight.

    A subclass says where a name's file is (:meth:`_path`, required), what an adapter weighs against the bound
    (:meth:`_weight`: 1, so the bound counts adapters) and what else a load makes obsolete (:meth:`_after_load`).
    Each lookup compares the file's identity, modification time and size with those seen when it was loaded, so a
    file replaced on disk is loaded again. Least recently used adapters are evicted while the total weight exceeds
    the bound, except the one just loaded. A file the loader refused (``ValueError``: damaged, or made for another
    base) is remembered as it is on disk (the last :data:`MAX_REMEMBERED_FAILURES` of them): until it changes, a
    lookup raises the same error again without reading it (a read error, ``OSError``, is not remembered).

    Args:
        adapter_dir: the folder named in the Recognizer's messages about users without an adapter.
        loader: turns an adapter file into a module ready to serve, or ``None`` for a file that must not be served.
        bound: the most total weight held (>= 1), reported as :attr:`CacheStats.capacity`.
        bound_name: how error messages call ``bound``.

    Raises:
        ValueError: ``bound`` is not an int >= 1.
    """

    def __init__(self, adapter_dir: PathLike, loader: AdapterLoader, bound: int, bound_name: str) -> None:
        if isinstance(bound, bool) or not isinstance(bound, int) or bound < 1:
            raise ValueError(f"{bound_name} must be an int >= 1, got {bound!r}")
        self.adapter_dir = Path(adapter_dir)
        self._bound = bound
        self._loader = loader
        self._entries: OrderedDict[str, _CacheEntry] = OrderedDict()
        self._lock = threading.Lock()
        self._weight_held = 0
        self._hits = self._misses = self._evictions = self._reloads = self._rejected = self._load_failures = 0
        self._loading: Dict[str, int] = {}  # name -> loads of it under way (outside the lock)
        self._forgotten_while_loading: Set[str] = set()  # their loads are served but not cached
        self._failures: OrderedDict[str, Tuple[Path, Tuple[int, int, int, int], ValueError]] = OrderedDict()

    def _path(self, name: str) -> Path:
        """The file ``name`` is served from (each cache says where); called without the lock held.

        Raises:
            FileNotFoundError: ``name`` has no adapter file.
        """
        raise NotImplementedError

    def _weight(self, adapter: Optional[AdapterModule]) -> int:
        """What ``adapter`` counts against the bound."""
        return 1

    def _after_load(self, name: str) -> None:
        """Drop what loading ``name`` made obsolete (nothing here); called with the lock held, before it is added."""

    def _drop(self, name: str) -> None:
        """Remove a cached entry; the caller holds the lock."""
        entry = self._entries.pop(name)
        self._weight_held -= entry.weight

    def _forget(self, names: Iterable[str]) -> None:
        """Remove entries that must not come back (a deleted user's); a load of one of ``names`` under way is served
        but not cached. Other names' loads are not disturbed. The caller holds the lock."""
        for name in names:
            if name in self._entries:
                self._drop(name)
            if name in self._loading:
                self._forgotten_while_loading.add(name)

    def _names_held_or_loading(self) -> Set[str]:
        """Names cached or being loaded now; the caller holds the lock."""
        return {*self._entries, *self._loading}

    def get(self, name: str) -> Optional[AdapterModule]:
        """The adapter of ``name``, loading it on a miss or when its file changed; ``None`` when it is not served.

        Args:
            name: the adapter's name.

        Returns:
            The cached or just-loaded module, or ``None`` for a file the loader refused to serve.

        Raises:
            FileNotFoundError: ``name`` has no adapter file (from :meth:`_path`), or it is gone.
            AdapterCompatibilityError / ValueError: from the loader (wrong base, vocabulary, features, bad file).
        """
        path = self._path(name)
        stamp = _file_stamp(path)  # taken before reading, so a concurrent replace is picked up next time
        with self._lock:
            entry = self._current(name, path, stamp)
            if entry is not None:
                self._hits += 1
                self._rejected += entry.adapter is None
                return entry.adapter
            failure = self._failures.get(name)
            if failure is not None and failure[:2] == (path, stamp):
                self._load_failures += 1
                self._failures.move_to_end(name)
                raise copy.copy(failure[2])  # a new instance each time: raising one object again grows its traceback
            self._misses += 1
            self._loading[name] = self._loading.get(name, 0) + 1
        # loaded without the lock: a slow load (a cold file, a network share) holds up no other user's lookup
        try:
            adapter = self._loader(path)
        except BaseException as exc:
            with self._lock:
                self._load_ended(name)
                if isinstance(exc, ValueError):  # an unusable file, remembered until it changes
                    self._load_failures += 1
                    self._failures[name] = (path, stamp, copy.copy(exc))
                    self._failures.move_to_end(name)
                    while len(self._failures) > MAX_REMEMBERED_FAILURES:
                        self._failures.popitem(last=False)
            raise
        with self._lock:
            forgotten = self._load_ended(name)
            self._rejected += adapter is None
            entry = self._current(name, path, stamp)
            if entry is not None:  # another thread loaded the same file meanwhile: serve one module
                return entry.adapter
            if forgotten:  # forgotten during the load (its user deleted): cache nothing
                return adapter
            if name in self._entries:
                self._reloads += 1
                self._drop(name)
                logger.info("adapter file of %r changed on disk; reloaded %s", name, path)
            self._after_load(name)
            weight = self._weight(adapter)
            self._entries[name] = _CacheEntry(path, stamp, adapter, weight)
            self._weight_held += weight
            # the adapter just loaded stays even when it alone exceeds the bound: the caller is about to use it
            while self._weight_held > self._bound and len(self._entries) > 1:
                evicted = next(iter(self._entries))
                self._drop(evicted)
                self._evictions += 1
                logger.debug("adapter cache over its bound (%d): evicted %r", self._bound, evicted)
            return adapter

    def _load_ended(self, name: str) -> bool:
        """Count a load of ``name`` as over; whether ``name`` was forgotten while it ran. The caller holds the lock."""
        forgotten = name in self._forgotten_while_loading
        self._loading[name] -= 1
        if not self._loading[name]:
            del self._loading[name]
            self._forgotten_while_loading.discard(name)
        return forgotten

    def _current(self, name: str, path: Path, stamp: Tuple[int, int, int, int]) -> Optional[_CacheEntry]:
        """The cached entry of ``name`` if it was loaded from this file as it is now (then marked most recently
        used), else ``None``; the caller holds the lock. A name bound to another path counts as changed, even to a
        hard link of its file."""
        entry = self._entries.get(name)
        if entry is None or entry.stamp != stamp or entry.path != path:
            return None
        self._entries.move_to_end(name)
        return entry

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
        """Drop every cached adapter and remembered failure (the counters, and any other state of the cache, are
        kept)."""
        with self._lock:
            self._entries.clear()
            self._failures.clear()
            self._weight_held = 0

    def stats(self) -> CacheStats:
        """Current counters (``capacity`` is the bound)."""
        with self._lock:
            return CacheStats(
                self._hits,
                self._misses,
                self._evictions,
                self._reloads,
                len(self._entries),
                self._bound,
                self._rejected,
                self._load_failures,
            )


class AdapterCache(LruAdapterCache):
    """Bounded LRU cache of loaded adapters, keyed by user (adapter) name; thread-safe.

    Each lookup finds ``{adapter_dir}/{name}_adapter.pt`` by exact name and compares the file's identity,
    modification time and size with those seen when it was loaded, so a file replaced on disk is loaded again.

    Args:
        adapter_dir: directory of ``<name>_adapter.pt`` files.
        loader: turns an adapter file into a ready-to-use module (for :class:`Recognizer`: loaded and checked with
            :meth:`AdapterManager.load_adapter`, eval mode, on the model's device), or ``None`` for a file that must
            not be served.
        capacity: the most adapters held at once (>= 1).

    Raises:
        ValueError: ``capacity`` is not an int >= 1.
        FileNotFoundError: ``adapter_dir`` is not a directory.
    """

    def __init__(self, adapter_dir: PathLike, loader: AdapterLoader, capacity: int = 32) -> None:
        super().__init__(adapter_dir, loader, capacity, "cache capacity")
        if not self.adapter_dir.is_dir():
            raise FileNotFoundError(f"adapter directory not found: {self.adapter_dir}")

    @property
    def capacity(self) -> int:
        """The most adapters held at once."""
        return self._bound

    def available(self) -> List[str]:
        """Sorted names of the adapter files in the directory (files are not opened)."""
        return AdapterManager.adapter_names(self.adapter_dir)

    def get(self, name: str) -> Optional[AdapterModule]:
        """The adapter of ``name``, loading it on a miss or when its file changed; ``None`` when it is not served.

        Args:
            name: the user's (adapter's) name.

        Returns:
            The cached or just-loaded module, or ``None`` for a file the loader refused to serve.

        Raises:
            ValueError: invalid name.
            FileNotFoundError: no ``<name>_adapter.pt`` in the directory (the folder is not listed).
            AdapterCompatibilityError / ValueError: from the loader (wrong base, vocabulary, features, bad file).
        """
        return super().get(name)  # the shared lookup; overridden to document this cache's errors

    def _path(self, name: str) -> Path:
        """``{adapter_dir}/{name}_adapter.pt``."""
        # no folder listing on a miss: a caller falling back to the base model must not list thousands of files
        return AdapterManager.find_adapter(self.adapter_dir, name, list_available=False)
