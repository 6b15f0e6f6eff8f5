"""Learning-rate schedules as ``torch.optim.lr_scheduler.LRScheduler`` subclasses.

Every schedule here is a closed-form function of the scheduler step count ``s`` (``last_epoch``: 0 after
construction, +1 per ``scheduler.step()``), so ``state_dict()`` / ``load_state_dict()`` resume the exact same
sequence. The value is absolute: every parameter group gets the same learning rate, whatever its initial ``lr``.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Optional

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = [
    "ConstantLRScheduler",
    "LR_SCHEDULERS",
    "TRI_STAGE_HOLD_FRACTION",
    "TriStageLRScheduler",
    "WarmupLRScheduler",
    "build_lr_scheduler",
]

logger = logging.getLogger(__name__)

#: Share of the post-warmup steps spent at the peak when ``build_lr_scheduler`` derives tri-stage phases from
#: ``total_steps``; the rest decays.
TRI_STAGE_HOLD_FRACTION = 0.4

#: Share of a run's steps spent warming up when the configured ``warmup_steps`` exceed the whole run (the adapter
#: default of 500 against an enrollment run of tens of steps), so the schedule still reaches its peak and decays.
SHORT_RUN_WARMUP_FRACTION = 0.1


def _check_steps(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _check_lr(name: str, value: Any, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


class _ClosedFormLRScheduler(LRScheduler):
    """A schedule given by ``lr_at(step)``, applied to every parameter group."""

    def lr_at(self, step: int) -> float:
        """Learning rate after ``step`` scheduler steps."""
        raise NotImplementedError

    def get_lr(self) -> List[float]:
        return [self.lr_at(self.last_epoch) for _ in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> List[float]:
        return self.get_lr()


class TriStageLRScheduler(_ClosedFormLRScheduler):
    """Linear warmup ``init_lr -> peak_lr``, hold at ``peak_lr``, exponential decay ``peak_lr -> final_lr``.

    After ``s`` steps the learning rate is
    ``init_lr + (peak_lr - init_lr) * s / warmup_steps`` for ``s < warmup_steps``;
    ``peak_lr`` for the next ``hold_steps``;
    ``peak_lr * (final_lr / peak_lr) ** (d / decay_steps)`` at step ``d`` of the decay;
    ``final_lr`` from ``warmup_steps + hold_steps + decay_steps`` on.

    Args:
        optimizer: the wrapped optimizer.
        init_lr: learning rate at step 0 (>= 0).
        peak_lr: learning rate after warmup (> 0).
        final_lr: learning rate at the end of the decay (> 0; the decay is exponential).
        warmup_steps: steps of linear warmup (>= 0).
        hold_steps: steps at ``peak_lr`` (>= 0).
        decay_steps: steps of exponential decay (>= 0; 0 drops straight to ``final_lr``).
        last_epoch: as in ``LRScheduler``; keep -1 and use ``load_state_dict`` to resume.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        init_lr: float,
        peak_lr: float,
        final_lr: float,
        warmup_steps: int,
        hold_steps: int,
        decay_steps: int,
        last_epoch: int = -1,
    ) -> None:
        self.init_lr = _check_lr("init_lr", init_lr)
        self.peak_lr = _check_lr("peak_lr", peak_lr, positive=True)
        self.final_lr = _check_lr("final_lr", final_lr, positive=True)
        self.warmup_steps = _check_steps("warmup_steps", warmup_steps)
        self.hold_steps = _check_steps("hold_steps", hold_steps)
        self.decay_steps = _check_steps("decay_steps", decay_steps)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.init_lr + (self.peak_lr - self.init_lr) * step / self.warmup_steps
        step -= self.warmup_steps
        if step < self.hold_steps:
            return self.peak_lr
        step -= self.hold_steps
        if step < self.decay_steps:
            return self.peak_lr * (self.final_lr / self.peak_lr) ** (step / self.decay_steps)
        return self.final_lr


class WarmupLRScheduler(_ClosedFormLRScheduler):
    """Linear warmup ``init_lr -> peak_lr`` over ``warmup_steps``, then ``peak_lr`` for good.

    Args:
        optimizer: the wrapped optimizer.
        init_lr: learning rate at step 0 (>= 0).
        peak_lr: learning rate from ``warmup_steps`` on (>= 0).
        warmup_steps: steps of linear warmup (>= 0).
        last_epoch: as in ``LRScheduler``; keep -1 and use ``load_state_dict`` to resume.
    """

    def __init__(
        self, optimizer: Optimizer, init_lr: float, peak_lr: float, warmup_steps: int, last_epoch: int = -1
    ) -> None:
        self.init_lr = _check_lr("init_lr", init_lr)
        self.peak_lr = _check_lr("peak_lr", peak_lr)
        self.warmup_steps = _check_steps("warmup_steps", warmup_steps)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.init_lr + (self.peak_lr - self.init_lr) * step / self.warmup_steps
        return self.peak_lr


class ConstantLRScheduler(_ClosedFormLRScheduler):
    """The same learning rate at every step.

    Args:
        optimizer: the wrapped optimizer.
        lr: the learning rate (>= 0).
        last_epoch: as in ``LRScheduler``.
    """

    def __init__(self, optimizer: Optimizer, lr: float, last_epoch: int = -1) -> None:
        self.lr = _check_lr("lr", lr)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, step: int) -> float:
        return self.lr


LR_SCHEDULERS = ("tri_stage_lr_scheduler", "warmup_lr_scheduler", "constant")

_BUILD_KWARGS = ("init_lr", "peak_lr", "final_lr", "warmup_steps", "hold_steps", "decay_steps", "total_steps")


