import copy
import logging

import pytest
import torch

from kospeech.data.features import FeatureExtractor
from kospeech.data.manifest import read_manifest
from kospeech.model_builder import build_deepspeech2
from kospeech.trainer import AdapterTrainConfig, AdapterTrainer
from kospeech.trainer.trunk_cache import (
    EXTRACTOR,
    FIRST_RNN_LAYER,
    RNN_OUTPUT,
    CachedFeatureLoader,
    CachedTrunkModel,
    TrunkCacheTooLargeError,
    build_trunk_cache,
    cache_point_for,
    estimate_cache_bytes,
    trunk_features,
)

ADAPTER_TYPES = ["head", "residual_head", "encoder"]


class _RecordingAdapterTrainer(AdapterTrainer):
    """Keeps the loss of every training step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_losses = []

    def _train_step(self, model, batch, optimizer, meter):
        loss = super()._train_step(model, batch, optimizer, meter)
        self.step_losses.append(loss)
        return loss


def _config(tmp_path, **overrides):
    values = dict(
        base_model_path="unused.pt",
        output_dir=str(tmp_path / "run"),
        adapter_save_dir=str(tmp_path / "adapters"),
        adapter_hidden_dims=[32],
        adapter_bottleneck_dim=8,
        batch_size=2,
        num_epochs=3,
        num_workers=0,
        warmup_steps=2,
        init_lr=3e-3,
        peak_lr=3e-3,
        final_lr=1e-3,
        num_threads=1,
        log_every=1000,
        seed=5,
        early_stopping_patience=100,
        spec_augment=False,
        # the head's warm start runs on the cache too, briefly: float rounding grows with every step before the CTC ones
        warm_start_steps=4,
        alignment_steps=4,
        device="cpu",  # the 1e-4 agreement is a CPU (fp32) claim
    )
    values.update(overrides)
    return AdapterTrainConfig(**values)


@pytest.fixture
def user_entries(tiny_corpus, corpus_vocab):
    user = sorted(path.name for path in (tiny_corpus / "users").iterdir())[0]
    return read_manifest(tiny_corpus / "users" / user / "enroll.tsv", corpus_vocab)


def _base_model(feature_config, vocab, adapter_type):
    """A tiny base with non-trivial BatchNorm statistics and an adapter whose zero-initialized parts are not zero."""
    torch.manual_seed(0)
    model = build_deepspeech2(
        feature_config.feature_dim, len(vocab), {"num_rnn_layers": 2, "rnn_hidden_dim": 16, "dropout_p": 0.3}
    )
    model.train()
    with torch.no_grad():
        model(torch.randn(3, 60, feature_config.feature_dim) * 2 + 0.5, torch.tensor([60, 50, 40]))
    model.add_adapter(adapter_type, hidden_dims=[32], bottleneck_dim=8, dropout_p=0.2)
    with torch.no_grad():
        for parameter in model.adapter.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model


@pytest.mark.parametrize("adapter_type", ADAPTER_TYPES)
def test_cached_training_follows_the_uncached_loss_trajectory(
    tmp_path, user_entries, corpus_vocab, feature_config, adapter_type
):
    reference = _base_model(feature_config, corpus_vocab, adapter_type)
    runs = {}
    for cached in (False, True):
        model = copy.deepcopy(reference)
        before = {key: value.clone() for key, value in model.base_state_dict().items()}
        config = _config(tmp_path / str(cached), adapter_type=adapter_type, cache_trunk=cached)
        trainer = _RecordingAdapterTrainer(config, corpus_vocab, feature_config, user_entries)
        trainer.train(model, adapter_name="u1")
        for key, value in model.base_state_dict().items():
            assert torch.equal(before[key], value), key
        runs[cached] = (trainer, model)
    uncached, cached = runs[False][0], runs[True][0]
    assert uncached.cache_info["train"] is False and cached.cache_info["train"] is True
    assert cached.cache_info["point"] == cache_point_for(adapter_type)
    assert len(cached.step_losses) == len(uncached.step_losses) > 3
    assert all(loss is not None for loss in cached.step_losses)
    torch.testing.assert_close(torch.tensor(cached.step_losses), torch.tensor(uncached.step_losses), rtol=0, atol=1e-4)
    for record_cached, record_uncached in zip(cached.state.history, uncached.state.history):
        # losses of ~40 nats summed over many frames: float32 rounding is relative
        assert record_cached["valid_loss"] == pytest.approx(record_uncached["valid_loss"], rel=1e-5, abs=1e-4)
        assert record_cached["valid_cer"] == record_uncached["valid_cer"]
    assert abs(cached.base_result.loss - uncached.base_result.loss) < 1e-5
    trained_cached, trained_uncached = runs[True][1].adapter_state_dict(), runs[False][1].adapter_state_dict()
    for key, value in trained_uncached.items():
        torch.testing.assert_close(trained_cached[key], value, rtol=0, atol=1e-4, msg=key)
    assert cached.adapter_path.exists() and cached.trunk_cache is None


@pytest.mark.parametrize("adapter_type", ADAPTER_TYPES)
def test_cached_model_gives_the_active_output_of_the_full_model(feature_config, corpus_vocab, adapter_type):
    model = _base_model(feature_config, corpus_vocab, adapter_type).eval()
    point = cache_point_for(adapter_type)
    inputs, lengths = torch.randn(3, 47, feature_config.feature_dim), torch.tensor([47, 30, 12])
    cached_model = CachedTrunkModel(model, point)
    with torch.no_grad():
        features, output_lengths = trunk_features(model, inputs, lengths, point)
        expected = model.head(model.encode(inputs, lengths)[0])
        actual, returned_lengths = cached_model(features, output_lengths)
        base_output = model(inputs, lengths)[0]
        with model.disable_adapter():
            base_actual, _ = cached_model(features, output_lengths)
    assert torch.equal(returned_lengths, output_lengths)
    assert not torch.allclose(expected, base_output, atol=1e-3)  # the adapter really changes the output
    for row, length in enumerate(output_lengths.tolist()):
        torch.testing.assert_close(actual[row, :length], expected[row, :length], rtol=0, atol=1e-5)
        torch.testing.assert_close(base_actual[row, :length], base_output[row, :length], rtol=0, atol=1e-5)


def test_encoder_cache_point_is_the_extractor_output(feature_config, corpus_vocab):
    model = _base_model(feature_config, corpus_vocab, "encoder").eval()
    assert cache_point_for("encoder") == EXTRACTOR and cache_point_for("head") == RNN_OUTPUT
    inputs, lengths = torch.randn(2, 40, feature_config.feature_dim), torch.tensor([40, 21])
    with torch.no_grad():
        hidden, conv_lengths = model.conv(inputs, lengths)
        expected = model.rnn_layers[0](hidden, conv_lengths)
        extracted, _ = trunk_features(model, inputs, lengths, EXTRACTOR)
        first_layer, _ = trunk_features(model, inputs, lengths, FIRST_RNN_LAYER)
    assert torch.equal(extracted, hidden)
    assert torch.equal(first_layer, expected)


def test_cache_entries_equal_each_utterance_alone(base_entries, corpus_vocab, feature_config):
    model = _base_model(feature_config, corpus_vocab, "head")
    extractor = FeatureExtractor(feature_config)
    entries = base_entries[:5]
    with build_trunk_cache(model, entries, extractor, point=RNN_OUTPUT, batch_size=4) as cache:
        assert len(cache) == 5 and cache.num_spilled == 0
        assert model.training  # the mode is restored
        model.eval()
        for key, entry in enumerate(entries):
            features = extractor.from_file(entry.audio_path)
            with torch.no_grad():
                alone, _ = trunk_features(model, features[None], torch.tensor([features.shape[0]]), RNN_OUTPUT)
            torch.testing.assert_close(cache.features(key), alone[0], rtol=0, atol=1e-5)
            assert cache.targets(key).tolist() == list(entry.label_ids)


@pytest.mark.parametrize("point", [RNN_OUTPUT, EXTRACTOR])
def test_groups_batched_apart_give_each_groups_own_cache_bit_for_bit(base_entries, corpus_vocab, feature_config, point):
    """Review K, stop 40: the multi-user job cached every user's utterances in batches mixing users, whose outputs
    differ from the user's own cache by float rounding (other batch shapes, other kernels); the warm start's steps
    carried that into adapters 0.1 apart. Users batched apart (``group_sizes``) get their own cache's bits."""
    torch.manual_seed(0)
    model = build_deepspeech2(
        feature_config.feature_dim, len(corpus_vocab), {"num_rnn_layers": 3, "rnn_hidden_dim": 256}
    )
    extractor = FeatureExtractor(feature_config)
    groups = [base_entries[:5], base_entries[5:11], base_entries[11:14]]
    shared = build_trunk_cache(
        model,
        [entry for group in groups for entry in group],
        extractor,
        point=point,
        batch_size=4,
        group_sizes=[len(group) for group in groups],
    )
    start = 0
    for group in groups:
        with build_trunk_cache(model, group, extractor, point=point, batch_size=4) as alone:
            for key in range(len(group)):
                assert torch.equal(shared.features(start + key), alone.features(key)), (start, key)
        start += len(group)
    shared.close()
    with pytest.raises(ValueError, match="do not split 14 utterances"):
        build_trunk_cache(model, base_entries[:14], extractor, point=point, batch_size=4, group_sizes=[5, 6])


