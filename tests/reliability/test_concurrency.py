"""Concurrency: simultaneous writers end with one whole file, readers never see a partial one, and a Recognizer
shared by threads gives exactly the serial results."""

import itertools
import os
import random
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from conftest import build_base, fork_loop, fork_run, kill_hard, perturb, save_user_adapter, wait_child

from kospeech import fileio
from kospeech.fileio import atomic_write, safe_torch_load
from kospeech.inference import Recognizer
from kospeech.models import AdapterManager


def _big_adapter_model(fill=None, seed=0):
    """The tiny base with a ~1 MB head adapter (so that a write takes long enough to overlap with others)."""
    model = build_base()
    model.add_adapter("head", hidden_dims=[512, 512])
    if fill is None:
        perturb(model.adapter, seed)
    else:
        with torch.no_grad():
            for parameter in model.adapter.parameters():
                parameter.fill_(fill)
    return model


def _fill_value(path):
    """The single value every weight of a file written by a filled writer holds (fails on a mixed file)."""
    weights = safe_torch_load(path, what="adapter")["adapter_state_dict"]
    values = torch.cat([tensor.flatten() for tensor in weights.values()]).unique()
    assert values.numel() == 1, f"{path} mixes weights of several writes: {values[:5].tolist()}"
    return float(values[0])


@pytest.mark.slow
def test_two_processes_saving_the_same_user_end_with_one_valid_file(tmp_path):
    adapter_dir = tmp_path / "adapters"
    writes = 15

    def writer(writer_id):
        def body():
            model = _big_adapter_model()
            for iteration in range(writes):
                with torch.no_grad():
                    for parameter in model.adapter.parameters():
                        parameter.fill_(writer_id + iteration / 100)
                AdapterManager.save_adapter(model, adapter_dir, "john", training_stats={"writer": writer_id})

        return body

    pids = [fork_run(writer(1)), fork_run(writer(2))]
    assert [wait_child(pid, timeout=120) for pid in pids] == [0, 0]
    path = adapter_dir / "john_adapter.pt"
    info = AdapterManager.get_adapter_info(path)
    assert _fill_value(path) == pytest.approx(info["training_stats"]["writer"] + (writes - 1) / 100)
    assert [entry.name for entry in adapter_dir.iterdir()] == ["john_adapter.pt"]  # no temp files left behind
    AdapterManager.load_adapter(build_base(), path)


@pytest.mark.slow
def test_readers_never_see_a_half_written_adapter(tmp_path):
    adapter_dir = tmp_path / "adapters"
    model = _big_adapter_model(fill=0.0)
    AdapterManager.save_adapter(model, adapter_dir, "john")

    def write(iteration):
        with torch.no_grad():
            for parameter in model.adapter.parameters():
                parameter.fill_(float(iteration + 1))
        AdapterManager.save_adapter(model, adapter_dir, "john", training_stats={"version": iteration + 1})

    path = adapter_dir / "john_adapter.pt"
    probe = build_base()
    seen = []
    pid = fork_loop(write)
    try:
        # reads until the writer has replaced the file several times (review, stop 39: read for 1.5 s before)
        guard = time.monotonic() + 120  # a hang guard only
        while len(seen) <= 10 or len(set(seen)) < 4:
            value = _fill_value(path)  # raises on a missing, truncated or mixed file
            info = AdapterManager.load_adapter(probe, path)
            assert torch.all(probe.adapter.state_dict()["0.weight"] >= value)  # the load saw the same or a newer file
            assert info["training_stats"].get("version", 0) >= value
            seen.append(value)
            assert time.monotonic() < guard, f"the writer made no progress: {sorted(set(seen))}"
    finally:
        kill_hard(pid)
    assert len(seen) > 10 and len(set(seen)) >= 4 and seen == sorted(seen)


