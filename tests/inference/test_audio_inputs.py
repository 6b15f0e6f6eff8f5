"""Every audio input kind, long-audio segmentation, and unusable inputs (clear errors or empty transcripts)."""

import logging

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from inference_world import SAMPLE_RATE, tone
from piped_audio import flac_written_to_a_pipe

from kospeech.data.audio import AudioError, load_audio, save_audio
from kospeech.inference import Recognizer
from kospeech.inference.audio_inputs import prepare_input
from kospeech.inference.segmentation import segments as _segments


@pytest.fixture
def recognizer(world):
    return Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)


def same(first, second):
    return first.tokens == second.tokens and first.score == pytest.approx(second.score, rel=1e-5, abs=1e-5)


def test_paths_arrays_tensors_and_pairs_give_the_same_result(world, recognizer):
    path = world.wavs[2]
    samples, rate = sf.read(str(path), dtype="float32")
    reference = recognizer.transcribe(str(path), user="alice")
    variants = [
        recognizer.transcribe(path, user="alice"),
        recognizer.transcribe(samples, user="alice", sample_rate=rate),
        recognizer.transcribe(torch.from_numpy(samples), user="alice", sample_rate=rate),
        recognizer.transcribe((samples, rate), user="alice"),
        recognizer.transcribe((samples * 32768).round().astype(np.int16), user="alice", sample_rate=rate),
    ]
    for variant in variants:
        assert same(variant, reference)
    mixed = recognizer.transcribe([path, (samples, rate), torch.from_numpy(samples)], user="alice", sample_rate=rate)
    assert all(same(result, reference) for result in mixed)
    assert reference.duration == pytest.approx(samples.shape[0] / rate)


def test_other_sample_rates_are_resampled(world, recognizer, tmp_path):
    samples = tone(0.8, seed=5, sample_rate=44100)
    path = save_audio(tmp_path / "cd.wav", samples, 44100)
    expected = recognizer.transcribe(load_audio(path, SAMPLE_RATE), sample_rate=SAMPLE_RATE, user="bob")
    assert same(recognizer.transcribe(path, user="bob"), expected)
    from_array = recognizer.transcribe(sf.read(str(path), dtype="float32")[0], sample_rate=44100, user="bob")
    assert same(from_array, expected)
    assert from_array.duration == pytest.approx(0.8, abs=1e-4)
    whole = Recognizer.from_checkpoint(world.checkpoint, detect_speech=False)
    narrow = whole.transcribe(tone(0.8, seed=5, sample_rate=8000), sample_rate=8000)
    assert narrow.num_frames == whole.transcribe(np.zeros(12800, np.float32), sample_rate=16000).num_frames


def test_stereo_inputs_are_averaged_to_mono(world, recognizer, tmp_path):
    left, right = tone(0.7, seed=1), tone(0.7, seed=2)
    stereo = np.stack([left, right], axis=1)  # (N, 2), soundfile layout
    path = save_audio(tmp_path / "stereo.wav", stereo, SAMPLE_RATE)
    mono_of_file = sf.read(str(path), dtype="float32")[0].mean(axis=1)
    expected = recognizer.transcribe(mono_of_file, sample_rate=SAMPLE_RATE)
    assert same(recognizer.transcribe(path), expected)
    mono = recognizer.transcribe((left + right) / 2, sample_rate=SAMPLE_RATE)
    assert same(recognizer.transcribe(stereo, sample_rate=SAMPLE_RATE), mono)
    assert same(recognizer.transcribe(torch.from_numpy(stereo.T.copy()), sample_rate=SAMPLE_RATE), mono)  # (2, N)


