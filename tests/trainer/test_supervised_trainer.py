import dataclasses
import json
import threading

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from kospeech.checkpoint import load_checkpoint, save_checkpoint
from kospeech.device import torch_threads
from kospeech.errors import CheckpointError, ConfigError, TrainingInterrupted
from kospeech.evaluation import evaluate
from kospeech.model_builder import build_deepspeech2
from kospeech.trainer import AdapterTrainConfig, SupervisedTrainer, TrainConfig


def _model(feature_config, vocab, model_config, seed=0):
    torch.manual_seed(seed)
    return build_deepspeech2(feature_config.feature_dim, len(vocab), model_config)


def _record(feature_config, vocab, model_config):
    return {"input_dim": feature_config.feature_dim, "num_classes": len(vocab), **model_config.__dict__}


def _quick_trainer(output_dir, entries, held_out, vocab, feature_config, model_config, resolved=None, **settings):
    """A trainer (of batches of 2 unless ``settings`` say otherwise) on one thread, without workers, logs or periodic
    checkpoints; ``resolved`` is the job's resolved config, as a CLI run hands it over."""
    config = TrainConfig(
        **{"batch_size": 2, **settings},
        output_dir=str(output_dir),
        num_workers=0,
        log_every=1000,
        checkpoint_every=0,
        num_threads=1,
    )
    return SupervisedTrainer(
        config, vocab, feature_config, entries, held_out, _record(feature_config, vocab, model_config), resolved
    )


@pytest.mark.slow
def test_tiny_model_overfits_a_handful_of_utterances(
    tmp_path, base_entries, corpus_vocab, feature_config, tiny_model_config
):
    entries = base_entries[:4]
    config = TrainConfig(
        output_dir=str(tmp_path / "run"),
        batch_size=4,
        num_epochs=150,
        num_workers=0,
        spec_augment=False,
        lr_scheduler="constant",
        peak_lr=3e-3,
        init_lr=3e-3,
        log_every=1000,
        checkpoint_every=0,
        num_threads=1,
    )
    model = _model(feature_config, corpus_vocab, tiny_model_config)
    trainer = SupervisedTrainer(
        config, corpus_vocab, feature_config, entries, entries, _record(feature_config, corpus_vocab, tiny_model_config)
    )
    trainer.train(model)
    result = evaluate(model, trainer.build_loader(entries, 4, train=False), corpus_vocab)
    assert result.cer < 0.05, result.pairs
    with pytest.raises(ValueError, match=r"^evaluate \(dev\): the batches held no utterance"):
        evaluate(model, [], corpus_vocab, description="dev")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history[-1]["valid_cer"] <= history[0]["valid_cer"]
    assert (tmp_path / "run" / "best.pt").exists() and (tmp_path / "run" / "last.pt").exists()


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, corpus_vocab, feature_config, tiny_model_config):
    model = _model(feature_config, corpus_vocab, tiny_model_config).eval()
    path = save_checkpoint(
        tmp_path / "ckpt.pt",
        model,
        model_config=_record(feature_config, corpus_vocab, tiny_model_config),
        vocab=corpus_vocab,
        feature_config=feature_config,
        metrics={"cer": 0.5},
    )
    raw = torch.load(path, weights_only=True)
    assert {"model_state_dict", "vocab", "feature_config", "model_config", "format_version"} <= set(raw)
    checkpoint = load_checkpoint(path)
    assert checkpoint.vocab == corpus_vocab
    assert checkpoint.feature_config == feature_config
    restored = checkpoint.build_model()
    inputs, lengths = torch.randn(2, 50, feature_config.feature_dim), torch.tensor([50, 31])
    expected, actual = model(inputs, lengths), restored(inputs, lengths)
    assert torch.equal(expected[0], actual[0]) and torch.equal(expected[1], actual[1])


