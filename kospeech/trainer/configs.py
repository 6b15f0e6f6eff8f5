"""Dataclass configs of the training jobs (Hydra groups ``train`` and ``data``).

The dataclasses are the schema; the YAML files under ``configs/`` only pick values. Paths are
stored as the user wrote them and resolved against the launch directory at the CLI boundary.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Dict, List, Optional, Sequence

from omegaconf import MISSING

from kospeech.errors import ConfigError
from kospeech.models.adapter import AdapterSettings, registered_adapter
from kospeech.optim import LR_SCHEDULERS, OPTIMIZERS

__all__ = ["DataConfig", "TrainConfig", "AdapterTrainConfig", "check_num_epochs", "recipe_settings"]


@dataclass
class DataConfig:
    """Where the speech comes from: the built-in synthetic corpus by default, or explicit manifests."""

    corpus_dir: str = field(
        default="data/corpus_demo", metadata={"help": "built-in corpus folder; built on first use if missing"}
    )
    corpus_preset: str = field(default="demo", metadata={"help": "built-in corpus preset: tiny, demo or bench"})
    corpus_seed: int = field(default=0, metadata={"help": "seed of the built-in corpus"})
    train_manifest: Optional[str] = field(
        default=None,
        metadata={"help": "training manifest (default: corpus base/train.tsv, or the user's enroll.tsv for adapters)"},
    )
    valid_manifest: Optional[str] = field(
        default=None,
        metadata={
            "help": "validation manifest (default: corpus base/dev.tsv; for adapters a held-out enrollment part)"
        },
    )
    vocab_path: Optional[str] = field(default=None, metadata={"help": "vocabulary CSV (default: corpus vocab.csv)"})
    unit: str = field(
        default="character",
        metadata={"help": "output units of a new base: character (syllables) or grapheme (jamo, from the same CSV)"},
    )
    user: str = field(default="user01", metadata={"help": "built-in user whose enrollment set trains an adapter"})


def check_num_epochs(num_epochs: int) -> int:
    """Refuse an epoch count that would train nothing (and so save nothing) before any work starts.

    Raises:
        ConfigError: ``num_epochs`` is not a whole number of at least 1 (naming ``train.num_epochs``).
    """
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
        raise ConfigError(f"train.num_epochs must be a whole number of at least 1, got {num_epochs!r}")
    return num_epochs


def _placeholder(value: Any) -> bool:
    """Whether ``value`` is OmegaConf's ``MISSING`` or an interpolation, which OmegaConf fills or refuses itself."""
    return isinstance(value, str) and (value == MISSING or value.startswith("${"))


def _check_name(setting: str, value: Any, known: Sequence[str]) -> None:
    """Refuse a name outside ``known`` (the table the builder looks names up in), naming ``train.<setting>``."""
    if isinstance(value, str) and not _placeholder(value) and value not in known:
        raise ConfigError(f"train.{setting} must be one of {', '.join(known)}, got {value!r}")


def _check_range(setting: str, value: Any, rule: str, within: Callable[[float], bool]) -> None:
    """Refuse a number for which ``within`` is false, naming ``train.<setting>`` and ``rule``.

    Anything but a number (a placeholder: see :func:`_placeholder`) is left to OmegaConf's type checks.
    """
    if isinstance(value, (int, float)) and not within(value):
        raise ConfigError(f"train.{setting} must be {rule}, got {value!r}")


def _at_least(minimum: float) -> Callable[[float], bool]:
    """The rule "at least ``minimum``" for :func:`_check_range` (NaN is refused)."""
    return lambda value: value >= minimum


def _finite_at_least(minimum: float) -> Callable[[float], bool]:
    """The rule "finite and at least ``minimum``" for :func:`_check_range`."""
    return lambda value: math.isfinite(value) and value >= minimum


def _check_lr(setting: str, value: Any, positive: bool, reason: str = "") -> None:
    """Refuse a learning rate that is not finite, negative, or (``positive``) zero; ``reason`` says why it must be > 0."""
    if isinstance(value, (int, float)) and not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
        raise ConfigError(
            f"train.{setting} must be a learning rate {'> 0' if positive else '>= 0'}, got {value!r}{reason}"
        )


