"""Speed perturbation: an utterance played faster or slower, as an extra training copy (Ko et al., Interspeech 2015).

Playing a recording at speed ``f`` scales its duration by ``1 / f`` and every frequency by ``f`` (tempo and pitch
together, like ``sox speed``): a cheap new voice for the same words. Kaldi and ESPnet recipes train on copies at
0.9 and 1.1. A copy is deterministic (no random draw), so its features can be computed once and cached like the
original's, which is what adapter training with the trunk cache needs.

A copy is a :class:`~kospeech.data.manifest.ManifestEntry` with ``speed != 1.0``: it names the original file, and the
dataset (:class:`~kospeech.data.dataset.SpeechDataset`) applies :func:`speed_perturb` to the waveform before the
features. Copies exist in memory only (``write_manifest`` refuses them).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, List, Sequence, Tuple

import numpy as np

from kospeech.data.audio import resample
from kospeech.data.manifest import ManifestEntry
from kospeech.errors import ConfigError

__all__ = ["MIN_SPEED", "MAX_SPEED", "check_speed_factors", "speed_perturb", "speed_perturbed_copies"]

MIN_SPEED = 0.5
"""The slowest playback speed a copy may have."""
MAX_SPEED = 2.0
"""The fastest playback speed a copy may have."""


def check_speed_factors(factors: Iterable[float], name: str = "speed_perturbation") -> Tuple[float, ...]:
    """Validate a list of playback speeds for extra copies.

    Args:
        factors: speeds, each in [:data:`MIN_SPEED`, :data:`MAX_SPEED`], none equal to 1 (the recording itself is
            always kept), no repeats.
        name: the setting's name for the error message.

    Returns:
        The speeds as floats, in the given order.

    Raises:
        ConfigError: a value that is not a finite number in range, equals 1, or repeats.
    """
    checked: List[float] = []
    for value in factors:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{name}: speeds must be numbers, got {value!r}")
        if not MIN_SPEED <= value <= MAX_SPEED or value == 1.0:
            raise ConfigError(
                f"{name}: each speed must lie in [{MIN_SPEED}, {MAX_SPEED}] and differ from 1.0 (the recording is "
                f"always kept), got {value!r}"
            )
        if float(value) in checked:
            raise ConfigError(f"{name}: speed {value!r} is given twice")
        checked.append(float(value))
    return tuple(checked)


def speed_perturb(waveform: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """The waveform played at ``factor`` times its speed (duration / factor, frequencies x factor).

    Args:
        waveform: (N,) float32 samples at ``sample_rate``.
        factor: playback speed, in [:data:`MIN_SPEED`, :data:`MAX_SPEED`]; 1.0 returns the input.
        sample_rate: the waveform's rate, which the result keeps.

    Returns:
        (N',) float32 samples at ``sample_rate``, ``N' ~= N / factor``.
    """
    if factor == 1.0:
        return waveform
    # read the samples as if recorded at sample_rate * factor, then bring them back to sample_rate
    return resample(waveform, sample_rate, round(sample_rate / factor))


def speed_perturbed_copies(entries: Sequence[ManifestEntry], factors: Sequence[float]) -> List[ManifestEntry]:
    """One copy of every entry per speed (all entries at the first speed, then all at the next, ...).

    Args:
        entries: the utterances (as recorded: ``speed == 1.0``).
        factors: speeds, see :func:`check_speed_factors`.

    Returns:
        ``len(entries) * len(factors)`` entries; the originals are not included.

    Raises:
        ConfigError: invalid speeds. ValueError: an entry that is already a copy.
    """
    copies = []
    for factor in check_speed_factors(factors):
        for entry in entries:
            if entry.speed != 1.0:
                raise ValueError(f"{entry.audio_path}: already a copy at speed {entry.speed}")
            copies.append(dataclasses.replace(entry, speed=factor))
    return copies
