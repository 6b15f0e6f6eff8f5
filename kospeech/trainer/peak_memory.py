"""Peak memory of a stretch of work: the process itself, its DataLoader worker processes and the GPU.

A multi-user job reports it per group of users (``results.json`` ``groups[*]``), so that an operator can size
``--group-size`` and the machine before a job of thousands of users.

Where the figures come from (Linux):

- the process: the kernel's high-water mark of resident memory (``VmHWM``), reset when the measurement starts by
  writing ``5`` to ``/proc/self/clear_refs``; a kernel that refuses the reset gives the peak since the process started;
- its worker processes: a sampler thread reads, every ``interval`` seconds, the memory private to each child process
  started during the measurement (``Private_Clean + Private_Dirty`` of ``/proc/<pid>/smaps_rollup``, its unique set
  size; children that were there before, a multiprocessing resource tracker say, are not the work's). A forked DataLoader worker
  shares the parent's pages until it writes them, so its resident size would count the model and the cache twice;
  the private part is what the worker adds. The figure is the largest sum over the live workers at one sample: a
  peak shorter than the interval can be missed;
- the GPU: torch's peak of allocated memory on the device (``torch.cuda.max_memory_allocated``), reset at the start.
"""

from __future__ import annotations

import logging
import os
import resource
import threading
from pathlib import Path
from typing import Dict, Iterator, Optional, Set, Union

import torch

from kospeech.fileio import process_status_field

__all__ = ["PeakMemory"]

logger = logging.getLogger(__name__)

_KB_PER_MB = 1024
_PROC_SELF = Path("/proc/self")


def _reset_peak_rss() -> bool:
    """Reset the kernel's record of this process' peak resident memory; False where that is not possible."""
    try:
        (_PROC_SELF / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MB: since the last reset where the kernel allows it, else ever."""
    peak_kb = process_status_field("VmHWM")
    if peak_kb is not None:
        return int(peak_kb) / _KB_PER_MB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / _KB_PER_MB  # kB on Linux


def _child_pids() -> Iterator[int]:
    """The process ids of this process' children (every thread's: a worker is the child of the thread that forked
    it). Raises OSError where ``/proc`` does not list them (not Linux, or a kernel without the children files)."""
    main_thread = _PROC_SELF / "task" / str(os.getpid()) / "children"
    if not main_thread.is_file():
        raise OSError(f"{main_thread} does not exist")
    for children in (_PROC_SELF / "task").glob("*/children"):
        try:
            listed = children.read_text()
        except FileNotFoundError:  # the thread ended since the listing
            continue
        yield from (int(pid) for pid in listed.split())


def _private_mb(pid: int) -> float:
    """Memory private to process ``pid`` in MB (0 for a process that has just ended)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    private_kb = 0
    for line in text.splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            private_kb += int(line.split()[1])
    return private_kb / _KB_PER_MB


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` measures the peak memory of the work inside the block.

    Args:
        device: the device the work runs on (the GPU figure is taken on a CUDA device only).
        interval: seconds between two samples of the worker processes' memory.

    After the block, :meth:`figures` gives ``peak_rss_mb`` (this process), ``peak_rss_since_start`` (True where the
    kernel could not reset the peak, so ``peak_rss_mb`` covers the process' whole life), ``workers_peak_mb`` (the
    worker processes' own memory at its sampled peak; 0.0 with no workers; None where ``/proc`` cannot tell) and
    ``gpu_peak_mb`` (None off CUDA). Their sum bounds the work's whole footprint from above.
    """

    def __init__(self, device: Union[str, torch.device] = "cpu", interval: float = 0.1) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval!r}")
        self.device = torch.device(device)
        self.interval = interval
        self._stop = threading.Event()
        self._sampler: Optional[threading.Thread] = None
        self._exact = False
        self._workers_mb: Optional[float] = 0.0
        self._children_before: Set[int] = set()
        self._result: Optional[Dict[str, Optional[float]]] = None

    def __enter__(self) -> PeakMemory:
        self._exact = _reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            self._children_before = set(_child_pids())
        except OSError as exc:
            logger.info("worker processes' memory is not measured here: %s", exc)
            self._workers_mb = None
        self._sampler = threading.Thread(target=self._sample_loop, name="kospeech-peak-memory", daemon=True)
        self._sampler.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        self._result = {
            "peak_rss_mb": round(_peak_rss_mb(), 1),
            "peak_rss_since_start": not self._exact,
            "workers_peak_mb": None if self._workers_mb is None else round(self._workers_mb, 1),
            "gpu_peak_mb": round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
            if self.device.type == "cuda"
            else None,
        }

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.interval) and self._workers_mb is not None:
            self._sample_workers()

    def _sample_workers(self) -> None:
        if self._workers_mb is None:
            return
        try:
            total = sum(_private_mb(pid) for pid in _child_pids() if pid not in self._children_before)
        except OSError as exc:
            logger.info("worker processes' memory is not measured here: %s", exc)
            self._workers_mb = None
            return
        self._workers_mb = max(self._workers_mb, total)

    def figures(self) -> Dict[str, Optional[float]]:
        """The figures of the block (see the class); only after it has ended."""
        if self._result is None:
            raise RuntimeError("PeakMemory.figures() is only known after the with-block has ended")
        return dict(self._result)
