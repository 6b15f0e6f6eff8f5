"""Paths built from user values, adapters kept across retraining, and folders of thousands of adapters (round 2)."""

import argparse
import logging
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import REPO_ROOT, python_env, save_user_adapter
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError

from kospeech.cli.common import config_dir
from kospeech.cli.train_adapters import load_config
from kospeech.config import register_configs
from kospeech.errors import CheckpointError, UnknownUserError
from kospeech.fileio import atomic_write
from kospeech.inference import Recognizer
from kospeech.models import AdapterManager

# --------------------------------------------------------------------------------------- names checked before paths


@pytest.mark.parametrize("name", ["../../../x", "..", "a/b", "/tmp/evil", "x" * 65])
def test_the_run_folder_of_a_bad_adapter_name_never_resolves(name):
    register_configs()
    overrides = ["train=adapter_train", "train.base_model_path=base.pt", f"train.adapter_name='{name}'"]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        job = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    with pytest.raises(InterpolationResolutionError, match="invalid adapter name"):
        OmegaConf.select(job, "hydra.run.dir", throw_on_resolution_failure=True)


def test_a_good_adapter_name_gives_its_run_folder():
    register_configs()
    overrides = ["train=adapter_train", "train.base_model_path=base.pt", "train.adapter_name=john.2"]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        job = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    assert OmegaConf.select(job, "hydra.run.dir") == "runs/adapter_train/john.2"


