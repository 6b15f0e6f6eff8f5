import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from kospeech.data.dataset import SpeechDataset
from kospeech.data.features import FeatureConfig, FeatureExtractor
from kospeech.data.manifest import ManifestEntry, ManifestError, write_manifest
from kospeech.data.perturbation import check_speed_factors, speed_perturb, speed_perturbed_copies
from kospeech.errors import ConfigError

RATE = 16000


def _dominant_frequency(waveform: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(waveform))
    return float(np.fft.rfftfreq(waveform.size, 1.0 / RATE)[np.argmax(spectrum)])


@pytest.mark.parametrize("factor", [0.9, 1.1, 0.5, 2.0])
def test_speed_scales_duration_and_pitch_together(factor):
    seconds = np.arange(RATE) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * seconds)).astype(np.float32)
    played = speed_perturb(tone, factor, RATE)
    assert played.dtype == np.float32
    assert abs(played.size - RATE / factor) <= 2
    assert _dominant_frequency(played) == pytest.approx(440.0 * factor, abs=2.0)


def test_speed_one_returns_the_recording_itself():
    tone = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    assert speed_perturb(tone, 1.0, RATE) is tone


@pytest.mark.parametrize(
    "factors, message",
    [
        ([1.0], "differ from 1.0"),
        ([0.3], r"\[0.5, 2.0\]"),
        ([2.5], r"\[0.5, 2.0\]"),
        ([0.9, 0.9], "twice"),
        (["0.9"], "numbers"),
        ([float("nan")], "numbers"),
        ([True], "numbers"),
    ],
)
def test_bad_speeds_are_refused_by_name(factors, message):
    with pytest.raises(ConfigError, match=message):
        check_speed_factors(factors, "train.speed_perturbation")


def _entry(tmp_path, seconds=1.0):
    path = tmp_path / "utt.wav"
    rng = np.random.default_rng(1)
    sf.write(path, (0.1 * rng.standard_normal(int(RATE * seconds))).astype(np.float32), RATE, subtype="FLOAT")
    return ManifestEntry(path, "가나", (5, 6))


def test_copies_come_per_speed_and_keep_everything_else(tmp_path):
    entry = _entry(tmp_path)
    other = dataclasses.replace(entry, transcript="다", label_ids=(7,))
    copies = speed_perturbed_copies([entry, other], [0.9, 1.1])
    assert [(c.transcript, c.speed) for c in copies] == [("가나", 0.9), ("다", 0.9), ("가나", 1.1), ("다", 1.1)]
    assert all(c.audio_path == entry.audio_path for c in copies[::2])
    with pytest.raises(ValueError, match="already a copy"):
        speed_perturbed_copies(copies, [0.9])


def test_dataset_serves_a_copy_from_the_perturbed_waveform(tmp_path):
    entry = _entry(tmp_path)
    copy = dataclasses.replace(entry, speed=1.1)
    extractor = FeatureExtractor(FeatureConfig(num_mels=40))
    dataset = SpeechDataset([entry, copy], extractor)
    assert dataset.durations == pytest.approx([1.0, 1.0 / 1.1])
    original, targets = dataset[0]
    faster, copy_targets = dataset[1]
    expected = extractor(speed_perturb(extractor.load_waveform(entry.audio_path), 1.1, RATE))
    assert torch.equal(faster, expected)
    assert faster.shape[0] < original.shape[0]
    assert torch.equal(targets, copy_targets)


def test_a_manifest_cannot_hold_a_copy(tmp_path):
    entry = _entry(tmp_path)
    with pytest.raises(ManifestError, match="speed 0.9"):
        write_manifest(tmp_path / "m.tsv", [entry, dataclasses.replace(entry, speed=0.9)])
    assert not (tmp_path / "m.tsv").exists()
