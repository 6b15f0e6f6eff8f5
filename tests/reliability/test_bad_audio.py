"""Bad and unusual audio: each case either works (resampled, downmixed) or fails naming the file and the problem.

Every broken file is tried through the three consumers of audio: :func:`load_audio`, the training dataset
(:class:`SpeechDataset`, which goes through ``FeatureExtractor.from_file``) and :meth:`Recognizer.transcribe`.
"""

import io
import json
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import FEATURES, SAMPLE_RATE, build_base, run_python, save_base, tone, write_script, write_wav

from kospeech.data.audio import AudioError, audio_info, iter_audio_chunks, load_audio, save_audio
from kospeech.data.dataset import SpeechDataset
from kospeech.data.features import FeatureConfig, FeatureExtractor
from kospeech.data.manifest import ManifestEntry
from kospeech.inference import Recognizer


@pytest.fixture
def recognizer(world):
    return Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)


def _dataset(path: Path) -> SpeechDataset:
    return SpeechDataset([ManifestEntry(path, "가", (5,))], FeatureExtractor(FEATURES))


def _expect_error_everywhere(path: Path, recognizer: Recognizer, problem: str, error=AudioError) -> None:
    """The file is refused by every consumer with ``error``, naming the file and matching ``problem``."""
    pattern = rf"{path.name}.*{problem}|{problem}.*{path.name}"
    with pytest.raises(error, match=pattern):
        load_audio(path)
    with pytest.raises(error, match=pattern):
        _dataset(path)[0]
    with pytest.raises(error, match=pattern):
        recognizer.transcribe(path, user="alice")


def _wav_bytes(samples: np.ndarray, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE, subtype=subtype, format="WAV")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------- broken files


def test_empty_file_is_refused_naming_it(tmp_path, recognizer):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    _expect_error_everywhere(path, recognizer, "not a readable audio file")
    with pytest.raises(AudioError, match="empty.wav"):
        audio_info(path)


def test_zero_length_audio_is_refused_naming_it(tmp_path, recognizer):
    path = write_wav(tmp_path / "no_samples.wav", np.zeros(0, np.float32))
    assert audio_info(path).num_frames == 0
    _expect_error_everywhere(path, recognizer, "no samples")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("이것은 오디오가 아닙니다\n".encode() * 40, id="utf8-text"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, id="png-header"),
        pytest.param(b"RIFF\x24\x08\x00\x00WAVEfmt " + b"\xff" * 600, id="riff-garbage"),
        pytest.param(np.random.default_rng(0).bytes(4096), id="random-bytes"),
    ],
)
def test_non_audio_bytes_with_a_wav_name_are_refused(tmp_path, recognizer, content):
    path = tmp_path / "fake.wav"
    path.write_bytes(content)
    _expect_error_everywhere(path, recognizer, "not a readable audio file")


@pytest.mark.parametrize("keep", [12, 30, 44, 44 + 2 * 800, -2])
def test_truncated_wav_is_refused_naming_it(tmp_path, recognizer, keep):
    data = _wav_bytes(tone(0.5, seed=1))
    path = tmp_path / "cut.wav"
    path.write_bytes(data[:keep])
    header_end = data.index(b"data") + 8
    problem = "truncated WAV file" if keep < 0 or keep >= header_end else "not a readable audio file"
    _expect_error_everywhere(path, recognizer, problem)


def test_streamed_wav_with_unknown_data_size_is_read_whole(tmp_path):
    """Streaming encoders write 0xFFFFFFFF as the data size: not a truncation, every sample present is read."""
    samples = tone(0.3, seed=2)
    data = bytearray(_wav_bytes(samples))
    position = data.index(b"data")
    data[position + 4 : position + 8] = struct.pack("<I", 0xFFFFFFFF)
    path = tmp_path / "streamed.wav"
    path.write_bytes(bytes(data))
    np.testing.assert_allclose(load_audio(path), samples, atol=1 / 32768)


def test_directory_named_like_audio_is_not_read(tmp_path, recognizer):
    path = tmp_path / "folder.wav"
    path.mkdir()
    _expect_error_everywhere(path, recognizer, "not found", error=FileNotFoundError)


# ---------------------------------------------------------------------------------------------------- too short


