"""Audio I/O: formats, rates, channels, bit depths, and loud failures that name the file."""

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kospeech.data.audio import (
    AudioError,
    audio_duration,
    audio_info,
    iter_audio_chunks,
    load_audio,
    save_audio,
)


def _sine(sample_rate: int, seconds: float, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(sample_rate * seconds))) / sample_rate
    return (amplitude * np.sin(2 * math.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("sample_rate", [8000, 22050, 44100, 48000])
def test_resampled_length_and_content(tmp_path: Path, sample_rate: int) -> None:
    path = tmp_path / f"sine_{sample_rate}.wav"
    source = _sine(sample_rate, 0.5)
    sf.write(path, source, sample_rate, subtype="FLOAT")
    waveform = load_audio(path)
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert len(waveform) == math.ceil(len(source) * 16000 / sample_rate)
    expected = _sine(16000, len(waveform) / 16000)
    middle = slice(400, len(waveform) - 400)  # away from the filter's edge effects
    assert np.max(np.abs(waveform[middle] - expected[middle])) < 0.02


def test_16k_file_is_not_resampled(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    source = _sine(16000, 0.3)
    sf.write(path, source, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path), source)


def test_target_sample_rate_argument(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, _sine(16000, 0.5), 16000, subtype="FLOAT")
    assert len(load_audio(path, sample_rate=8000)) == 4000


def test_stereo_downmix_is_channel_mean(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    left, right = _sine(16000, 0.2, 440.0), _sine(16000, 0.2, 1000.0, amplitude=0.25)
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), (left + right) / 2, atol=1e-7)


def test_six_channel_downmix(tmp_path: Path) -> None:
    path = tmp_path / "surround.wav"
    channels = np.stack([np.full(1600, 0.1 * k, dtype=np.float32) for k in range(6)], axis=1)
    sf.write(path, channels, 16000, subtype="FLOAT")
    waveform = load_audio(path)
    assert waveform.shape == (1600,)
    np.testing.assert_allclose(waveform, 0.25, atol=1e-6)


def test_many_channels_are_mixed_down_block_by_block(tmp_path: Path) -> None:
    """Memory follows the mono length, not channels x samples: reading 10 s of 8 channels at 48 kHz peaks below the
    15 MB those channels take as float32 (before stop 32 they were decoded at once, 19 MB at the peak; a small FLAC of
    silence at 384 kHz could decode to gigabytes)."""
    import tracemalloc

    path = tmp_path / "eight.flac"
    rate, seconds = 48000, 10
    channels = np.zeros((rate * seconds, 8), dtype=np.int16)
    channels[:, 3] = (_sine(rate, seconds) * 8000).astype(np.int16)
    sf.write(path, channels, rate, subtype="PCM_16")
    tracemalloc.start()
    try:
        waveform = load_audio(path, sample_rate=rate)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert waveform.shape == (rate * seconds,)
    np.testing.assert_allclose(waveform, channels[:, 3] / 32768 / 8, atol=1e-6)
    assert peak < rate * seconds * 8 * 4, peak


@pytest.mark.parametrize(
    "subtype, tolerance",
    [("PCM_U8", 1e-2), ("PCM_16", 1e-4), ("PCM_24", 1e-6), ("PCM_32", 1e-6), ("FLOAT", 0.0), ("DOUBLE", 1e-7)],
)
def test_bit_depths(tmp_path: Path, subtype: str, tolerance: float) -> None:
    path = tmp_path / f"{subtype}.wav"
    source = _sine(16000, 0.2)
    sf.write(path, source, 16000, subtype=subtype)
    assert sf.info(path).subtype == subtype
    waveform = load_audio(path)
    assert waveform.dtype == np.float32
    np.testing.assert_allclose(waveform, source, atol=tolerance)


def test_flac_and_raw_pcm(tmp_path: Path) -> None:
    source = _sine(16000, 0.25)
    flac = tmp_path / "a.flac"
    sf.write(flac, source, 16000, subtype="PCM_16")
    np.testing.assert_allclose(load_audio(flac), source, atol=1e-4)

    pcm = tmp_path / "KsponSpeech_000001.pcm"
    ints = (source * 32767).astype("<i2")
    pcm.write_bytes(ints.tobytes())
    np.testing.assert_allclose(load_audio(pcm), ints.astype(np.float32) / 32768, atol=1e-7)
    assert audio_duration(pcm) == pytest.approx(0.25)
    assert audio_info(pcm).channels == 1


def test_audio_info_and_duration(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros((22050, 2), dtype=np.float32), 44100)
    info = audio_info(path)
    assert (info.sample_rate, info.num_frames, info.channels) == (44100, 22050, 2)
    assert audio_duration(path) == pytest.approx(0.5)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(path)
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        audio_duration(path)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav"):
        load_audio(path)


def test_wav_without_samples(tmp_path: Path) -> None:
    path = tmp_path / "zero_frames.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match=r"zero_frames\.wav.*no samples"):
        load_audio(path)


def test_non_audio_bytes_with_wav_name(tmp_path: Path) -> None:
    path = tmp_path / "text.wav"
    path.write_bytes("이것은 오디오가 아닙니다\n".encode() * 20)
    with pytest.raises(AudioError, match="text.wav"):
        load_audio(path)
    with pytest.raises(AudioError, match="text.wav"):
        audio_duration(path)


def test_truncated_wav(tmp_path: Path) -> None:
    full = tmp_path / "full.wav"
    sf.write(full, _sine(16000, 0.5), 16000, subtype="PCM_16")
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match=r"cut\.wav.*truncated"):
        load_audio(cut)
    header_only = tmp_path / "header_only.wav"
    header_only.write_bytes(data[:30])
    with pytest.raises(AudioError, match="header_only.wav"):
        load_audio(header_only)