def test_values_the_loader_would_refuse_are_converted_or_refused_when_saving(
    tmp_path, corpus_vocab, feature_config, tiny_model_config
):
    """Review, stop 37: numpy numbers, a Path or a nested DictConfig were saved, and the file then failed to load
    ("refused by the weights-only loader")."""
    model = _model(feature_config, corpus_vocab, tiny_model_config)
    record = _record(feature_config, corpus_vocab, tiny_model_config)
    path = save_checkpoint(
        tmp_path / "ckpt.pt",
        model,
        model_config={**record, "num_classes": np.int64(record["num_classes"])},
        vocab=corpus_vocab,
        feature_config=feature_config,
        metrics={"cer": np.float64(0.1), "improved": np.bool_(True), "steps": np.array(3)},
        trainer_state={"epoch": np.int64(3), "rng": torch.arange(3)},
        train_config={"nested": OmegaConf.create({"lr": 0.1, "layers": [1, 2]})},
    )
    checkpoint = load_checkpoint(path)
    assert checkpoint.metrics == {"cer": 0.1, "improved": True, "steps": 3} and checkpoint.train_config == {
        "nested": {"lr": 0.1, "layers": [1, 2]}
    }
    assert checkpoint.trainer_state["epoch"] == 3 and torch.equal(checkpoint.trainer_state["rng"], torch.arange(3))
    with pytest.raises(TypeError, match=r"train_config\.out: a pathlib\.PosixPath cannot be stored in a checkpoint"):
        save_checkpoint(
            tmp_path / "refused.pt",
            model,
            model_config=record,
            vocab=corpus_vocab,
            feature_config=feature_config,
            train_config={"out": tmp_path},
        )
    assert not (tmp_path / "refused.pt").exists()


class _KilledAtStep(SupervisedTrainer):
    """Raises at the start of a given global step, as a kill would stop the process."""

    kill_at_step = 0

    def _train_step(self, model, batch, optimizer, meter):
        if self.state.global_step + 1 == self.kill_at_step:
            raise KeyboardInterrupt("simulated kill")
        return super()._train_step(model, batch, optimizer, meter)


def _train(tmp_path, entries, vocab, feature_config, model_config, resume, kill_at_step=0):
    config = TrainConfig(
        output_dir=str(tmp_path),
        batch_size=2,
        num_epochs=2,
        num_workers=0,
        spec_augment=True,
        warmup_steps=3,
        log_every=1000,
        checkpoint_every=4,
        num_threads=1,
        resume=resume,
        seed=7,
        device="cpu",  # bit-exact resume needs deterministic kernels; cuDNN's backward passes are not
    )
    model = _model(feature_config, vocab, model_config)
    trainer = _KilledAtStep(
        config, vocab, feature_config, entries, entries[:2], _record(feature_config, vocab, model_config)
    )
    trainer.kill_at_step = kill_at_step
    trainer.train(model)
    return trainer, load_checkpoint(tmp_path / "last.pt")


def test_resume_after_a_kill_continues_exactly(tmp_path, base_entries, corpus_vocab, feature_config):
    from kospeech.model_builder import DeepSpeech2Config

    model_config = DeepSpeech2Config(num_rnn_layers=1, rnn_hidden_dim=16, dropout_p=0.2)
    entries = base_entries[:6]
    _, straight = _train(tmp_path / "straight", entries, corpus_vocab, feature_config, model_config, False)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "resumed", entries, corpus_vocab, feature_config, model_config, False, kill_at_step=6)
    interrupted = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert (interrupted.trainer_state["global_step"], interrupted.trainer_state["step_in_epoch"]) == (4, 1)
    _, resumed = _train(tmp_path / "resumed", entries, corpus_vocab, feature_config, model_config, True)
    assert resumed.trainer_state["global_step"] == straight.trainer_state["global_step"] == 6
    for key, value in straight.model_state_dict.items():
        torch.testing.assert_close(resumed.model_state_dict[key], value, rtol=0, atol=1e-6, msg=key)
    assert resumed.optimizer_state_dict["scheduler"] == straight.optimizer_state_dict["scheduler"]
    # review, stop 34: the resumed epoch's training figures counted only the steps after the resume
    for mine, theirs in zip(resumed.trainer_state["history"], straight.trainer_state["history"], strict=True):
        for key in ("train_loss", "train_cer"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-6), (mine["epoch"], key)


