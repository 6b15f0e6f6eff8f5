"""Training faults: impossible CTC alignments, non-finite losses, SIGKILL mid-training, kills during file writes.

Faults come from outside the trainer: data that cannot align, a forward hook that poisons one step's output, a
SIGKILL from the test. The trainer's own code is never replaced.
"""

import errno
import logging
import math
import os
import random
import time
from dataclasses import replace
from pathlib import Path
from signal import SIGKILL

import pytest
import torch
from conftest import (
    FEATURES,
    TOKENS,
    build_base,
    fork_loop,
    fork_run,
    kill_hard,
    make_training_set,
    new_tiny_model,
    perturb,
    run_python,
    start_python,
    tiny_model_record,
    tiny_train_config,
    tone,
    wait_child,
    wait_for,
    write_script,
)

from kospeech.checkpoint import load_checkpoint, save_checkpoint
from kospeech.data.audio import save_audio
from kospeech.data.manifest import ManifestEntry, read_manifest
from kospeech.fileio import _WriteErrorKeeper, safe_torch_load
from kospeech.model_builder import build_deepspeech2
from kospeech.models import AdapterManager
from kospeech.trainer import CTCLoss, SupervisedTrainer
from kospeech.vocabs import Vocabulary

VOCAB = Vocabulary(TOKENS)


@pytest.fixture(scope="module")
def training_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("training_set")
    paths = make_training_set(root, count=6)
    return paths, read_manifest(paths["manifest"], VOCAB)


# ------------------------------------------------------------------------------------------------------- CTC alignments


def test_ctc_impossible_alignments_are_skipped_and_counted_not_nan():
    criterion = CTCLoss(VOCAB.blank_id)
    log_probs = torch.randn(3, 6, len(VOCAB)).log_softmax(-1).requires_grad_()
    targets = torch.tensor([[5, 6, 0, 0, 0, 0, 0, 0], [5, 6, 7, 8, 9, 10, 11, 12], [5, 5, 5, 5, 0, 0, 0, 0]])
    # row 1: 8 labels in 6 frames; row 2: 4 equal labels need 7 frames (blanks between repeats)
    output = criterion(log_probs, torch.tensor([6, 6, 6]), targets, torch.tensor([2, 8, 4]))
    assert (output.num_kept, output.num_skipped) == (1, 2)
    assert torch.isfinite(output.loss) and output.loss.item() > 0
    output.loss.backward()
    assert torch.isfinite(log_probs.grad).all() and log_probs.grad[1:].abs().sum() == 0
    nothing = criterion(log_probs, torch.tensor([6, 6, 6]), targets[1:2].repeat(3, 1), torch.tensor([8, 8, 8]))
    assert (nothing.num_kept, nothing.num_skipped, nothing.loss.item()) == (0, 3, 0.0)


def test_trainer_skips_and_counts_utterances_longer_than_their_frames(tmp_path, training_set):
    _, entries = training_set
    text = "가나다라마바사아자차카타파하"  # 14 labels for a 0.1 s clip: 9 feature frames, 5 output frames
    clip = save_audio(tmp_path / "clip.wav", tone(0.1, seed=11), 16000)
    impossible = ManifestEntry(clip, text, tuple(VOCAB.encode(text)))
    trainer = SupervisedTrainer(
        tiny_train_config(tmp_path / "run"), VOCAB, FEATURES, entries[:3] + [impossible], None, tiny_model_record()
    )
    model = trainer.train(new_tiny_model())
    state = load_checkpoint(tmp_path / "run" / "last.pt").trainer_state
    assert state["skipped_utterances"] == 2  # once per epoch
    assert state["skipped_steps"] == 0 and state["global_step"] == 4
    assert all(math.isfinite(record["train_loss"]) for record in state["history"])
    assert all(torch.isfinite(parameter).all() for parameter in model.parameters())


# ------------------------------------------------------------------------------------------------------ non-finite loss


