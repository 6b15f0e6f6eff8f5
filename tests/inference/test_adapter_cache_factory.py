"""Recognizer(adapter_cache_factory=...): a cache of the caller's own serves the Recognizer through its public loader."""

import shutil
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from inference_world import build_base, save_user_adapter

from kospeech.errors import UnknownUserError
from kospeech.inference import CacheStats, Recognizer
from kospeech.inference.adapter_cache import AdapterLoader, AdapterSource
from kospeech.models.adapter import AdapterModule


class FolderPerUserCache:
    """Each user's adapter file in a folder of its own (not ``<dir>/<name>_adapter.pt``), loaded once."""

    def __init__(self, root: Path, files: Dict[str, Path], loader: AdapterLoader) -> None:
        self.adapter_dir = root
        self.files = files
        self.loader = loader
        self.loaded: List[str] = []
        self.modules: Dict[str, Optional[AdapterModule]] = {}

    def get(self, name: str) -> Optional[AdapterModule]:
        if name not in self.files:
            raise FileNotFoundError(f"no adapter for {name!r}")
        if name not in self.modules:
            self.loaded.append(name)
            self.modules[name] = self.loader(self.files[name])
        return self.modules[name]

    def available(self) -> List[str]:
        return sorted(self.files)

    def stats(self) -> CacheStats:
        return CacheStats(misses=len(self.loaded), size=len(self.modules), capacity=len(self.files))


@pytest.fixture
def per_user_files(world, tmp_path) -> Dict[str, Path]:
    """alice's and bob's adapters moved to ``users/<name>/current.pt``."""
    files = {}
    for name in ("alice", "bob"):
        target = tmp_path / "users" / name / "current.pt"
        target.parent.mkdir(parents=True)
        shutil.copy(world.adapter_dir / f"{name}_adapter.pt", target)
        files[name] = target
    return files


def test_a_factory_built_cache_serves_the_same_results_as_adapter_dir(world, per_user_files, tmp_path):
    built = []

    def factory(loader: AdapterLoader) -> FolderPerUserCache:
        cache = FolderPerUserCache(tmp_path / "users", per_user_files, loader)
        built.append((cache, loader))
        return cache

    custom = Recognizer.from_checkpoint(world.checkpoint, adapter_cache_factory=factory)
    reference = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)
    ((cache, loader),) = built
    assert custom.cache is cache and isinstance(cache, AdapterSource)
    assert loader == custom.load_adapter  # the public loader, bound to this recognizer
    users = ["alice", None, "bob", "alice"]
    mixed = custom.transcribe(list(world.wavs), user=users)
    expected = reference.transcribe(list(world.wavs), user=users)
    assert [r.tokens for r in mixed] == [r.tokens for r in expected]
    assert [r.score for r in mixed] == pytest.approx([r.score for r in expected], abs=1e-5)
    assert [r.adapter for r in mixed] == users
    assert cache.loaded == ["alice", "bob"]
    assert custom.available_users() == ["alice", "bob"] and custom.cache_stats().misses == 2


def test_the_public_loader_checks_the_file_against_the_base(world, tmp_path):
    recognizer = Recognizer.from_checkpoint(world.checkpoint)
    adapter = recognizer.load_adapter(world.adapter_dir / "alice_adapter.pt")
    assert adapter is not None and not adapter.training
    assert not any(parameter.requires_grad for parameter in adapter.parameters())
    other_base = build_base(seed=7)
    foreign = save_user_adapter(other_base, tmp_path / "foreign", "mallory", "head", seed=3)
    with pytest.raises(ValueError, match="base_fingerprint"):
        recognizer.load_adapter(foreign)


def test_users_missing_from_a_factory_built_cache_follow_the_fallback_rule(world, per_user_files, tmp_path):
    def factory(loader):
        return FolderPerUserCache(tmp_path / "users", {"alice": per_user_files["alice"]}, loader)

    strict = Recognizer.from_checkpoint(world.checkpoint, adapter_cache_factory=factory)
    with pytest.raises(UnknownUserError, match="bob"):
        strict.transcribe(world.wavs[0], user="bob")
    lenient = Recognizer.from_checkpoint(world.checkpoint, adapter_cache_factory=factory, fallback_to_base=True)
    assert lenient.transcribe(world.wavs[0], user="bob").adapter is None


def test_a_factory_and_an_adapter_dir_together_or_a_wrong_object_are_refused(world, per_user_files, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        Recognizer.from_checkpoint(
            world.checkpoint,
            adapter_dir=world.adapter_dir,
            adapter_cache_factory=lambda loader: FolderPerUserCache(tmp_path, per_user_files, loader),
        )
    with pytest.raises(TypeError, match="AdapterSource"):
        Recognizer.from_checkpoint(world.checkpoint, adapter_cache_factory=lambda loader: {"alice": loader})