def test_cache_spills_to_disk_over_the_bound_and_cleans_up(tmp_path, base_entries, corpus_vocab, feature_config):
    model = _base_model(feature_config, corpus_vocab, "head")
    extractor = FeatureExtractor(feature_config)
    entries = base_entries[:6]
    with build_trunk_cache(model, entries, extractor, point=RNN_OUTPUT, batch_size=3) as in_memory:
        total = in_memory.memory_bytes
        bound_mb = total / 2 / 2**20
        spilled = build_trunk_cache(
            model, entries, extractor, point=RNN_OUTPUT, batch_size=3, max_mb=bound_mb, spill_dir=tmp_path / "spill"
        )
        assert 0 < spilled.num_spilled < len(entries)
        assert spilled.memory_bytes <= bound_mb * 2**20 and spilled.memory_bytes + spilled.disk_bytes == total
        assert list((tmp_path / "spill").iterdir())
        for key in range(len(entries)):
            assert torch.equal(spilled.features(key), in_memory.features(key))
        loader = CachedFeatureLoader(spilled, range(len(entries)), 4, shuffle=False)
        batches = list(loader)
        assert [batch.inputs.shape[0] for batch in batches] == [4, 2]
        spilled.close()
        assert list((tmp_path / "spill").iterdir()) == []


