"""Optimizer wrapper with gradient clipping and LR schedulers (tri-stage, warmup, constant)."""

from kospeech.optim.lr_scheduler import (
    LR_SCHEDULERS,
    TRI_STAGE_HOLD_FRACTION,
    ConstantLRScheduler,
    TriStageLRScheduler,
    WarmupLRScheduler,
    build_lr_scheduler,
)
from kospeech.optim.optimizer import OPTIMIZERS, Optimizer, build_optimizer

__all__ = [
    "LR_SCHEDULERS",
    "OPTIMIZERS",
    "TRI_STAGE_HOLD_FRACTION",
    "ConstantLRScheduler",
    "Optimizer",
    "TriStageLRScheduler",
    "WarmupLRScheduler",
    "build_lr_scheduler",
    "build_optimizer",
]
