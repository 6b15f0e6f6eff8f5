"""AdapterCache: LRU order and counters, reload when a file changes on disk, bounded size under many users."""

import copy
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from inference_world import build_base, save_user_adapter

from kospeech.inference import AdapterCache, CacheStats, Recognizer
from kospeech.models import AdapterManager


@pytest.fixture
def adapter_dir(tmp_path):
    model = build_base()
    for seed, name in enumerate(["a", "b", "c", "d"], start=1):
        save_user_adapter(model, tmp_path / "adapters", name, "head", seed)
    return tmp_path / "adapters"


def counting_loader(loaded):
    """A loader that builds an adapter module from the file and records which files it read."""

    def load(path):
        loaded.append(path.name)
        model = build_base()
        AdapterManager.load_adapter(model, path)
        return model.remove_adapter().eval()

    return load


def test_lru_eviction_order_and_counters(adapter_dir):
    loaded = []
    cache = AdapterCache(adapter_dir, counting_loader(loaded), capacity=2)
    first_a = cache.get("a")
    cache.get("b")
    assert cache.get("a") is first_a  # hit: a becomes most recently used
    cache.get("c")  # evicts b, the least recently used
    assert cache.names() == ["a", "c"]
    assert "b" not in cache and "a" in cache and len(cache) == 2
    cache.get("b")  # miss again; evicts a
    assert cache.names() == ["c", "b"]
    assert loaded == ["a_adapter.pt", "b_adapter.pt", "c_adapter.pt", "b_adapter.pt"]
    assert cache.stats() == CacheStats(hits=1, misses=4, evictions=2, reloads=0, size=2, capacity=2)
    cache.clear()
    assert len(cache) == 0 and cache.stats().misses == 4


def test_reload_when_the_file_changes_on_disk(adapter_dir):
    loaded = []
    cache = AdapterCache(adapter_dir, counting_loader(loaded), capacity=4)
    old = cache.get("a")
    assert cache.get("a") is old
    save_user_adapter(build_base(), adapter_dir, "a", "head", seed=42)  # same size, atomically replaced
    new = cache.get("a")
    assert new is not old
    assert not torch.equal(new[0].weight, old[0].weight)
    assert cache.stats().reloads == 1 and cache.stats().misses == 2 and cache.stats().hits == 1
    stamp = os.stat(adapter_dir / "a_adapter.pt")
    os.utime(adapter_dir / "a_adapter.pt", ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 5_000_000_000))  # touched
    assert cache.get("a") is not new
    assert cache.stats().reloads == 2
    assert loaded.count("a_adapter.pt") == 3


def test_missing_adapter_and_bad_settings(adapter_dir, tmp_path):
    cache = AdapterCache(adapter_dir, counting_loader([]), capacity=1)
    with pytest.raises(FileNotFoundError, match=r"no adapter named 'zed' in \S+adapters$"):
        cache.get("zed")  # a miss never lists the folder (a caller may fall back to the base model)
    with pytest.raises(ValueError, match="invalid adapter name"):
        cache.get("../a")
    with pytest.raises(ValueError, match="capacity"):
        AdapterCache(adapter_dir, counting_loader([]), capacity=0)
    with pytest.raises(FileNotFoundError, match="adapter directory"):
        AdapterCache(tmp_path / "nowhere", counting_loader([]))


def test_an_unusable_file_is_read_once_until_it_changes(adapter_dir):
    """A damaged adapter file raises the loader's error at every lookup, but is read only once while it stays as it
    is (review, stop 32: a user with a damaged active adapter made every one of their requests read it again, on the
    service's model thread); a read error is not remembered, and a repaired file is loaded."""
    loaded = []
    cache = AdapterCache(adapter_dir, counting_loader(loaded), capacity=4)
    damaged = adapter_dir / "a_adapter.pt"
    damaged.write_bytes(damaged.read_bytes()[:100])
    errors = []
    for _ in range(3):
        with pytest.raises(ValueError) as raised:
            cache.get("a")
        errors.append(raised.value)
    assert loaded == ["a_adapter.pt"] and len({id(error) for error in errors}) == 3
    assert len({str(error) for error in errors}) == 1 and "a_adapter.pt" in str(errors[0])
    save_user_adapter(build_base(), adapter_dir, "a", "head", seed=7)  # repaired: read again
    assert cache.get("a") is not None and loaded == ["a_adapter.pt", "a_adapter.pt"]

    def unreadable(path):
        loaded.append(path.name)
        raise PermissionError(f"{path}: permission denied")

    flaky = AdapterCache(adapter_dir, unreadable, capacity=4)
    for _ in range(2):
        with pytest.raises(PermissionError):
            flaky.get("b")
    assert loaded.count("b_adapter.pt") == 2


def test_recognizer_picks_up_a_retrained_adapter(world):
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)
    before = recognizer.transcribe(world.wavs[1], user="alice")
    assert recognizer.transcribe(world.wavs[1], user="alice").score == before.score
    model = build_base()
    save_user_adapter(model, world.adapter_dir, "alice", "residual_head", seed=77)  # retrained, another type
    after = recognizer.transcribe(world.wavs[1], user="alice")
    assert after.score != before.score
    stats = recognizer.cache_stats()
    assert (stats.hits, stats.misses, stats.reloads) == (1, 2, 1)


def test_batch_with_more_users_than_the_cache_holds(world):
    model = build_base()
    for seed, name in enumerate(["carol", "dave", "erin"], start=10):
        save_user_adapter(model, world.adapter_dir, name, "encoder", seed)
    small = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir, cache_size=2)
    large = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir, cache_size=8)
    users = ["alice", "carol", "dave", "erin"]
    for got, expected in zip(small.transcribe(world.wavs, user=users), large.transcribe(world.wavs, user=users)):
        assert got.tokens == expected.tokens and got.score == expected.score
    assert len(small.cache) == 2 and small.cache_stats().evictions == 2


def test_a_slow_load_holds_up_no_other_users_lookup(adapter_dir):
    """While one user's adapter file is being read (a cold file on a network share, say), another user's cached
    adapter is served at once; two threads loading the same file at once end with one module served."""
    reading_a, finish_a = threading.Event(), threading.Event()
    base = build_base()  # built once: build_base seeds the global RNG, which threads building at once would share

    def slow_for_a(path):
        if path.name.startswith("a_"):
            reading_a.set()
            assert finish_a.wait(10)
        model = copy.deepcopy(base)
        AdapterManager.load_adapter(model, path)
        return model.remove_adapter().eval()

    cache = AdapterCache(adapter_dir, slow_for_a, capacity=4)
    b = cache.get("b")
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(cache.get, "a")
        assert reading_a.wait(10)
        second = pool.submit(cache.get, "a")  # the same file, while the first read is under way
        assert pool.submit(cache.get, "b").result(timeout=10) is b  # answered while "a" is still being read
        assert not first.done()
        finish_a.set()
        assert first.result(10) is second.result(10)
    assert cache.names() == ["b", "a"] and cache.stats().misses == 3 and cache.stats().hits == 1
