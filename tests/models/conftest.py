"""Tiny DeepSpeech2 models and padded batches for the model tests."""

from typing import Callable, Tuple

import pytest
import torch

from kospeech.models import DeepSpeech2

INPUT_DIM = 16
NUM_CLASSES = 12


def _warm_up(model: DeepSpeech2) -> None:
    """Give BatchNorm non-trivial running statistics (a fresh model has mean 0 / var 1)."""
    generator = torch.Generator().manual_seed(123)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            inputs = torch.randn(4, 30, INPUT_DIM, generator=generator) * 2.0 + 0.5
            model(inputs, torch.tensor([30, 25, 18, 11]))
    model.eval()


@pytest.fixture
def make_model() -> Callable[..., DeepSpeech2]:
    """Factory of tiny models (2 layers, hidden 16) with warmed-up BatchNorm statistics, in eval mode."""

    def factory(seed: int = 0, **kwargs) -> DeepSpeech2:
        settings = dict(input_dim=INPUT_DIM, num_classes=NUM_CLASSES, num_rnn_layers=2, rnn_hidden_dim=16)
        settings.update(kwargs)
        if settings.get("use_adapter"):
            settings.setdefault("adapter_hidden_dims", [8])
            settings.setdefault("adapter_bottleneck_dim", 4)
        torch.manual_seed(seed)
        model = DeepSpeech2(**settings)
        _warm_up(model)
        return model

    return factory


def perturb_adapter(model: DeepSpeech2, scale: float = 0.3) -> None:
    """Move every adapter weight away from its initialization so adapter outputs differ from the base."""
    with torch.no_grad():
        for parameter in model.adapter.parameters():
            parameter.add_(torch.randn_like(parameter) * scale)


@pytest.fixture
def perturb() -> Callable[..., None]:
    """The :func:`perturb_adapter` helper."""
    return perturb_adapter


@pytest.fixture
def padded_batch() -> Tuple[torch.Tensor, torch.Tensor]:
    """(inputs (3, 23, 16), lengths [23, 9, 16]) with large random garbage in the padded frames."""
    generator = torch.Generator().manual_seed(7)
    lengths = torch.tensor([23, 9, 16])
    inputs = torch.randn(3, 23, INPUT_DIM, generator=generator)
    for row, length in enumerate(lengths.tolist()):
        inputs[row, length:] = torch.randn(23 - length, INPUT_DIM, generator=generator) * 50.0
    return inputs, lengths
