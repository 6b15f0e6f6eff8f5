"""Helpers shared by the console scripts: where the Hydra configs are, logging setup and path resolution."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Iterable, Optional

from hydra.utils import to_absolute_path
from omegaconf import DictConfig, open_dict

__all__ = ["setup_logging", "absolutize_paths", "config_dir", "PATH_KEYS"]

PATH_KEYS = (
    "output_dir",
    "corpus_dir",
    "train_manifest",
    "valid_manifest",
    "vocab_path",
    "base_model_path",
    "adapter_save_dir",
    "checkpoint_path",
    "manifest_path",
    "adapter_path",
    "adapter_dir",
    "user_map",
    "trunk_cache_dir",
    "out_dir",
)


def config_dir() -> str:
    """The folder of the Hydra YAML configs (``train.yaml``, ``eval.yaml``, ``make_corpus.yaml``, groups).

    A checkout or an editable install (``pip install -e .``) uses the repository's ``configs/`` next to the package,
    so edits there take effect at once; a regular install uses the copy that ``setup.py`` installs under
    ``{sys.prefix}/share/kospeech/configs``.

    Raises:
        FileNotFoundError: neither folder exists.
    """
    candidates = [Path(__file__).resolve().parents[2] / "configs", Path(sys.prefix) / "share" / "kospeech" / "configs"]
    for candidate in candidates:
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"kospeech's Hydra configs not found; looked in {[str(c) for c in candidates]}")


def setup_logging(log_file: Optional[Path] = None, level: int = logging.INFO) -> None:
    """Log INFO and above to stderr and, when given, to ``log_file`` (appending)."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )


def absolutize_paths(config: DictConfig, keys: Iterable[str] = PATH_KEYS) -> DictConfig:
    """Resolve every relative path field (at any depth) against the directory the command ran from.

    Hydra may change the working directory to its run folder; ``to_absolute_path`` uses the
    original one, so ``train.base_model_path=models/base.pt`` means what the user typed.
    """
    keys = set(keys)
    with open_dict(config):
        for key in list(config.keys()):
            value = config.get(key)
            if isinstance(value, DictConfig):
                absolutize_paths(value, keys)
            elif key in keys and isinstance(value, str) and value and not os.path.isabs(value) and value != "???":
                config[key] = to_absolute_path(value)
    return config
