"""The demo's code path, small: the shipped base, one held-out user generated here, base vs adapter."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from kospeech.cli.demo import demo_config
from kospeech.demo import DemoConfig, format_table, run_demo
from kospeech.trainer import AdapterTrainConfig

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "pretrained" / "ds2_synthetic.pt"


@pytest.mark.slow
def test_demo_adapter_beats_the_base_on_an_unseen_channel(tmp_path):
    config = DemoConfig(
        base_model_path=str(BASE),
        users_dir=str(tmp_path / "users"),
        output_dir=str(tmp_path / "demo"),
        users=["user01"],
        max_enroll=40,
        max_test=20,
    )
    config.adapter.num_epochs = 6
    config.adapter.num_threads = 1
    config.adapter.speed_perturbation = []  # the recipe's copies triple each epoch; tests/data cover them
    records = run_demo(config)

    (record,) = records
    assert record["user"] == "user01"
    assert record["adapter_cer"] < record["base_cer"], record
    saved = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert saved[0]["adapter_cer"] == record["adapter_cer"]
    assert {"base_cer", "adapter_cer", "trainable_params", "adapter_bytes", "train_seconds"} <= set(saved[0])
    assert record["adapter_bytes"] == Path(record["adapter_path"]).stat().st_size
    assert (tmp_path / "demo" / "personalization.png").read_bytes().startswith(b"\x89PNG\r\n")
    recorded = OmegaConf.load(tmp_path / "demo" / "config.yaml")  # the demo's own settings, beside its results
    assert recorded.users == ["user01"] and recorded.max_enroll == 40 and recorded.adapter.num_epochs == 6
    assert "user01" in format_table(records)


def test_the_demo_trains_the_chosen_type_s_own_recipe():
    """Review, stop 37: --adapter-type residual_head kept the encoder recipe's settings ([512, 256], dropout 0.3,
    speed perturbation) instead of residual_head's ([128])."""
    chosen = demo_config(["--adapter-type", "residual_head"]).adapter
    assert chosen == AdapterTrainConfig.for_adapter_type(
        "residual_head", base_model_path="", num_workers=0, num_threads=2
    )
    assert chosen.adapter_hidden_dims == [128]
    assert demo_config([]).adapter == dataclasses.replace(DemoConfig().adapter, num_threads=2)  # `make demo`
    assert demo_config(["--epochs", "3", "--threads", "1"]).adapter.num_epochs == 3


def test_the_demo_refuses_mistakes_in_one_line(tmp_path, capsys):
    """Review, stop 39: --threads 0, --epochs 0 and an unknown user ended in tracebacks, and a mistyped --base
    trained a new base model for minutes."""
    for arguments, problem in (
        (["--threads", "0"], "argument --threads: must be at least 1, got 0"),
        (["--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
        (["--base", str(tmp_path / "typo.pt")], "typo.pt: no such file"),
    ):
        with pytest.raises(SystemExit) as stopped:
            demo_config(arguments)
        assert stopped.value.code == 2 and problem in capsys.readouterr().err
    command = [sys.executable, str(ROOT / "bin" / "demo.py"), "--users", "nobody", "--base", str(BASE)]
    command += ["--output-dir", str(tmp_path / "out"), "--users-dir", str(tmp_path / "users"), "--threads", "1"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 1 and "Traceback" not in finished.stderr
    assert finished.stderr.strip().splitlines()[-1].startswith("error: unknown users ['nobody']")