def _poison_training_step(model, step: int, value: float):
    """Forward hook: the ``step``-th training forward returns log-probs filled with ``value`` (NaN or -inf)."""
    calls = {"train": 0}

    def hook(module, inputs, outputs):
        if not module.training:
            return None
        calls["train"] += 1
        if calls["train"] != step:
            return None
        return (torch.full_like(outputs[0], value) + 0.0 * outputs[0],) + tuple(outputs[1:])

    return model.register_forward_hook(hook)


def _train_with_poison(tmp_path, entries, value, poison_step):
    model = new_tiny_model()
    if poison_step:
        _poison_training_step(model, poison_step, value)
    config = tiny_train_config(tmp_path, num_epochs=1, lr_scheduler="warmup_lr_scheduler")
    trainer = SupervisedTrainer(config, VOCAB, FEATURES, entries, None, tiny_model_record())
    trainer.train(model)
    return load_checkpoint(tmp_path / "last.pt")


def _step_counts(checkpoint):
    optimizer = checkpoint.optimizer_state_dict
    steps = {int(state["step"]) for state in optimizer["optimizer"]["state"].values()}
    return optimizer["num_steps"], steps, optimizer["scheduler"]["last_epoch"]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("-inf"), id="inf"),
    ],
)
def test_non_finite_loss_step_is_skipped_counted_and_logged(tmp_path, training_set, caplog, value):
    _, entries = training_set
    clean = _train_with_poison(tmp_path / "clean", entries, value, poison_step=0)
    with caplog.at_level(logging.WARNING, logger="kospeech"):
        poisoned = _train_with_poison(tmp_path / "poisoned", entries, value, poison_step=2)
    assert poisoned.trainer_state["skipped_steps"] == 1
    assert "non-finite" in caplog.text and "step 2" in caplog.text
    assert poisoned.trainer_state["global_step"] == clean.trainer_state["global_step"] == 3
    assert _step_counts(clean) == (3, {3}, 3)
    assert _step_counts(poisoned) == (2, {2}, 2)  # the skipped step moved neither the optimizer nor the schedule
    assert all(torch.isfinite(value_).all() for value_ in poisoned.model_state_dict.values())


# ----------------------------------------------------------------------------------------------------- SIGKILL + resume

TRAIN_SCRIPT = """
import sys
import torch
from kospeech.data.features import FeatureConfig
from kospeech.data.manifest import read_manifest
from kospeech.model_builder import build_deepspeech2
from kospeech.trainer import SupervisedTrainer, TrainConfig
from kospeech.vocabs import Vocabulary

manifest, vocab_csv, output_dir, resume = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "resume"
vocab = Vocabulary.from_csv(vocab_csv)
features = FeatureConfig(num_mels=16)
entries = read_manifest(manifest, vocab)
architecture = {"num_rnn_layers": 1, "rnn_hidden_dim": 16, "dropout_p": 0.2}
config = TrainConfig(output_dir=output_dir, batch_size=1, num_epochs=4, num_workers=0, spec_augment=True,
                     warmup_steps=3, log_every=1000, checkpoint_every=1, num_threads=1, resume=resume, seed=7,
                     device="cpu")
torch.manual_seed(0)
model = build_deepspeech2(features.feature_dim, len(vocab), architecture)
record = {"input_dim": features.feature_dim, "num_classes": len(vocab), **architecture}
SupervisedTrainer(config, vocab, features, entries, entries[:2], record).train(model)
print("done")
"""


