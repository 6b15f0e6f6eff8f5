import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from kospeech.checkpoint import load_checkpoint
from kospeech.data.sampler import BucketBatchSampler
from kospeech.model_builder import DeepSpeech2Config, build_deepspeech2
from kospeech.trainer import SupervisedTrainer, TrainConfig
from kospeech.trainer.distributed import DistributedContext, init_distributed, resolve_backend

ROOT = Path(__file__).resolve().parents[2]
MODEL = DeepSpeech2Config(num_rnn_layers=1, rnn_hidden_dim=16, dropout_p=0.1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _RecordingTrainer(SupervisedTrainer):
    """Keeps the target lengths of every batch this rank trained on."""

    seen = None

    def _train_step(self, model, batch, optimizer, meter):
        self.seen.append(batch.target_lengths.tolist())
        return super()._train_step(model, batch, optimizer, meter)


def _rank_main(rank, world_size, port, entries, vocab, feature_config, out_dir, poison=None, nothing_kept_at=None):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_deepspeech2(feature_config.feature_dim, len(vocab), MODEL)
    if rank == 1:  # DDP must start every rank from rank 0's weights
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(1.0)
    config = TrainConfig(
        output_dir=str(out_dir / "run"),
        batch_size=3,
        num_epochs=2,
        num_workers=0,
        num_threads=1,
        log_every=1,
        checkpoint_every=2,
        spec_augment=True,
        warmup_steps=2,
        device="cpu",
    )
    if poison is not None and rank == poison[0]:
        _poison_training_forward(model, step=poison[1])
    if nothing_kept_at is not None:
        _no_frames_at(model, step=nothing_kept_at)
    record = {"input_dim": feature_config.feature_dim, "num_classes": len(vocab), **MODEL.__dict__}
    trainer = _RecordingTrainer(config, vocab, feature_config, entries, entries[:3], record)
    trainer.seen = []
    model = trainer.train(model)
    torch.save(
        {
            "state": {key: value.clone() for key, value in model.state_dict().items()},
            "seen": trainer.seen,
            "steps": trainer.state.global_step,
            "skipped_steps": trainer.state.skipped_steps,
            "applied_steps": trainer.state.applied_steps,
            "history": trainer.state.history,
            "rank": trainer.dist.rank,
        },
        out_dir / f"rank{rank}.pt",
    )
    torch.distributed.destroy_process_group()


def _change_training_forward(model, step, change):
    """The ``step``-th training forward of this rank returns ``change(outputs)`` instead of its outputs."""
    calls = []

    def hook(module, inputs, outputs):
        if module.training:
            calls.append(step)
            if len(calls) == step:
                return change(outputs)
        return None

    model.register_forward_hook(hook)


def _poison_training_forward(model, step):
    """The ``step``-th training forward of this rank returns -inf log-probs (a diverged batch)."""
    _change_training_forward(
        model, step, lambda outputs: (torch.full_like(outputs[0], float("-inf")) + 0.0 * outputs[0], *outputs[1:])
    )


def _no_frames_at(model, step):
    """The ``step``-th training forward of this rank claims no output frames: no utterance of it can be aligned."""
    _change_training_forward(model, step, lambda outputs: (outputs[0], torch.zeros_like(outputs[1]), *outputs[2:]))


@pytest.mark.slow
def test_a_step_in_which_no_rank_kept_an_utterance_updates_nothing(
    tmp_path, base_entries, corpus_vocab, feature_config
):
    """Review, stop 34 (reasoned): under DDP such a step still ran the optimizer (Adam's momentum moved the weights, the
    schedule advanced), where a single process skips it."""
    arguments = (2, _free_port(), base_entries[:14], corpus_vocab, feature_config, tmp_path, None, 2)
    mp.spawn(_rank_main, args=arguments, nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    assert [result["steps"] for result in results] == [6, 6] and [r["applied_steps"] for r in results] == [5, 5]
    assert load_checkpoint(tmp_path / "run" / "last.pt").optimizer_state_dict["num_steps"] == 5


@pytest.mark.slow
def test_a_non_finite_loss_on_one_rank_skips_the_step_on_every_rank(
    tmp_path, base_entries, corpus_vocab, feature_config
):
    entries = base_entries[:14]
    arguments = (2, _free_port(), entries, corpus_vocab, feature_config, tmp_path, (1, 2))  # rank 1's second step
    mp.spawn(_rank_main, args=arguments, nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    assert [result["skipped_steps"] for result in results] == [1, 1]
    assert results[0]["steps"] == results[1]["steps"] == 2 * 3
    for key, value in results[0]["state"].items():
        assert torch.isfinite(value).all() and torch.equal(value, results[1]["state"][key]), key


class _StoppedAt(Exception):
    pass


class _StopsAtStep(SupervisedTrainer):
    """Stops at the start of a given global step, as a killed job would (0: never)."""

    stop_at = 0

    def _train_step(self, model, batch, optimizer, meter):
        if self.state.global_step + 1 == self.stop_at:
            raise _StoppedAt()
        return super()._train_step(model, batch, optimizer, meter)


def _resume_rank_main(rank, world_size, port, entries, vocab, feature_config, out_dir):
    """On each rank: a run to its end; a run stopped at step 4 (after the checkpoint of step 3); that run resumed."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    record = {"input_dim": feature_config.feature_dim, "num_classes": len(vocab), **MODEL.__dict__}
    finals = {}
    for name, stop_at, resume in (("whole", 0, False), ("cut", 4, False), ("cut", 0, True)):
        config = TrainConfig(
            output_dir=str(out_dir / name), batch_size=3, num_epochs=2, num_workers=0, num_threads=1, log_every=100,
            checkpoint_every=1, spec_augment=True, warmup_steps=2, device="cpu", resume=resume,
        )  # fmt: skip
        torch.manual_seed(0)
        model = build_deepspeech2(feature_config.feature_dim, len(vocab), MODEL)  # dropout 0.1: draws every step
        trainer = _StopsAtStep(config, vocab, feature_config, entries, entries[:3], record)
        trainer.stop_at = stop_at
        try:
            finals[name] = {key: value.clone() for key, value in trainer.train(model).state_dict().items()}
        except _StoppedAt:
            pass
    torch.save(finals, out_dir / f"resume{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_a_resumed_ddp_run_continues_every_ranks_random_draws(tmp_path, base_entries, corpus_vocab, feature_config):
    entries = base_entries[:14]
    arguments = (2, _free_port(), entries, corpus_vocab, feature_config, tmp_path)
    mp.spawn(_resume_rank_main, args=arguments, nprocs=2, join=True)
    for rank in range(2):
        finals = torch.load(tmp_path / f"resume{rank}.pt", weights_only=True)
        for key, value in finals["whole"].items():
            assert torch.equal(value, finals["cut"][key]), (rank, key)


@pytest.mark.slow
def test_two_process_ddp_training_on_cpu(tmp_path, base_entries, corpus_vocab, feature_config):
    entries = base_entries[:14]  # 5 batches of 3: rank 0 gets batches 0, 2, 4 and rank 1 gets 1, 3 and 0 again
    mp.spawn(_rank_main, args=(2, _free_port(), entries, corpus_vocab, feature_config, tmp_path), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    assert [result["rank"] for result in results] == [0, 1]
    assert results[0]["steps"] == results[1]["steps"] == 2 * 3
    for key, value in results[0]["state"].items():
        assert torch.equal(value, results[1]["state"][key]), key  # replicas stay identical
    sampler = BucketBatchSampler([1.0] * len(entries), 3)
    assert len(sampler) == 5
    per_epoch = [len(result["seen"]) // 2 for result in results]
    assert per_epoch == [3, 3]
    seen_utterances = sum(len(batch) for result in results for batch in result["seen"][:3])
    assert seen_utterances >= len(entries)  # every utterance of the epoch was trained on by some rank
    assert len(results[0]["history"]) == 2 and results[1]["history"] == []  # only rank 0 validates
    assert load_checkpoint(tmp_path / "run" / "last.pt").trainer_state["global_step"] == 6
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    for key, value in best.model_state_dict.items():  # every rank ends with the best weights rank 0 saved
        assert torch.equal(value, results[1]["state"][key]), key


@pytest.mark.slow
def test_torchrun_launches_bin_main_with_two_cpu_processes(tmp_path, tiny_corpus):
    run_dir = tmp_path / "ddp_run"
    command = [
        "nice",
        "-n",
        "19",
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(ROOT / "bin" / "main.py"),
        "--config-name=train",
        "train=ds2_train",
        "model=ds2_tiny",
        "audio=fbank40",
        f"data.corpus_dir={tiny_corpus}",
        "data.corpus_preset=tiny",
        f"train.output_dir={run_dir}",
        "train.num_epochs=1",
        "train.batch_size=4",
        "train.num_workers=0",
        "train.num_threads=1",
        "train.max_minutes=null",
        "train.log_every=1",
        "train.checkpoint_every=0",
        "train.device=cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert completed.returncode == 0, completed.stderr[-4000:]
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history) == 1 and history[0]["step"] == 3  # 18 utterances: 5 batches of 4, 3 per rank
    assert (run_dir / "best.pt").exists() and (run_dir / "last.pt").exists()
    log = (run_dir / "train.log").read_text()
    assert log.count("DistributedDataParallel over 2 processes (gloo)") == 1  # rank 1 does not log
    assert completed.stdout.count('"checkpoint"') == 1  # only rank 0 prints the results


def test_single_process_context_and_backend_choice(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context = init_distributed("auto", "cpu")
    assert context == DistributedContext() and context.is_main and not context.enabled
    assert context.any_true(True) and not context.broadcast_flag(False)
    assert resolve_backend("auto", torch.device("cpu")) == "gloo"
    assert resolve_backend("auto", torch.device("cuda")) == "nccl"
    with pytest.raises(ValueError, match="needs CUDA"):
        resolve_backend("nccl", torch.device("cpu"))
    with pytest.raises(ValueError, match="ddp_backend"):
        resolve_backend("mpi", torch.device("cpu"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        init_distributed("gloo", "cpu")
