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
exceed ``max_bytes``. It is built on the library's :class:`~kospeech.inference.adapter_cache.LruAdapterCache`, as
the library's cache is, so it too compares the file's identity, modification time and size at every lookup, and a
file that changes on disk is never served stale.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from torch import nn

from kospeech.inference.adapter_cache import AdapterLoader, LruAdapterCache
from kospeech.models.adapter import AdapterModule

__all__ = ["ByteBoundedAdapterCache", "module_bytes", "serving_name"]

logger = logging.getLogger(__name__)


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


class ByteBoundedAdapterCache(LruAdapterCache):
    """LRU cache of loaded adapter versions bounded in bytes, keyed by serving name; thread-safe.

    Args:
        root: the folder under which every adapter lies (reported as ``adapter_dir`` in the Recognizer's messages).
        loader: turns an adapter file into a checked module in eval mode, or ``None`` for a rejected adapter (the
            Recognizer's :meth:`~kospeech.inference.Recognizer.load_adapter`).
        max_bytes: the most bytes of adapter tensors held; the adapter just loaded is kept even when it alone is
            larger.

    Raises:
        ValueError: ``max_bytes`` is not an int >= 1.
    """

    def __init__(self, root: Path, loader: AdapterLoader, max_bytes: int) -> None:
        super().__init__(root, loader, max_bytes, "max_bytes")
        self._paths: Dict[str, Path] = {}

    @property
    def max_bytes(self) -> int:
        """The most bytes of adapter tensors held (``capacity`` in :meth:`stats`)."""
        return self._bound

    def bind(self, files: Mapping[str, Path]) -> None:
        """Say where the adapter files of the next batch's serving names are (replacing the previous batch's).

        Args:
            files: the file of each serving name.
        """
        with self._lock:
            self._paths = {name: Path(path) for name, path in files.items()}

    def forget_user(self, user_key: str) -> None:
        """Drop every cached version of a user (deleted).

        Args:
            user_key: the user's database id.
        """
        with self._lock:
            self._forget([name for name in self._names_held_or_loading() if _user_key(name) == user_key])

    def available(self) -> List[str]:
        """Serving names bound for the current batch."""
        with self._lock:
            return sorted(self._paths)

    def get(self, name: str) -> Optional[AdapterModule]:
        """The adapter served as ``name``, loaded on a miss or when its file changed; ``None`` when it is not served.

        Args:
            name: a serving name, ``<user key>-<version>``.

        Returns:
            The cached or just-loaded module, or ``None`` for a rejected adapter.

        Raises:
            FileNotFoundError: ``name`` is not bound, or its file does not exist (any more).
            AdapterCompatibilityError / ValueError: from the loader.
        """
        return super().get(name)  # the shared lookup; overridden to document this cache's errors

    def _path(self, name: str) -> Path:
        """The file bound to ``name`` for the current batch."""
        with self._lock:
            path = self._paths.get(name)
        if path is None:
            raise FileNotFoundError(f"no adapter file bound to {name!r}")
        return path

    def _weight(self, adapter: Optional[AdapterModule]) -> int:
        """The bytes of ``adapter``'s tensors."""
        return module_bytes(adapter)

    def _after_load(self, name: str) -> None:
        """Drop the other versions of ``name``'s user: the one just loaded is the version in force now."""
        for older in [other for other in self._entries if _user_key(other) == _user_key(name)]:
            self._drop(older)
            logger.debug("adapter %r superseded by %r", older, name)

    @property
    def bytes(self) -> int:
        """Bytes of adapter tensors held now."""
        with self._lock:
            return self._weight_held
