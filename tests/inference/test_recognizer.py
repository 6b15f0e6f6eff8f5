"""Recognizer: mixed-user batches against an independent per-utterance oracle, users, fallback, timestamps."""

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from inference_world import FEATURES, TOKENS, build_base, save_user_adapter

from kospeech.checkpoint import load_checkpoint, save_checkpoint
from kospeech.data.features import FeatureExtractor
from kospeech.decode import GreedyCTCDecoder
from kospeech.inference import Recognizer, Transcription, UnknownUserError
from kospeech.models import AdapterCompatibilityError, AdapterManager
from kospeech.vocabs import Vocabulary

ROOT = Path(__file__).resolve().parents[2]


def oracle(setup, path, user):
    """Independent pipeline: file -> features -> model (adapter attached when a user is given) alone -> greedy."""
    checkpoint = load_checkpoint(setup.checkpoint)
    model = checkpoint.build_model()
    features = FeatureExtractor(checkpoint.feature_config).from_file(path)
    lengths = torch.tensor([features.shape[0]])
    with torch.inference_mode():
        if user is None:
            log_probs, output_lengths = model(features[None], lengths)
        else:
            AdapterManager.load_adapter(model, setup.adapter_dir / f"{user}_adapter.pt")
            model.eval()
            _, output_lengths, log_probs = model(features[None], lengths)
    return GreedyCTCDecoder(checkpoint.vocab)(log_probs, output_lengths)[0]


@pytest.mark.parametrize("adapter_type", ["head", "residual_head", "encoder"])
def test_mixed_user_batch_equals_each_utterance_alone_with_its_adapter(make_world, adapter_type):
    setup = make_world(adapter_type)
    recognizer = Recognizer.from_checkpoint(setup.checkpoint, adapter_dir=setup.adapter_dir)
    users = ["alice", None, "bob", "alice"]
    results = recognizer.transcribe(setup.wavs, user=users)
    scores_by_user = {}
    for path, user, result in zip(setup.wavs, users, results):
        expected = oracle(setup, path, user)
        assert result.tokens == [token for token in expected.tokens if token > 3]
        assert result.text == expected.text.strip()
        assert result.score == pytest.approx(expected.score, rel=1e-5, abs=1e-4)
        assert (result.user, result.adapter) == (user, user)
        scores_by_user[user] = result.score
    # the adapters matter: the same utterance scores differently per user
    alone = [recognizer.transcribe(setup.wavs[0], user=user).score for user in (None, "alice", "bob")]
    assert len({round(score, 3) for score in alone}) == 3


def test_base_rows_of_a_mixed_batch_are_bitwise_the_base_model(world):
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)
    mixed = recognizer.transcribe(world.wavs, user=[None, "alice", None, "bob"])
    base = recognizer.transcribe(world.wavs)
    for row in (0, 2):
        assert mixed[row].score == base[row].score  # exact: the same batch through the same base rows
        assert mixed[row].tokens == base[row].tokens
    assert mixed[1].score != base[1].score


def test_prepared_inputs_transcribe_as_the_inputs_themselves(world):
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir, batch_size=3)
    users = [None, "alice", "bob", "alice"]
    direct = recognizer.transcribe(world.wavs, user=users, return_timestamps=True)
    prepared = [recognizer.prepare(path) for path in world.wavs]
    assert [audio.item.seconds for audio in prepared] == [result.duration for result in direct]
    for result, expected in zip(recognizer.transcribe_prepared(prepared, user=users, return_timestamps=True), direct):
        assert result == expected  # same segments, batches of 3 across inputs, adapters, times and confidences
    with pytest.raises(ValueError, match="2 users for 4 inputs"):
        recognizer.transcribe_prepared(prepared, user=["alice", "bob"])
    with pytest.raises(UnknownUserError):
        recognizer.transcribe_prepared(prepared[:1], user="carol")


