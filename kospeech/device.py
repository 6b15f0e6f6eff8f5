"""What the machine has: device names from configs and arguments (the one place that turns ``"auto"``/``"cuda:1"``
into a device), usable CPU cores, and how many DataLoader workers they can carry."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator, Set, Tuple, Union

import torch

__all__ = ["resolve_device", "SUPPORTED_DEVICE_TYPES", "usable_cpu_cores", "loader_workers", "torch_threads"]

logger = logging.getLogger(__name__)

_REPORTED_LIMITS: Set[Tuple[int, int]] = set()

SUPPORTED_DEVICE_TYPES = ("cpu", "cuda")


def resolve_device(name: Union[str, torch.device]) -> torch.device:
    """``"auto"`` picks CUDA when available; ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` are taken as given.

    Raises:
        ValueError: not a device name torch knows, a device type kospeech does not run on (``meta``, ``mps``, ...),
            or CUDA (or that CUDA device) was requested but is not available.
    """
    if isinstance(name, str) and name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device {name!r} is not a device name ({exc}); use 'cpu', 'cuda', 'cuda:N' or 'auto'"
        ) from exc
    if device.type not in SUPPORTED_DEVICE_TYPES:
        raise ValueError(f"device {name!r}: kospeech runs on {' or '.join(SUPPORTED_DEVICE_TYPES)} devices only")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was requested but CUDA is not available; use 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA devices are visible")
    return device


def usable_cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def loader_workers(requested: int, compute_threads: int) -> int:
    """DataLoader workers that fit next to the training process: at most the usable cores minus its compute threads.

    Workers beyond that compete with the training threads for the same cores, and a torch job sharing two cores
    with busy processes runs many times slower (4 workers on 2 cores made one trunk-cache pass take 57 s
    instead of 1 s). A smaller count than asked is logged once per process.

    Args:
        requested: the configured ``num_workers`` (>= 0).
        compute_threads: intra-op threads of the training process (on a GPU, 1: the CPU only feeds it).

    Returns:
        ``min(requested, usable_cpu_cores() - compute_threads)``, at least 0.
    """
    limit = max(0, usable_cpu_cores() - max(1, compute_threads))
    if requested > limit:
        if (requested, limit) in _REPORTED_LIMITS:
            return limit
        _REPORTED_LIMITS.add((requested, limit))
        logger.info(
            "num_workers=%d lowered to %d: %d usable CPU cores, %d of them computing",
            requested,
            limit,
            usable_cpu_cores(),
            compute_threads,
        )
        return limit
    return requested


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` (at least 1) torch intra-op threads, then give the process back the count it had.

    The setting is process-wide, even when set from another thread: a training run in a server's background thread
    must not leave the server's requests on its own count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, count))
    try:
        yield
    finally:
        torch.set_num_threads(before)