def test_bin_main_refuses_a_traversing_name_before_hydra_creates_any_folder(tmp_path):
    cwd = tmp_path / "a" / "b" / "c"
    cwd.mkdir(parents=True)
    command = [
        sys.executable,
        str(REPO_ROOT / "bin" / "main.py"),
        "--config-name=train",
        "train=adapter_train",
        "train.base_model_path=base.pt",
        "train.adapter_name=../../../x",
    ]
    done = subprocess.run(command, cwd=cwd, env=python_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "train.adapter_name: invalid adapter name '../../../x'" in done.stderr
    assert sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*")) == ["a", "a/b", "a/b/c"]


@pytest.mark.parametrize(
    "folder",
    ["with,comma", "with=equals", "it's", "{braces}", "${oc.env:HOME}", "spa ce", "[list]", "back\\slash"],
    ids=["comma", "equals", "quote", "braces", "interpolation", "space", "brackets", "backslash"],
)
def test_train_adapters_takes_path_options_literally(tmp_path, folder):
    base = tmp_path / folder / "base.pt"
    args = argparse.Namespace(
        base_model=str(base),
        adapter_save_dir=str(tmp_path / folder / "adapters"),
        output_dir=str(tmp_path / folder / "run"),
        overrides=["train.num_epochs=2"],
    )
    config = load_config(args)
    assert config.base_model_path == str(base)
    assert config.adapter_save_dir == str(tmp_path / folder / "adapters")
    assert config.output_dir == str(tmp_path / folder / "run")
    assert config.num_epochs == 2


@pytest.mark.parametrize("key", ["train.adapter_save_dir", "train.output_dir", "train.base_model_path"])
def test_train_adapters_refuses_path_overrides_that_its_options_own(tmp_path, key):
    args = argparse.Namespace(
        base_model="base.pt", adapter_save_dir="ad", output_dir="run", overrides=[f"{key}=/elsewhere"]
    )
    with pytest.raises(SystemExit, match=rf"set {key} with --"):
        load_config(args)


# ------------------------------------------------------------------------------------------------------- versions


def test_retraining_keeps_the_replaced_adapter_as_a_version(world):
    active = world.adapter_dir / "alice_adapter.pt"
    first = active.read_bytes()
    assert AdapterManager.list_versions(world.adapter_dir, "alice") == []
    kept = AdapterManager.keep_version(world.adapter_dir, "alice")
    save_user_adapter(world.model, world.adapter_dir, "alice", seed=9)
    second = active.read_bytes()
    AdapterManager.keep_version(world.adapter_dir, "alice")
    save_user_adapter(world.model, world.adapter_dir, "alice", seed=10)
    versions = AdapterManager.list_versions(world.adapter_dir, "alice")
    assert [number for number, _ in versions] == [1, 2] and versions[0][1] == kept
    assert versions[0][1].read_bytes() == first and versions[1][1].read_bytes() == second
    assert AdapterManager.get_adapter_info(versions[0][1])["name"] == "alice"
    assert AdapterManager.adapter_names(world.adapter_dir) == ["alice", "bob"]  # versions are not adapters


def test_versions_kept_at_the_same_moment_each_get_their_own_number(world):
    """Eight writers keep a version at once (retrainings of one user in several processes): eight files, each
    whole; before, writers that picked the same next number replaced each other's file."""
    writers = 8
    start = threading.Barrier(writers)

    def keep(_: int):
        start.wait()
        return AdapterManager.keep_version(world.adapter_dir, "alice")

    with ThreadPoolExecutor(writers) as pool:
        kept = list(pool.map(keep, range(writers)))
    versions = AdapterManager.list_versions(world.adapter_dir, "alice")
    assert [number for number, _ in versions] == list(range(1, writers + 1))
    assert sorted(kept) == [path for _, path in versions]
    active = (world.adapter_dir / "alice_adapter.pt").read_bytes()
    assert all(path.read_bytes() == active for _, path in versions)
    assert not [entry for entry in versions[0][1].parent.iterdir() if entry.suffix == ".tmp"]
    with pytest.raises(FileExistsError):
        atomic_write(versions[0][1], lambda handle: handle.write(b"other"), replace=False)
    assert versions[0][1].read_bytes() == active


def test_a_stray_entry_under_a_versions_name_is_stepped_over(world):
    folder = AdapterManager.versions_dir(world.adapter_dir, "alice")
    folder.mkdir(parents=True)
    (folder / "000001.pt").symlink_to(folder / "gone.pt")  # a dangling link, not a version
    (folder / "000002.pt").mkdir()  # a folder, not a version
    kept = AdapterManager.keep_version(world.adapter_dir, "alice")
    assert kept.name == "000003.pt" and kept.read_bytes() == (world.adapter_dir / "alice_adapter.pt").read_bytes()


def test_the_next_version_follows_the_highest_number_kept_not_the_count(world):
    """Review, stop 39: with versions 1 and 3 kept (2 deleted by hand), the next number counted the files (3, taken:
    every try collided and keeping failed); it must be 4, and neither kept file is touched."""
    active = world.adapter_dir / "alice_adapter.pt"
    kept = []
    for seed in (9, 10, 11):
        kept.append(AdapterManager.keep_version(world.adapter_dir, "alice"))
        save_user_adapter(world.model, world.adapter_dir, "alice", seed=seed)
    assert [path.name for path in kept] == ["000001.pt", "000002.pt", "000003.pt"]
    first, third = kept[0].read_bytes(), kept[2].read_bytes()
    assert first != third
    kept[1].unlink()
    newest = AdapterManager.keep_version(world.adapter_dir, "alice")
    assert newest.name == "000004.pt" and newest.read_bytes() == active.read_bytes()
    assert kept[0].read_bytes() == first and kept[2].read_bytes() == third
    assert [number for number, _ in AdapterManager.list_versions(world.adapter_dir, "alice")] == [1, 3, 4]


def test_without_hard_links_a_new_file_is_still_never_written_over_another(tmp_path, monkeypatch):
    def no_links(*_):
        raise PermissionError("operation not permitted")  # what an SMB or FAT mount answers

    monkeypatch.setattr(os, "link", no_links)
    target = atomic_write(tmp_path / "000001.pt", lambda handle: handle.write(b"first"), replace=False)
    with pytest.raises(FileExistsError):
        atomic_write(target, lambda handle: handle.write(b"second"), replace=False)
    assert target.read_bytes() == b"first" and [entry.name for entry in tmp_path.iterdir()] == ["000001.pt"]


def test_a_kept_version_can_be_made_active_again_and_the_active_one_is_kept(world):
    active = world.adapter_dir / "alice_adapter.pt"
    first = active.read_bytes()
    AdapterManager.keep_version(world.adapter_dir, "alice")
    save_user_adapter(world.model, world.adapter_dir, "alice", seed=9)
    second = active.read_bytes()
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)
    newer = recognizer.transcribe(world.wavs[1], user="alice").score
    assert AdapterManager.restore_version(world.adapter_dir, "alice", 1) == active
    assert active.read_bytes() == first
    assert [path.read_bytes() for _, path in AdapterManager.list_versions(world.adapter_dir, "alice")] == [
        first,
        second,
    ]
    assert recognizer.transcribe(world.wavs[1], user="alice").score != newer  # the cache reloads the restored file
    with pytest.raises(FileNotFoundError, match=r"has no version 7; kept: \[1, 2\]"):
        AdapterManager.restore_version(world.adapter_dir, "alice", 7)


def test_a_damaged_version_is_refused_and_the_active_adapter_is_unchanged(world):
    AdapterManager.keep_version(world.adapter_dir, "alice")
    ((_, version),) = AdapterManager.list_versions(world.adapter_dir, "alice")
    version.write_bytes(version.read_bytes()[:100])
    before = (world.adapter_dir / "alice_adapter.pt").read_bytes()
    with pytest.raises(CheckpointError, match="000001.pt"):
        AdapterManager.restore_version(world.adapter_dir, "alice", 1)
    assert (world.adapter_dir / "alice_adapter.pt").read_bytes() == before


