"""Audio whose header claims more than the bytes hold, or claims resources: round 2 of the reliability suite.

Implausible and awkward sample rates, truncated containers of every kind that declares a length, ``.pcm`` files that
are really WAV files, inconsistent WAV headers, audio that is finite but makes the features non-finite, and the
bounds of every numeric setting a caller passes (chunk length, beam width, device).
"""

import dataclasses
import struct

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import FEATURES, SAMPLE_RATE, tone, write_wav
from piped_audio import flac_written_to_a_pipe, vbr_mp3_written_to_a_pipe

from kospeech.data.audio import (
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    audio_info,
    iter_audio_chunks,
    load_audio,
    save_audio,
    stated_frames,
)
from kospeech.data.audio_headers import mp3_counts_frames
from kospeech.data.features import FeatureExtractor
from kospeech.decode import MAX_BEAM_SIZE
from kospeech.device import resolve_device
from kospeech.errors import AudioError, AudioTooLongError, InputError
from kospeech.inference import Recognizer
from kospeech.inference.files import transcribe_files


def wav_claiming_rate(path, rate: int, seconds: float = 0.5):
    """A 16-bit mono WAV whose header says ``rate`` Hz (byte rate and block align kept consistent)."""
    write_wav(path, tone(seconds), SAMPLE_RATE)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"fmt "
    data[24:28] = struct.pack("<I", rate)
    data[28:32] = struct.pack("<I", rate * 2)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("rate", [1, 100, MIN_SAMPLE_RATE - 1, MAX_SAMPLE_RATE + 1, 2_000_000_000])
def test_implausible_header_rates_are_refused_naming_the_file(tmp_path, world, rate):
    path = wav_claiming_rate(tmp_path / f"rate{rate}.wav", rate)
    pattern = rf"rate{rate}\.wav: implausible sample rate {rate} Hz"
    with pytest.raises(AudioError, match=pattern):
        audio_info(path)
    with pytest.raises(AudioError, match=pattern):
        load_audio(path)
    recognizer = Recognizer.from_checkpoint(world.checkpoint)
    with pytest.raises(AudioError, match=pattern):
        recognizer.transcribe(path)


@pytest.mark.parametrize("rate", [8000, 16001, 22050, 44101, 96001, 192000])
def test_awkward_rates_resample_in_bounded_work_to_the_right_length(tmp_path, rate):
    # an exact rational resampler builds a kernel from gcd(rate, 16000): 16001 Hz took 4.7 GB, 96001 Hz killed us
    path = write_wav(tmp_path / f"r{rate}.wav", tone(2.0, sample_rate=rate), rate)
    waveform = load_audio(path)
    assert waveform.dtype == np.float32
    assert abs(waveform.shape[0] - 2.0 * SAMPLE_RATE) <= 2
    assert np.isfinite(waveform).all() and 0.05 < float(np.abs(waveform).max()) < 1.0


def test_a_callers_implausible_rate_for_an_array_is_refused(world):
    recognizer = Recognizer.from_checkpoint(world.checkpoint)
    with pytest.raises(AudioError, match="implausible sample rate 1 Hz"):
        recognizer.transcribe(tone(0.5), sample_rate=1)
    with pytest.raises(AudioError, match="implausible sample rate"):
        load_audio(world.wavs[0], sample_rate=10**9)


def test_every_per_file_failure_is_that_files_result(tmp_path, world):
    bad_rate = wav_claiming_rate(tmp_path / "one_hz.wav", 1)
    truncated = tmp_path / "cut.flac"
    sf.write(str(truncated), tone(2.0), SAMPLE_RATE, format="FLAC")
    truncated.write_bytes(truncated.read_bytes()[:3000])
    files = [world.wavs[0], bad_rate, world.wavs[1], truncated, world.wavs[2]]
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)
    results = list(transcribe_files(recognizer, files, ["alice"] * len(files), files_per_call=5))
    assert [path for path, _, _ in results] == files
    errors = {path.name: result for path, _, result in results if isinstance(result, Exception)}
    assert set(errors) == {"one_hz.wav", "cut.flac"}
    assert "implausible sample rate 1 Hz" in str(errors["one_hz.wav"])
    assert "cut.flac" in str(errors["cut.flac"])
    assert all(hasattr(result, "text") for path, _, result in results if path.name not in errors)