def _global_step(path):
    try:
        return safe_torch_load(path, what="checkpoint")["trainer_state"]["global_step"]
    except (FileNotFoundError, ValueError, KeyError):
        return -1


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_continues_like_an_uninterrupted_run(tmp_path, training_set):
    paths, _ = training_set
    script = write_script(tmp_path / "train.py", TRAIN_SCRIPT)
    args = [str(paths["manifest"]), str(paths["vocab"])]
    straight = start_python(script, *args, str(tmp_path / "straight"), "fresh")
    victim = start_python(script, *args, str(tmp_path / "killed"), "fresh")
    last = tmp_path / "killed" / "last.pt"
    # kill early in an epoch (6 steps each): a kill during end-of-epoch validation is the next test's case
    wait_for(lambda: _global_step(last) >= 7 and _global_step(last) % 6 in (1, 2), 120, "step 7 or 8", victim)
    time.sleep(random.Random(0).uniform(0.0, 0.02))  # land anywhere in the step: forward, backward, checkpoint write
    kill_hard(victim.pid)
    victim.communicate()
    killed_at = load_checkpoint(last).trainer_state["global_step"]
    assert 7 <= killed_at < 24 and killed_at % 6 != 0, killed_at
    straight_output, _ = straight.communicate(timeout=180)
    assert straight.returncode == 0, straight_output.decode("utf-8", "replace")
    run_python(script, *args, str(tmp_path / "killed"), "resume", timeout=180)

    expected = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(last)
    for key in ("global_step", "epoch", "step_in_epoch", "skipped_steps", "skipped_utterances"):
        assert resumed.trainer_state[key] == expected.trainer_state[key], key
    assert resumed.trainer_state["global_step"] == 24
    assert [record["step"] for record in resumed.trainer_state["history"]] == [6, 12, 18, 24]
    assert resumed.optimizer_state_dict["scheduler"] == expected.optimizer_state_dict["scheduler"]
    assert resumed.optimizer_state_dict["num_steps"] == expected.optimizer_state_dict["num_steps"] == 24
    resumed_state = resumed.optimizer_state_dict["optimizer"]["state"]
    for index, state in expected.optimizer_state_dict["optimizer"]["state"].items():
        assert torch.equal(resumed_state[index]["step"], state["step"])
        torch.testing.assert_close(resumed_state[index]["exp_avg_sq"], state["exp_avg_sq"], rtol=1e-4, atol=1e-9)
    for key, value in expected.model_state_dict.items():
        torch.testing.assert_close(resumed.model_state_dict[key], value, rtol=0, atol=1e-5, msg=key)


def test_sigkill_during_end_of_epoch_validation_then_resume(tmp_path, training_set):
    _, entries = training_set
    config = tiny_train_config(tmp_path / "run", checkpoint_every=1)

    def killed_in_validation():
        model = new_tiny_model()
        model.register_forward_hook(lambda module, *_: None if module.training else os.kill(os.getpid(), SIGKILL))
        SupervisedTrainer(config, VOCAB, FEATURES, entries, entries[:2], tiny_model_record()).train(model)

    assert wait_child(fork_run(killed_in_validation)) == -SIGKILL
    state = load_checkpoint(tmp_path / "run" / "last.pt").trainer_state
    assert (state["epoch"], state["step_in_epoch"], state["global_step"], state["history"]) == (0, 3, 3, [])

    straight = SupervisedTrainer(
        tiny_train_config(tmp_path / "straight"), VOCAB, FEATURES, entries, entries[:2], tiny_model_record()
    )
    straight.train(new_tiny_model())
    resumed = SupervisedTrainer(
        replace(config, resume=True), VOCAB, FEATURES, entries, entries[:2], tiny_model_record()
    )
    resumed.train(new_tiny_model())
    assert [record["step"] for record in resumed.state.history] == [3, 6]
    assert resumed.state.global_step == straight.state.global_step == 6
    for mine, theirs in zip(resumed.state.history, straight.state.history):  # review, stop 34: epoch 1's were NaN
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-6)
        assert mine["train_cer"] == pytest.approx(theirs["train_cer"], rel=1e-6)
    expected = load_checkpoint(tmp_path / "straight" / "last.pt").model_state_dict
    for key, value in load_checkpoint(tmp_path / "run" / "last.pt").model_state_dict.items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6, msg=key)


# --------------------------------------------------------------------------------------------------- kill during writes


