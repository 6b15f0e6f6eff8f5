"""Optimizer wrapper (KoSpeech style): gradient clipping, non-finite step skipping, scheduler stepping, resume."""

from __future__ import annotations

import logging
import math
from typing import Any, Dict, Iterable, Optional, Union

import torch
from torch import nn
from torch.nn.utils import clip_grads_with_norm_, get_total_norm
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["OPTIMIZERS", "Optimizer", "build_optimizer"]

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULER_PERIODS = ("step", "epoch")


class Optimizer:
    """Wraps a torch optimizer and an optional LR scheduler.

    ``step(model)`` measures the L2 norm of the gradients of ``model``'s trainable parameters
    (``requires_grad=True`` and a ``.grad``) and of every other parameter the optimizer holds (one trained without
    being attached to ``model``, e.g. a separate adapter). If it is not finite (a NaN/inf loss or overflow), the update is skipped:
    parameters, optimizer state and the scheduler stay as they were, ``skipped_steps`` grows, and the norm is
    returned so the caller can log it. Otherwise the gradients are clipped to ``max_grad_norm``, the optimizer steps,
    and a ``scheduler_period="step"`` scheduler steps once. Skipped updates therefore do not advance the schedule.

    Args:
        optimizer: the torch optimizer (over trainable parameters only).
        scheduler: an ``LRScheduler`` built on ``optimizer``, or ``None`` for a fixed learning rate.
        scheduler_period: ``"step"`` (scheduler steps after every applied update) or ``"epoch"`` (only on
            ``end_epoch()``).
        max_grad_norm: clip threshold for the total gradient norm; ``0`` disables clipping (the norm is still
            measured and non-finite steps still skipped).

    Attributes:
        num_steps: updates applied so far.
        skipped_steps: updates skipped for a non-finite gradient norm.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: Optional[LRScheduler] = None,
        scheduler_period: str = "step",
        max_grad_norm: float = 400.0,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if scheduler is not None:
            if not isinstance(scheduler, LRScheduler):
                raise TypeError(f"scheduler must be a torch LRScheduler or None, got {type(scheduler).__name__}")
            if scheduler.optimizer is not optimizer:
                raise ValueError("scheduler was built on a different optimizer than the one given")
        if scheduler_period not in SCHEDULER_PERIODS:
            raise ValueError(f"scheduler_period must be one of {SCHEDULER_PERIODS}, got {scheduler_period!r}")
        if isinstance(max_grad_norm, bool) or not isinstance(max_grad_norm, (int, float)) or not max_grad_norm >= 0:
            raise ValueError(f"max_grad_norm must be a number >= 0 (0 disables clipping), got {max_grad_norm!r}")
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scheduler_period = scheduler_period
        self.max_grad_norm = float(max_grad_norm)
        self.num_steps = 0
        self.skipped_steps = 0

    def step(self, model: nn.Module) -> float:
        """Clip, update and (per step) advance the scheduler, unless the gradient norm is not finite.

        Args:
            model: the module being trained (a ``DataParallel``/``DistributedDataParallel`` wrapper is fine).

        Returns:
            The total L2 gradient norm before clipping; ``inf`` or ``nan`` when the update was skipped. Gradients
            are left in place either way; call ``zero_grad()`` before the next backward pass.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"step expects the nn.Module being trained, got {type(model).__name__}")
        held = (param for group in self.optimizer.param_groups for param in group["params"])
        candidates = {id(param): param for param in (*model.parameters(), *held)}  # each parameter once
        params = [param for param in candidates.values() if param.requires_grad and param.grad is not None]
        total_norm = get_total_norm([param.grad for param in params], norm_type=2.0, error_if_nonfinite=False)
        norm = float(total_norm)
        if not math.isfinite(norm):
            self.skipped_steps += 1
            logger.warning(
                "gradient norm is %s: update skipped (%d skipped, %d applied so far)",
                norm,
                self.skipped_steps,
                self.num_steps,
            )
            return norm
        if self.max_grad_norm > 0:
            clip_grads_with_norm_(params, self.max_grad_norm, total_norm)
        self.optimizer.step()
        self.num_steps += 1
        if self.scheduler is not None and self.scheduler_period == "step":
            self.scheduler.step()
        return norm

    def end_epoch(self) -> None:
        """Advance an ``"epoch"``-period scheduler; call once at the end of every epoch (no-op otherwise)."""
        if self.scheduler is not None and self.scheduler_period == "epoch":
            self.scheduler.step()

    def zero_grad(self) -> None:
        """Reset the gradients of every parameter the optimizer holds (to ``None``)."""
        self.optimizer.zero_grad(set_to_none=True)

    def get_lr(self) -> float:
        """Current learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of every parameter group; a scheduler overrides it at its next step.

        Args:
            lr: the new learning rate (>= 0).
        """
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
            raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
        for group in self.optimizer.param_groups:
            group["lr"] = float(lr)

    def state_dict(self) -> Dict[str, Any]:
        """Optimizer, scheduler and counters as plain containers (``torch.load(weights_only=True)`` reads them)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "num_steps": self.num_steps,
            "skipped_steps": self.skipped_steps,
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore what ``state_dict()`` returned; the next ``step`` continues the same LR sequence.

        Args:
            state_dict: a dict from ``state_dict()``.

        Raises:
            ValueError: keys missing, or a scheduler state given to a wrapper without scheduler (or vice versa).
        """
        missing = [key for key in ("optimizer", "scheduler", "num_steps", "skipped_steps") if key not in state_dict]
        if missing:
            raise ValueError(f"optimizer state is missing keys {missing}; got {sorted(state_dict)}")
        has_scheduler_state = state_dict["scheduler"] is not None
        if has_scheduler_state != (self.scheduler is not None):
            raise ValueError(
                f"optimizer state {'has' if has_scheduler_state else 'has no'} scheduler state but this wrapper "
                f"{'has' if self.scheduler is not None else 'has no'} scheduler"
            )
        self.optimizer.load_state_dict(state_dict["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state_dict["scheduler"])
        self.num_steps = int(state_dict["num_steps"])
        self.skipped_steps = int(state_dict["skipped_steps"])


def build_optimizer(
    name: str,
    params: Union[Iterable[torch.Tensor], Iterable[Dict[str, Any]]],
    lr: float,
    weight_decay: float = 0.0,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Build a torch optimizer by name.

    Args:
        name: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        params: parameters (or parameter groups) to optimize; pass only trainable ones (for an adapter:
            ``[p for p in model.parameters() if p.requires_grad]``).
        lr: learning rate (a scheduler built afterwards replaces it with its step-0 value).
        weight_decay: L2 penalty (``adam``, ``sgd``) or decoupled weight decay (``adamw``).
        **kwargs: passed on to the torch optimizer (e.g. ``betas``, ``momentum``).

    Returns:
        The optimizer.

    Raises:
        ValueError: unknown name (the valid ones are listed) or no parameters.
    """
    classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    if name not in classes:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {list(OPTIMIZERS)}")
    params = list(params)
    if not params:
        raise ValueError("no parameters to optimize (are all parameters frozen?)")
    return classes[name](params, lr=lr, weight_decay=weight_decay, **kwargs)
