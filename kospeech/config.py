"""Hydra registration of every config schema: call :func:`register_configs` before ``hydra.main``.

Each group's dataclass lives next to the code it configures (``FeatureConfig`` in
``kospeech.data.features``, ``DeepSpeech2Config`` in ``kospeech.model_builder``, the training configs
in ``kospeech.trainer.configs``); this module only stores them in Hydra's ``ConfigStore`` under
``<preset>_schema`` names that the YAML files in ``configs/`` extend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from kospeech.data.features import FeatureConfig
from kospeech.model_builder import DeepSpeech2Config
from kospeech.trainer.configs import AdapterTrainConfig, DataConfig, TrainConfig

__all__ = ["TrainJobConfig", "EvalConfig", "register_configs"]


@dataclass
class TrainJobConfig:
    """Top-level schema of ``configs/train.yaml``: one node per group."""

    audio: FeatureConfig = field(default_factory=FeatureConfig)
    model: DeepSpeech2Config = field(default_factory=DeepSpeech2Config)
    data: DataConfig = field(default_factory=DataConfig)
    train: Any = MISSING


@dataclass
class EvalConfig:
    """Schema of ``configs/eval.yaml``: score a checkpoint (and optional adapter) on a manifest."""

    checkpoint_path: str = field(default=MISSING, metadata={"help": "base model checkpoint (.pt)"})
    manifest_path: Optional[str] = field(
        default=None, metadata={"help": "manifest to score (default: the built-in corpus base/test.tsv)"}
    )
    adapter_path: Optional[str] = field(default=None, metadata={"help": "optional <name>_adapter.pt to apply"})
    adapter_dir: Optional[str] = field(
        default=None,
        metadata={
            "help": "per-user evaluation: directory of <user>_adapter.pt; each utterance uses its user's adapter "
            "(user from the manifest's 4th column or user_map); CER/WER per user and overall"
        },
    )
    user_map: Optional[str] = field(
        default=None,
        metadata={"help": "TSV AUDIO_PATH<TAB>USER overriding the manifest's speaker column (with adapter_dir)"},
    )
    fallback_to_base: bool = field(
        default=False, metadata={"help": "with adapter_dir: score users without an adapter with the base model"}
    )
    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = field(default=16, metadata={"help": "utterances per batch"})
    beam_size: int = field(default=1, metadata={"help": "1 = greedy CTC, >1 = prefix beam search"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:N or auto"})
    output_dir: str = field(default="runs/eval", metadata={"help": "where results.json and the config go"})


_REGISTERED = False


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainJobConfig)
    store.store(name="eval_schema", node=EvalConfig)
    store.store(group="audio", name="audio_schema", node=FeatureConfig)
    store.store(group="model", name="ds2_schema", node=DeepSpeech2Config)
    store.store(group="data", name="data_schema", node=DataConfig)
    store.store(group="train", name="ds2_train_schema", node=TrainConfig)
    store.store(group="train", name="adapter_train_schema", node=AdapterTrainConfig)
    _REGISTERED = True
