"""Training settings that cannot work are refused when the config is built, naming ``train.<setting>``, before any
data is prepared; and a run's ``config.yaml`` records the settings it used."""

import math
import re

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from test_supervised_trainer import _quick_trainer

from kospeech.cli.common import config_dir
from kospeech.config import register_configs
from kospeech.errors import ConfigError
from kospeech.model_builder import build_deepspeech2
from kospeech.optim import LR_SCHEDULERS, OPTIMIZERS
from kospeech.trainer import AdapterTrainConfig, SupervisedTrainer, TrainConfig
from kospeech.trainer.recipes import train_adapter_model, train_base_model


def _refused(setting, make, value, **others):
    """The message of the ConfigError that ``make(setting=value, **others)`` raises; it starts with the name."""
    with pytest.raises(ConfigError, match=f"^{re.escape(f'train.{setting} ')}") as refusal:
        make(**{setting: value, **others})
    return str(refusal.value)


def _adapter(**settings):
    return AdapterTrainConfig(base_model_path="base.pt", **settings)


@pytest.mark.parametrize(
    "setting, value",
    [
        ("optimizer", "adamm"),
        ("lr_scheduler", "cosine"),
        ("batch_size", 0),
        ("num_threads", 0),
        ("num_workers", -1),
        ("max_minutes", 0),
        ("max_minutes", -5.0),
        ("weight_decay", -0.1),
        ("warmup_steps", -1),
        ("max_grad_norm", -1.0),
        ("max_grad_norm", math.nan),
        ("checkpoint_every", -10),
        ("init_lr", -1e-3),
        ("init_lr", math.inf),
        ("peak_lr", 0.0),  # the tri-stage default decays exponentially from it
        ("final_lr", 0.0),
        ("peak_lr", math.nan),
    ],
)
@pytest.mark.parametrize("make", [TrainConfig, _adapter], ids=["base", "adapter"])
def test_a_training_setting_that_cannot_work_is_refused_naming_it(make, setting, value):
    message = _refused(setting, make, value)
    assert f"got {value!r}" in message


def test_names_are_checked_against_the_tables_the_builders_use():
    message = _refused("optimizer", TrainConfig, "adamm")
    assert all(name in message for name in OPTIMIZERS)
    message = _refused("lr_scheduler", TrainConfig, "cosine")
    assert all(name in message for name in LR_SCHEDULERS)
    for name in OPTIMIZERS:
        assert TrainConfig(optimizer=name).optimizer == name
    for name in LR_SCHEDULERS:
        assert TrainConfig(lr_scheduler=name).lr_scheduler == name


def test_learning_rates_follow_the_rules_of_the_chosen_schedule():
    # a constant or warm-up schedule holds a rate of 0 (a base run that keeps its initial weights); only the
    # tri-stage decay needs peak and final rates above 0
    assert TrainConfig(lr_scheduler="constant", init_lr=0.0, peak_lr=0.0, final_lr=0.0).peak_lr == 0.0
    assert TrainConfig(lr_scheduler="warmup_lr_scheduler", peak_lr=0.0, final_lr=0.0).final_lr == 0.0
    assert "tri_stage_lr_scheduler" in _refused("final_lr", TrainConfig, 0.0)
    _refused("peak_lr", TrainConfig, -1e-3, lr_scheduler="constant")
    _refused("final_lr", TrainConfig, -1e-3, lr_scheduler="constant")
    # an adapter trained at a rate of 0 would stay as initialized, whatever the schedule
    _refused("peak_lr", _adapter, 0.0, lr_scheduler="constant")


def test_limits_take_their_documented_special_values():
    with pytest.raises(ConfigError, match=r"^train\.max_minutes must be > 0 minutes or null \(no limit\), got 0$"):
        TrainConfig(max_minutes=0)
    with pytest.raises(ConfigError, match=r"^train\.num_threads must be at least 1, got 0$"):
        TrainConfig(num_threads=0)
    config = TrainConfig(max_minutes=None, checkpoint_every=0, warmup_steps=0, max_grad_norm=0.0, num_workers=0)
    assert config.max_minutes is None and config.checkpoint_every == 0
    _refused("checkpoint_every", TrainConfig, -1)


