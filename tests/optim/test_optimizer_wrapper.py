"""Optimizer wrapper: clipping, skipping non-finite steps, scheduler periods, exact resume from a file."""

import copy
import math
import warnings

import pytest
import torch
from torch import nn

from kospeech.fileio import atomic_torch_save, safe_torch_load
from kospeech.optim import Optimizer, build_lr_scheduler, build_optimizer


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def make_wrapper(model: nn.Module, **kwargs) -> Optimizer:
    optimizer = build_optimizer("adam", model.parameters(), lr=1e-3)
    scheduler = build_lr_scheduler(
        "tri_stage_lr_scheduler", optimizer, init_lr=1e-4, peak_lr=1e-2, final_lr=1e-3, warmup_steps=3, total_steps=12
    )
    return Optimizer(optimizer, scheduler, **kwargs)


def train_steps(model: nn.Module, wrapper: Optimizer, steps: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    lrs = []
    for _ in range(steps):
        inputs = torch.randn(5, 4, generator=generator)
        targets = torch.randint(0, 3, (5,), generator=generator)
        wrapper.zero_grad()
        nn.functional.cross_entropy(model(inputs), targets).backward()
        wrapper.step(model)
        lrs.append(wrapper.get_lr())
    return lrs


def test_resume_from_file_continues_identically(tmp_path):
    model = tiny_model()
    reference_model = copy.deepcopy(model)
    reference = make_wrapper(reference_model)
    expected_lrs = train_steps(reference_model, reference, 5, seed=1)
    expected_lrs += train_steps(reference_model, reference, 9, seed=2)

    wrapper = make_wrapper(model)
    first_lrs = train_steps(model, wrapper, 5, seed=1)
    path = atomic_torch_save({"model": model.state_dict(), "optimizer": wrapper.state_dict()}, tmp_path / "ckpt.pt")
    state = safe_torch_load(path, what="checkpoint")

    resumed_model = tiny_model()
    resumed_model.load_state_dict(state["model"])
    resumed = make_wrapper(resumed_model)
    resumed.load_state_dict(state["optimizer"])
    assert resumed.num_steps == 5
    assert resumed.get_lr() == first_lrs[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed_lrs = train_steps(resumed_model, resumed, 9, seed=2)
    assert first_lrs + resumed_lrs == expected_lrs
    assert resumed_lrs[-1] == pytest.approx(1e-3)  # the schedule reached final_lr
    for got, want in zip(resumed_model.parameters(), reference_model.parameters()):
        assert torch.equal(got, want)


def test_load_state_dict_checks_scheduler_presence():
    model = tiny_model()
    with_scheduler = make_wrapper(model)
    without = Optimizer(build_optimizer("sgd", model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="has scheduler state but this wrapper has no scheduler"):
        without.load_state_dict(with_scheduler.state_dict())
    with pytest.raises(ValueError, match="missing keys"):
        with_scheduler.load_state_dict({"optimizer": {}})


def test_gradient_norm_is_clipped():
    model = nn.Linear(3, 2)
    before = [p.detach().clone() for p in model.parameters()]
    wrapper = Optimizer(build_optimizer("sgd", model.parameters(), lr=1.0), max_grad_norm=0.5)
    model(torch.full((4, 3), 100.0)).pow(2).sum().backward()
    expected = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()])).item()
    norm = wrapper.step(model)
    assert norm == pytest.approx(expected, rel=1e-5)
    assert norm > 0.5
    clipped = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.linalg.vector_norm(clipped).item() == pytest.approx(0.5, rel=1e-4)
    update = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, model.parameters())])
    assert torch.linalg.vector_norm(update).item() == pytest.approx(0.5, rel=1e-4)


def test_small_gradients_untouched_and_zero_disables_clipping():
    model = nn.Linear(3, 2)
    wrapper = Optimizer(build_optimizer("sgd", model.parameters(), lr=0.0), max_grad_norm=0)
    model(torch.full((4, 3), 100.0)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    assert wrapper.step(model) > 1.0
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))


