"""LR schedule values at key steps, derivation from total_steps, name/argument errors."""

import math
import warnings

import pytest
import torch

from kospeech.optim import (
    ConstantLRScheduler,
    TriStageLRScheduler,
    WarmupLRScheduler,
    build_lr_scheduler,
    build_optimizer,
)


def make_optimizer(lr: float = 0.1) -> torch.optim.Optimizer:
    return build_optimizer("sgd", [torch.nn.Parameter(torch.zeros(2))], lr=lr)


def lr_sequence(scheduler, steps: int):
    """LR after 0, 1, ..., steps scheduler steps (optimizer stepped first, as in training)."""
    values = [scheduler.optimizer.param_groups[0]["lr"]]
    for _ in range(steps):
        scheduler.optimizer.step()
        scheduler.step()
        values.append(scheduler.optimizer.param_groups[0]["lr"])
    return values


def test_tri_stage_key_steps():
    init, peak, final = 1e-5, 1e-3, 1e-6
    scheduler = TriStageLRScheduler(
        make_optimizer(), init_lr=init, peak_lr=peak, final_lr=final, warmup_steps=10, hold_steps=5, decay_steps=20
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lrs = lr_sequence(scheduler, 40)
    assert lrs[0] == pytest.approx(init)  # warmup start
    assert lrs[5] == pytest.approx((init + peak) / 2)  # linear warmup
    assert lrs[10] == pytest.approx(peak)  # warmup end
    assert lrs[14] == pytest.approx(peak)  # hold
    assert lrs[15] == pytest.approx(peak)  # decay start
    assert lrs[25] == pytest.approx(math.sqrt(peak * final))  # exponential: geometric mean halfway
    assert lrs[35] == pytest.approx(final)  # decay end
    assert lrs[40] == pytest.approx(final)  # stays final
    assert all(a <= b for a, b in zip(lrs[:11], lrs[1:11]))
    assert all(a > b for a, b in zip(lrs[15:35], lrs[16:36]))
    assert scheduler.get_last_lr() == [pytest.approx(final)]


def test_tri_stage_applies_to_every_param_group():
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": params[:1], "lr": 5.0}, {"params": params[1:]}], lr=1.0)
    TriStageLRScheduler(optimizer, 0.1, 1.0, 0.01, warmup_steps=2, hold_steps=0, decay_steps=2)
    assert [group["lr"] for group in optimizer.param_groups] == [pytest.approx(0.1)] * 2


def test_warmup_and_constant():
    lrs = lr_sequence(WarmupLRScheduler(make_optimizer(), init_lr=0.0, peak_lr=1e-3, warmup_steps=4), 8)
    assert lrs == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3])
    assert lr_sequence(ConstantLRScheduler(make_optimizer(), lr=3e-4), 3) == pytest.approx([3e-4] * 4)
    assert lr_sequence(build_lr_scheduler("constant", make_optimizer(lr=0.02)), 2) == pytest.approx([0.02] * 3)
    assert lr_sequence(build_lr_scheduler("constant", make_optimizer(), peak_lr=1e-4, init_lr=1.0), 1) == (
        pytest.approx([1e-4] * 2)
    )


TRI = "tri_stage_lr_scheduler"


def test_build_tri_stage_from_total_steps():
    common = dict(init_lr=1e-5, peak_lr=1e-3, final_lr=1e-5, warmup_steps=10)
    scheduler = build_lr_scheduler(TRI, make_optimizer(), total_steps=110, **common)
    assert (scheduler.warmup_steps, scheduler.hold_steps, scheduler.decay_steps) == (10, 40, 60)
    lrs = lr_sequence(scheduler, 110)
    assert lrs[10] == pytest.approx(1e-3) and lrs[110] == pytest.approx(1e-5)

    scheduler = build_lr_scheduler(TRI, make_optimizer(), total_steps=100, hold_steps=0, **common)
    assert (scheduler.hold_steps, scheduler.decay_steps) == (0, 90)
    scheduler = build_lr_scheduler(TRI, make_optimizer(), decay_steps=30, total_steps=100, **common)
    assert (scheduler.hold_steps, scheduler.decay_steps) == (60, 30)
    # explicit phases win; total_steps and unused keys are accepted
    scheduler = build_lr_scheduler(TRI, make_optimizer(), hold_steps=3, decay_steps=4, total_steps=None, **common)
    assert (scheduler.warmup_steps, scheduler.hold_steps, scheduler.decay_steps) == (10, 3, 4)


def test_build_tri_stage_warmup_longer_than_run(caplog):
    with caplog.at_level("INFO", logger="kospeech.optim.lr_scheduler"):
        scheduler = build_lr_scheduler(
            TRI, make_optimizer(), init_lr=1e-5, peak_lr=1e-3, final_lr=1e-5, warmup_steps=500, total_steps=40
        )
    assert (scheduler.warmup_steps, scheduler.hold_steps, scheduler.decay_steps) == (4, 14, 22)
    assert "exceeds total_steps=40" in caplog.text and "first 4 steps" in caplog.text


def test_build_errors():
    lrs = dict(init_lr=0.0, peak_lr=1e-3, final_lr=1e-5, warmup_steps=5)
    valid = r"valid names: \['tri_stage_lr_scheduler', 'warmup_lr_scheduler', 'constant'\]"
    with pytest.raises(ValueError, match=valid):
        build_lr_scheduler("cosine", make_optimizer())
    with pytest.raises(TypeError, match="warmup_ratio"):
        build_lr_scheduler("constant", make_optimizer(), warmup_ratio=0.1)
    with pytest.raises(ValueError, match=r"needs \['final_lr'\]"):
        build_lr_scheduler(TRI, make_optimizer(), init_lr=0.0, peak_lr=1e-3, warmup_steps=1)
    with pytest.raises(ValueError, match="or total_steps"):
        build_lr_scheduler(TRI, make_optimizer(), init_lr=0.0, peak_lr=1e-3, final_lr=1e-5, warmup_steps=1)
    with pytest.raises(ValueError, match="exceeds total_steps"):
        build_lr_scheduler(TRI, make_optimizer(), hold_steps=5, decay_steps=5, total_steps=10, **lrs)
    with pytest.raises(ValueError, match="too few"):
        build_lr_scheduler(TRI, make_optimizer(), decay_steps=8, total_steps=10, **lrs)
    with pytest.raises(ValueError, match="final_lr must be > 0"):
        TriStageLRScheduler(make_optimizer(), 0.0, 1e-3, 0.0, warmup_steps=1, hold_steps=1, decay_steps=1)
    with pytest.raises(ValueError, match="warmup_steps must be an integer"):
        WarmupLRScheduler(make_optimizer(), 0.0, 1e-3, warmup_steps=1.5)