def test_shorter_than_one_feature_window(tmp_path, recognizer, caplog):
    """5 ms < the 20 ms window: training refuses it naming the file; inference returns an empty transcript."""
    path = save_audio(tmp_path / "click.wav", tone(0.005, seed=3), SAMPLE_RATE)
    assert load_audio(path).shape == (80,)
    with pytest.raises(AudioError, match=r"click\.wav.*shorter than the minimum"):
        _dataset(path)[0]
    with caplog.at_level(logging.WARNING, logger="kospeech.inference"):
        result = recognizer.transcribe(path, user="alice")
    assert (result.text, result.num_segments, result.num_frames, result.confidence) == ("", 0, 0, 0.0)
    assert "click.wav" in caplog.text and "shorter than one feature window" in caplog.text


@pytest.mark.parametrize("frames", [1, 2, 3, 5, 11, 12])
def test_shorter_than_the_conv_receptive_field_still_decodes(tmp_path, recognizer, frames):
    """1 to 12 feature frames (less than the 11-frame conv kernel) give ceil(T / 2) finite output frames."""
    samples = FEATURES.win_length + (frames - 1) * FEATURES.hop_length
    path = save_audio(tmp_path / f"short{frames}.wav", tone(samples / SAMPLE_RATE, seed=frames), SAMPLE_RATE)
    features, _ = _dataset(path)[0]
    assert features.shape == (frames, FEATURES.feature_dim) and torch.isfinite(features).all()
    result = recognizer.transcribe(path, user="alice")
    assert result.num_segments == 1 and result.num_frames == (frames + 1) // 2
    assert np.isfinite(result.score) and 0.0 < result.confidence <= 1.0


# ---------------------------------------------------------------------------------------------------- formats


@pytest.mark.parametrize("sample_rate", [8000, 11025, 22050, 44100, 48000])
def test_other_sample_rates_are_resampled(tmp_path, recognizer, sample_rate):
    seconds, frequency = 0.5, 1000.0
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    path = write_wav(tmp_path / f"sine{sample_rate}.wav", 0.5 * np.sin(2 * np.pi * frequency * t), sample_rate)
    waveform = load_audio(path)
    assert waveform.dtype == np.float32 and waveform.shape[0] == pytest.approx(seconds * SAMPLE_RATE, abs=1)
    spectrum = np.abs(np.fft.rfft(waveform))
    assert np.fft.rfftfreq(waveform.shape[0], 1 / SAMPLE_RATE)[spectrum.argmax()] == pytest.approx(frequency, abs=4)
    result = recognizer.transcribe(path, user="bob")
    assert result.duration == pytest.approx(seconds, abs=1e-3) and result.num_frames > 0


@pytest.mark.parametrize("channels", [2, 6])
def test_multichannel_files_are_averaged_to_mono(tmp_path, recognizer, channels):
    data = tone(0.5, seed=4, channels=channels)
    path = write_wav(tmp_path / f"ch{channels}.wav", data, subtype="FLOAT")
    mono = write_wav(tmp_path / f"mono{channels}.wav", data.mean(axis=1), subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), data.mean(axis=1), atol=1e-7)
    assert recognizer.transcribe(path, user="alice").tokens == recognizer.transcribe(mono, user="alice").tokens


@pytest.mark.parametrize(
    "subtype, tolerance",
    [
        ("PCM_U8", 1 / 64),
        ("ULAW", 1 / 16),
        ("ALAW", 1 / 16),
        ("PCM_16", 1 / 16384),
        ("PCM_24", 1e-6),
        ("PCM_32", 1e-7),
        ("FLOAT", 0.0),
        ("DOUBLE", 0.0),
    ],
)
def test_bit_depths_and_sample_formats(tmp_path, recognizer, subtype, tolerance):
    data = tone(0.4, seed=5)
    path = write_wav(tmp_path / f"{subtype}.wav", data, subtype=subtype)
    waveform = load_audio(path)
    assert waveform.dtype == np.float32
    np.testing.assert_allclose(waveform, data, atol=tolerance + 1e-8)
    assert recognizer.transcribe(path).num_frames > 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_nan_and_inf_samples_are_refused_naming_the_file(tmp_path, recognizer, bad, subtype):
    data = tone(0.4, seed=6)
    data[1000] = bad
    path = write_wav(tmp_path / "nonfinite.wav", data, subtype=subtype)
    _expect_error_everywhere(path, recognizer, "1 NaN/Inf samples")