def test_resuming_from_a_trainer_state_with_an_unknown_field_names_the_file(
    tmp_path, base_entries, corpus_vocab, feature_config
):
    """Review, stop 34: a field this version does not know (a newer writer's) gave a TypeError traceback."""
    from kospeech.fileio import atomic_torch_save, safe_torch_load
    from kospeech.model_builder import DeepSpeech2Config

    model_config = DeepSpeech2Config(num_rnn_layers=1, rnn_hidden_dim=16)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, base_entries[:6], corpus_vocab, feature_config, model_config, False, kill_at_step=5)
    raw = safe_torch_load(tmp_path / "last.pt", what="checkpoint")
    raw["trainer_state"]["grad_scaler"] = {"scale": 1.0}
    atomic_torch_save(raw, tmp_path / "last.pt")
    with pytest.raises(
        CheckpointError, match=r"last\.pt: cannot resume from it: its trainer_state holds \['grad_scaler'\]"
    ):
        _train(tmp_path, base_entries[:6], corpus_vocab, feature_config, model_config, True)


def test_time_budget_stops_and_leaves_a_resumable_checkpoint(tmp_path, base_entries, corpus_vocab, feature_config):
    from kospeech.model_builder import DeepSpeech2Config

    model_config = DeepSpeech2Config(num_rnn_layers=1, rnn_hidden_dim=16)
    model = _model(feature_config, corpus_vocab, model_config)
    trainer = _quick_trainer(
        tmp_path, base_entries[:4], None, corpus_vocab, feature_config, model_config, num_epochs=50, max_minutes=1e-6
    )
    with torch_threads(2):  # e.g. a server's own count: training runs on its num_threads, then gives it back
        trainer.train(model)
        assert torch.get_num_threads() == 2
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint.trainer_state["global_step"] == 1
    assert checkpoint.optimizer_state_dict is not None
    recorded = yaml.safe_load((tmp_path / "config.yaml").read_text())  # a run started from Python records its own
    assert recorded["train"]["max_minutes"] == 1e-6 and recorded["audio"] == feature_config.to_dict()


def test_an_interrupt_stops_training_at_the_next_check(tmp_path, base_entries, corpus_vocab, feature_config):
    from kospeech.model_builder import DeepSpeech2Config

    model_config = DeepSpeech2Config(num_rnn_layers=1, rnn_hidden_dim=16)
    config = TrainConfig(output_dir=str(tmp_path), batch_size=2, num_epochs=50, num_workers=0, num_threads=1)
    record = _record(feature_config, corpus_vocab, model_config)
    trainer = SupervisedTrainer(config, corpus_vocab, feature_config, base_entries[:4], None, record)
    trainer.interrupt = threading.Event()
    trainer.interrupt.set()  # e.g. a shutdown that began while the data was being prepared
    with pytest.raises(TrainingInterrupted, match="after building the data loaders"):
        trainer.train(_model(feature_config, corpus_vocab, model_config))
    assert trainer.state.global_step == 0
    stopper = SupervisedTrainer(config, corpus_vocab, feature_config, base_entries[:4], None, record)
    stopper.interrupt = threading.Event()
    original = stopper._count_step

    def count_then_interrupt(*args):  # another thread's request, arriving during the third step
        original(*args)
        if stopper.state.global_step == 3:
            stopper.interrupt.set()

    stopper._count_step = count_then_interrupt
    with pytest.raises(TrainingInterrupted, match="after step 3"):
        stopper.train(_model(feature_config, corpus_vocab, model_config))
    assert stopper.state.global_step == 3


def test_the_trained_model_ends_with_the_best_validations_weights_not_the_last_epochs(
    tmp_path, base_entries, corpus_vocab, feature_config
):
    """Review, stop 39: a run whose last epoch is not its best must leave the model holding best.pt's weights (the
    reload of best.pt at the end of training was untested)."""
    from kospeech.model_builder import DeepSpeech2Config

    model_config = DeepSpeech2Config(num_rnn_layers=1, rnn_hidden_dim=16)
    model = _model(feature_config, corpus_vocab, model_config)
    # a constant learning rate this high drives the tiny model to blanks in the first epoch and keeps it there: every
    # validation has the same CER, so the first is the best while later epochs still move the weights
    constant = dict(lr_scheduler="constant", init_lr=1e-2, peak_lr=1e-2, num_epochs=3, device="cpu")
    trainer = _quick_trainer(
        tmp_path, base_entries[:4], base_entries[4:6], corpus_vocab, feature_config, model_config, **constant
    )
    trainer.train(model)
    cers = [record["valid_cer"] for record in trainer.state.history]
    assert len(cers) == 3 and min(cers[1:]) >= cers[0]  # the first validation is the best: best.pt holds epoch 1
    best = load_checkpoint(tmp_path / "best.pt")
    last = load_checkpoint(tmp_path / "last.pt")
    assert best.trainer_state["epoch"] == 1 and last.trainer_state["epoch"] == 3
    assert any(not torch.equal(value, last.model_state_dict[key]) for key, value in best.model_state_dict.items())
    state = model.state_dict()
    assert state.keys() == best.model_state_dict.keys()
    for key, value in best.model_state_dict.items():
        assert torch.equal(state[key], value), key


