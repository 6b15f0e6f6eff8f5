"""Training checkpoints: state_dicts plus everything needed to rebuild and use the model.

A checkpoint is a plain dict that ``torch.load(..., weights_only=True)`` reads:

==========================  =====================================================================
key                         content
==========================  =====================================================================
``format_version``          int, :data:`CHECKPOINT_FORMAT_VERSION`
``kospeech_version``        version that wrote the file
``model_state_dict``        the model's ``state_dict()`` (base weights; adapter weights if any)
``model_config``            ``input_dim``, ``num_classes`` and the ``DeepSpeech2Config`` fields
``vocab``                   :meth:`Vocabulary.to_dict`
``feature_config``          :meth:`FeatureConfig.to_dict` (training and inference use the same)
``optimizer_state_dict``    optimizer + scheduler state for resuming (optional)
``trainer_state``           epoch, step, best CER, history, every rank's RNG states (optional)
``train_config``            the resolved training config as plain containers (optional)
``metrics``                 last validation loss / CER / WER (optional)
``confidence_calibration``  word and utterance confidence maps fitted on held-out data (optional, added by
                            :func:`store_confidence_calibration`)
==========================  =====================================================================
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import nn

from kospeech import __version__
from kospeech.data.features import FeatureConfig
from kospeech.errors import CheckpointError
from kospeech.fileio import atomic_torch_save, plain_values, safe_torch_load
from kospeech.model_builder import build_deepspeech2
from kospeech.models import DeepSpeech2
from kospeech.models.utils import describe_state_dict_problems, state_dict_problems, unwrap_model
from kospeech.vocabs import Vocabulary

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "Checkpoint",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "store_confidence_calibration",
]

CHECKPOINT_FORMAT_VERSION = 1
_REQUIRED_KEYS = ("format_version", "model_state_dict", "model_config", "vocab", "feature_config")


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Args:
        path: the file it was read from.
        model_state_dict: parameter and buffer tensors.
        model_config: ``input_dim``, ``num_classes`` and the architecture fields.
        vocab: the output vocabulary.
        feature_config: the feature pipeline the model was trained with.
        optimizer_state_dict: optimizer/scheduler state (``None`` in exported base models).
        trainer_state: progress counters for resuming.
        train_config: the training config that produced it.
        metrics: validation figures at save time.
        kospeech_version: library version that wrote it.
        confidence_calibration: how the recognizer maps raw confidences to probabilities (plain values, see
            ``kospeech.inference.confidence.ConfidenceCalibration``); empty when never calibrated.
    """

    path: Path
    model_state_dict: Dict[str, torch.Tensor]
    model_config: Dict[str, Any]
    vocab: Vocabulary
    feature_config: FeatureConfig
    optimizer_state_dict: Optional[Dict[str, Any]] = None
    trainer_state: Dict[str, Any] = field(default_factory=dict)
    train_config: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)
    kospeech_version: str = ""
    confidence_calibration: Dict[str, Any] = field(default_factory=dict)

    def build_model(self, device: Union[str, torch.device] = "cpu", strict: bool = True) -> DeepSpeech2:
        """A model with this checkpoint's architecture and weights, in eval mode.

        The recorded architecture is first built without memory (on the ``meta`` device) and compared with the
        stored weights, so a file whose ``model_config`` claims a huge model it does not hold allocates nothing.

        Raises:
            CheckpointError: (a ValueError) ``model_config`` is invalid, or the weights do not match it (missing or
                unexpected keys when ``strict``, other shapes, integer weights for floating point parameters, ...).
                The message names the file.
        """
        try:
            input_dim, num_classes = self.model_config["input_dim"], self.model_config["num_classes"]
            config = {key: value for key, value in self.model_config.items() if key not in ("input_dim", "num_classes")}
            with torch.device("meta"):
                skeleton = build_deepspeech2(input_dim, num_classes, config, device="meta")
        except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as exc:  # torch: "... overflowed"
            raise CheckpointError(f"{self.path}: invalid model_config {self.model_config!r}: {exc}") from exc
        expected = skeleton.state_dict()
        missing, unexpected, mismatched = state_dict_problems(expected, self.model_state_dict)
        mismatched += [
            f"{key}: expected {expected[key].dtype}, found {value.dtype}"
            for key, value in self.model_state_dict.items()
            if key in expected and value.is_floating_point() != expected[key].is_floating_point()
        ]
        if mismatched or (strict and (missing or unexpected)):
            problems = describe_state_dict_problems(missing, unexpected, mismatched)
            raise CheckpointError(f"{self.path}: weights do not match the recorded architecture: {problems}")
        model = build_deepspeech2(input_dim, num_classes, config)
        model.load_state_dict(self.model_state_dict, strict=strict)
        return model.to(device).eval()


