"""What a training run reports and leaves behind when its data or settings cannot train anything (round 2).

A run excludes the utterances it cannot use and says which; a run that trains nothing fails and saves nothing; every
JSON file it writes is strict JSON; a job on its own manifest does no work it was not asked for.
"""

import dataclasses
import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import (
    FEATURES,
    MODEL_CONFIG,
    REPO_ROOT,
    TOKENS,
    build_base,
    make_training_set,
    new_tiny_model,
    python_env,
    save_base,
    tiny_model_record,
    tiny_train_config,
    tone,
    write_wav,
)

from kospeech.config import TrainJobConfig
from kospeech.data.manifest import ManifestEntry, read_manifest, write_manifest
from kospeech.errors import ConfigError, ManifestError, TrainingError
from kospeech.fileio import atomic_write_json, strict_json
from kospeech.model_builder import DeepSpeech2Config
from kospeech.models import AdapterManager
from kospeech.trainer import AdapterTrainConfig, SupervisedTrainer, TrainConfig
from kospeech.trainer.configs import DataConfig
from kospeech.trainer.multi_user import train_user_adapters
from kospeech.trainer.recipes import train_adapter_model, train_base_model
from kospeech.vocabs import Vocabulary

VOCAB = Vocabulary(TOKENS)


def strict_load(path):
    """Parse JSON the way jq or a browser does: NaN and Infinity are errors."""

    def refuse(constant):
        raise ValueError(f"{path}: not strict JSON ({constant})")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def loud_entries(root, count, start=0):
    """Utterances whose samples are finite but 1e15 x full scale: their features overflow float32."""
    entries = []
    for index in range(start, start + count):
        wav = write_wav(root / f"loud{index}.wav", tone(0.6, seed=index) * 1e15, subtype="FLOAT")
        entries.append(ManifestEntry(wav, "가나", tuple(VOCAB.encode("가나"))))
    return entries


def adapter_config(tmp_path, base_path, **overrides):
    values = dict(
        base_model_path=str(base_path),
        adapter_name="carol",
        adapter_save_dir=str(tmp_path / "adapters"),
        output_dir=str(tmp_path / "run"),
        adapter_hidden_dims=[8],
        batch_size=2,
        num_epochs=2,
        num_workers=0,
        warmup_steps=2,
        num_threads=1,
        log_every=1000,
        seed=5,
        device="cpu",
        cache_trunk=False,
    )
    values.update(overrides)
    return AdapterTrainConfig(**values)


@pytest.fixture
def enrollment(tmp_path):
    """A base checkpoint, six usable utterances and their manifest (vocabulary CSV beside it)."""
    base_path = save_base(tmp_path / "base.pt", build_base())
    paths = make_training_set(tmp_path / "data", count=6)
    return base_path, paths, read_manifest(paths["manifest"], VOCAB)


def test_unusable_utterances_are_excluded_by_name_and_training_goes_on(tmp_path, enrollment, caplog):
    base_path, paths, entries = enrollment
    manifest = write_manifest(tmp_path / "mixed.tsv", entries + loud_entries(tmp_path / "loud", 3))
    job = TrainJobConfig(
        train=adapter_config(tmp_path, base_path),
        data=DataConfig(train_manifest=str(manifest), corpus_dir=str(tmp_path / "no_corpus")),
    )
    with caplog.at_level("WARNING"):
        results = train_adapter_model(job)
    excluded = sorted(item["audio_path"].rsplit("/", 1)[-1] for item in results["excluded_utterances"])
    assert excluded == ["loud0.wav", "loud1.wav", "loud2.wav"]
    assert all("features are not finite" in item["reason"] for item in results["excluded_utterances"])
    assert "excluding training utterance" in caplog.text or "excluding validation utterance" in caplog.text
    assert results["adapter_path"] and AdapterManager.get_adapter_info(results["adapter_path"])["name"] == "carol"
    assert math.isfinite(results["heldout_adapter_cer"])
    for written in (tmp_path / "run" / "results.json", tmp_path / "run" / "history.json"):
        strict_load(written)
    # an adapter job on its own manifest without data.vocab_path uses the base's vocabulary: no corpus is built
    assert not (tmp_path / "no_corpus").exists()


