"""The demo's code path, small: the shipped base, one held-out user generated here, base vs adapter."""

import dataclasses
import json
from pathlib import Path

import pytest

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
    assert (tmp_path / "demo" / "personalization.png").stat().st_size > 0
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
