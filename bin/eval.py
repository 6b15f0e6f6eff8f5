"""CER/WER of a checkpoint, optionally with a user's adapter, on a manifest (Hydra).

    python bin/eval.py checkpoint_path=runs/ds2_train/best.pt manifest_path=data/corpus_demo/base/test.tsv
    python bin/eval.py checkpoint_path=pretrained/ds2_synthetic.pt adapter_path=adapters/user01_adapter.pt \
        manifest_path=data/corpus_demo/users/user01/test.tsv
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from kospeech.cli import absolutize_paths, setup_logging  # noqa: E402
from kospeech.config import register_configs  # noqa: E402
from kospeech.trainer.recipes import evaluate_checkpoint  # noqa: E402

register_configs()


@hydra.main(config_path="../configs", config_name="eval", version_base="1.3")
def main(config: DictConfig) -> None:
    absolutize_paths(config)
    setup_logging()
    print(json.dumps(evaluate_checkpoint(config), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