def test_a_run_in_which_no_utterance_is_usable_fails_and_saves_no_adapter(tmp_path, enrollment):
    base_path, _, _ = enrollment
    manifest = write_manifest(tmp_path / "loud.tsv", loud_entries(tmp_path / "loud", 4))
    job = TrainJobConfig(train=adapter_config(tmp_path, base_path), data=DataConfig(train_manifest=str(manifest)))
    with pytest.raises(TrainingError, match=r"none of the \d training utterances is usable .*features are not finite"):
        train_adapter_model(job)
    assert not (tmp_path / "adapters" / "carol_adapter.pt").exists()


def _poison_every_training_step(model):
    def hook(module, inputs, outputs):
        if module.training:
            return (torch.full_like(outputs[0], float("nan")) + 0.0 * outputs[0],) + tuple(outputs[1:])
        return None

    return model.register_forward_hook(hook)


def test_a_run_whose_every_step_is_skipped_fails_and_keeps_no_best_model(tmp_path, enrollment):
    _, _, entries = enrollment
    model = new_tiny_model()
    _poison_every_training_step(model)
    config = tiny_train_config(tmp_path / "run")
    record = tiny_model_record()
    trainer = SupervisedTrainer(config, VOCAB, FEATURES, entries, entries[:2], record)
    with pytest.raises(TrainingError, match=r"training applied no update in 6 steps \(6 with a non-finite loss"):
        trainer.train(model)
    assert not (tmp_path / "run" / "best.pt").exists()
    history = strict_load(tmp_path / "run" / "history.json")
    assert [record["train_loss"] for record in history] == [None, None]  # NaN is recorded as missing


@pytest.mark.parametrize("num_epochs", [0, -1, True, 2.5])
def test_epoch_counts_that_train_nothing_are_refused_before_any_work(tmp_path, num_epochs):
    with pytest.raises(ConfigError, match=r"train\.num_epochs must be a whole number of at least 1"):
        AdapterTrainConfig(base_model_path="base.pt", num_epochs=num_epochs)
    with pytest.raises(ConfigError, match=r"train\.num_epochs"):
        TrainConfig(num_epochs=num_epochs)