def test_nan_and_inf_samples(tmp_path: Path) -> None:
    source = _sine(16000, 0.1)
    source[10] = np.nan
    source[20] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, source, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav.*2 NaN/Inf"):
        load_audio(path)


def test_min_duration(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    sf.write(path, _sine(16000, 0.05), 16000)
    assert len(load_audio(path, min_duration_s=0.05)) == 800
    with pytest.raises(AudioError, match=r"short\.wav.*shorter than the minimum"):
        load_audio(path, min_duration_s=0.1)


def test_bad_arguments(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, _sine(16000, 0.1), 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(path, sample_rate=0)
    with pytest.raises(ValueError, match="min_duration_s"):
        load_audio(path, min_duration_s=-1.0)


def test_save_audio_round_trip_is_atomic_16_bit(tmp_path: Path) -> None:
    source = _sine(16000, 0.3)
    path = save_audio(tmp_path / "out" / "a.wav", source, 16000)
    info = sf.info(path)
    assert (info.format, info.subtype, info.samplerate) == ("WAV", "PCM_16", 16000)
    np.testing.assert_allclose(load_audio(path), source, atol=1e-4)
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.wav"]


def test_save_audio_clips_instead_of_wrapping(tmp_path: Path) -> None:
    path = save_audio(tmp_path / "loud.wav", np.array([0.0, 1.5, -2.0, 0.5], dtype=np.float32), 16000)
    np.testing.assert_allclose(load_audio(path), [0.0, 32767 / 32768, -1.0, 0.5], atol=1e-4)


def test_save_audio_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NaN"):
        save_audio(tmp_path / "a.wav", np.array([0.0, np.nan], dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="shape"):
        save_audio(tmp_path / "a.wav", np.zeros(0, dtype=np.float32), 16000)
    assert not (tmp_path / "a.wav").exists()


def test_iter_audio_chunks_covers_the_file(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    stereo = np.stack([_sine(8000, 1.3), _sine(8000, 1.3, 200.0)], axis=1)
    sf.write(path, stereo, 8000, subtype="FLOAT")
    chunks = list(iter_audio_chunks(path, chunk_seconds=0.5))
    assert [len(c) for c in chunks] == [4000, 4000, 2400]
    np.testing.assert_allclose(np.concatenate(chunks), stereo.mean(axis=1), atol=1e-7)
    with pytest.raises(ValueError, match="chunk_seconds"):
        list(iter_audio_chunks(path, chunk_seconds=0))
