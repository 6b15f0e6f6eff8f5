"""The energy-based voice activity detector: regions of speech in silence, noise floors, pauses and clicks."""

import tracemalloc

import numpy as np
import pytest

from kospeech.data.voice_activity import VoiceActivityConfig, frame_levels, regions_from_levels, speech_regions
from kospeech.errors import ConfigError

RATE = 16000


def burst(seconds: float, seed: int, level: float = 0.2) -> np.ndarray:
    """Speech-like sound: a few tones under a fast syllabic envelope, never silent for long."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    tones = sum(np.sin(2 * np.pi * rng.uniform(150, 3000) * t) for _ in range(3))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4.0 * t)
    return (level * tones * envelope / 3).astype(np.float32)


def silence(seconds: float, level: float = 0.0, seed: int = 0) -> np.ndarray:
    if level == 0.0:
        return np.zeros(int(seconds * RATE), dtype=np.float32)
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def seconds(regions):
    return [(round(start / RATE, 2), round(stop / RATE, 2)) for start, stop in regions]


@pytest.mark.parametrize("floor", [0.0, 1e-4, 1e-3, 3e-3, 8e-3])
@pytest.mark.parametrize("minutes", [1, 10])
def test_one_sentence_in_minutes_of_silence_or_noise_is_found(floor, minutes):
    """Review, stop 37: the speech level was a percentile of every frame's level; under 2 % of speech left it at the
    floor, so the sentence was dropped (silence) or the whole recording kept as speech (noise at -42 dBFS)."""
    config = VoiceActivityConfig()
    signal = silence(60.0 * minutes, floor, 1)
    signal[RATE : 3 * RATE] += burst(2.0, 0)
    (region,) = speech_regions([signal], RATE, config)
    assert region[0] / RATE == pytest.approx(1.0 - config.padding_seconds, abs=0.03)
    assert region[1] / RATE == pytest.approx(3.0 + config.padding_seconds, abs=0.03)


@pytest.mark.parametrize("floor", [0.0, 1e-4, 1e-3, 3e-3])
def test_leading_and_trailing_silence_is_trimmed_to_the_padding(floor):
    config = VoiceActivityConfig()
    signal = np.concatenate([silence(1.0, floor, 1), burst(2.0, 0), silence(1.5, floor, 2)])
    (region,) = speech_regions([signal], RATE, config)
    assert region[0] / RATE == pytest.approx(1.0 - config.padding_seconds, abs=0.03)
    assert region[1] / RATE == pytest.approx(3.0 + config.padding_seconds, abs=0.03)


def test_pauses_split_regions_and_short_gaps_do_not():
    signal = np.concatenate(
        [burst(1.0, 0), silence(0.8), burst(1.0, 1), silence(0.1), burst(0.5, 2), silence(0.6, 1e-3), burst(0.7, 3)]
    )
    regions = seconds(speech_regions([signal], RATE, VoiceActivityConfig(padding_seconds=0.0)))
    assert regions == [(0.0, 1.0), (1.8, 3.4), (4.0, 4.7)]


def test_padding_never_crosses_the_middle_of_a_gap():
    signal = np.concatenate([burst(1.0, 0), silence(0.4), burst(1.0, 1)])
    first, second = speech_regions([signal], RATE, VoiceActivityConfig(padding_seconds=0.5))
    assert first[1] <= second[0]
    assert first[1] / RATE == pytest.approx(1.2, abs=0.02)


def test_no_speech_in_silence_or_quiet_noise():
    config = VoiceActivityConfig()
    assert speech_regions([silence(2.0)], RATE, config) == []
    assert speech_regions([silence(2.0, 1e-3)], RATE, config) == []


def test_a_dc_offset_is_not_sound():
    config = VoiceActivityConfig()
    for offset in (0.005, 0.02, -0.1):  # review, stop 33: above -50 dBFS, a flat offset counted as speech
        assert speech_regions([silence(2.0) + np.float32(offset)], RATE, config) == []
    signal = np.concatenate([silence(1.0, 1e-4), burst(2.0, 0), silence(1.5, 1e-4, 2)])
    shifted = speech_regions([signal + np.float32(0.05)], RATE, config)
    assert shifted == speech_regions([signal], RATE, config) and len(shifted) == 1


def test_steady_sound_without_pauses_is_one_region():
    noisy = burst(3.0, 0) + silence(3.0, 0.05)
    assert speech_regions([noisy], RATE, VoiceActivityConfig()) == [(0, noisy.size)]


def test_clicks_are_dropped():
    signal = silence(3.0, 1e-4)
    signal[RATE : RATE + 320] = 0.5  # a 20 ms click
    signal = np.concatenate([signal, burst(1.0, 0)])
    assert seconds(speech_regions([signal], RATE, VoiceActivityConfig(padding_seconds=0.0))) == [(3.0, 4.0)]


def test_a_long_waveform_in_memory_is_measured_without_copies_of_its_size():
    """Review, stop 37: ten minutes held in memory (38 MB of float32) cost 155 MB more in float64 copies and the
    variance's temporaries."""
    signal = silence(600.0, 1e-3)
    signal[RATE : 3 * RATE] += burst(2.0, 0)
    tracemalloc.start()
    try:
        regions = speech_regions([signal], RATE, VoiceActivityConfig())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(regions) == 1
    assert peak < signal.nbytes / 2, (peak, signal.nbytes)


def test_levels_do_not_depend_on_how_the_stream_is_split():
    signal = np.concatenate([burst(1.3, 0), silence(0.77), burst(0.9, 1)])
    whole = frame_levels([signal], RATE)
    pieces = frame_levels(np.array_split(signal, [1, 333, 4097, 20000, 30001]), RATE)
    np.testing.assert_allclose(pieces, whole, rtol=0, atol=1e-4)
    splits = [1, 333, 4097, 20000, 30001]
    config = VoiceActivityConfig()
    assert speech_regions(np.array_split(signal, splits), RATE, config) == speech_regions([signal], RATE, config)
    assert whole.size == -(-signal.size // 160)
    assert regions_from_levels(np.zeros(0, dtype=np.float32), VoiceActivityConfig()) == []


def test_levels_are_in_dbfs():
    t = np.arange(RATE) / RATE
    sine = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    assert np.median(frame_levels([sine], RATE)) == pytest.approx(-3.01, abs=0.05)
    assert frame_levels([np.zeros(800, dtype=np.float32)], RATE).max() == pytest.approx(-120.0)


@pytest.mark.parametrize(
    "field, value",
    [("threshold_ratio", 0.0), ("threshold_ratio", 1.0), ("floor_percentile", 99.0), ("padding_seconds", -0.1)],
)
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        VoiceActivityConfig(**{field: value}).validate()


def test_a_pause_well_below_the_voice_around_it_splits_even_above_the_floor():
    # the quietest stretches (-90 dBFS) are far below the pause (-48 dBFS): only the voice around the pause (the
    # second talker 25 dB quieter than the first) shows that it is one
    signal = np.concatenate(
        [silence(1.0, 3e-5, 1), burst(1.5, 0), silence(0.6, 4e-3, 2), burst(1.5, 1, level=0.012), silence(3.0, 3e-5, 3)]
    )
    first, second = seconds(speech_regions([signal], RATE, VoiceActivityConfig(padding_seconds=0.0)))
    assert first == (1.0, 2.5)
    assert 2.9 <= second[0] <= 3.1 and second[1] >= 4.4
    whole = speech_regions([signal], RATE, VoiceActivityConfig(padding_seconds=0.0, speech_range_db=200.0))
    assert len(whole) == 1  # without the local term the pause is speech