def _require(name: str, kwargs: Dict[str, Any], keys: List[str]) -> None:
    missing = [key for key in keys if kwargs.get(key) is None]
    if missing:
        given = sorted(key for key, value in kwargs.items() if value is not None)
        raise ValueError(f"lr scheduler {name!r} needs {missing}; got {given}")


def _tri_stage_phases(
    warmup_steps: int, hold_steps: Optional[int], decay_steps: Optional[int], total_steps: Optional[int]
) -> Dict[str, int]:
    warmup_steps = _check_steps("warmup_steps", warmup_steps)
    if hold_steps is not None:
        hold_steps = _check_steps("hold_steps", hold_steps)
    if decay_steps is not None:
        decay_steps = _check_steps("decay_steps", decay_steps)
    if total_steps is None:
        if hold_steps is None or decay_steps is None:
            raise ValueError(
                "lr scheduler 'tri_stage_lr_scheduler' needs hold_steps and decay_steps, or total_steps to derive them"
            )
        return {"warmup_steps": warmup_steps, "hold_steps": hold_steps, "decay_steps": decay_steps}
    total_steps = _check_steps("total_steps", total_steps)
    if hold_steps is not None and decay_steps is not None:
        if warmup_steps + hold_steps + decay_steps > total_steps:
            raise ValueError(
                f"warmup_steps + hold_steps + decay_steps = {warmup_steps + hold_steps + decay_steps} exceeds "
                f"total_steps = {total_steps}"
            )
        return {"warmup_steps": warmup_steps, "hold_steps": hold_steps, "decay_steps": decay_steps}
    if warmup_steps > total_steps:
        shortened = max(1, round(total_steps * SHORT_RUN_WARMUP_FRACTION)) if total_steps else 0
        logger.info(
            "warmup_steps=%d exceeds total_steps=%d (a short run, e.g. one user's enrollment set): warming up over "
            "the first %d steps, then hold and decay",
            warmup_steps,
            total_steps,
            shortened,
        )
        warmup_steps = shortened
    remaining = total_steps - warmup_steps
    if hold_steps is None and decay_steps is None:
        hold_steps = int(remaining * TRI_STAGE_HOLD_FRACTION)
        decay_steps = remaining - hold_steps
    elif hold_steps is None:
        hold_steps = remaining - decay_steps
    else:
        decay_steps = remaining - hold_steps
    if hold_steps < 0 or decay_steps < 0:
        raise ValueError(
            f"total_steps={total_steps} leaves {remaining} steps after warmup, too few for "
            f"hold_steps={hold_steps} / decay_steps={decay_steps}"
        )
    return {"warmup_steps": warmup_steps, "hold_steps": hold_steps, "decay_steps": decay_steps}


def build_lr_scheduler(name: str, optimizer: Optimizer, **kwargs: Any) -> LRScheduler:
    """Build a scheduler by name from a flat set of keyword arguments (a trainer config can pass all of them).

    Args:
        name: one of ``LR_SCHEDULERS``: ``"tri_stage_lr_scheduler"``, ``"warmup_lr_scheduler"``, ``"constant"``.
        optimizer: the optimizer to schedule.
        **kwargs: any of ``init_lr, peak_lr, final_lr, warmup_steps, hold_steps, decay_steps, total_steps``;
            ``None`` means absent, and keys the chosen schedule does not use are ignored.

            - ``tri_stage_lr_scheduler`` needs ``init_lr, peak_lr, final_lr, warmup_steps`` and either both
              ``hold_steps`` and ``decay_steps`` or ``total_steps``. From ``total_steps``, the steps left after
              warmup are split ``TRI_STAGE_HOLD_FRACTION`` (40%, rounded down) hold and the rest decay; if one of
              hold/decay is given, the other gets the remainder. When ``warmup_steps > total_steps`` (a small
              adapter enrollment set), warmup is shortened to ``SHORT_RUN_WARMUP_FRACTION`` (10%) of
              ``total_steps`` (logged), so the run still holds its peak and decays. Given all
              three phases, their sum must not exceed ``total_steps``.
            - ``warmup_lr_scheduler`` needs ``init_lr, peak_lr, warmup_steps``.
            - ``constant`` uses ``peak_lr`` if given, else the optimizer's current learning rate.

    Returns:
        The scheduler; it has already set the optimizer's learning rate to its step-0 value.

    Raises:
        ValueError: unknown name (the valid ones are listed), missing or invalid values.
        TypeError: a keyword outside the list above.
    """
    unknown = sorted(set(kwargs) - set(_BUILD_KWARGS))
    if unknown:
        raise TypeError(f"build_lr_scheduler got unexpected arguments {unknown}; allowed: {list(_BUILD_KWARGS)}")
    if name == "tri_stage_lr_scheduler":
        _require(name, kwargs, ["init_lr", "peak_lr", "final_lr", "warmup_steps"])
        phases = _tri_stage_phases(
            kwargs["warmup_steps"], kwargs.get("hold_steps"), kwargs.get("decay_steps"), kwargs.get("total_steps")
        )
        return TriStageLRScheduler(
            optimizer, init_lr=kwargs["init_lr"], peak_lr=kwargs["peak_lr"], final_lr=kwargs["final_lr"], **phases
        )
    if name == "warmup_lr_scheduler":
        _require(name, kwargs, ["init_lr", "peak_lr", "warmup_steps"])
        return WarmupLRScheduler(
            optimizer, init_lr=kwargs["init_lr"], peak_lr=kwargs["peak_lr"], warmup_steps=kwargs["warmup_steps"]
        )
    if name == "constant":
        peak_lr = kwargs.get("peak_lr")
        lr = peak_lr if peak_lr is not None else float(optimizer.param_groups[0]["lr"])
        return ConstantLRScheduler(optimizer, lr=lr)
    raise ValueError(f"unknown lr scheduler {name!r}; valid names: {list(LR_SCHEDULERS)}")
