"""Multi-process training with DistributedDataParallel, launched by ``torchrun``.

``torchrun`` starts one process per device and describes the job in environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`init_distributed` joins that process
group (``gloo`` on CPU, ``nccl`` on CUDA) and returns a :class:`DistributedContext`; without those variables (or
with ``WORLD_SIZE=1``) it returns the single-process context and nothing changes. Jobs that only split work by
rank, without a process group, take their GPU from :func:`local_rank_device`.

How :class:`~kospeech.trainer.supervised_trainer.SupervisedTrainer` uses it:

- the model is wrapped in ``DistributedDataParallel`` (one CUDA device per process: ``cuda:LOCAL_RANK``);
- rank ``r`` of ``R`` takes batches ``r, r + R, ...`` of the epoch's length-bucketed batch list
  (:class:`~kospeech.data.sampler.BucketBatchSampler` with ``num_replicas``/``rank``, padded so that every rank gets
  the same number of batches: no rank waits forever in a gradient all-reduce);
- every rank runs backward on every step (a rank whose batch has no alignable utterance contributes zero
  gradients; a non-finite loss makes the all-reduced gradient norm non-finite on every rank, so all ranks skip that
  update together);
- rank 0 alone validates, logs, shows progress and writes checkpoints; the others wait for its decision at the end
  of each epoch (:meth:`DistributedContext.broadcast_flag`), and a time budget is agreed on every step
  (:meth:`DistributedContext.any_true`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Union

import torch
import torch.distributed as dist

__all__ = [
    "DDP_BACKENDS",
    "DistributedContext",
    "init_distributed",
    "current_context",
    "cleanup_distributed",
    "resolve_backend",
    "local_rank_device",
    "world_size_from_env",
]

logger = logging.getLogger(__name__)

DDP_BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a DDP job (a single process: rank 0 of 1).

    Args:
        rank: global rank in [0, world_size).
        world_size: number of processes.
        local_rank: rank on this machine (selects the CUDA device).
        backend: the process group's backend, ``None`` for a single process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None

    @property
    def enabled(self) -> bool:
        """More than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """This is rank 0, the one that logs, validates and writes files."""
        return self.rank == 0

    def device_for(self, device: torch.device) -> torch.device:
        """``cuda:LOCAL_RANK`` for a CUDA job with several processes, else ``device`` unchanged."""
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def _flag(self, value: bool, device: torch.device) -> torch.Tensor:
        return torch.tensor([1 if value else 0], dtype=torch.int64, device=device if self.backend == "nccl" else "cpu")

    def any_true(self, value: bool, device: Union[str, torch.device] = "cpu") -> bool:
        """True on every rank when ``value`` is True on any rank (an all-reduce; the value itself alone)."""
        if not self.enabled:
            return bool(value)
        flag = self._flag(value, torch.device(device))
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def broadcast_flag(self, value: bool, device: Union[str, torch.device] = "cpu") -> bool:
        """Rank 0's ``value`` on every rank (also a synchronization point)."""
        if not self.enabled:
            return bool(value)
        flag = self._flag(value, torch.device(device))
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def gather(self, value: Any) -> List[Any]:
        """Every rank's ``value`` (picklable), in rank order, on every rank: one all-gather (``[value]`` alone)."""
        if not self.enabled:
            return [value]
        values: List[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        """Wait until every rank gets here (no-op for a single process)."""
        if self.enabled:
            dist.barrier()


def world_size_from_env() -> int:
    """``WORLD_SIZE`` as set by ``torchrun`` (1 when unset)."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        size = int(value)
    except ValueError as exc:
        raise ValueError(f"WORLD_SIZE must be an integer, got {value!r}") from exc
    if size < 1:
        raise ValueError(f"WORLD_SIZE must be >= 1, got {size}")
    return size


def local_rank_device(device: str, environ: Mapping[str, str], cuda_devices: int) -> str:
    """The device of a torchrun-launched process that forms no process group (e.g. one shard of the multi-user job).

    ``cuda:LOCAL_RANK`` when torchrun set ``LOCAL_RANK`` and ``device`` is ``auto`` or ``cuda`` on a machine with
    ``cuda_devices`` GPUs; ``device`` unchanged otherwise (``cpu``, ``cuda:N``, no GPU, no torchrun), so several
    processes of one machine do not all train on the first GPU.

    Raises:
        ValueError: ``LOCAL_RANK`` is not a number, or names a GPU this machine does not have.
    """
    if "LOCAL_RANK" not in environ or device not in ("auto", "cuda") or cuda_devices == 0:
        return device
    value = environ["LOCAL_RANK"]
    if not value.strip().isdigit():
        raise ValueError(f"LOCAL_RANK must be a number, got {value!r}")
    local_rank = int(value)
    if local_rank >= cuda_devices:
        raise ValueError(
            f"LOCAL_RANK={local_rank} but this machine has {cuda_devices} GPU(s): start at most {cuda_devices} "
            "processes per machine (torchrun --nproc-per-node), or set train.device=cpu"
        )
    return f"cuda:{local_rank}"


def resolve_backend(name: str, device: torch.device) -> str:
    """``auto`` gives ``nccl`` for CUDA devices and ``gloo`` otherwise; ``nccl`` needs CUDA."""
    if name not in DDP_BACKENDS:
        raise ValueError(f"unknown ddp_backend {name!r}; choose one of {list(DDP_BACKENDS)}")
    if name == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if name == "nccl" and device.type != "cuda":
        raise ValueError(f"ddp_backend 'nccl' needs CUDA devices, but training runs on {device}; use 'gloo'")
    return name


def current_context() -> DistributedContext:
    """The context of an already initialized process group, or the single-process context."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    return DistributedContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        backend=dist.get_backend(),
    )


def init_distributed(backend: str = "auto", device: Union[str, torch.device] = "cpu") -> DistributedContext:
    """Join the process group that ``torchrun`` describes; idempotent, and a no-op for a single process.

    Args:
        backend: ``auto``, ``gloo`` or ``nccl`` (see :func:`resolve_backend`).
        device: the device training runs on (``cuda`` selects ``cuda:LOCAL_RANK`` for this process).

    Returns:
        The :class:`DistributedContext` of this process.

    Raises:
        ValueError: a bad backend name, ``nccl`` without CUDA, or malformed torchrun variables.
        RuntimeError: ``WORLD_SIZE > 1`` but ``torch.distributed`` is not available in this build.
    """
    if dist.is_available() and dist.is_initialized():
        return current_context()
    world_size = world_size_from_env()
    if world_size == 1:
        return DistributedContext()
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world_size} but this torch build has no torch.distributed")
    device = torch.device(device)
    name = resolve_backend(backend, device)
    missing = [key for key in ("RANK", "MASTER_ADDR", "MASTER_PORT") if key not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={world_size} but {missing} are not set: launch with torchrun")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=name, init_method="env://")
    context = current_context()
    logger.info("joined a %s process group: rank %d of %d (local rank %d)", name, context.rank, world_size, local_rank)
    return context


def cleanup_distributed() -> None:
    """Leave the process group if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