@pytest.mark.parametrize("block_seconds", [0.05, 0.37, 10.0])
def test_segments_cover_the_stream_cut_at_quiet_points_whatever_the_blocks(block_seconds):
    rate = 1000
    signal = np.ones(5300, dtype=np.float32)
    signal[1850:1870] = 0.0  # a pause inside the search window of the first 2 s segment
    block = int(block_seconds * rate)
    blocks = [signal[start : start + block] for start in range(0, signal.size, block)]
    segments = list(_segments(blocks, rate, max_seconds=2.0, search_seconds=0.5))
    assert segments[0][0] == 0 and 1850 <= segments[0][1].size <= 1870
    assert all(piece.size <= 2000 for _, piece in segments)
    assert np.array_equal(np.concatenate([piece for _, piece in segments]), signal)
    assert [offset for offset, _ in segments] == list(np.cumsum([0] + [p.size for _, p in segments[:-1]]))
    reference = list(_segments([signal], rate, max_seconds=2.0, search_seconds=0.5))
    assert [offset for offset, _ in segments] == [offset for offset, _ in reference]


def test_long_file_is_streamed_in_segments_with_offsets(world, tmp_path):
    samples = np.concatenate([tone(1.3, seed=7), np.zeros(1600, np.float32), tone(1.2, seed=8)])
    path = save_audio(tmp_path / "long.wav", samples, SAMPLE_RATE)
    recognizer = Recognizer.from_checkpoint(
        world.checkpoint,
        adapter_dir=world.adapter_dir,
        chunk_seconds=1.0,
        split_search_seconds=0.4,
        detect_speech=False,
    )
    streamed = recognizer.transcribe(path, user="alice", return_timestamps=True)
    from_memory = recognizer.transcribe(sf.read(str(path), dtype="float32")[0], sample_rate=SAMPLE_RATE, user="alice")
    assert streamed.num_segments == from_memory.num_segments >= 3
    assert same(streamed, from_memory) and streamed.text == from_memory.text
    starts = [stamp.start for stamp in streamed.timestamps]
    assert starts == sorted(starts) and starts[-1] < streamed.duration
    assert streamed.duration == pytest.approx(samples.size / SAMPLE_RATE)
    pieces = [
        recognizer.transcribe(piece, sample_rate=SAMPLE_RATE, user="alice")
        for _, piece in _segments([sf.read(str(path), dtype="float32")[0]], SAMPLE_RATE, 1.0, 0.4)
    ]
    assert streamed.text == " ".join(piece.text for piece in pieces if piece.text)
    assert streamed.score == pytest.approx(sum(piece.score for piece in pieces), rel=1e-5)
    vocab = recognizer.vocab
    assert sum(bool(piece.text) for piece in pieces) >= 2  # the tokens cross at least one segment boundary
    assert "".join(vocab.tokens[token] for token in streamed.tokens) == streamed.text  # the tokens spell the text
    # timings for every decoded token, each segment's own; the spaces joining segments were not decoded
    assert [stamp.token_id for stamp in streamed.timestamps] == [token for piece in pieces for token in piece.tokens]


def test_unusable_inputs_raise_errors_naming_the_input(world, recognizer, tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        recognizer.transcribe(missing)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match="garbage.wav"):
        recognizer.transcribe(garbage)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(world.wavs[3].read_bytes()[:3000])
    with pytest.raises(AudioError, match="truncated.wav.*truncated"):
        recognizer.transcribe(truncated)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros((0,), np.float32), SAMPLE_RATE, subtype="PCM_16")
    with pytest.raises(AudioError, match="empty.wav.*no samples"):
        recognizer.transcribe(empty)
    nan = tone(0.5, seed=1)
    nan[100] = np.nan
    with pytest.raises(AudioError, match="input 1 .*NaN"):
        recognizer.transcribe([world.wavs[0], nan], sample_rate=SAMPLE_RATE)
    for empty in (np.zeros(0, np.float32), np.zeros((0, 2), np.float32), np.zeros((2, 0), np.int16)):
        with pytest.raises(AudioError, match=r"the waveform has no samples$"):  # review, stop 37: "2 NaN/Inf samples"
            recognizer.transcribe(empty, sample_rate=SAMPLE_RATE)
    with pytest.raises(ValueError, match="sample rate"):
        recognizer.transcribe(tone(0.5, seed=1))
    with pytest.raises(ValueError, match="sample_rate must be a positive int"):
        recognizer.transcribe(tone(0.5, seed=1), sample_rate=0)
    with pytest.raises(ValueError, match="1-D .* or 2-D"):
        recognizer.transcribe(np.zeros((2, 2, 800), np.float32), sample_rate=SAMPLE_RATE)
    with pytest.raises(ValueError, match="at most 16 channels"):
        recognizer.transcribe(np.zeros((100, 800), np.float32), sample_rate=SAMPLE_RATE)
    with pytest.raises(ValueError, match="dtype"):
        recognizer.transcribe(np.zeros(800, np.complex64), sample_rate=SAMPLE_RATE)
    with pytest.raises(ValueError, match="expected a path"):
        recognizer.transcribe(12345)
    with pytest.raises(ValueError, match="pass several inputs as a list"):
        recognizer.transcribe((world.wavs[0], world.wavs[1]))


