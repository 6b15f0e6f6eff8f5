"""Training augmentation on the waveform: leading and trailing silence, and a pause, as real recordings have them.

A recording made in a browser or on a phone starts and ends with silence (digital zeros, or a room's noise floor)
and has pauses; the synthetic corpus' utterances have none. :class:`SilencePadding` adds them to training
utterances before feature extraction, so a base learns that silence is blank. The label ids are unchanged:
silence carries no tokens.

Every random choice is drawn from the generator the dataset gives per ``(seed, epoch, utterance)``, so the
augmented waveform is reproducible.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from scipy.signal import lfilter

from kospeech.data.voice_activity import quietest_point

__all__ = ["SilencePadding", "low_noise"]

_PAUSE_SEARCH_FRAME_SECONDS = 0.01


class SilencePadding:
    """Pad an utterance with silence of random length and kind, and insert a pause at a quiet point.

    The silence is digital zeros (with probability ``zeros_probability``) or low-pass filtered Gaussian noise at a
    random level; padding and pause of one utterance share the same kind.

    Args:
        sample_rate: Hz of the waveforms.
        probability: chance that an utterance is padded at all.
        max_seconds: longest padding on each side (each side drawn uniformly in ``[0, max_seconds]``).
        pause_probability: chance that a padded utterance also gets a pause inside.
        max_pause_seconds: longest pause (drawn uniformly in ``[0.2, max_pause_seconds]``).
        noise_dbfs: range of the noise level (RMS, dB full scale), drawn uniformly.
        zeros_probability: chance that the silence is digital zeros instead of noise.
    """

    def __init__(
        self,
        sample_rate: int,
        probability: float = 0.5,
        max_seconds: float = 1.5,
        pause_probability: float = 0.3,
        max_pause_seconds: float = 1.0,
        noise_dbfs: Tuple[float, float] = (-80.0, -45.0),
        zeros_probability: float = 0.3,
    ) -> None:
        for name, value in (
            ("probability", probability),
            ("pause_probability", pause_probability),
            ("zeros_probability", zeros_probability),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if max_seconds < 0 or max_pause_seconds < 0.2:
            raise ValueError(
                f"need max_seconds >= 0 and max_pause_seconds >= 0.2, got {max_seconds}, {max_pause_seconds}"
            )
        if noise_dbfs[0] > noise_dbfs[1]:
            raise ValueError(f"noise_dbfs must be (low, high) with low <= high, got {noise_dbfs}")
        self.sample_rate = int(sample_rate)
        self.probability = probability
        self.max_seconds = max_seconds
        self.pause_probability = pause_probability
        self.max_pause_seconds = max_pause_seconds
        self.noise_dbfs = noise_dbfs
        self.zeros_probability = zeros_probability

    def __call__(self, waveform: np.ndarray, generator: Optional[torch.Generator] = None) -> np.ndarray:
        """Augment one utterance.

        Args:
            waveform: (N,) float32 mono samples at ``sample_rate``.
            generator: the utterance's random source.

        Returns:
            (N',) float32 samples, N' >= N: the waveform itself when the draw says no padding.
        """
        draws = torch.rand(8, generator=generator, dtype=torch.float64).tolist()
        if draws[0] >= self.probability:
            return waveform
        noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        silence = _SilenceSource(
            zeros=draws[1] < self.zeros_probability,
            level_dbfs=self.noise_dbfs[0] + draws[2] * (self.noise_dbfs[1] - self.noise_dbfs[0]),
            smoothing=0.95 * draws[3],
            rng=np.random.default_rng(noise_seed),
        )
        head = int(draws[4] * self.max_seconds * self.sample_rate)
        tail = int(draws[5] * self.max_seconds * self.sample_rate)
        parts = [silence.take(head)]
        if draws[6] < self.pause_probability:
            cut = _quiet_point(waveform, self.sample_rate)
            pause = int((0.2 + draws[7] * (self.max_pause_seconds - 0.2)) * self.sample_rate)
            parts += [waveform[:cut], silence.take(pause), waveform[cut:]]
        else:
            parts.append(waveform)
        parts.append(silence.take(tail))
        return np.concatenate(parts).astype(np.float32, copy=False)


def low_noise(count: int, level_dbfs: float, smoothing: float, rng: np.random.Generator) -> np.ndarray:
    """A room's noise floor: Gaussian noise through a one-pole low-pass filter, scaled to an RMS level.

    Args:
        count: samples.
        level_dbfs: RMS level in dB full scale.
        smoothing: the filter's pole in [0, 1): 0 is white noise, values near 1 darker (more low-frequency) noise.
        rng: the random source.

    Returns:
        (count,) float32 samples.
    """
    if count == 0:
        return np.zeros(0, dtype=np.float32)
    noise = lfilter([1.0 - smoothing], [1.0, -smoothing], rng.standard_normal(count))
    noise *= 10.0 ** (level_dbfs / 20.0) / max(float(np.sqrt(np.mean(np.square(noise)))), 1e-12)
    return noise.astype(np.float32)


class _SilenceSource:
    """Silence of one kind: zeros, or :func:`low_noise` of one level and colour."""

    def __init__(self, zeros: bool, level_dbfs: float, smoothing: float, rng: np.random.Generator) -> None:
        self.zeros = zeros
        self.level_dbfs = level_dbfs
        self.smoothing = smoothing
        self.rng = rng

    def take(self, count: int) -> np.ndarray:
        if self.zeros:
            return np.zeros(count, dtype=np.float32)
        return low_noise(count, self.level_dbfs, self.smoothing, self.rng)


def _quiet_point(waveform: np.ndarray, sample_rate: int) -> int:
    """The centre of the quietest 10 ms frame in the middle 60 % of the waveform (most likely between words)."""
    frame = max(1, int(_PAUSE_SEARCH_FRAME_SECONDS * sample_rate))
    point = quietest_point(waveform, int(0.2 * waveform.size), int(0.8 * waveform.size), frame)
    return waveform.size // 2 if point is None else point