def test_cache_over_the_bound_without_spilling_is_refused_up_front(
    tmp_path, user_entries, corpus_vocab, feature_config
):
    model = _base_model(feature_config, corpus_vocab, "head")
    config = _config(tmp_path, trunk_cache_max_mb=0.001, trunk_cache_spill=False)
    trainer = AdapterTrainer(config, corpus_vocab, feature_config, user_entries)
    with pytest.raises(TrunkCacheTooLargeError, match="trunk_cache_max_mb"):
        trainer.train(model, adapter_name="u1")
    assert not (tmp_path / "adapters").exists()


def test_estimate_matches_the_cache_size(base_entries, corpus_vocab, feature_config):
    model = _base_model(feature_config, corpus_vocab, "head")
    extractor = FeatureExtractor(feature_config)
    with build_trunk_cache(model, base_entries[:4], extractor, point=RNN_OUTPUT, batch_size=4) as cache:
        durations = [cache.duration(key) for key in range(4)]
        estimate = estimate_cache_bytes(durations, feature_config, model.rnn_output_dim)
        assert abs(estimate - cache.memory_bytes) <= 4 * model.rnn_output_dim * 4


def test_spec_augment_caches_only_the_held_out_set(tmp_path, user_entries, corpus_vocab, feature_config, caplog):
    model = _base_model(feature_config, corpus_vocab, "residual_head")
    config = _config(tmp_path, spec_augment=True, num_epochs=1)
    trainer = AdapterTrainer(config, corpus_vocab, feature_config, user_entries)
    with caplog.at_level(logging.INFO, logger="kospeech.trainer.adapter_trainer"):
        trainer.train(model, adapter_name="u1")
    assert trainer.cache_info["train"] is False and trainer.cache_info["valid"] is True
    assert any("SpecAugment" in record.getMessage() for record in caplog.records)
    assert trainer.training_stats()["trunk_cache"]["train"] is False


def test_cache_trunk_off_recomputes_everything(tmp_path, user_entries, corpus_vocab, feature_config):
    model = _base_model(feature_config, corpus_vocab, "head")
    trainer = AdapterTrainer(
        _config(tmp_path, cache_trunk=False, num_epochs=1), corpus_vocab, feature_config, user_entries
    )
    trainer.train(model, adapter_name="u1")
    assert trainer.cache_info == {"train": False, "valid": False}
    assert trainer.adapter_path.exists()


def test_speed_perturbed_copies_are_cached_and_the_held_out_part_is_not_perturbed(
    tmp_path, user_entries, corpus_vocab, feature_config
):
    model = _base_model(feature_config, corpus_vocab, "encoder")
    config = _config(tmp_path, num_epochs=1, speed_perturbation=[0.9, 1.1])
    trainer = AdapterTrainer(config, corpus_vocab, feature_config, user_entries)
    recorded = [entry for entry in trainer.train_entries if entry.speed == 1.0]
    assert len(trainer.train_entries) == 3 * len(recorded)
    assert sorted({entry.speed for entry in trainer.train_entries}) == [0.9, 1.0, 1.1]
    assert all(entry.speed == 1.0 for entry in trainer.valid_entries)
    assert len(recorded) + len(trainer.valid_entries) == len(user_entries)
    trainer.train(model, adapter_name="u1")
    assert trainer.cache_info["train"] is True
    stats = trainer.training_stats()
    assert stats["utterances"] == len(recorded)
    assert stats["speed_perturbed_copies"] == 2 * len(recorded)
    # a copy's cached trunk output is as long as its playback speed makes it
    extractor = FeatureExtractor(feature_config)
    with build_trunk_cache(model, trainer.train_entries, extractor, point=FIRST_RNN_LAYER, batch_size=4) as cache:
        count = len(recorded)
        for key in range(count):
            frames = [int(cache.batch([key + copy * count]).input_lengths[0]) for copy in range(3)]
            assert frames[1] == pytest.approx(frames[0] / 0.9, abs=2)
            assert frames[2] == pytest.approx(frames[0] / 1.1, abs=2)
