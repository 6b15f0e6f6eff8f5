"""Per-user adapter training on a frozen DeepSpeech2 base."""

from __future__ import annotations

import copy
import logging
import random
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torch import nn

from kospeech.data.audio import audio_duration
from kospeech.data.features import FeatureConfig
from kospeech.data.manifest import ManifestEntry
from kospeech.models import AdapterManager, count_parameters
from kospeech.models.adapter_manager import validate_adapter_name
from kospeech.optim import Optimizer
from kospeech.trainer.configs import AdapterTrainConfig
from kospeech.trainer.evaluation import EvaluationResult, evaluate
from kospeech.trainer.supervised_trainer import SupervisedTrainer, unwrap_model
from kospeech.vocabs import Vocabulary

__all__ = ["AdapterTrainer", "split_holdout"]

logger = logging.getLogger(__name__)


def split_holdout(
    entries: Sequence[ManifestEntry], fraction: float, seed: int
) -> Tuple[List[ManifestEntry], List[ManifestEntry]]:
    """Seeded split of an enrollment set into (train, held-out validation).

    At least one utterance lands on each side; the order inside each side follows the input.

    Raises:
        ValueError: fewer than two utterances, or ``fraction`` outside (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {fraction}")
    if len(entries) < 2:
        raise ValueError(f"an enrollment set needs at least 2 utterances to hold some out, got {len(entries)}")
    held_out_count = min(len(entries) - 1, max(1, round(len(entries) * fraction)))
    held_out = set(random.Random(seed).sample(range(len(entries)), held_out_count))
    train = [entry for index, entry in enumerate(entries) if index not in held_out]
    valid = [entry for index, entry in enumerate(entries) if index in held_out]
    return train, valid


class AdapterTrainer(SupervisedTrainer):
    """Trains only a model's adapter on one user's enrollment set.

    The base model is frozen (weights, BatchNorm statistics and dropout), the optimizer sees only the
    adapter's parameters, validation scores the adapter output, and every improvement of the
    validation CER is saved to ``{adapter_save_dir}/{adapter_name}_adapter.pt``. The base model's CER
    on the same validation set (adapter bypassed) is measured first and stored with the adapter.
    Without ``valid_entries`` a seeded ``config.valid_fraction`` of the enrollment set is held out, and
    training stops after ``config.early_stopping_patience`` validations without improvement.

    Args:
        config: adapter hyper-parameters, adapter folder and run folder.
        vocab: the base model's vocabulary.
        feature_config: the base model's feature pipeline.
        train_entries: the user's enrollment utterances.
        valid_entries: optional separate validation utterances of the same user.
        model_config: architecture record of the base (stored for reference).
        resolved_config: the full job config, written as ``config.yaml``.
    """

    use_adapter_output = True

    def __init__(
        self,
        config: AdapterTrainConfig,
        vocab: Vocabulary,
        feature_config: FeatureConfig,
        train_entries: Sequence[ManifestEntry],
        valid_entries: Optional[Sequence[ManifestEntry]] = None,
        model_config: Optional[Dict[str, Any]] = None,
        resolved_config: Optional[Dict[str, Any]] = None,
    ) -> None:
        if not valid_entries:
            train_entries, valid_entries = split_holdout(train_entries, config.valid_fraction, config.seed)
        super().__init__(config, vocab, feature_config, train_entries, valid_entries, model_config, resolved_config)
        self.adapter_save_dir = Path(config.adapter_save_dir)
        self.adapter_name = "default"
        self.adapter_path: Optional[Path] = None
        self.parameter_stats: Dict[str, Any] = {}
        self.base_result: Optional[EvaluationResult] = None
        self._best_adapter_state: Optional[Dict[str, Any]] = None
        self._stale_validations = 0
        self._started = 0.0

    def train(
        self,
        model: nn.Module,
        batch_size: Optional[int] = None,
        epoch_time_step: Optional[int] = None,
        num_epochs: Optional[int] = None,
        adapter_name: str = "default",
    ) -> nn.Module:
        """Train the adapter of ``model`` (one is attached from the config if it has none).

        Args:
            model: a DeepSpeech2, possibly wrapped in DataParallel / DDP.
            batch_size: utterances per batch (default ``config.batch_size``).
            epoch_time_step: steps per epoch used to size the LR schedule (default: batches per epoch).
            num_epochs: maximum epochs (default ``config.num_epochs``); early stopping may end sooner.
            adapter_name: the user's adapter name; the file is ``{adapter_name}_adapter.pt``.

        Returns:
            The model with its best adapter weights loaded and the base still frozen.
        """
        validate_adapter_name(adapter_name)
        self.adapter_name = adapter_name
        base = unwrap_model(model)
        if not base.use_adapter:
            base.add_adapter(
                self.config.adapter_type,
                hidden_dims=list(self.config.adapter_hidden_dims),
                dropout_p=self.config.adapter_dropout_p,
                bottleneck_dim=self.config.adapter_bottleneck_dim,
            )
        base.freeze_base_model()
        self.parameter_stats = count_parameters(base)
        stats = self.parameter_stats
        logger.info(
            "adapter %r (%s): total params %d, frozen %d, trainable %d (%.2f%%)",
            adapter_name,
            base.adapter_type,
            stats["total"],
            stats["frozen"],
            stats["trainable"],
            stats["trainable_percent"],
        )
        self._started = time.monotonic()
        return super().train(model, batch_size, epoch_time_step, num_epochs, resume=False)

    def _on_train_start(self, model: nn.Module, valid_loader) -> None:
        base = unwrap_model(model)
        with base.disable_adapter():
            self.base_result = evaluate(
                model,
                valid_loader,
                self.vocab,
                device=self.device,
                use_adapter_output=False,
                beam_size=self.config.beam_size,
                description="base model",
            )
        logger.info(
            "base model on %d held-out utterances: loss %.4f CER %.4f",
            self.base_result.num_utterances,
            self.base_result.loss,
            self.base_result.cer,
        )
        super()._on_train_start(model, valid_loader)

    def _end_of_epoch(self, model: nn.Module, optimizer: Optimizer, valid_loader, train_figures: Dict) -> bool:
        best_before = self.state.best_cer
        super()._end_of_epoch(model, optimizer, valid_loader, train_figures)
        self._stale_validations = 0 if self.state.best_cer < best_before else self._stale_validations + 1
        if self._stale_validations >= self.config.early_stopping_patience:
            logger.info("early stop: no better validation CER for %d epochs", self._stale_validations)
            return True
        return False

    def _on_improvement(self, model: nn.Module, optimizer: Optimizer) -> None:
        base = unwrap_model(model)
        self._best_adapter_state = copy.deepcopy(base.adapter_state_dict())
        self.adapter_path = AdapterManager.save_adapter(
            base,
            self.adapter_save_dir,
            self.adapter_name,
            vocab_fingerprint=self.vocab.fingerprint(),
            feature_config=self.feature_config.to_dict(),
            training_stats=self.training_stats(),
        )
        logger.info("saved adapter %r (valid CER %.4f) to %s", self.adapter_name, self.state.best_cer, self.adapter_path)

    def _save_checkpoint(self, model: nn.Module, optimizer: Optimizer, name: str, with_optimizer: bool = True):
        """Adapter runs keep no full-model checkpoints: the frozen base never changes, the adapter file is the result."""
        return None

    def _on_train_end(self, model: nn.Module) -> None:
        if self._best_adapter_state is not None:
            unwrap_model(model).load_adapter_state_dict(self._best_adapter_state)
        logger.info(
            "adapter %r: base CER %.4f -> adapter CER %.4f on the held-out set (%s)",
            self.adapter_name,
            self.base_result.cer if self.base_result else float("nan"),
            self.state.best_cer,
            self.adapter_path,
        )

    def training_stats(self) -> Dict[str, Any]:
        """Plain figures stored in the adapter file: data used, base vs adapter CER, curves, parameters."""
        return {
            "utterances": len(self.train_entries),
            "audio_seconds": round(sum(audio_duration(entry.audio_path) for entry in self.train_entries), 3),
            "valid_utterances": len(self.valid_entries),
            "cer_before": self.base_result.cer if self.base_result else None,
            "cer_after": self.state.best_cer,
            "epochs": self.state.epoch,
            "steps": self.state.global_step,
            "train_seconds": round(time.monotonic() - self._started, 2),
            "trainable_params": self.parameter_stats.get("trainable"),
            "total_params": self.parameter_stats.get("total"),
            "history": list(self.state.history),
        }