CONTAINERS = [
    ("AIFF", "PCM_16", "aiff", "truncated AIFF file"),
    ("W64", "PCM_16", "w64", "truncated W64 file"),
    ("RF64", "PCM_16", "rf64", "truncated RF64 file"),
    ("CAF", "PCM_16", "caf", "truncated CAF file"),
    ("AU", "PCM_16", "au", "truncated AU file"),
    ("WAV", "PCM_24", "wav", "truncated WAV file"),
    ("OGG", "VORBIS", "ogg", "truncated Ogg file"),
    ("OGG", "OPUS", "opus", "truncated Ogg file"),
    ("FLAC", "PCM_16", "flac", "truncated file|not a readable audio file"),
    ("MP3", "MPEG_LAYER_III", "mp3", "truncated file: its header declares 48000 samples"),  # the Xing frame count
]


@pytest.mark.parametrize(("container", "subtype", "suffix", "message"), CONTAINERS, ids=[c[2] for c in CONTAINERS])
def test_truncated_containers_are_refused_not_read_as_shorter_audio(tmp_path, container, subtype, suffix, message):
    path = tmp_path / f"speech.{suffix}"
    sf.write(
        str(path),
        tone(3.0, sample_rate=48000 if subtype == "OPUS" else SAMPLE_RATE),
        48000 if subtype == "OPUS" else SAMPLE_RATE,
        format=container,
        subtype=subtype,
    )
    whole = load_audio(path)
    assert abs(whole.shape[0] - 3 * SAMPLE_RATE) < 0.05 * 3 * SAMPLE_RATE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match=rf"speech\.{suffix}: ({message})"):
        load_audio(path)
    with pytest.raises(AudioError, match=rf"speech\.{suffix}"):
        list(iter_audio_chunks(path, chunk_seconds=1.0))