@pytest.mark.parametrize("adapter_type", ["head", "encoder"])
def test_inputs_prepared_with_the_extractor_transcribe_as_the_inputs_themselves(make_world, adapter_type):
    setup = make_world(adapter_type)
    recognizer = Recognizer.from_checkpoint(setup.checkpoint, adapter_dir=setup.adapter_dir, batch_size=3)
    users = [None, "alice", "bob", "alice"]
    direct = recognizer.transcribe(setup.wavs, user=users, return_timestamps=True)
    extractor_calls = []
    recognizer.model.conv.register_forward_hook(lambda module, inputs, output: extractor_calls.append(inputs[0].shape))
    extracted = [recognizer.prepare(path, run_extractor=True) for path in setup.wavs]
    segments = sum(len(audio.segments) for audio in extracted)
    assert len(extractor_calls) == segments and all(shape[0] == 1 for shape in extractor_calls)  # one segment each
    assert all(s.features is None and s.extracted is not None for audio in extracted for s in audio.segments)
    plain = recognizer.prepare(setup.wavs[1])
    for prepared, calls in ((extracted, 0), ([extracted[0], plain, extracted[2], extracted[3]], len(plain.segments))):
        extractor_calls.clear()
        results = recognizer.transcribe_prepared(prepared, user=users, return_timestamps=True)
        assert len(extractor_calls) == calls  # only segments prepared without it go through the extractor
        for result, expected in zip(results, direct):
            assert (result.text, result.tokens, result.adapter) == (expected.text, expected.tokens, expected.adapter)
            assert result.score == pytest.approx(expected.score, rel=1e-5, abs=1e-4)
            assert [(word.word, word.start, word.end) for word in result.words] == [
                (word.word, word.start, word.end) for word in expected.words
            ]


def test_single_input_gives_one_result_and_lists_give_lists(world):
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir, detect_speech=False)
    single = recognizer.transcribe(world.wavs[0], user="alice", return_timestamps=True)
    assert isinstance(single, Transcription)
    many = recognizer.transcribe(world.wavs[:2], user="alice")
    assert isinstance(many, list) and len(many) == 2
    assert many[0].score == pytest.approx(single.score, rel=1e-5)
    assert 0.0 < single.confidence <= 1.0
    probabilities = [stamp.probability for stamp in single.timestamps if stamp.token != " "]
    assert single.confidence == pytest.approx(sum(probabilities) / len(probabilities), abs=1e-3)  # uncalibrated
    assert single.num_frames == math.ceil((1 + (6400 - 320) // 160) / 2)  # 0.4 s, 20 ms window, 10 ms hop
    with pytest.raises(ValueError, match="2 users for 3 inputs"):
        recognizer.transcribe(world.wavs[:3], user=["alice", "bob"])
    with pytest.raises(ValueError, match="single input"):
        recognizer.transcribe(world.wavs[0], user=["alice"])


def test_unknown_user_error_lists_available_adapters_before_any_compute(world):
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)
    calls = []
    recognizer.model.conv.register_forward_hook(lambda *args: calls.append(1))
    with pytest.raises(UnknownUserError, match=r"'carol'.*available adapters: \['alice', 'bob'\]"):
        recognizer.transcribe(world.wavs, user=["alice", "carol", None, "bob"])
    assert calls == []
    (world.adapter_dir / "dave_adapter.pt").mkdir()  # review, stop 34: listed as available in its own miss
    try:
        with pytest.raises(UnknownUserError, match=r"'dave'.*available adapters: \['alice', 'bob'\]"):
            recognizer.transcribe(world.wavs[0], user="dave")
    finally:
        (world.adapter_dir / "dave_adapter.pt").rmdir()
    with pytest.raises(ValueError, match="invalid adapter name"):
        recognizer.transcribe(world.wavs[0], user="../alice")
    with pytest.raises(UnknownUserError, match="'alic'"):  # exact names only
        recognizer.transcribe(world.wavs[0], user="alic")
    assert calls == []


def test_fallback_to_base_for_users_without_an_adapter(world):
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir, fallback_to_base=True)
    results = recognizer.transcribe(world.wavs[:2], user=["carol", "alice"])
    base = recognizer.transcribe(world.wavs[:2])
    assert (results[0].user, results[0].adapter) == ("carol", None)
    assert results[0].score == base[0].score and results[0].tokens == base[0].tokens
    assert results[1].adapter == "alice"
    with pytest.raises(ValueError, match="invalid adapter name"):  # a malformed name never falls back
        recognizer.transcribe(world.wavs[0], user="a/b")