def test_trainer_refuses_empty_training_set(corpus_vocab, feature_config):
    with pytest.raises(ValueError, match="no training utterances"):
        SupervisedTrainer(TrainConfig(), corpus_vocab, feature_config, [])


def test_held_out_features_carry_no_dither_whatever_the_seed(base_entries, corpus_vocab, feature_config):
    """Dither is training noise: validation, test and the accept/reject decision see the features inference sees."""
    dithered = dataclasses.replace(feature_config, dither=30.0)
    entries = base_entries[:3]

    def features(seed, config, train):
        settings = TrainConfig(seed=seed, num_workers=0, num_threads=1, spec_augment=False, silence_padding=False)
        trainer = SupervisedTrainer(settings, corpus_vocab, config, entries)
        return next(iter(trainer.build_loader(entries, 3, train=train))).inputs

    held_out = features(1, dithered, train=False)
    assert torch.equal(held_out, features(2, dithered, train=False))
    assert torch.equal(held_out, features(1, feature_config, train=False))
    assert not torch.equal(features(1, dithered, train=True), features(2, dithered, train=True))  # training keeps it


def test_resuming_with_another_model_names_the_checkpoint(tmp_path, base_entries, corpus_vocab, feature_config):
    from kospeech.model_builder import DeepSpeech2Config

    config = TrainConfig(
        output_dir=str(tmp_path), batch_size=2, num_epochs=5, num_workers=0, max_minutes=1e-6, num_threads=1
    )
    first = DeepSpeech2Config(num_rnn_layers=1, rnn_hidden_dim=16)
    record = _record(feature_config, corpus_vocab, first)
    SupervisedTrainer(config, corpus_vocab, feature_config, base_entries[:4], None, record).train(
        _model(feature_config, corpus_vocab, first)
    )
    wider = DeepSpeech2Config(num_rnn_layers=1, rnn_hidden_dim=24)
    resumed = SupervisedTrainer(
        dataclasses.replace(config, resume=True), corpus_vocab, feature_config, base_entries[:4], None, record
    )
    with pytest.raises(CheckpointError, match=r"last\.pt: cannot resume from it: .*another model"):
        resumed.train(_model(feature_config, corpus_vocab, wider))


def test_a_log_interval_of_zero_is_refused_before_any_work():
    with pytest.raises(ConfigError, match="train.log_every must be at least 1, got 0"):
        TrainConfig(log_every=0)
    with pytest.raises(ConfigError, match="train.early_stopping_patience must be at least 1 validation, got 0"):
        AdapterTrainConfig(base_model_path="base.pt", early_stopping_patience=0)


def test_base_training_leaves_an_attached_encoder_adapter_out_of_its_passes(
    tmp_path, base_entries, corpus_vocab, feature_config, tiny_model_config
):
    """The base's loss reads the base output: the RNN layers run once and their BatchNorm sees base activations."""
    adapted_config = dataclasses.replace(tiny_model_config, use_adapter=True, adapter_type="encoder")
    models = {}
    for name, model_config in (("alone", tiny_model_config), ("with_adapter", adapted_config)):
        model = _model(feature_config, corpus_vocab, model_config)
        held_out = base_entries[4:6]
        settings = dict(num_epochs=1, spec_augment=False, seed=3)
        _quick_trainer(
            tmp_path / name, base_entries[:4], held_out, corpus_vocab, feature_config, model_config, **settings
        ).train(model)
        models[name] = model
    alone = models["alone"].state_dict()
    with_adapter = {key: value for key, value in models["with_adapter"].state_dict().items() if "adapter" not in key}
    assert with_adapter.keys() == alone.keys()
    for key, value in alone.items():
        assert torch.allclose(with_adapter[key].float(), value.float(), atol=1e-6), key
    assert int(with_adapter["rnn_layers.1.batch_norm.num_batches_tracked"]) == 2  # two steps, one pass each