def test_a_flac_stream_without_its_length_is_read_whole(tmp_path):
    """Review, stop 35: its length read as 2**63 samples, and libsndfile failed on its last block."""
    waveform = tone(3.0)
    piped, whole = tmp_path / "piped.flac", tmp_path / "whole.flac"
    flac_written_to_a_pipe(piped, waveform, SAMPLE_RATE)
    sf.write(str(whole), waveform, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    assert stated_frames(piped) is None and stated_frames(whole) == waveform.size
    assert audio_info(piped).num_frames == waveform.size and audio_info(piped).duration == pytest.approx(3.0)
    np.testing.assert_array_equal(load_audio(piped), load_audio(whole))
    chunks = list(iter_audio_chunks(piped, chunk_seconds=1.0))
    assert [chunk.size for chunk in chunks] == [SAMPLE_RATE] * 3
    np.testing.assert_array_equal(np.concatenate(chunks), load_audio(whole))


def test_an_mp3_without_a_frame_count_is_counted_not_refused_as_truncated(tmp_path):
    """Review, stop 35: 10 s of VBR MP3 read as 41.8 s long, then refused as truncated (24 % decoded)."""
    rate = 44100
    noise = np.random.default_rng(0).standard_normal(8 * rate).astype(np.float32) * 0.3
    path = tmp_path / "piped.mp3"
    path.write_bytes(vbr_mp3_written_to_a_pipe(np.concatenate([np.zeros(2 * rate, np.float32), noise]), rate))
    assert sf.info(str(path)).duration > 20.0  # libsndfile's estimate: the case this test is about
    assert not mp3_counts_frames(path) and stated_frames(path) is None
    assert audio_info(path).duration == pytest.approx(10.0, abs=0.1)
    assert load_audio(path).size == pytest.approx(10 * SAMPLE_RATE, abs=0.05 * SAMPLE_RATE)  # + encoder delay
    loud = tmp_path / "loud.mp3"  # loud from the start: libsndfile's estimate is short, and it stopped there
    loud.write_bytes(vbr_mp3_written_to_a_pipe(noise[: 6 * rate], rate))
    assert sf.info(str(loud)).duration < 5.0
    assert load_audio(loud).size == pytest.approx(6 * SAMPLE_RATE, abs=0.05 * SAMPLE_RATE)
    assert audio_info(loud).duration == pytest.approx(6.0, abs=0.1)
    counted = tmp_path / "counted.mp3"  # what soundfile writes has a Xing frame: its count is the length
    sf.write(str(counted), tone(3.0), SAMPLE_RATE, format="MP3", subtype="MPEG_LAYER_III")
    assert mp3_counts_frames(counted) and stated_frames(counted) == pytest.approx(3 * SAMPLE_RATE, abs=1200)


def test_a_length_limit_refuses_a_stated_length_before_decoding(tmp_path):
    """``max_duration_s`` reads the header only: 3 s of NaN samples is refused as too long, not as NaN (which
    decoding would find), and a file within the limit loads as it does without one."""
    nan = write_wav(tmp_path / "nan.wav", np.full(3 * SAMPLE_RATE, np.nan, np.float32), subtype="FLOAT")
    with pytest.raises(AudioTooLongError, match=r"nan\.wav: 3\.0 s of audio is longer than the limit of 2 s") as caught:
        load_audio(nan, max_duration_s=2.0)
    assert (caught.value.seconds, caught.value.limit) == (3.0, 2.0)
    with pytest.raises(AudioError, match="NaN"):
        load_audio(nan, max_duration_s=3.0)
    fine = write_wav(tmp_path / "fine.wav", tone(1.0))
    np.testing.assert_array_equal(load_audio(fine, max_duration_s=1.0), load_audio(fine))


def test_a_length_limit_stops_decoding_a_file_whose_header_leaves_the_length_out(tmp_path):
    """A FLAC stream from a pipe states no length: it is counted while decoding and refused once the decoded audio
    passes the limit (one 64 Ki-frame block at most beyond it), not decoded whole first."""
    piped = tmp_path / "piped.flac"
    flac_written_to_a_pipe(piped, tone(10.0), SAMPLE_RATE)
    with pytest.raises(AudioTooLongError, match=r"piped\.flac: the audio goes on past the limit of 2 s") as caught:
        load_audio(piped, max_duration_s=2.0)
    assert 2.0 < caught.value.seconds <= 2.0 + 65536 / SAMPLE_RATE
    np.testing.assert_array_equal(load_audio(piped, max_duration_s=10.0), load_audio(piped))


@pytest.mark.parametrize("limit", [0.0, -1.0, float("nan"), float("inf")])
def test_a_length_limit_must_be_a_positive_finite_number(tmp_path, limit):
    with pytest.raises(ValueError, match="max_duration_s must be a finite number > 0"):
        load_audio(write_wav(tmp_path / "a.wav", tone(0.5)), max_duration_s=limit)


def test_a_wav_named_pcm_is_read_with_its_header(tmp_path, caplog):
    samples = tone(1.0)
    path = tmp_path / "KsponSpeech_000001.pcm"
    write_wav(tmp_path / "x.wav", samples).rename(path)
    with caplog.at_level("WARNING"):
        waveform = load_audio(path)
    assert "named .pcm but holds a WAV header" in caplog.text
    assert waveform.shape == samples.shape
    np.testing.assert_allclose(waveform, samples, atol=1e-4)  # the 44 header bytes are not decoded as samples


def test_a_wav_header_with_inconsistent_block_align_is_refused(tmp_path):
    path = write_wav(tmp_path / "odd.wav", tone(0.5))
    data = bytearray(path.read_bytes())
    data[32:34] = struct.pack("<H", 1)  # block_align 1 for 16-bit mono: libsndfile would read 8-bit samples
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=r"odd\.wav: inconsistent WAV header: 1 channels of 16-bit samples need "):
        load_audio(path)


def test_a_wav_whose_data_chunk_declares_0_bytes_before_its_audio_is_refused_as_incomplete(tmp_path):
    """Review, stop 34: a writer that never finished its header (data size 0) gave "contains no samples"."""
    path = write_wav(tmp_path / "speech.wav", tone(1.0))
    data = bytearray(path.read_bytes())
    assert data[36:40] == b"data"
    data[40:44] = struct.pack("<I", 0)
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=r"speech\.wav: incomplete WAV header: .* 0 bytes, yet 32000 bytes of audio"):
        load_audio(path)
    empty = bytes(data[:44]) + b"LIST\x04\x00\x00\x00INFO"  # an empty data chunk, then metadata: just empty
    path.write_bytes(empty)
    with pytest.raises(AudioError, match=r"speech\.wav: the audio file contains no samples"):
        load_audio(path)
    data[40:44] = struct.pack("<I", 32000)
    for tail in (b"LIST\x04\x00\x00\x00INFO", bytes(64), b"TAG" + bytes(125), b"\xff" * 64):
        path.write_bytes(bytes(data) + tail)  # what may follow the audio: read as before
        assert load_audio(path).shape == (16000,)