@pytest.mark.parametrize(
    "setting, value",
    [
        ("valid_fraction", 0.0),
        ("valid_fraction", 1.0),
        ("adapter_dropout_p", 1.0),
        ("adapter_dropout_p", -0.1),
        ("trunk_cache_max_mb", -1.0),
        ("trunk_cache_max_mb", math.inf),
        ("warm_start_steps", -1),
        ("alignment_steps", -1),
        ("adapter_extractor_bottleneck_dim", -1),
    ],
)
def test_an_adapter_setting_that_cannot_work_is_refused_naming_it(setting, value):
    message = _refused(setting, _adapter, value)
    assert f"got {value!r}" in message


def test_adapter_settings_keep_their_zero_meanings():
    config = _adapter(warm_start_steps=0, alignment_steps=0, adapter_extractor_bottleneck_dim=0, trunk_cache_max_mb=0.0)
    assert config.alignment_steps == 0 and config.adapter_extractor_bottleneck_dim == 0
    _refused("adapter_extractor_bottleneck_dim", _adapter, -32)


def _job(*overrides):
    """The job ``kospeech-train`` composes from the presets, reading data that does not exist: any data work fails."""
    register_configs()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[
                "data.train_manifest=/nonexistent/train.tsv",
                "data.vocab_path=/nonexistent/vocab.csv",
                "data.corpus_dir=/nonexistent/corpus",
                *overrides,
            ],
        )


@pytest.mark.parametrize(
    "override, setting",
    [
        ("train.optimizer=adamm", "optimizer"),
        ("train.lr_scheduler=cosine", "lr_scheduler"),
        ("train.batch_size=0", "batch_size"),
        ("train.max_minutes=0", "max_minutes"),
        ("train.num_threads=0", "num_threads"),
        ("train.max_grad_norm=-1", "max_grad_norm"),
        ("train.warmup_steps=-1", "warmup_steps"),
    ],
)
def test_base_training_refuses_a_bad_setting_before_reading_any_data(override, setting):
    # the preset itself builds: only the override is refused
    with pytest.raises(ConfigError, match=f"^{re.escape(f'train.{setting} ')}"):
        train_base_model(_job("train=ds2_train", override))


@pytest.mark.parametrize(
    "override, setting",
    [
        ("train.valid_fraction=0", "valid_fraction"),
        ("train.adapter_dropout_p=1", "adapter_dropout_p"),
        ("train.trunk_cache_max_mb=-1", "trunk_cache_max_mb"),
        ("train.warm_start_steps=-1", "warm_start_steps"),
        ("train.optimizer=adamm", "optimizer"),
    ],
)
def test_adapter_training_refuses_a_bad_setting_before_reading_the_base(override, setting):
    job = _job("train=adapter_train", "train.base_model_path=/nonexistent/base.pt", override)
    with pytest.raises(ConfigError, match=f"^{re.escape(f'train.{setting} ')}"):
        train_adapter_model(job)


@pytest.mark.parametrize("resolved", [None, {"train": {"batch_size": 4, "num_epochs": 3}, "model": {"kept": 1}}])
def test_config_yaml_records_the_batch_size_and_epochs_the_run_used(
    tmp_path, base_entries, corpus_vocab, feature_config, tiny_model_config, resolved
):
    trainer = _quick_trainer(
        tmp_path,
        base_entries[:4],
        None,
        corpus_vocab,
        feature_config,
        tiny_model_config,
        resolved,
        batch_size=4,
        num_epochs=3,
        device="cpu",
    )
    config = trainer.config
    torch.manual_seed(0)
    model = build_deepspeech2(feature_config.feature_dim, len(corpus_vocab), tiny_model_config)
    trainer.train(model, num_epochs=1, batch_size=2)
    assert trainer.state.epoch == 1 and trainer.state.global_step == 2  # 4 utterances in batches of 2, once
    recorded = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    assert recorded["train"]["num_epochs"] == 1 and recorded["train"]["batch_size"] == 2
    assert recorded["train"]["output_dir"] == str(tmp_path)
    if resolved is not None:
        assert recorded["model"] == {"kept": 1}  # the rest of the job's config as it was
    assert config.num_epochs == 3 and config.batch_size == 4  # the caller's config is left as it was


def test_train_arguments_are_checked_like_the_config(tmp_path, base_entries, corpus_vocab, feature_config):
    config = TrainConfig(output_dir=str(tmp_path), num_workers=0, num_threads=1, device="cpu")
    trainer = SupervisedTrainer(config, corpus_vocab, feature_config, base_entries[:4])
    with pytest.raises(ConfigError, match=r"^train\.batch_size must be at least 1 utterance, got -2$"):
        trainer.train(torch.nn.Linear(1, 1), batch_size=-2)
    assert not (tmp_path / "config.yaml").exists()