def test_frozen_parameters_are_not_counted():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].weight.requires_grad_(False)
    model[0].weight.grad = torch.full((2, 2), 1e6)
    wrapper = Optimizer(build_optimizer("sgd", [p for p in model.parameters() if p.requires_grad], lr=0.1))
    for param in model.parameters():
        if param.requires_grad:
            param.grad = torch.ones_like(param)
    assert wrapper.step(model) == pytest.approx(math.sqrt(2 + 4 + 2))


def test_parameters_the_optimizer_holds_outside_the_model_are_measured_and_clipped():
    """Review, stop 37: an adapter trained beside the model (not attached) stepped NaN gradients unclipped."""
    model, adapter = nn.Linear(2, 2), nn.Linear(2, 2)
    wrapper = Optimizer(build_optimizer("sgd", [*model.parameters(), *adapter.parameters()], lr=0.1))
    for param in (*model.parameters(), *adapter.parameters()):
        param.grad = torch.ones_like(param)
    adapter.weight.grad[0, 0] = float("nan")
    before = adapter.weight.detach().clone()
    assert math.isnan(wrapper.step(model)) and wrapper.skipped_steps == 1
    assert torch.equal(adapter.weight, before)
    adapter.weight.grad[0, 0] = 1.0
    assert wrapper.step(model) == pytest.approx(math.sqrt(2 * (4 + 2)))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradient_step_is_skipped(bad):
    model = tiny_model()
    wrapper = make_wrapper(model)
    train_steps(model, wrapper, 2, seed=0)
    params_before = [p.detach().clone() for p in model.parameters()]
    adam_state_before = copy.deepcopy(wrapper.optimizer.state_dict())
    lr_before, epoch_before = wrapper.get_lr(), wrapper.scheduler.last_epoch

    wrapper.zero_grad()
    model(torch.randn(2, 4)).sum().backward()
    model[0].weight.grad[0, 0] = bad
    norm = wrapper.step(model)

    assert not math.isfinite(norm)
    assert (wrapper.skipped_steps, wrapper.num_steps) == (1, 2)
    assert all(torch.equal(b, p) for b, p in zip(params_before, model.parameters()))
    assert wrapper.get_lr() == lr_before and wrapper.scheduler.last_epoch == epoch_before
    assert str(wrapper.optimizer.state_dict()) == str(adam_state_before)
    assert wrapper.state_dict()["skipped_steps"] == 1
    # training goes on normally afterwards
    train_steps(model, wrapper, 1, seed=3)
    assert wrapper.num_steps == 3 and wrapper.scheduler.last_epoch == epoch_before + 1


def test_epoch_period_and_set_lr():
    model = tiny_model()
    optimizer = build_optimizer("sgd", model.parameters(), lr=0.1)
    scheduler = build_lr_scheduler("warmup_lr_scheduler", optimizer, init_lr=0.0, peak_lr=1.0, warmup_steps=2)
    wrapper = Optimizer(optimizer, scheduler, scheduler_period="epoch")
    train_steps(model, wrapper, 3, seed=0)
    assert wrapper.get_lr() == 0.0
    wrapper.end_epoch()
    assert wrapper.get_lr() == pytest.approx(0.5)

    plain = Optimizer(build_optimizer("adamw", model.parameters(), lr=0.1, weight_decay=0.01))
    plain.set_lr(0.03)
    assert plain.get_lr() == 0.03
    plain.end_epoch()
    assert plain.get_lr() == 0.03
    with pytest.raises(ValueError, match="lr must be"):
        plain.set_lr(float("nan"))


def test_constructor_and_builder_errors():
    model = tiny_model()
    optimizer = build_optimizer("sgd", model.parameters(), lr=0.1)
    other = build_optimizer("sgd", model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="scheduler_period"):
        Optimizer(optimizer, scheduler_period="batch")
    with pytest.raises(ValueError, match="max_grad_norm"):
        Optimizer(optimizer, max_grad_norm=-1.0)
    with pytest.raises(ValueError, match="different optimizer"):
        Optimizer(optimizer, build_lr_scheduler("constant", other))
    with pytest.raises(ValueError, match=r"valid names: \['adam', 'adamw', 'sgd'\]"):
        build_optimizer("lamb", model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="no parameters"):
        build_optimizer("adam", [], lr=0.1)
