"""Voice activity: where in a recording someone speaks, from frame energies measured against the recording itself.

Real recordings start and end with silence and have pauses; a model trained on trimmed utterances decodes long
stretches of silence (digital zeros or a low noise floor) as garbage, and they dominate per-utterance feature
normalization. :func:`speech_regions` finds the spoken stretches so the recognizer decodes only those.

The detector is an energy gate with thresholds set per recording, in three steps:

1. Levels: the energy of every 10 ms frame in dB relative to full scale (a full-scale sine is -3 dBFS).
2. Threshold: the recording's noise floor is a low percentile of its levels and its speech level a high one (of
   the levels within ``speech_window_seconds`` of a stretch that stands ``min_dynamic_range_db`` out of the floor,
   so that one sentence in minutes of silence still sets it); a frame is speech when it is louder than ``max(silence_dbfs, floor + threshold_ratio * (speech - floor),
   nearby - speech_range_db)``, ``nearby`` being the ``speech_percentile`` of the levels within
   ``speech_window_seconds`` of the frame (the last term: a pause in a quiet room, well below the voice around it, is silence even when the recording's
   quietest stretches are quieter still; measured against the voice nearby, not the loudest voice of the whole
   recording, a quiet talker next to a loud one keeps their words). A
   recording whose speech level is below ``silence_dbfs`` holds no speech; one whose levels span less than
   ``min_dynamic_range_db`` has no detectable pauses and is one region.
3. Regions: runs of speech frames closer than ``min_silence_seconds`` are merged, runs shorter than
   ``min_speech_seconds`` (clicks) dropped, and each region is widened by ``padding_seconds`` on both sides (never
   past the middle of the gap to its neighbour), so word onsets and releases are kept.

``webrtcvad`` (the well-kept GMM detector) was measured and does not fit: at every aggressiveness (0 to 3) it labels
white noise at -60 dBFS, a quiet room, as speech, so it cannot trim the silences this module exists for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, List, Optional, Tuple

import numpy as np
from scipy.ndimage import percentile_filter

from kospeech.errors import ConfigError

__all__ = ["VoiceActivityConfig", "frame_levels", "quietest_point", "regions_from_levels", "speech_regions"]

LEVEL_FRAME_SECONDS = 0.01
"""Length of the frames whose energies the detector compares."""

_ENERGY_FLOOR = 1e-12  # -120 dBFS: the level of digital silence
_LEVEL_SLICE_SAMPLES = 1 << 18  # samples measured at a time (about 16 s at 16 kHz)


@dataclass
class VoiceActivityConfig:
    """Settings of the energy-based voice activity detector (see :mod:`kospeech.data.voice_activity`)."""

    silence_dbfs: float = field(
        default=-50.0, metadata={"help": "frames quieter than this (dB full scale) are never speech"}
    )
    threshold_ratio: float = field(
        default=0.3, metadata={"help": "speech threshold, as a fraction of the way from noise floor to speech level"}
    )
    speech_range_db: float = field(
        default=25.0,
        metadata={"help": "frames more than this many dB below the speech level around them are never speech"},
    )
    speech_window_seconds: float = field(
        default=3.0, metadata={"help": "how far on each side of a frame its local speech level is measured"}
    )
    min_dynamic_range_db: float = field(
        default=10.0,
        metadata={
            "help": "speech level minus noise floor below which the whole input is speech; also how far above the "
            "floor a stretch must be for its surroundings to set the speech level"
        },
    )
    floor_percentile: float = field(default=5.0, metadata={"help": "percentile of frame levels taken as noise floor"})
    speech_percentile: float = field(default=98.0, metadata={"help": "percentile of frame levels taken as speech"})
    min_silence_seconds: float = field(default=0.3, metadata={"help": "shorter pauses do not split a region"})
    min_speech_seconds: float = field(default=0.1, metadata={"help": "shorter bursts (clicks) are dropped"})
    padding_seconds: float = field(default=0.15, metadata={"help": "audio kept before and after each region"})

    def validate(self) -> VoiceActivityConfig:
        """Check every field.

        Returns:
            ``self``, for chaining.

        Raises:
            ConfigError: a field outside its range, naming the field.
        """
        if not 0.0 < self.threshold_ratio < 1.0:
            raise ConfigError(f"threshold_ratio must be in (0, 1), got {self.threshold_ratio}")
        if not 0.0 <= self.floor_percentile < self.speech_percentile <= 100.0:
            raise ConfigError(
                "need 0 <= floor_percentile < speech_percentile <= 100, got "
                f"{self.floor_percentile} and {self.speech_percentile}"
            )
        for name in (
            "min_dynamic_range_db",
            "speech_range_db",
            "speech_window_seconds",
            "min_silence_seconds",
            "min_speech_seconds",
            "padding_seconds",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        return self


def frame_levels(blocks: Iterable[np.ndarray], sample_rate: int) -> np.ndarray:
    """The level of every 10 ms frame of a stream, in dBFS: the power of the frame about its own mean (a DC offset
    is not counted).

    Args:
        blocks: consecutive (n,) float mono pieces of one stream in [-1, 1]; how it is split does not matter.
        sample_rate: Hz of the blocks.

    Returns:
        (F,) float32 levels, one per whole frame (a last partial frame counts as a frame).
    """
    frame = _level_frame(sample_rate)
    levels: List[np.ndarray] = []
    carry = np.zeros(0, dtype=np.float64)
    for block in blocks:
        block = np.asarray(block)
        # a slice at a time: the float64 copy and the variance's temporaries of a waveform held whole in memory (ten
        # minutes of it) would be four times its own size
        for start in range(0, max(block.size, 1), _LEVEL_SLICE_SAMPLES):
            samples = np.concatenate([carry, block[start : start + _LEVEL_SLICE_SAMPLES].astype(np.float64)])
            whole = samples.size // frame * frame
            if whole:
                # each frame's own mean is left out: a constant offset (a cheap microphone's DC) is not sound, and
                # counted as energy it lifts a silent recording above the speech threshold
                energy = samples[:whole].reshape(-1, frame).var(axis=1)
                levels.append(10.0 * np.log10(energy + _ENERGY_FLOOR))
            carry = samples[whole:]
    if carry.size:
        levels.append(np.array([10.0 * np.log10(carry.var() + _ENERGY_FLOOR)]))
    return np.concatenate(levels).astype(np.float32) if levels else np.zeros(0, dtype=np.float32)


def regions_from_levels(levels: np.ndarray, config: VoiceActivityConfig) -> List[Tuple[int, int]]:
    """Speech regions of a recording, in frames, from its :func:`frame_levels`.

    Args:
        levels: (F,) frame levels in dBFS.
        config: detector settings.

    Returns:
        Sorted, disjoint ``(first_frame, end_frame)`` pairs (end exclusive), padding included; empty when the
        recording holds no speech.
    """
    count = int(levels.size)
    if count == 0:
        return []
    floor = float(np.percentile(levels, config.floor_percentile))
    window = 2 * int(round(config.speech_window_seconds / LEVEL_FRAME_SECONDS)) + 1
    nearby = percentile_filter(levels, config.speech_percentile, size=window, mode="nearest")  # (F,) local speech level
    # the speech level is measured where something stands out of the floor: over the whole recording, a sentence in
    # minutes of silence is fewer frames than the percentile leaves out, and the speech level would be the floor's
    active = nearby - floor >= config.min_dynamic_range_db
    speech = float(np.percentile(levels[active] if active.any() else levels, config.speech_percentile))
    if speech < config.silence_dbfs:
        return []
    if speech - floor < config.min_dynamic_range_db:
        return [(0, count)]
    threshold = np.maximum(
        max(config.silence_dbfs, floor + config.threshold_ratio * (speech - floor)), nearby - config.speech_range_db
    )
    voiced = np.concatenate([[False], levels > threshold, [False]])
    edges = np.flatnonzero(voiced[1:] != voiced[:-1])
    runs = [[int(start), int(end)] for start, end in zip(edges[::2], edges[1::2])]
    min_gap = int(round(config.min_silence_seconds / LEVEL_FRAME_SECONDS))
    merged: List[List[int]] = []
    for run in runs:
        if merged and run[0] - merged[-1][1] < min_gap:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    min_length = int(round(config.min_speech_seconds / LEVEL_FRAME_SECONDS))
    kept = [run for run in merged if run[1] - run[0] >= min_length]
    pad = int(round(config.padding_seconds / LEVEL_FRAME_SECONDS))
    regions: List[Tuple[int, int]] = []
    for index, (start, end) in enumerate(kept):
        low = kept[index - 1][1] if index else 0
        high = kept[index + 1][0] if index + 1 < len(kept) else count
        first = max(start - pad, (low + start + 1) // 2 if index else 0)
        last = min(end + pad, (end + high) // 2 if index + 1 < len(kept) else count)
        regions.append((first, last))
    return regions


def speech_regions(
    blocks: Iterable[np.ndarray], sample_rate: int, config: VoiceActivityConfig
) -> List[Tuple[int, int]]:
    """Speech regions of a stream, in samples (one pass over its blocks to measure the levels).

    Args:
        blocks: consecutive (n,) float mono pieces of one stream in [-1, 1] (``[waveform]`` for one in memory).
        sample_rate: Hz of the blocks.
        config: detector settings.

    Returns:
        Sorted, disjoint ``(start, stop)`` sample ranges (stop exclusive, at most the stream's length); empty when no
        one speaks.
    """
    total = 0

    def counted() -> Iterator[np.ndarray]:
        nonlocal total
        for block in blocks:
            total += len(block)
            yield block

    levels = frame_levels(counted(), sample_rate)
    frame = _level_frame(sample_rate)
    return [(first * frame, min(total, last * frame)) for first, last in regions_from_levels(levels, config)]


def quietest_point(waveform: np.ndarray, start: int, stop: int, frame: int) -> Optional[int]:
    """The centre of the lowest-energy ``frame``-sample frame in ``waveform[start:stop]``.

    Returns:
        A sample index, or ``None`` when the range holds no whole frame.
    """
    count = (stop - start) // frame
    if count < 1:
        return None
    frames = waveform[start : start + count * frame].astype(np.float64).reshape(count, frame)
    return start + int(np.argmin(np.square(frames).sum(axis=1))) * frame + frame // 2


def _level_frame(sample_rate: int) -> int:
    """Samples per level frame (10 ms) at ``sample_rate``."""
    return max(1, int(round(LEVEL_FRAME_SECONDS * sample_rate)))