@dataclass
class TrainConfig:
    """Base-model training (group ``train``, preset ``ds2_train``)."""

    output_dir: str = field(default="runs/ds2_train", metadata={"help": "run folder: config, log, checkpoints"})
    seed: int = field(default=1, metadata={"help": "seed of every random choice (init, shuffling, SpecAugment)"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:N or auto"})
    num_threads: int = field(default=2, metadata={"help": "torch intra-op threads on CPU (at least 1)"})
    batch_size: int = field(default=16, metadata={"help": "utterances per batch"})
    num_epochs: int = field(default=20, metadata={"help": "epochs over the training manifest"})
    max_minutes: Optional[float] = field(
        default=None,
        metadata={
            "help": "stop after this many minutes of training in total, the runs this one resumes included (a "
            "checkpoint is written; the cut epoch is recorded with partial: true); null: no limit"
        },
    )
    num_workers: int = field(default=1, metadata={"help": "DataLoader worker processes"})
    optimizer: str = field(default="adam", metadata={"help": ", ".join(OPTIMIZERS)})
    weight_decay: float = field(default=0.0, metadata={"help": "optimizer weight decay"})
    init_lr: float = field(default=1e-5, metadata={"help": "learning rate at step 0"})
    peak_lr: float = field(default=1e-3, metadata={"help": "learning rate after warm-up"})
    final_lr: float = field(default=1e-5, metadata={"help": "learning rate at the end of decay"})
    warmup_steps: int = field(default=200, metadata={"help": "linear warm-up steps"})
    lr_scheduler: str = field(default="tri_stage_lr_scheduler", metadata={"help": ", ".join(LR_SCHEDULERS)})
    max_grad_norm: float = field(default=400.0, metadata={"help": "gradient-norm clipping threshold; 0: no clipping"})
    spec_augment: bool = field(default=True, metadata={"help": "SpecAugment on training features"})
    silence_padding: bool = field(
        default=False,
        metadata={"help": "pad training utterances with random silence or low noise, and insert pauses"},
    )
    init_from: Optional[str] = field(
        default=None,
        metadata={
            "help": "base training: start from this checkpoint's weights (same architecture and vocabulary; the "
            "feature settings may differ), not from a random initialization"
        },
    )
    log_every: int = field(default=20, metadata={"help": "log step, loss, CER, lr every N steps"})
    checkpoint_every: int = field(
        default=200,
        metadata={
            "help": "write a resumable checkpoint every N steps; 0: only the one written at the end of each epoch"
        },
    )
    resume: bool = field(default=False, metadata={"help": "resume from output_dir/last.pt when it exists"})
    beam_size: int = field(default=1, metadata={"help": "validation decoding: 1 = greedy CTC, >1 = beam search"})
    ddp_backend: str = field(
        default="auto",
        metadata={
            "help": "torchrun-launched DistributedDataParallel (WORLD_SIZE > 1): auto (nccl on CUDA, gloo on CPU), "
            "nccl or gloo"
        },
    )

    def __post_init__(self) -> None:
        """Refuse settings that cannot work here, before any data is prepared (the trainer, optimizer, scheduler and
        loaders would refuse them only after the corpus was built and every recording screened).

        Raises:
            ConfigError: a setting out of range or an unknown name, naming ``train.<setting>``.
        """
        if self.num_epochs != MISSING:
            check_num_epochs(self.num_epochs)
        if isinstance(self.log_every, int) and self.log_every < 1:  # refused before any work, not at the first log
            raise ConfigError(f"train.log_every must be at least 1, got {self.log_every}")
        _check_name("optimizer", self.optimizer, OPTIMIZERS)
        _check_name("lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)
        # torch_threads raised anything below 1 to 1 without a word
        _check_range("num_threads", self.num_threads, "at least 1", _at_least(1))
        _check_range("batch_size", self.batch_size, "at least 1 utterance", _at_least(1))
        _check_range("num_workers", self.num_workers, "at least 0 (0: load in the training process)", _at_least(0))
        # 0 meant no limit and a negative budget stopped after the first step; null is the way to say no limit
        if self.max_minutes is not None:
            _check_range("max_minutes", self.max_minutes, "> 0 minutes or null (no limit)", lambda value: value > 0)
        _check_range("weight_decay", self.weight_decay, "a finite number >= 0", _finite_at_least(0))
        _check_range("warmup_steps", self.warmup_steps, "at least 0 steps", _at_least(0))
        _check_range("max_grad_norm", self.max_grad_norm, "a number >= 0 (0: no clipping)", _at_least(0))
        # a negative interval still checkpointed (a step count modulo -N is 0 every N steps)
        _check_range(
            "checkpoint_every", self.checkpoint_every, "at least 0 steps (0: at epoch ends only)", _at_least(0)
        )
        # the rules of the schedules (kospeech.optim.lr_scheduler): only the tri-stage one decays, exponentially, so
        # only it needs peak_lr and final_lr above 0
        tri_stage = self.lr_scheduler == "tri_stage_lr_scheduler"
        reason = (
            " (train.lr_scheduler=tri_stage_lr_scheduler decays exponentially from train.peak_lr to train.final_lr)"
            if tri_stage
            else ""
        )
        _check_lr("init_lr", self.init_lr, positive=False)
        _check_lr("peak_lr", self.peak_lr, positive=tri_stage, reason=reason)
        _check_lr("final_lr", self.final_lr, positive=tri_stage, reason=reason)


@dataclass
class AdapterTrainConfig(TrainConfig, AdapterSettings):
    """Per-user adapter training on a frozen base (group ``train``, preset ``adapter_train``).

    ``rnn_type`` .. ``activation`` describe the base architecture expected by the original design;
    the base checkpoint records its own architecture, which always wins (a difference is logged).
    """

    output_dir: str = field(default="runs/adapter_train", metadata={"help": "run folder: config, log"})
    base_model_path: str = field(default=MISSING, metadata={"help": "base checkpoint (.pt) to adapt"})
    adapter_name: str = field(default="default", metadata={"help": "adapter (user) name: [A-Za-z0-9_.-]"})
    adapter_save_dir: str = field(default="./adapters", metadata={"help": "folder of <name>_adapter.pt files"})
    batch_size: int = field(default=32, metadata={"help": "utterances per batch"})
    num_epochs: int = field(default=10, metadata={"help": "epochs over the enrollment set"})
    num_workers: int = field(default=4, metadata={"help": "DataLoader worker processes"})
    init_lr: float = field(default=1e-4, metadata={"help": "learning rate at step 0"})
    peak_lr: float = field(default=1e-4, metadata={"help": "learning rate after warm-up"})
    final_lr: float = field(default=1e-5, metadata={"help": "learning rate at the end of decay"})
    warmup_steps: int = field(default=500, metadata={"help": "linear warm-up steps"})
    spec_augment: bool = field(default=False, metadata={"help": "SpecAugment on enrollment features"})
    valid_fraction: float = field(
        default=0.1, metadata={"help": "share of the enrollment set held out for early stopping (no valid manifest)"}
    )
    early_stopping_patience: int = field(
        default=3, metadata={"help": "stop after this many validations without a better CER"}
    )
    min_fewer_errors: int = field(
        default=2,
        metadata={
            "help": "an adapter is accepted (served) only if it makes at least this many fewer character errors than "
            "the base on the held-out utterances: a small held-out set is not decided by one lucky character"
        },
    )
    warm_start_steps: int = field(
        default=50,
        metadata={
            "help": "adapter types that do not start at the base (head): steps fitting the adapter's output to the "
            "base model's on the enrollment frames (distillation, labels unused) before any supervised step"
        },
    )
    alignment_steps: int = field(
        default=100,
        metadata={
            "help": "then, for any type: steps of frame-level cross-entropy on the transcripts' CTC alignment under the "
            "base model, before the CTC steps (the head's value; the other types' recipes set 0; 0: none)"
        },
    )
    warm_start_lr: float = field(
        default=3e-3, metadata={"help": "learning rate (Adam) of the warm-start and alignment steps"}
    )
    speed_perturbation: List[float] = field(
        default_factory=list,
        metadata={
            "help": "extra training copies of the enrollment utterances played at these speeds, e.g. [0.9, 1.1] "
            "(held-out utterances stay as recorded; the copies are cached like the originals)"
        },
    )
    rnn_type: str = field(default="gru", metadata={"help": "expected base RNN type (checkpoint wins)"})
    num_rnn_layers: int = field(default=5, metadata={"help": "expected base RNN layers (checkpoint wins)"})
    rnn_hidden_dim: int = field(default=512, metadata={"help": "expected base RNN hidden size (checkpoint wins)"})
    dropout_p: float = field(default=0.1, metadata={"help": "expected base dropout (checkpoint wins)"})
    activation: str = field(default="hardtanh", metadata={"help": "expected base activation (checkpoint wins)"})
    cache_trunk: bool = field(
        default=True,
        metadata={
            "help": "run the frozen base once per utterance and train the adapter on its cached output; the "
            "training set falls back to recomputing when SpecAugment or dither change the features every epoch"
        },
    )
    users_side_by_side: Optional[bool] = field(
        default=None,
        metadata={
            "help": "multi-user jobs: each step runs every active user's batch as one batch through the frozen "
            "layers above the cache point (true) or one user after another (false); null: side by side on a GPU "
            "only (on a CPU thread, in turn measured faster)"
        },
    )
    trunk_cache_max_mb: float = field(
        default=2048.0, metadata={"help": "megabytes of cached trunk outputs kept in memory"}
    )
    trunk_cache_spill: bool = field(
        default=True,
        metadata={"help": "over trunk_cache_max_mb: keep the rest on disk (true) or refuse with an error (false)"},
    )
    trunk_cache_dir: Optional[str] = field(
        default=None, metadata={"help": "folder for spilled cache entries (default: {output_dir}/trunk_cache)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        patience = self.early_stopping_patience
        if isinstance(patience, int) and patience < 1:  # 0 stopped after the first epoch, even an improving one
            raise ConfigError(f"train.early_stopping_patience must be at least 1 validation, got {patience}")
        margin = self.min_fewer_errors
        if isinstance(margin, int) and margin < 1:  # 0 would serve an adapter no better than the base
            raise ConfigError(f"train.min_fewer_errors must be at least 1 character error, got {margin}")
        # named here, before any file is read, rather than by the model, the optimizer, the hold-out split or the
        # trunk cache after screening and the base's evaluation; an adapter trained at a rate of 0 whatever the
        # schedule would stay as initialized
        _check_lr("peak_lr", self.peak_lr, positive=True)
        _check_lr("warm_start_lr", self.warm_start_lr, positive=True)
        if isinstance(self.adapter_bottleneck_dim, int) and self.adapter_bottleneck_dim < 1:
            raise ConfigError(f"train.adapter_bottleneck_dim must be at least 1, got {self.adapter_bottleneck_dim}")
        # a negative width left the extractor part out as 0 does, without a word
        _check_range(
            "adapter_extractor_bottleneck_dim",
            self.adapter_extractor_bottleneck_dim,
            "at least 0 (0: none)",
            _at_least(0),
        )
        _check_range("adapter_dropout_p", self.adapter_dropout_p, "in [0, 1)", lambda value: 0 <= value < 1)
        _check_range("valid_fraction", self.valid_fraction, "a share in (0, 1)", lambda value: 0 < value < 1)
        _check_range("trunk_cache_max_mb", self.trunk_cache_max_mb, "a finite number >= 0", _finite_at_least(0))
        # a negative count ran no step, as 0 does, without a word
        _check_range("warm_start_steps", self.warm_start_steps, "at least 0 steps (0: none)", _at_least(0))
        _check_range("alignment_steps", self.alignment_steps, "at least 0 steps (0: none)", _at_least(0))
        if self.resume is True:
            raise ConfigError(
                "train.resume applies to base training; an adapter run starts again (its few epochs are not "
                "checkpointed), and kospeech-train-adapters --resume keeps the users an earlier job finished"
            )

    @classmethod
    def for_adapter_type(cls, adapter_type: str, **settings: Any) -> AdapterTrainConfig:
        """A config for ``adapter_type`` with its recipe (see :func:`recipe_settings`), then ``settings`` on top.

        ``AdapterTrainConfig.for_adapter_type("encoder", base_model_path=...)`` trains an encoder adapter the way
        ``train.adapter_type=encoder`` on the command line does.
        """
        return cls(**{**recipe_settings(adapter_type, settings), "adapter_type": adapter_type, **settings})


def recipe_settings(adapter_type: str, explicit: Collection[str] = ()) -> Dict[str, Any]:
    """The training settings of ``adapter_type``'s recipe that ``explicit`` (settings the user chose) leaves open.

    The recipe lives in the type's registry entry (:attr:`kospeech.models.AdapterType.recipe`); the ``head`` type has
    none of its own (the config defaults are the original design's values).

    Args:
        adapter_type: a registered type.
        explicit: names of :class:`AdapterTrainConfig` fields the user set; they keep the user's values.

    Returns:
        field name -> value, a copy.

    Raises:
        ValueError: an unknown adapter type. ConfigError: a recipe naming a setting the config does not have.
    """
    recipe = registered_adapter(adapter_type).recipe
    known = {item.name for item in dataclasses.fields(AdapterTrainConfig)}
    unknown = sorted(set(recipe) - known)
    if unknown:
        raise ConfigError(f"the recipe of adapter type {adapter_type!r} sets unknown train settings {unknown}")
    return {
        key: (list(value) if isinstance(value, (list, tuple)) else value)
        for key, value in recipe.items()
        if key not in explicit
    }