def test_deleting_an_adapter_deletes_its_versions(world):
    AdapterManager.keep_version(world.adapter_dir, "alice")
    AdapterManager.delete_adapter(world.adapter_dir, "alice")
    assert AdapterManager.list_versions(world.adapter_dir, "alice") == []
    assert not AdapterManager.versions_dir(world.adapter_dir, "alice").exists()
    assert AdapterManager.adapter_names(world.adapter_dir) == ["bob"]


def test_a_versions_folder_that_is_a_link_is_never_followed(world, tmp_path):
    """Review, stop 33: only the active file was checked, so a planted ``versions/alice`` link made keeping write
    there, restoring activate a file from there, and deleting unlink every numbered file there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "000001.pt").write_bytes(b"not an adapter of ours")
    AdapterManager.keep_version(world.adapter_dir, "bob")
    versions = world.adapter_dir / "versions"
    active = (world.adapter_dir / "alice_adapter.pt").read_bytes()
    for target in (outside, versions / "bob"):  # another folder; another adapter's versions
        (versions / "alice").symlink_to(target)
        actions = [
            lambda: AdapterManager.keep_version(world.adapter_dir, "alice"),
            lambda: AdapterManager.list_versions(world.adapter_dir, "alice"),
            lambda: AdapterManager.restore_version(world.adapter_dir, "alice", 1),
            lambda: AdapterManager.delete_adapter(world.adapter_dir, "alice"),
        ]
        for action in actions:
            with pytest.raises(ValueError, match="refusing to follow it"):
                action()
        (versions / "alice").unlink()
    assert (outside / "000001.pt").read_bytes() == b"not an adapter of ours"
    assert [number for number, _ in AdapterManager.list_versions(world.adapter_dir, "bob")] == [1]
    assert (world.adapter_dir / "alice_adapter.pt").read_bytes() == active


def test_stray_files_in_a_versions_folder_neither_block_deletion_nor_break_numbering(world):
    """Review, stop 33: a temporary file left by a killed write made ``delete_adapter`` fail after unlinking every
    version (the active file stayed, for ever), and a file named ``².pt`` (a digit to ``isdigit``, not to ``int``)
    broke listing and keeping versions."""
    AdapterManager.keep_version(world.adapter_dir, "alice")
    folder = AdapterManager.versions_dir(world.adapter_dir, "alice")
    (folder / "².pt").write_bytes(b"x")
    assert [number for number, _ in AdapterManager.list_versions(world.adapter_dir, "alice")] == [1]
    assert AdapterManager.keep_version(world.adapter_dir, "alice").name == "000002.pt"
    (folder / ".000003.pt.1234.tmp").write_bytes(b"half a file")
    AdapterManager.delete_adapter(world.adapter_dir, "alice")
    assert not folder.exists() and not (world.adapter_dir / "alice_adapter.pt").exists()


def test_keeping_a_version_of_an_adapter_that_does_not_exist_keeps_nothing(world):
    assert AdapterManager.keep_version(world.adapter_dir, "nobody") is None
    assert not (world.adapter_dir / "versions").exists()


# ------------------------------------------------------------------------------------------ thousands of adapters


@pytest.fixture
def crowded(world):
    """``world``'s folder plus 10,000 adapter file names (empty files: only names are looked at)."""
    for index in range(10_000):
        (world.adapter_dir / f"user{index:05d}_adapter.pt").touch()
    return world


def test_an_unknown_user_among_ten_thousand_gets_a_short_message(crowded):
    recognizer = Recognizer.from_checkpoint(crowded.checkpoint, adapter_dir=crowded.adapter_dir)
    with pytest.raises(UnknownUserError) as info:
        recognizer.transcribe(crowded.wavs[0], user="zed")
    message = str(info.value)
    assert len(message) < 1000 and "and 9982 more (10002 in all)" in message
    assert len(info.value.available) == 10_002  # the attribute keeps every name for a program
    with pytest.raises(FileNotFoundError, match=r"and 9982 more \(10002 in all\)$"):
        AdapterManager.find_adapter(crowded.adapter_dir, "zed")


def test_falling_back_to_the_base_never_lists_the_folder(crowded, caplog):
    recognizer = Recognizer.from_checkpoint(crowded.checkpoint, adapter_dir=crowded.adapter_dir, fallback_to_base=True)
    with caplog.at_level(logging.WARNING):
        result = recognizer.transcribe(crowded.wavs[0], user="zed")
    assert result.text == recognizer.transcribe(crowded.wavs[0]).text
    assert "user00000" not in caplog.text and "using the base model" in caplog.text


def test_list_adapters_skips_unreadable_files_among_many(crowded, caplog):
    for index in range(10, 10_000):
        (crowded.adapter_dir / f"user{index:05d}_adapter.pt").unlink()
    with caplog.at_level(logging.WARNING):
        names = [info["name"] for info in AdapterManager.list_adapters(crowded.adapter_dir)]
    assert names == ["alice", "bob"]
    assert caplog.text.count("skipping") == 10