def test_nan_deep_inside_a_streamed_long_file_names_file_and_position(tmp_path, world):
    recognizer = Recognizer.from_checkpoint(world.checkpoint, chunk_seconds=1.0, split_search_seconds=0.2)
    data = np.concatenate([tone(6.0, seed=7), tone(6.0, seed=8)])
    data[int(10.5 * SAMPLE_RATE)] = np.nan
    path = write_wav(tmp_path / "long_nan.wav", data, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"long_nan\.wav: chunk 2 \(from 10\.0 s\) holds NaN/Inf"):
        recognizer.transcribe(path)
    chunks = iter_audio_chunks(path, chunk_seconds=5.0)
    assert next(chunks).shape == (5 * SAMPLE_RATE,)
    assert next(chunks).shape == (5 * SAMPLE_RATE,)
    with pytest.raises(AudioError, match="long_nan.wav"):
        next(chunks)


def test_clipped_and_over_range_audio_works(tmp_path, recognizer, caplog):
    """Saturated 16-bit audio and float audio beyond full scale load without wrap-around and decode."""
    square = np.sign(tone(0.5, seed=9)).astype(np.float32)
    saturated = write_wav(tmp_path / "saturated.wav", np.where(square >= 0, 32767, -32768).astype(np.int16))
    waveform = load_audio(saturated)
    assert waveform.max() == pytest.approx(32767 / 32768) and waveform.min() == -1.0
    loud = write_wav(tmp_path / "loud.wav", 8.0 * tone(0.5, seed=9), subtype="FLOAT")
    waveform = load_audio(loud)
    assert np.abs(waveform).max() > 1.0  # kept as recorded, not wrapped or silently rescaled
    for path in (saturated, loud):
        features, _ = _dataset(path)[0]
        assert torch.isfinite(features).all()
        assert recognizer.transcribe(path, user="alice").num_frames > 0
    with caplog.at_level(logging.WARNING, logger="kospeech.data.audio"):
        written = save_audio(tmp_path / "clipped.wav", 8.0 * tone(0.5, seed=9), SAMPLE_RATE)
    assert "clipping" in caplog.text and np.abs(load_audio(written)).max() <= 1.0


# ---------------------------------------------------------------------------------------------------- hour-long input

LONG_FEATURES = FeatureConfig(num_mels=8, frame_length_ms=50.0, frame_shift_ms=200.0)

HOUR_SCRIPT = """
import json, sys, time
import numpy as np
import soundfile as sf
from kospeech.data.audio import load_audio
from kospeech.inference import Recognizer

checkpoint, path, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
rate = 16000

def write(target, total):
    rng = np.random.default_rng(0)
    with sf.SoundFile(target, "w", samplerate=rate, channels=1, subtype="PCM_16", format="WAV") as handle:
        for start in range(0, total, 60):
            t = np.arange(min(60, total - start) * rate) / rate
            block = 0.2 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
            handle.write((block + 0.01 * rng.standard_normal(t.shape)).astype(np.float32))

def reset_peak():
    with open("/proc/self/clear_refs", "w") as handle:  # "5" resets VmHWM, the peak RSS, to the current RSS
        handle.write("5")

def peak_mb():
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:")) / 1024

write(path + ".warm.wav", 70)
write(path, seconds)
recognizer = Recognizer.from_checkpoint(checkpoint)
warm = recognizer.transcribe(path + ".warm.wav")
reset_peak()
before = peak_mb()
started = time.monotonic()
result = recognizer.transcribe(path)
after, seconds = peak_mb(), time.monotonic() - started
reset_peak()
control_before = peak_mb()
load_audio(path)  # control: decoding the whole file at once must show up in the same measurement
print(json.dumps({"before_mb": before, "after_mb": after, "control_before_mb": control_before,
                  "control_mb": peak_mb(), "seconds": seconds,
                  "duration": result.duration, "segments": result.num_segments, "warm_segments": warm.num_segments}))
"""


@pytest.mark.slow
def test_hour_long_file_is_streamed_with_bounded_memory(tmp_path):
    """An hour of 16 kHz audio (115 MB on disk, 230 MB as float32) adds only a few MB to the peak RSS."""
    checkpoint = save_base(tmp_path / "long_base.pt", build_base(features=LONG_FEATURES), features=LONG_FEATURES)
    script = write_script(tmp_path / "hour.py", HOUR_SCRIPT)
    output = run_python(script, str(checkpoint), str(tmp_path / "hour.wav"), "3600", timeout=300)
    figures = json.loads(output.strip().splitlines()[-1])
    assert figures["duration"] == pytest.approx(3600.0)
    assert figures["segments"] >= 120 and figures["warm_segments"] >= 3
    whole_file_mb = 3600 * SAMPLE_RATE * 4 / 2**20
    assert figures["after_mb"] - figures["before_mb"] < 0.15 * whole_file_mb, figures
    assert figures["control_mb"] - figures["control_before_mb"] > 0.8 * whole_file_mb, figures
