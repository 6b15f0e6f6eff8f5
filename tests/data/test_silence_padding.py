"""Silence padding: reproducible, longer only by silence, the utterance itself intact."""

import numpy as np
import pytest
import torch

from kospeech.data.silence_padding import SilencePadding

RATE = 16000


def utterance() -> np.ndarray:
    t = np.arange(RATE * 2) / RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 3 * t) > -0.5)).astype(np.float32)


def draw(padding: SilencePadding, seed: int) -> np.ndarray:
    return padding(utterance(), torch.Generator().manual_seed(seed))


def test_same_generator_same_waveform_and_seeds_differ():
    padding = SilencePadding(RATE, probability=1.0, pause_probability=1.0)
    np.testing.assert_array_equal(draw(padding, 3), draw(padding, 3))
    lengths = {draw(padding, seed).size for seed in range(10)}
    assert len(lengths) > 5


def test_probability_zero_keeps_the_waveform():
    padding = SilencePadding(RATE, probability=0.0)
    original = utterance()
    assert padding(original, torch.Generator().manual_seed(0)) is original


def test_padding_is_quiet_and_the_utterance_is_inside():
    padding = SilencePadding(RATE, probability=1.0, pause_probability=0.0, noise_dbfs=(-60.0, -50.0))
    original = utterance()
    for seed in range(20):
        padded = draw(padding, seed)
        assert padded.dtype == np.float32
        assert original.size <= padded.size <= original.size + 2 * int(1.5 * RATE)
        head = next(
            i for i in range(padded.size - original.size + 1) if np.array_equal(padded[i : i + 100], original[:100])
        )
        np.testing.assert_array_equal(padded[head : head + original.size], original)
        rest = np.concatenate([padded[:head], padded[head + original.size :]])
        if rest.size:
            assert np.sqrt(np.mean(rest.astype(np.float64) ** 2)) < 10 ** (-49 / 20)


def test_a_pause_is_inserted_inside():
    padding = SilencePadding(RATE, probability=1.0, max_seconds=0.0, pause_probability=1.0, zeros_probability=1.0)
    padded = draw(padding, 1)
    original = utterance()
    assert padded.size > original.size + int(0.2 * RATE) - 1
    nonzero = np.flatnonzero(original)
    assert np.count_nonzero(padded) == nonzero.size


@pytest.mark.parametrize("kwargs", [{"probability": 1.5}, {"max_pause_seconds": 0.1}, {"noise_dbfs": (-40.0, -60.0)}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        SilencePadding(RATE, **kwargs)