def save_checkpoint(
    path: Union[str, os.PathLike],
    model: nn.Module,
    *,
    model_config: Dict[str, Any],
    vocab: Vocabulary,
    feature_config: FeatureConfig,
    optimizer_state_dict: Optional[Dict[str, Any]] = None,
    trainer_state: Optional[Dict[str, Any]] = None,
    train_config: Optional[Dict[str, Any]] = None,
    metrics: Optional[Dict[str, Any]] = None,
) -> Path:
    """Atomically write a checkpoint (see the module docstring for its keys).

    Args:
        path: destination ``.pt`` file.
        model: the model (``DataParallel``/DDP wrappers are unwrapped).
        model_config: ``input_dim``, ``num_classes`` and architecture fields, plain values.
        vocab: output vocabulary.
        feature_config: feature pipeline.
        optimizer_state_dict: optional optimizer/scheduler state.
        trainer_state: optional progress counters (plain values and tensors).
        train_config: optional resolved training config (plain containers).
        metrics: optional validation figures.

    Returns:
        The written path.

    Raises:
        ValueError: ``model_config`` lacks ``input_dim`` or ``num_classes``.
        TypeError: a value the weights-only loader would refuse (a ``Path``, an object; numpy numbers and OmegaConf
            containers are converted), naming where it is, before anything is written.
    """
    missing = [key for key in ("input_dim", "num_classes") if key not in model_config]
    if missing:
        raise ValueError(f"model_config lacks {missing}")
    state = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "kospeech_version": __version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model_state_dict": {key: value.detach().cpu() for key, value in unwrap_model(model).state_dict().items()},
        "model_config": plain_values(model_config, "model_config", "a checkpoint"),
        "vocab": vocab.to_dict(),
        "feature_config": feature_config.to_dict(),
        "optimizer_state_dict": optimizer_state_dict,
        "trainer_state": plain_values(trainer_state or {}, "trainer_state", "a checkpoint", tensors=True),
        "train_config": plain_values(train_config or {}, "train_config", "a checkpoint"),
        "metrics": plain_values(metrics or {}, "metrics", "a checkpoint"),
    }
    return atomic_torch_save(state, path)


def load_checkpoint(path: Union[str, os.PathLike]) -> Checkpoint:
    """Read and validate a checkpoint with the weights-only loader.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: (a ValueError) not a readable weights-only file, not a kospeech checkpoint, a newer
            format, or malformed content (names the file and key).
    """
    return _read_checkpoint(Path(path))[1]


def _read_checkpoint(path: Path) -> Tuple[Dict[str, Any], Checkpoint]:
    """The file's raw dict and the validated :class:`Checkpoint` built from it (see :func:`load_checkpoint`)."""
    raw = safe_torch_load(path, what="checkpoint")
    missing = [key for key in _REQUIRED_KEYS if key not in raw]
    if missing:
        raise CheckpointError(f"{path}: not a kospeech checkpoint, missing keys {missing} (found {sorted(raw)})")
    version = raw["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format_version {version!r} is not supported "
            f"(this kospeech {__version__} reads up to {CHECKPOINT_FORMAT_VERSION})"
        )
    state_dict = raw["model_state_dict"]
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"{path}: model_state_dict must map names to tensors")
    try:
        vocab = Vocabulary.from_dict(raw["vocab"])
        feature_config = FeatureConfig.from_dict(raw["feature_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad vocab or feature_config entry: {exc}") from exc
    for key in ("model_config", "trainer_state", "train_config", "metrics", "confidence_calibration"):
        if key in raw and not isinstance(raw[key], dict) and (key == "model_config" or raw[key] is not None):
            raise CheckpointError(f"{path}: {key} must be a dict, got {type(raw[key]).__name__}")
    checkpoint = Checkpoint(
        path=path,
        model_state_dict=state_dict,
        model_config=dict(raw["model_config"]),
        vocab=vocab,
        feature_config=feature_config,
        optimizer_state_dict=raw.get("optimizer_state_dict"),
        trainer_state=dict(raw.get("trainer_state") or {}),
        train_config=dict(raw.get("train_config") or {}),
        metrics=dict(raw.get("metrics") or {}),
        kospeech_version=str(raw.get("kospeech_version", "")),
        confidence_calibration=dict(raw.get("confidence_calibration") or {}),
    )
    return raw, checkpoint


def store_confidence_calibration(path: Union[str, os.PathLike], calibration: Dict[str, Any]) -> Path:
    """Record a confidence calibration in an existing checkpoint (rewritten atomically; weights untouched).

    Args:
        path: the checkpoint.
        calibration: plain values (``ConfidenceCalibration.to_dict()``).

    Returns:
        The path.

    Raises:
        FileNotFoundError, CheckpointError: as :func:`load_checkpoint`.
    """
    raw, _ = _read_checkpoint(Path(path))
    raw["confidence_calibration"] = plain_values(calibration, "confidence_calibration", "a checkpoint")
    return atomic_torch_save(raw, path)


def load_model(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu"):
    """Convenience: ``(model, vocab, feature_config)`` of a checkpoint, model in eval mode."""
    checkpoint = load_checkpoint(path)
    return checkpoint.build_model(device), checkpoint.vocab, checkpoint.feature_config
