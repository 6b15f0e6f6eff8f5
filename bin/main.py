"""Train a DeepSpeech2 base model or a per-user adapter (Hydra).

    python bin/main.py --config-name=train train=ds2_train
    python bin/main.py --config-name=train train=adapter_train \
        train.base_model_path=path/to/base.pt train.adapter_name=user_john train.adapter_save_dir=./adapters
"""

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from kospeech.cli import absolutize_paths, setup_logging  # noqa: E402
from kospeech.config import register_configs  # noqa: E402
from kospeech.trainer.recipes import train_adapter_model, train_base_model  # noqa: E402

logger = logging.getLogger("kospeech.main")


def train_base(config: DictConfig) -> dict:
    """Train a base DeepSpeech2 from scratch."""
    return train_base_model(config)


def train_adapter(config: DictConfig) -> dict:
    """Train one user's adapter on a frozen base checkpoint."""
    return train_adapter_model(config)


register_configs()


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(config: DictConfig) -> None:
    absolutize_paths(config)
    setup_logging(Path(config.train.output_dir) / "train.log")
    logger.info("resolved config:\n%s", OmegaConf.to_yaml(config))
    is_adapter_job = "base_model_path" in config.train
    results = train_adapter(config) if is_adapter_job else train_base(config)
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
