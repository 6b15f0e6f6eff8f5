"""Dynamic batching across users and the byte-bounded adapter cache, on the shipped base model."""

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import BASE_MODEL

from kospeech.checkpoint import load_checkpoint
from kospeech.inference import Recognizer
from kospeech.models import AdapterManager
from kospeech.service.adapter_cache import ByteBoundedAdapterCache, module_bytes
from kospeech.service.batching import BatcherStopped, DynamicBatcher


@pytest.fixture(scope="module")
def recognizer():
    return Recognizer.from_checkpoint(BASE_MODEL, fallback_to_base=True)


def speech(tiny_users: Path, count: int):
    files = sorted((tiny_users / "users").glob("*/wavs/*test*.wav"))[:count]
    return [sf.read(str(path), dtype="float32")[0] for path in files]


def save_adapter(recognizer: Recognizer, folder: Path, name: str, seed: int) -> Path:
    """A head adapter with random, non-trivial weights, saved for the recognizer's base."""
    checkpoint = load_checkpoint(BASE_MODEL)
    model = checkpoint.build_model()
    model.add_adapter("head", hidden_dims=[32])
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.adapter.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return AdapterManager.save_adapter(
        model,
        folder,
        name,
        vocab_fingerprint=checkpoint.vocab.fingerprint(),
        feature_config=checkpoint.feature_config.to_dict(),
    )


def serving_cache(recognizer, folder, max_bytes=1 << 30):
    cache = ByteBoundedAdapterCache(folder, recognizer._load_adapter, max_bytes)
    recognizer.cache = cache
    return cache


def test_concurrent_requests_of_different_users_run_as_one_batch(recognizer, tiny_users, tmp_path):
    cache = serving_cache(recognizer, tmp_path)
    for index, name in enumerate(("alice", "bob")):
        cache.bind(name, save_adapter(recognizer, tmp_path / name, name, seed=index))
    waves = speech(tiny_users, 4)
    users = ["alice", None, "bob", "alice"]
    alone = [recognizer.transcribe((wave, 16000), user=user) for wave, user in zip(waves, users)]
    batches = []
    batcher = DynamicBatcher(recognizer, max_batch_size=8, max_wait_ms=300, on_batch=lambda n, s: batches.append(n))
    batcher.start()
    futures = [None] * len(waves)

    def submit(index):
        futures[index] = batcher.submit(waves[index], 16000, users[index])

    try:
        threads = [threading.Thread(target=submit, args=(index,)) for index in range(len(waves))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        batched = [future.result(timeout=60) for future in futures]
    finally:
        batcher.stop()
    assert batches == [4]
    assert [result.tokens for result in batched] == [result.tokens for result in alone]
    assert [result.adapter for result in batched] == users
    base = recognizer.transcribe((waves[0], 16000))
    assert base.tokens != alone[0].tokens  # the adapter changes the output, so the test can fail


def test_a_batch_waits_at_most_max_wait_and_holds_at_most_max_size(recognizer, tiny_users):
    recognizer.cache = None
    wave = speech(tiny_users, 1)[0]
    batches = []
    batcher = DynamicBatcher(recognizer, max_batch_size=2, max_wait_ms=50, on_batch=lambda n, s: batches.append(n))
    batcher.start()
    try:
        started = time.monotonic()
        assert batcher.submit(wave, 16000, None).result(timeout=60).text
        assert time.monotonic() - started < 5.0
        futures = [batcher.submit(wave, 16000, None) for _ in range(5)]
        texts = {future.result(timeout=60).text for future in futures}
    finally:
        batcher.stop()
    assert len(texts) == 1 and batches[0] == 1 and max(batches) <= 2 and sum(batches) == 6
    with pytest.raises(BatcherStopped):
        batcher.submit(wave, 16000, None)


def test_one_bad_request_fails_alone(recognizer, tiny_users):
    recognizer.cache = None
    wave = speech(tiny_users, 1)[0]
    batcher = DynamicBatcher(recognizer, max_batch_size=4, max_wait_ms=200)
    batcher.start()
    try:
        good = batcher.submit(wave, 16000, None)
        bad = batcher.submit(np.full(1600, np.nan, np.float32), 16000, None)
        assert good.result(timeout=60).text
        with pytest.raises(ValueError):
            bad.result(timeout=60)
    finally:
        batcher.stop()


def test_the_cache_reloads_a_replaced_adapter_and_stays_within_its_bytes(recognizer, tmp_path):
    first = save_adapter(recognizer, tmp_path / "a", "alice", seed=0)
    size = module_bytes(AdapterManager.read_adapter(first)[0])
    cache = serving_cache(recognizer, tmp_path, max_bytes=int(size * 1.5))
    cache.bind("alice", first)
    cache.bind("bob", save_adapter(recognizer, tmp_path / "b", "bob", seed=1))
    loaded = cache.get("alice")
    assert cache.get("alice") is loaded and cache.stats().hits == 1
    assert cache.bytes == size
    cache.get("bob")  # two adapters exceed 1.5 adapters' bytes: alice, least recently used, goes
    assert cache.names() == ["bob"] and cache.stats().evictions == 1 and cache.bytes == size
    replacement = save_adapter(recognizer, tmp_path / "c", "bob", seed=2)
    os.replace(replacement, tmp_path / "b" / "bob_adapter.pt")  # what a worker's activation does
    reloaded = cache.get("bob")
    assert cache.stats().reloads == 1
    assert not torch.equal(next(reloaded.parameters()), next(loaded.parameters()))
    cache.forget("bob")
    with pytest.raises(FileNotFoundError):
        cache.get("bob")
    assert cache.bytes == 0