@pytest.mark.parametrize("normalize", ["utterance", "speech"])
def test_finite_audio_with_non_finite_features_names_the_input(tmp_path, world, normalize):
    path = write_wav(tmp_path / "loud.wav", tone(0.6) * 1e15, subtype="FLOAT")
    extractor = FeatureExtractor(dataclasses.replace(FEATURES, normalize=normalize))
    with pytest.raises(AudioError, match=r"loud\.wav: the features are not finite .* peak at 4\.\d+e\+14 x full scale"):
        extractor.from_file(path)
    recognizer = Recognizer.from_checkpoint(world.checkpoint)
    with pytest.raises(AudioError, match=r"loud\.wav"):
        recognizer.transcribe(path)
    with pytest.raises(AudioError, match=r"input \(numpy.ndarray of shape \(9600,\)\): the features are not finite"):
        recognizer.transcribe(tone(0.6) * 1e15, sample_rate=SAMPLE_RATE)


@pytest.mark.parametrize(
    ("dtype", "scale"), [(np.int16, 2**15), (np.int32, 2**31), (np.int8, 2**7)], ids=["int16", "int32", "int8"]
)
def test_integer_pcm_is_scaled_not_clipped_into_a_square_wave(tmp_path, dtype, scale):
    samples = tone(0.5)
    path = save_audio(tmp_path / "pcm.wav", np.round(samples * (scale - 1)).astype(dtype), SAMPLE_RATE)
    np.testing.assert_allclose(load_audio(path), samples, atol=1.5e-2 if dtype is np.int8 else 1e-4)


def test_uint8_pcm_is_centred_and_scaled(tmp_path):
    samples = tone(0.5)
    path = save_audio(tmp_path / "u8.wav", np.round(samples * 127 + 128).astype(np.uint8), SAMPLE_RATE)
    np.testing.assert_allclose(load_audio(path), samples, atol=1e-2)


def test_float64_beyond_float32_range_is_refused_naming_the_input(tmp_path, world):
    samples = tone(0.5).astype(np.float64) * 1e300
    with pytest.raises(InputError, match=r"huge\.wav: samples reach \d\.\d+e\+299, beyond float32's range"):
        save_audio(tmp_path / "huge.wav", samples, SAMPLE_RATE)
    assert not (tmp_path / "huge.wav").exists()
    recognizer = Recognizer.from_checkpoint(world.checkpoint)
    with pytest.raises(
        InputError, match=r"input \(numpy.ndarray of shape \(8000,\)\): samples reach .* beyond float32's range"
    ):
        recognizer.transcribe(samples, sample_rate=SAMPLE_RATE)


def test_non_numeric_sample_dtypes_are_refused(world):
    recognizer = Recognizer.from_checkpoint(world.checkpoint)
    with pytest.raises(InputError, match="sample dtype must be floating point or int8/int16/int32/uint8 PCM"):
        recognizer.transcribe(np.array(["a"] * 8000), sample_rate=SAMPLE_RATE)


@pytest.mark.parametrize("chunk_seconds", [float("inf"), float("nan"), 0.001, 0.0, -5.0, 10**6])
def test_chunk_lengths_outside_the_useful_range_are_refused_at_construction(world, chunk_seconds):
    with pytest.raises(ValueError, match="chunk_seconds"):
        Recognizer.from_checkpoint(world.checkpoint, chunk_seconds=chunk_seconds)


@pytest.mark.parametrize("chunk_seconds", [float("inf"), float("nan"), 0.0, -1.0])
def test_iter_audio_chunks_refuses_non_positive_or_non_finite_chunks(world, chunk_seconds):
    with pytest.raises(ValueError, match="chunk_seconds"):
        next(iter_audio_chunks(world.wavs[0], chunk_seconds=chunk_seconds))


@pytest.mark.parametrize("beam_size", [0, -1, MAX_BEAM_SIZE + 1, 10**6, 2.5, True])
def test_beam_widths_outside_the_bound_are_refused(world, beam_size):
    with pytest.raises(ValueError, match="beam_size"):
        Recognizer.from_checkpoint(world.checkpoint, beam_size=beam_size)


def test_the_largest_allowed_beam_still_decodes(world):
    recognizer = Recognizer.from_checkpoint(world.checkpoint, beam_size=MAX_BEAM_SIZE)
    assert isinstance(recognizer.transcribe(world.wavs[0]).text, str)


@pytest.mark.parametrize("device", ["meta", "tpu", "cuda:x", "cpu:0:1", ""])
def test_unusable_device_names_get_a_clear_error(device):
    with pytest.raises(ValueError, match="device"):
        resolve_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the index may exist")
def test_a_cuda_device_without_cuda_is_refused():
    with pytest.raises(ValueError, match="cuda"):
        resolve_device("cuda:3")
