import threading

import pytest
import torch

from kospeech.data.manifest import read_manifest
from kospeech.errors import TrainingInterrupted
from kospeech.model_builder import build_deepspeech2
from kospeech.models import AdapterManager, DeepSpeech2
from kospeech.trainer import AdapterTrainConfig, AdapterTrainer, split_holdout


def _adapter_config(tmp_path, **overrides):
    values = dict(
        base_model_path="unused.pt",
        output_dir=str(tmp_path / "run"),
        adapter_save_dir=str(tmp_path / "adapters"),
        adapter_hidden_dims=[32],
        batch_size=4,
        num_epochs=2,
        num_workers=0,
        warmup_steps=2,
        init_lr=1e-3,
        peak_lr=1e-3,
        num_threads=1,
        log_every=1000,
        seed=3,
        device="cpu",
    )
    values.update(overrides)
    return AdapterTrainConfig(**values)


@pytest.fixture
def user_entries(tiny_corpus, corpus_vocab):
    user = sorted(path.name for path in (tiny_corpus / "users").iterdir())[0]
    return read_manifest(tiny_corpus / "users" / user / "enroll.tsv", corpus_vocab)


def test_spec_example_snippet_runs(tmp_path, user_entries, corpus_vocab, feature_config):
    torch.manual_seed(0)
    model = DeepSpeech2(
        input_dim=feature_config.feature_dim,
        num_classes=len(corpus_vocab),
        num_rnn_layers=2,
        rnn_hidden_dim=32,
        use_adapter=True,
        adapter_hidden_dims=[32, 16],
    )
    model.freeze_base_model()
    trainer = AdapterTrainer(_adapter_config(tmp_path), corpus_vocab, feature_config, user_entries)
    trainer.train(model, batch_size=4, epoch_time_step=None, num_epochs=2, adapter_name="user_john")
    path = tmp_path / "adapters" / "user_john_adapter.pt"
    assert path.exists() and path == trainer.adapter_path
    info = AdapterManager.get_adapter_info(path)
    assert info["name"] == "user_john"
    assert info["hidden_dims"] == [32, 16]
    stats = info["training_stats"]
    assert stats["utterances"] == len(trainer.train_entries) and stats["audio_seconds"] > 0
    assert 0.0 <= stats["cer_after"] and stats["cer_before"] is not None
    fresh = DeepSpeech2(
        input_dim=feature_config.feature_dim, num_classes=len(corpus_vocab), num_rnn_layers=2, rnn_hidden_dim=32
    )
    fresh.load_base_state_dict(model.base_state_dict())
    AdapterManager.load_adapter(
        fresh, path, vocab_fingerprint=corpus_vocab.fingerprint(), feature_config=feature_config.to_dict()
    )
    model.eval(), fresh.eval()
    inputs, lengths = torch.randn(2, 40, feature_config.feature_dim), torch.tensor([40, 25])
    with torch.no_grad():
        assert torch.equal(model(inputs, lengths)[2], fresh(inputs, lengths)[2])


@pytest.mark.parametrize("adapter_type", ["head", "residual_head", "encoder"])
def test_adapter_training_leaves_the_base_bit_identical(
    tmp_path, user_entries, corpus_vocab, feature_config, adapter_type
):
    torch.manual_seed(0)
    model = build_deepspeech2(
        feature_config.feature_dim, len(corpus_vocab), {"num_rnn_layers": 2, "rnn_hidden_dim": 32, "dropout_p": 0.3}
    )
    model.train()
    with torch.no_grad():
        model(torch.randn(3, 60, feature_config.feature_dim), torch.tensor([60, 50, 40]))
    before = {key: value.clone() for key, value in model.state_dict().items()}
    config = _adapter_config(tmp_path, adapter_type=adapter_type, spec_augment=True, adapter_bottleneck_dim=8)
    trainer = AdapterTrainer(config, corpus_vocab, feature_config, user_entries)
    trainer.train(model, num_epochs=2, adapter_name=f"u_{adapter_type}")
    after = model.state_dict()
    base_keys = [key for key in before if "adapter" not in key]
    assert any("running_mean" in key for key in base_keys) and any("num_batches_tracked" in key for key in base_keys)
    for key in base_keys:
        assert torch.equal(before[key], after[key]), key
    adapter_keys = [key for key in after if "adapter" in key]
    assert adapter_keys and trainer.parameter_stats["trainable"] == sum(
        p.numel() for name, p in model.named_parameters() if "adapter" in name
    )
    assert trainer.state.global_step > 0