def test_the_cli_exits_non_zero_on_zero_epochs_and_writes_no_adapter(tmp_path, enrollment):
    base_path, paths, _ = enrollment
    command = [
        sys.executable,
        str(REPO_ROOT / "bin" / "main.py"),
        "--config-name=train",
        "train=adapter_train",
        f"train.base_model_path={base_path}",
        "train.adapter_name=dave",
        f"train.adapter_save_dir={tmp_path / 'ad'}",
        f"train.output_dir={tmp_path / 'run'}",
        "train.num_epochs=0",
        f"data.train_manifest={paths['manifest']}",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=python_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "train.num_epochs must be a whole number of at least 1, got 0" in done.stdout + done.stderr
    assert not (tmp_path / "ad").exists()


def test_base_training_on_its_own_manifest_must_name_its_vocabulary(tmp_path, enrollment):
    _, paths, _ = enrollment
    job = TrainJobConfig(
        train=TrainConfig(output_dir=str(tmp_path / "run")),
        data=DataConfig(train_manifest=str(paths["manifest"]), corpus_dir=str(tmp_path / "corpus")),
    )
    with pytest.raises(ConfigError, match=r"data\.train_manifest is set but data\.vocab_path is not"):
        train_base_model(job)
    assert not (tmp_path / "corpus").exists() and not (tmp_path / "run").exists()


def _base_job(tmp_path, paths, valid_manifest):
    return TrainJobConfig(
        audio=FEATURES,
        model=DeepSpeech2Config(**MODEL_CONFIG),
        train=tiny_train_config(tmp_path / "run", num_epochs=1),
        data=DataConfig(
            train_manifest=str(paths["manifest"]), valid_manifest=str(valid_manifest), vocab_path=str(paths["vocab"])
        ),
    )


def test_an_unusable_validation_file_is_left_out_of_the_final_scoring_too(tmp_path, enrollment):
    """Review, stop 34: training left the file out, then the figures after training read the manifest again and the
    finished job failed on it, with no results.json."""
    _, paths, entries = enrollment
    valid = write_manifest(tmp_path / "valid.tsv", entries[:2] + loud_entries(tmp_path / "loud", 1))
    results = train_base_model(_base_job(tmp_path, paths, valid))
    assert results["valid"]["num_utterances"] == 2
    assert [item["audio_path"].rsplit("/", 1)[-1] for item in results["excluded_utterances"]] == ["loud0.wav"]
    assert strict_load(tmp_path / "run" / "results.json")["valid"]["num_utterances"] == 2


def test_an_empty_validation_manifest_is_refused_before_training(tmp_path, enrollment):
    _, paths, _ = enrollment
    empty = tmp_path / "empty.tsv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ManifestError, match=f"the manifest {empty} holds no utterances"):
        train_base_model(_base_job(tmp_path, paths, empty))
    assert not (tmp_path / "run" / "history.json").exists()  # no step was taken


def test_base_training_refuses_features_whose_mel_filters_hold_no_fft_bin(tmp_path, enrollment):
    _, paths, entries = enrollment
    job = _base_job(tmp_path, paths, write_manifest(tmp_path / "valid.tsv", entries[:2]))
    job.audio = dataclasses.replace(FEATURES, num_mels=256)
    with pytest.raises(ConfigError, match=r"25 of audio\.num_mels=256 mel filters hold no FFT bin"):
        train_base_model(job)


def test_multi_user_training_reports_a_user_without_usable_audio_and_trains_the_others(tmp_path, enrollment):
    base_path, _, entries = enrollment
    users = tmp_path / "users"
    write_manifest(users / "ann.tsv", entries)
    write_manifest(users / "bad.tsv", loud_entries(tmp_path / "loud", 3))
    config = adapter_config(tmp_path, base_path, adapter_name="default")
    results = train_user_adapters(config, users)
    assert results["failed_users"] == ["bad"]
    assert "features are not finite" in results["users"]["bad"]["error"]
    assert results["users"]["bad"]["adapter_path"] is None
    assert AdapterManager.adapter_names(tmp_path / "adapters") == ["ann"]
    assert strict_load(tmp_path / "run" / "results.json")["failed_users"] == ["bad"]


@pytest.mark.slow
def test_bin_train_adapters_exits_non_zero_when_a_user_got_no_adapter(tmp_path, enrollment):
    base_path, _, entries = enrollment
    users = tmp_path / "users"
    write_manifest(users / "ann.tsv", entries)
    write_manifest(users / "bad.tsv", loud_entries(tmp_path / "loud", 3))
    command = [
        sys.executable,
        str(REPO_ROOT / "bin" / "train_adapters.py"),
        "--users-dir",
        str(users),
        "--base-model",
        str(base_path),
        "--adapter-save-dir",
        str(tmp_path / "adapters"),
        "--output-dir",
        str(tmp_path / "run"),
        "train.num_epochs=1",
        "train.num_workers=0",
        "train.adapter_hidden_dims=[8]",
        "train.device=cpu",
        "train.num_threads=1",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=python_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no adapter for 1 user(s): ['bad']" in done.stderr
    assert AdapterManager.adapter_names(tmp_path / "adapters") == ["ann"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_every_json_we_write_is_strict(tmp_path, value):
    record = {"cer": value, "nested": [{"loss": value}, (1.5, value)], "name": "이름"}
    assert json.loads(strict_json(record)) == {"cer": None, "nested": [{"loss": None}, [1.5, None]], "name": "이름"}
    path = atomic_write_json(tmp_path / "figures.json", record)
    assert strict_load(path)["nested"][0]["loss"] is None
    assert "이름" in path.read_text(encoding="utf-8")
