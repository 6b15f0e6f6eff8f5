"""Shipped files (Hydra configs, the base model) from a checkout and from an installed package; the source archive."""

import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from kospeech import resources
from kospeech.cli.common import config_dir
from kospeech.resources import SHIPPED_BASE_MODEL, local_or_shipped, shipped_candidates, shipped_path
from kospeech.service.settings import load_settings

REPO = Path(__file__).resolve().parents[1]


def test_a_checkout_uses_its_own_configs_and_base_model():
    assert shipped_path("configs") == REPO / "configs" and Path(config_dir()) == REPO / "configs"
    assert shipped_path(SHIPPED_BASE_MODEL) == REPO / SHIPPED_BASE_MODEL


def test_an_installed_package_finds_the_copies_installed_under_its_data_folder(tmp_path, monkeypatch):
    """Review, stop 38: an installed server, worker and demo looked for ./pretrained/ds2_synthetic.pt only (the demo
    then trained a worse base of its own without a word), and `pip install --user` left the Hydra CLIs without
    configs (only sys.prefix was searched)."""
    prefix = tmp_path / "prefix"
    shared = prefix / "share" / "kospeech"
    (shared / "configs").mkdir(parents=True)
    (shared / "configs" / "train.yaml").write_text("defaults: []\n")
    (shared / "pretrained").mkdir()
    (shared / SHIPPED_BASE_MODEL).write_bytes(b"installed copy")
    monkeypatch.setattr(resources, "_checkout_root", lambda: None)
    monkeypatch.setattr(sys, "prefix", str(prefix))
    user_data = Path(sysconfig.get_path("data", sysconfig.get_preferred_scheme("user")))
    assert user_data / "share" / "kospeech" / "configs" in shipped_candidates("configs")
    assert config_dir() == str(shared / "configs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert local_or_shipped(SHIPPED_BASE_MODEL) == str(shared / SHIPPED_BASE_MODEL)
    assert load_settings([f"server.data_dir={tmp_path / 'data'}"]).base_model_path == str(shared / SHIPPED_BASE_MODEL)
    assert local_or_shipped("other.pt") == "other.pt"  # only the shipped file's own name falls back
    (elsewhere / "pretrained").mkdir()
    (elsewhere / SHIPPED_BASE_MODEL).write_bytes(b"local")
    assert local_or_shipped(SHIPPED_BASE_MODEL) == SHIPPED_BASE_MODEL  # a file where the command runs wins


@pytest.mark.slow
def test_the_source_archive_builds_a_wheel_with_the_configs_and_the_base_model(tmp_path):
    """Review, stop 38: the sdist left out requirements.txt, which setup.py reads, so it could not be built."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    source = tmp_path / "source"
    for name in tracked.splitlines():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO / name).read_bytes())
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")], cwd=source, check=True)
    (archive,) = (tmp_path / "dist").glob("kospeech-*.tar.gz")
    with tarfile.open(archive) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"requirements.txt", "constraints.txt", "configs/train.yaml", SHIPPED_BASE_MODEL} <= names
    assert not any(name.startswith("tests/") for name in names)
    wheelhouse = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheelhouse)]
    subprocess.run([*build, str(archive)], cwd=tmp_path, check=True)
    (wheel,) = wheelhouse.glob("kospeech-*.whl")
    with zipfile.ZipFile(wheel) as contents:
        files = contents.namelist()
    for shipped in ("share/kospeech/configs/train.yaml", f"share/kospeech/{SHIPPED_BASE_MODEL}"):
        assert any(name.endswith(f".data/data/{shipped}") for name in files), shipped
    assert "kospeech/service/static/enroll.js" in files and "kospeech/resources.py" in files