@pytest.mark.slow
def test_recognizer_serves_a_user_whose_adapter_is_being_rewritten(tmp_path, world):
    versions = []
    for seed in (1, 2):
        model = build_base()
        save_user_adapter(model, tmp_path / f"v{seed}", "carol", seed=seed)
        versions.append(tmp_path / f"v{seed}" / "carol_adapter.pt")
    expected = {}
    for path in versions:
        recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=path.parent)
        result = recognizer.transcribe(world.wavs[3], user="carol")
        expected[path.read_bytes()] = (result.tokens, result.score)
    assert len(set(map(_hashable, expected.values()))) == 2  # the two versions are told apart by their output
    contents = list(expected)
    target = world.adapter_dir / "carol_adapter.pt"
    target.write_bytes(contents[0])

    def rewrite(iteration):
        atomic_write(target, lambda handle: handle.write(contents[(iteration + 1) % 2]))

    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)
    pid = fork_loop(rewrite)
    outcomes = []
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            result = recognizer.transcribe(world.wavs[3], user="carol")
            outcomes.append((result.tokens, result.score))
    finally:
        kill_hard(pid)
    assert set(map(_hashable, outcomes)) <= set(map(_hashable, expected.values()))
    assert recognizer.cache_stats().reloads >= 1


def _hashable(outcome):
    tokens, score = outcome
    return tuple(tokens), round(score, 4)


def test_recognizer_shared_by_threads_equals_serial(world):
    model = build_base()
    save_user_adapter(model, world.adapter_dir, "carol", seed=3, adapter_type="encoder")
    save_user_adapter(model, world.adapter_dir, "dave", seed=4, adapter_type="residual_head")
    users = [None, "alice", "bob", "carol", "dave"]
    jobs = [([wav], [user]) for wav, user in itertools.product(world.wavs, users)]
    jobs += [(list(world.wavs), random.Random(seed).choices(users, k=len(world.wavs))) for seed in range(6)]

    def run(recognizer, job):
        wavs, job_users = job
        return [(r.tokens, r.score, r.adapter) for r in recognizer.transcribe(wavs, user=job_users)]

    serial_recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir, cache_size=8)
    serial = [run(serial_recognizer, job) for job in jobs]
    assert len({str(result) for result in serial}) > len(jobs) // 2  # users really change the output

    shared = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir, cache_size=2)
    order = [index for _ in range(3) for index in range(len(jobs))]
    random.Random(0).shuffle(order)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda index: (index, run(shared, jobs[index])), order))
    for index, result in results:
        assert result == serial[index], f"job {index} differs when run from threads"
    stats = shared.cache_stats()
    assert stats.evictions > 0 and stats.size <= 2  # adapters were loaded and evicted while other threads decoded


def test_reading_the_umask_for_atomic_writes_leaves_other_threads_files_alone(tmp_path):
    """Every atomic write reads the umask (to give its file the usual mode); reading it must not set it, or files that
    other threads create meanwhile come out world-writable. One thread reads it as fast as it can, another creates."""
    stop = threading.Event()

    def keep_reading() -> None:
        while not stop.is_set():
            fileio._current_umask()

    previous = os.umask(0o022)
    reader = threading.Thread(target=keep_reading)
    reader.start()
    try:
        for index in range(5000):
            (tmp_path / str(index)).touch()
        written = atomic_write(tmp_path / "adapter.pt", lambda handle: handle.write(b"x"))
    finally:
        stop.set()
        reader.join()
        os.umask(previous)
    assert {stat.S_IMODE(path.stat().st_mode) for path in tmp_path.iterdir()} == {0o644}
    assert stat.S_IMODE(written.stat().st_mode) == 0o644


def test_a_file_rewritten_atomically_keeps_its_mode_and_a_link_is_replaced_not_followed(tmp_path):
    """Review, stop 37: a file of mode 0600 (a key, a private adapter) came back 0644 from a rewrite."""
    private = tmp_path / "private.json"
    private.write_text("{}")
    private.chmod(0o600)
    atomic_write(private, lambda handle: handle.write(b'{"new": 1}'))
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and private.read_bytes() == b'{"new": 1}'
    target, link = tmp_path / "v3.pt", tmp_path / "current.pt"
    target.write_bytes(b"old")
    link.symlink_to(target)
    previous = os.umask(0o022)
    try:
        atomic_write(link, lambda handle: handle.write(b"new"))
    finally:
        os.umask(previous)
    assert not link.is_symlink() and link.read_bytes() == b"new" and target.read_bytes() == b"old"
    assert stat.S_IMODE(link.stat().st_mode) == 0o644
