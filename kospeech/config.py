"""Hydra registration of every config schema: call :func:`register_configs` before ``hydra.main``.

Each group's dataclass lives next to the code it configures (``FeatureConfig`` in
``kospeech.data.features``, ``DeepSpeech2Config`` in ``kospeech.model_builder``, the training configs
in ``kospeech.trainer.configs``); this module only stores them in Hydra's ``ConfigStore`` under
``<preset>_schema`` names that the YAML files in ``configs/`` extend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from kospeech.data.features import FeatureConfig
from kospeech.data.synthetic.config import SCHEMA_NAME as CORPUS_SCHEMA_NAME
from kospeech.data.synthetic.config import CorpusConfig
from kospeech.model_builder import DeepSpeech2Config
from kospeech.models.adapter_manager import validate_adapter_name
from kospeech.trainer.configs import AdapterTrainConfig, DataConfig, TrainConfig

__all__ = ["TrainJobConfig", "EvalConfig", "SCHEMAS", "RUN_DIR_RESOLVER", "register_configs", "checked_run_dir"]


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


SCHEMAS: Tuple[Tuple[Optional[str], str, type], ...] = (
    (None, "train_schema", TrainJobConfig),
    (None, "eval_schema", EvalConfig),
    (None, CORPUS_SCHEMA_NAME, CorpusConfig),
    ("audio", "audio_schema", FeatureConfig),
    ("model", "ds2_schema", DeepSpeech2Config),
    ("data", "data_schema", DataConfig),
    ("train", "ds2_train_schema", TrainConfig),
    ("train", "adapter_train_schema", AdapterTrainConfig),
)
"""Every Hydra node: ``(group or None, name, dataclass)``; the YAML files in ``configs/`` extend these names."""

_STORED: Dict[Tuple[Optional[str], str], type] = {}

RUN_DIR_RESOLVER = "kospeech.run_dir"
"""The OmegaConf resolver of ``hydra.run.dir`` in ``configs/train.yaml``: see :func:`checked_run_dir`."""


def checked_run_dir(output_dir: str, adapter_name: Optional[str] = None) -> str:
    """``output_dir``, once the adapter name of the job (if any) is known to be a valid name.

    Hydra creates the run folder (``.hydra/``, ``train.log``) from ``hydra.run.dir`` before the job starts; resolving
    it through this function refuses a name such as ``../../x`` before any folder exists.

    Raises:
        InvalidNameError: ``adapter_name`` breaks the adapter name rule.
    """
    if adapter_name is not None:
        validate_adapter_name(adapter_name)
    return output_dir


def register_configs() -> None:
    """Store every schema of :data:`SCHEMAS` in Hydra's ConfigStore (and register :data:`RUN_DIR_RESOLVER`); every
    CLI calls it before ``hydra.main``.

    Calling it again is harmless. A different dataclass already stored under one of the names by this function
    is refused, so two schemas can never silently share a name.

    Raises:
        ValueError: a name of :data:`SCHEMAS` is already taken by another dataclass.
    """
    if not OmegaConf.has_resolver(RUN_DIR_RESOLVER):
        OmegaConf.register_new_resolver(RUN_DIR_RESOLVER, checked_run_dir)
    store = ConfigStore.instance()
    for group, name, node in SCHEMAS:
        key = (group, name)
        if key in _STORED:
            if _STORED[key] is not node:
                where = f"{group}/{name}" if group else name
                raise ValueError(f"config schema {where!r} is already {_STORED[key].__name__}, not {node.__name__}")
            continue
        store.store(group=group, name=name, node=node)
        _STORED[key] = node
