"""Tests for bin/make_corpus.py and its Hydra schema."""

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from kospeech.config import register_configs
from kospeech.data.synthetic import CorpusCard, CorpusConfig
from kospeech.data.synthetic.corpus import CorpusSizes

REPO = Path(__file__).resolve().parents[2]


def _make_corpus(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    """Run ``bin/make_corpus.py`` with Hydra overrides in ``cwd``."""
    command = [sys.executable, str(REPO / "bin" / "make_corpus.py"), *overrides]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_yaml_composes_against_the_schema():
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        config = compose(config_name="make_corpus", overrides=["preset=tiny", "num_users=3"])
    corpus_config = OmegaConf.to_object(config)
    assert isinstance(corpus_config, CorpusConfig)
    assert corpus_config.out_dir == "data/corpus_tiny"
    assert corpus_config.size_overrides() == {"num_users": 3}
    schema_fields = {f.name for f in fields(CorpusConfig)}
    assert {f.name for f in fields(CorpusSizes)} <= schema_fields
    assert all(f.metadata.get("help") for f in fields(CorpusConfig))


def test_cli_builds_into_a_path_relative_to_the_launch_directory(tmp_path):
    result = _make_corpus(
        tmp_path,
        "preset=tiny",
        "out_dir=corpora/small",
        "seed=5",
        "num_base_speakers=2",
        "utterances_per_speaker=3",
        "num_users=1",
        "enroll_per_user=2",
        "test_per_user=1",
        "num_workers=1",
    )
    assert result.returncode == 0, result.stderr
    card = CorpusCard.load(tmp_path / "corpora" / "small")
    assert card.seed == 5 and card.data["totals"]["utterances"] == 2 * 3 + 2 + 1
    assert "utterances=9" in result.stdout
    assert sorted(path.name for path in tmp_path.iterdir()) == ["corpora"]  # no .hydra/, outputs/ or log files


@pytest.mark.parametrize("out_dir", ["", "'  '"], ids=["empty", "spaces"])
def test_cli_refuses_an_empty_out_dir_instead_of_building_into_the_launch_directory(tmp_path, out_dir):
    result = _make_corpus(tmp_path, "preset=tiny", f"out_dir={out_dir}", "num_workers=1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: out_dir=") and "is blank: name the corpus folder" in lines[-1]
    assert not any(tmp_path.iterdir())