def test_corrupt_input_in_a_list_stops_before_any_compute(world, recognizer, tmp_path):
    calls = []
    recognizer.model.conv.register_forward_hook(lambda *args: calls.append(1))
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(AudioError, match="garbage.wav"):
        recognizer.transcribe([world.wavs[0], garbage, world.wavs[1]])
    assert calls == []


def test_too_short_input_and_silence_give_empty_transcripts(world, recognizer, caplog):
    with caplog.at_level(logging.WARNING, logger="kospeech.inference"):
        short = recognizer.transcribe(np.full(100, 0.1, np.float32), sample_rate=SAMPLE_RATE, user="alice")
        assert (short.text, short.tokens, short.num_segments, short.confidence) == ("", [], 0, 0.0)
        assert "shorter than one feature window" in caplog.text
        silence = recognizer.transcribe(np.zeros(SAMPLE_RATE, np.float32), sample_rate=SAMPLE_RATE, user="alice")
    assert (silence.text, silence.num_segments, silence.confidence, silence.segments) == ("", 0, 0.0, [])
    assert "no speech found in 1.00 s" in caplog.text
    whole = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir, detect_speech=False)
    decoded = whole.transcribe(np.zeros(SAMPLE_RATE, np.float32), sample_rate=SAMPLE_RATE, user="alice")
    assert decoded.num_segments == 1 and np.isfinite(decoded.score) and 0.0 <= decoded.confidence <= 1.0
    both = recognizer.transcribe([np.zeros(50, np.float32), world.wavs[0]], sample_rate=SAMPLE_RATE)
    assert both[0].text == "" and same(both[1], recognizer.transcribe(world.wavs[0]))


def test_a_file_without_a_stated_length_is_decoded_once_when_short_and_streamed_when_long(tmp_path, monkeypatch):
    """Stop 37: a short FLAC written to a pipe was decoded twice, once to count it and once to read it."""
    piped = tmp_path / "piped.flac"
    waveform = tone(3.0, seed=2)
    flac_written_to_a_pipe(piped, waveform, SAMPLE_RATE)
    opened = []
    pyav_open = av.open
    monkeypatch.setattr(av, "open", lambda *args, **kwargs: opened.append(args[0]) or pyav_open(*args, **kwargs))
    short = prepare_input(piped, None, None, target_rate=SAMPLE_RATE, max_in_memory_seconds=30.0)
    assert opened == [str(piped)]
    np.testing.assert_array_equal(short.waveform, load_audio(piped))
    assert (short.num_samples, short.sample_rate, short.path) == (waveform.size, SAMPLE_RATE, None)
    long = prepare_input(piped, None, None, target_rate=SAMPLE_RATE, max_in_memory_seconds=1.0)
    assert (long.num_samples, long.sample_rate, long.path, long.waveform) == (waveform.size, SAMPLE_RATE, piped, None)