def test_optimizer_sees_only_adapter_parameters(tmp_path, user_entries, corpus_vocab, feature_config):
    model = build_deepspeech2(
        feature_config.feature_dim,
        len(corpus_vocab),
        {"num_rnn_layers": 1, "rnn_hidden_dim": 16, "use_adapter": True, "adapter_hidden_dims": [8]},
    )
    model.freeze_base_model()
    trainer = AdapterTrainer(_adapter_config(tmp_path), corpus_vocab, feature_config, user_entries)
    optimizer = trainer._build_optimizer(model, total_steps=10)
    optimized = {id(p) for group in optimizer.optimizer.param_groups for p in group["params"]}
    adapter = {id(p) for name, p in model.named_parameters() if "adapter" in name}
    assert optimized == adapter


def test_holdout_split_is_seeded_and_disjoint(user_entries):
    train_a, valid_a = split_holdout(user_entries, 0.25, seed=1)
    train_b, valid_b = split_holdout(user_entries, 0.25, seed=1)
    _, valid_c = split_holdout(user_entries, 0.25, seed=2)
    assert (train_a, valid_a) == (train_b, valid_b)
    assert not set(train_a) & set(valid_a)
    assert len(train_a) + len(valid_a) == len(user_entries)
    assert valid_a != valid_c or len(user_entries) < 4
    with pytest.raises(ValueError, match="at least 2"):
        split_holdout(user_entries[:1], 0.5, seed=0)


def test_invalid_adapter_name_is_refused_before_training(tmp_path, user_entries, corpus_vocab, feature_config):
    model = build_deepspeech2(
        feature_config.feature_dim, len(corpus_vocab), {"num_rnn_layers": 1, "rnn_hidden_dim": 16}
    )
    trainer = AdapterTrainer(_adapter_config(tmp_path), corpus_vocab, feature_config, user_entries)
    with pytest.raises(ValueError):
        trainer.train(model, adapter_name="../evil")
    assert not (tmp_path / "adapters").exists()


def test_data_parallel_wrapped_model_trains_and_saves_the_same_adapter(
    tmp_path, user_entries, corpus_vocab, feature_config
):
    results = {}
    for wrapped in (False, True):
        torch.manual_seed(0)
        model = build_deepspeech2(
            feature_config.feature_dim, len(corpus_vocab), {"num_rnn_layers": 1, "rnn_hidden_dim": 16}
        )
        config = _adapter_config(tmp_path / str(wrapped), adapter_type="residual_head", num_epochs=1)
        trainer = AdapterTrainer(config, corpus_vocab, feature_config, user_entries)
        trainer.train(torch.nn.DataParallel(model) if wrapped else model, adapter_name="dp_user")
        results[wrapped] = torch.load(trainer.adapter_path, weights_only=True)["adapter_state_dict"]
    assert results[True].keys() == results[False].keys()
    for key in results[False]:
        assert torch.equal(results[True][key], results[False][key]), key


def test_same_seed_gives_the_same_adapter_whatever_the_global_rng_drew_before(
    tmp_path, user_entries, corpus_vocab, feature_config
):
    adapters = []
    for run, draws in enumerate([0, 7]):
        torch.manual_seed(0)
        model = DeepSpeech2(
            input_dim=feature_config.feature_dim, num_classes=len(corpus_vocab), num_rnn_layers=1, rnn_hidden_dim=16
        )
        torch.rand(draws)  # e.g. a caller that built other models first
        trainer = AdapterTrainer(
            _adapter_config(tmp_path / str(run), num_epochs=1), corpus_vocab, feature_config, user_entries
        )
        trainer.train(model, adapter_name="same_seed")
        adapters.append(model.adapter_state_dict())
    assert adapters[0].keys() == adapters[1].keys()
    for key in adapters[0]:
        assert torch.equal(adapters[0][key], adapters[1][key]), key


def test_an_interrupt_stops_the_warm_start_at_its_next_step(tmp_path, user_entries, corpus_vocab, feature_config):
    """A shutdown during the warm start (up to 150 steps before the first epoch) stops after the current step."""
    model = build_deepspeech2(
        feature_config.feature_dim, len(corpus_vocab), {"num_rnn_layers": 1, "rnn_hidden_dim": 16}
    )
    config = _adapter_config(tmp_path, warm_start_steps=50, alignment_steps=0, cache_trunk=False)
    trainer = AdapterTrainer(config, corpus_vocab, feature_config, user_entries)
    trainer.interrupt = threading.Event()
    divergence = trainer._frame_divergence

    def divergence_then_interrupt(*args):  # another thread's request, arriving during an early warm-start step
        if divergence_then_interrupt.calls == 2:
            trainer.interrupt.set()
        divergence_then_interrupt.calls += 1
        return divergence(*args)

    divergence_then_interrupt.calls = 0
    trainer._frame_divergence = divergence_then_interrupt
    with pytest.raises(TrainingInterrupted, match=r"at warm start step [1-3]$"):  # not after all 50
        trainer.train(model, adapter_name="alice")
    assert trainer.state.global_step == 0