def _kill_while_writing(directory, write, check, trials=15, seed=0):
    """Start a writer looping ``write(i)``, SIGKILL it at a random moment, ``check()`` the file; repeat.

    Returns:
        How many kills left a temporary file behind, i.e. landed in the middle of a write.
    """
    rng = random.Random(seed)
    mid_write = 0
    for _ in range(trials):
        pid = fork_loop(write)
        time.sleep(rng.uniform(0.005, 0.12))
        kill_hard(pid)
        check()
        leftovers = sorted(directory.glob(".*.tmp"))
        mid_write += bool(leftovers)
        for leftover in leftovers:
            leftover.unlink()
    return mid_write


@pytest.mark.slow
def test_kill_during_a_checkpoint_write_leaves_a_loadable_checkpoint(tmp_path):
    model = build_deepspeech2(FEATURES.feature_dim, len(VOCAB), {"num_rnn_layers": 2, "rnn_hidden_dim": 192})
    path = tmp_path / "last.pt"
    record = {"input_dim": FEATURES.feature_dim, "num_classes": len(VOCAB), "num_rnn_layers": 2, "rnn_hidden_dim": 192}

    def write(iteration):
        save_checkpoint(
            path, model, model_config=record, vocab=VOCAB, feature_config=FEATURES, trainer_state={"version": iteration}
        )

    write(-1)
    reference = model.state_dict()
    versions = []

    def check():
        checkpoint = load_checkpoint(path)  # never raises: the previous or the new file, never a torn one
        versions.append(checkpoint.trainer_state["version"])
        for key, value in reference.items():
            assert torch.equal(checkpoint.model_state_dict[key], value), key

    mid_write = _kill_while_writing(tmp_path, write, check)
    assert mid_write >= 1, "no kill landed in the middle of a write; the test proved nothing"
    assert all(isinstance(version, int) and version >= -1 for version in versions)


@pytest.mark.slow
def test_kill_during_an_adapter_write_leaves_a_loadable_adapter(tmp_path):
    model = build_base()
    model.add_adapter("head", hidden_dims=[512, 512])
    perturb(model.adapter, seed=1)
    adapter_dir = tmp_path / "adapters"
    expected = {key: value.clone() for key, value in model.adapter_state_dict().items()}

    def write(iteration):
        AdapterManager.save_adapter(model, adapter_dir, "carol", training_stats={"version": iteration})

    write(-1)
    probe = build_base()

    def check():
        info = AdapterManager.load_adapter(probe, adapter_dir / "carol_adapter.pt")
        assert info["training_stats"]["version"] >= -1
        for key, value in expected.items():
            assert torch.equal(probe.adapter_state_dict()[key], value), key
        assert [entry["name"] for entry in AdapterManager.list_adapters(adapter_dir)] == ["carol"]

    mid_write = _kill_while_writing(adapter_dir, write, check)
    assert mid_write >= 1, "no kill landed in the middle of a write; the test proved nothing"


def test_leftover_temp_files_of_a_killed_writer_are_ignored(tmp_path, world):
    """A SIGKILL cannot run cleanup: the temp file stays, but no lookup or listing ever treats it as an adapter."""
    leftover = world.adapter_dir / ".alice_adapter.pt.k1ll3d.tmp"
    leftover.write_bytes((world.adapter_dir / "alice_adapter.pt").read_bytes()[:100])
    assert AdapterManager.adapter_names(world.adapter_dir) == ["alice", "bob"]
    assert [info["name"] for info in AdapterManager.list_adapters(world.adapter_dir)] == ["alice", "bob"]
    AdapterManager.load_adapter(build_base(), AdapterManager.find_adapter(world.adapter_dir, "alice"))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, the device every write to fails ENOSPC")
def test_a_save_to_a_full_disk_raises_the_disks_error():
    """Review, stop 34: torch's writer could turn a full disk into a RuntimeError that no longer said why, so the
    service took it for a bug (500, attempts spent) rather than storage to wait for (507)."""
    with open("/dev/full", "wb", buffering=0) as full:
        keeper = _WriteErrorKeeper(full)  # what atomic_torch_save hands torch.save
        with pytest.raises((OSError, RuntimeError)):
            torch.save({"weights": torch.zeros(1 << 16)}, keeper)
        assert keeper.error is not None and keeper.error.errno == errno.ENOSPC