def test_without_adapter_dir_users_are_unknown(world):
    recognizer = Recognizer.from_checkpoint(world.checkpoint)
    assert recognizer.available_users() == []
    with pytest.raises(UnknownUserError, match="no adapter_dir"):
        recognizer.transcribe(world.wavs[0], user="alice")
    assert recognizer.transcribe(world.wavs[0]).adapter is None


def test_adapter_of_another_base_model_is_refused(world, tmp_path):
    other = build_base(seed=9)
    save_user_adapter(other, world.adapter_dir, "mallory", "head", seed=3)
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir, fallback_to_base=True)
    with pytest.raises(AdapterCompatibilityError, match="base_fingerprint"):
        recognizer.transcribe(world.wavs[0], user="mallory")
    assert recognizer.model.adapter is None


def test_timestamps_follow_the_frame_shift_and_conv_stride(world):
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)
    assert recognizer.frame_seconds == pytest.approx(2 * FEATURES.frame_shift_ms / 1000)
    result = recognizer.transcribe(world.wavs[3], user="bob", return_timestamps=True)
    expected = oracle(world, world.wavs[3], "bob")
    assert [stamp.token_id for stamp in result.timestamps] == result.tokens
    assert [stamp.start for stamp in result.timestamps] == pytest.approx(
        [step * 0.02 for token, step in zip(expected.tokens, expected.timesteps) if token > 3]
    )
    assert all(0.0 <= stamp.start < result.duration for stamp in result.timestamps)
    assert [stamp.token for stamp in result.timestamps] == [TOKENS[token] for token in result.tokens]
    assert recognizer.transcribe(world.wavs[3]).timestamps is None
    assert "timestamps" not in recognizer.transcribe(world.wavs[3]).to_dict()


def test_beam_search_decoding(world):
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir, beam_size=4)
    greedy = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)
    beams, best_paths = recognizer.transcribe(world.wavs, user="alice"), greedy.transcribe(world.wavs, user="alice")
    for beam, best_path in zip(beams, best_paths):
        assert 0.0 < beam.confidence <= 1.0
        if beam.tokens == best_path.tokens:  # the prefix probability sums paths, so it is at least the best path's
            assert beam.score >= best_path.score - 1e-6


def test_checkpoint_with_an_attached_adapter_is_served_as_its_base(world, tmp_path):
    model = build_base()
    model.add_adapter("head", hidden_dims=[8])
    vocab = Vocabulary(TOKENS)
    path = save_checkpoint(
        tmp_path / "with_adapter.pt",
        model,
        model_config={
            "input_dim": 16,
            "num_classes": len(vocab),
            "num_rnn_layers": 2,
            "rnn_hidden_dim": 16,
            "use_adapter": True,
            "adapter_hidden_dims": [8],
        },
        vocab=vocab,
        feature_config=FEATURES,
    )
    recognizer = Recognizer.from_checkpoint(path, adapter_dir=world.adapter_dir)
    assert recognizer.model.adapter is None
    assert recognizer.transcribe(world.wavs[0], user="alice").score == pytest.approx(
        oracle(world, world.wavs[0], "alice").score, rel=1e-5
    )
    assert not recognizer.model.training
    assert not any(parameter.requires_grad for parameter in recognizer.model.parameters())


def test_inference_never_imports_the_trainer():
    code = "import sys, kospeech.inference; print(sorted(m for m in sys.modules if m.startswith('kospeech.trainer')))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert output.stdout.strip() == "[]"


def test_a_checkpoints_dither_is_not_applied_when_transcribing(world):
    """Dither is a training setting: transcribing the same audio twice gives the same answer, equal to the answer
    without dither, and leaves the caller's torch RNG where it was."""
    vocab = Vocabulary(TOKENS)
    dithered = Recognizer(build_base(), vocab, dataclasses.replace(FEATURES, dither=1.0))
    plain = Recognizer(build_base(), vocab, FEATURES)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = dithered.transcribe(world.wavs[0])
    assert torch.equal(torch.get_rng_state(), state)
    second = dithered.transcribe(world.wavs[0])
    assert first.score == second.score and first.tokens == second.tokens
    assert first.score == pytest.approx(plain.transcribe(world.wavs[0]).score, rel=1e-6)
    assert dithered.feature_config.dither == 1.0  # what adapters are checked against stays the checkpoint's
