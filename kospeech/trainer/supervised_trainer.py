"""KoSpeech-style supervised CTC trainer: train, validate, checkpoint, resume."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from kospeech.checkpoint import load_checkpoint, save_checkpoint
from kospeech.data.dataset import ExcludedUtterance, build_dataloader, screen_entries
from kospeech.data.features import FeatureConfig, FeatureExtractor, SpecAugment
from kospeech.data.manifest import ManifestEntry
from kospeech.data.silence_padding import SilencePadding
from kospeech.decode import GreedyCTCDecoder
from kospeech.device import loader_workers, resolve_device, torch_threads
from kospeech.errors import CheckpointError, TrainingError, TrainingInterrupted
from kospeech.evaluation import EvaluationResult, evaluate, select_log_probs
from kospeech.fileio import atomic_write_json, atomic_write_text
from kospeech.metrics import ErrorRateMeter
from kospeech.models.utils import unwrap_model
from kospeech.optim import Optimizer, build_lr_scheduler, build_optimizer
from kospeech.progress import progress_bar
from kospeech.trainer.configs import TrainConfig, check_num_epochs
from kospeech.trainer.criterion import CTCLoss, CTCLossOutput
from kospeech.trainer.distributed import DistributedContext, init_distributed
from kospeech.vocabs import Vocabulary

__all__ = ["SupervisedTrainer", "TrainerState", "EpochTally"]

logger = logging.getLogger(__name__)


@dataclass
class TrainerState:
    """Progress counters, saved in every checkpoint so training resumes where it stopped.

    Args:
        epoch: current epoch (0-based).
        step_in_epoch: optimizer steps already done in ``epoch``.
        global_step: optimizer steps in total.
        best_cer: best validation CER so far.
        skipped_steps: steps whose loss or gradient was not finite (not applied).
        applied_steps: optimizer updates applied (a run that ends with none trained nothing and fails).
        skipped_utterances: utterances whose transcript could not be aligned to their frames.
        elapsed_seconds: training time so far, across resumes.
        history: one record per validation (epoch, step, train/valid loss and CER, lr).
    """

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_cer: float = math.inf
    skipped_steps: int = 0
    applied_steps: int = 0
    skipped_utterances: int = 0
    elapsed_seconds: float = 0.0
    history: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class EpochTally:
    """Running figures of one training epoch: the mean loss of the steps that counted and the train CER."""

    meter: ErrorRateMeter = field(default_factory=ErrorRateMeter)
    loss_sum: float = 0.0
    loss_count: int = 0

    def add(self, loss: Optional[float]) -> None:
        """Count a step's loss (``None``: the step trained nothing)."""
        if loss is not None:
            self.loss_sum, self.loss_count = self.loss_sum + loss, self.loss_count + 1

    @property
    def mean_loss(self) -> float:
        """Mean loss so far (0.0 before any step counted)."""
        return self.loss_sum / max(self.loss_count, 1)

    def counts(self) -> Dict[str, Any]:
        """The running figures as plain values, saved in a checkpoint taken within the epoch."""
        return {"loss_sum": self.loss_sum, "loss_count": self.loss_count, "meter": self.meter.counts()}

    @classmethod
    def from_counts(cls, counts: Optional[Mapping[str, Any]]) -> EpochTally:
        """The tally :meth:`counts` gave (a fresh one for ``None``): a resumed epoch goes on counting from it."""
        tally = cls()
        if counts:
            tally.loss_sum, tally.loss_count = float(counts["loss_sum"]), int(counts["loss_count"])
            tally.meter.add_counts(counts["meter"])
        return tally

    def figures(self) -> Dict[str, float]:
        """``{"loss", "cer"}`` of the epoch; ``nan`` where nothing was measured (e.g. a resume at the epoch's end)."""
        return {
            "loss": self.loss_sum / self.loss_count if self.loss_count else float("nan"),
            "cer": self.meter.cer if self.meter.num_utterances else float("nan"),
        }


class SupervisedTrainer:
    """Trains a DeepSpeech2 with CTC on manifest entries.

    Args:
        config: training hyper-parameters and run folder (``config.output_dir``).
        vocab: output vocabulary (its blank id drives the loss and decoding).
        feature_config: feature pipeline, identical for training, validation and inference.
        train_entries: training utterances.
        valid_entries: validation utterances (optional; without them the best model is the last).
        model_config: ``input_dim``, ``num_classes`` and architecture fields, stored in checkpoints.
        resolved_config: the full job config (plain containers), written as ``config.yaml``/stored in checkpoints.

    Launched by ``torchrun`` with ``WORLD_SIZE > 1``, ``train`` joins the process group and trains with
    DistributedDataParallel (see :mod:`kospeech.trainer.distributed`): each rank takes its share of every epoch's
    batches, rank 0 alone validates, logs and writes checkpoints.

    Another thread may stop a run: setting :attr:`interrupt` makes ``train`` raise
    :class:`~kospeech.errors.TrainingInterrupted` after the step in progress (what was written stays as written).

    Example:
        >>> trainer = SupervisedTrainer(config, vocab, feature_config, train_entries, valid_entries, model_config)
        >>> result = trainer.train(model, batch_size=16, epoch_time_step=None, num_epochs=5)
    """

    use_adapter_output = False
    distributed_training = True
    checkpoint_name = "last.pt"
    best_checkpoint_name = "best.pt"

    def __init__(
        self,
        config: TrainConfig,
        vocab: Vocabulary,
        feature_config: FeatureConfig,
        train_entries: Sequence[ManifestEntry],
        valid_entries: Optional[Sequence[ManifestEntry]] = None,
        model_config: Optional[Dict[str, Any]] = None,
        resolved_config: Optional[Dict[str, Any]] = None,
    ) -> None:
        if not train_entries:
            raise ValueError("no training utterances")
        self.config = config
        self.vocab = vocab
        self.feature_config = feature_config
        self.feature_extractor = FeatureExtractor(feature_config)
        self.train_entries, excluded_train = screen_entries(train_entries, self.feature_extractor, "training")
        self.valid_entries, excluded_valid = screen_entries(valid_entries or [], self.feature_extractor, "validation")
        self.excluded_utterances: List[ExcludedUtterance] = excluded_train + excluded_valid
        if not self.train_entries:
            raise TrainingError(
                f"none of the {len(excluded_train)} training utterances is usable (first: {excluded_train[0].reason})"
            )
        self.model_config = dict(model_config or {})
        self.resolved_config = dict(resolved_config or {})
        self.output_dir = Path(config.output_dir)
        self.device = resolve_device(config.device)
        self.loader_workers = loader_workers(config.num_workers, config.num_threads if self.device.type == "cpu" else 1)
        self.criterion = CTCLoss(vocab.blank_id)
        self.decoder = GreedyCTCDecoder(vocab)
        self.state = TrainerState()
        self.dist = DistributedContext()
        self._rng_states: Optional[List[Dict[str, Any]]] = None  # every rank's, gathered for the next checkpoint
        self._epoch_tally = EpochTally()  # the running figures of the epoch in progress
        self._resumed_tally: Optional[Dict[str, Any]] = None  # those a checkpoint taken within an epoch held
        self.interrupt: Optional[threading.Event] = None
        """Set from another thread to stop training after the current step (``train`` raises TrainingInterrupted)."""

    def train(
        self,
        model: nn.Module,
        batch_size: Optional[int] = None,
        epoch_time_step: Optional[int] = None,
        num_epochs: Optional[int] = None,
        resume: Optional[bool] = None,
    ) -> nn.Module:
        """Train ``model`` and return it with the best validated weights loaded.

        Args:
            model: the model (may be wrapped in DataParallel / DDP).
            batch_size: utterances per batch (default ``config.batch_size``).
            epoch_time_step: optimizer steps per epoch used to size the LR schedule
                (default: batches per epoch).
            num_epochs: epochs (default ``config.num_epochs``).
            resume: continue from ``output_dir/last.pt`` (default ``config.resume``).

        Returns:
            The trained model (without the DistributedDataParallel wrapper this method adds under ``torchrun``).
        """
        batch_size = batch_size or self.config.batch_size
        num_epochs = check_num_epochs(self.config.num_epochs if num_epochs is None else num_epochs)
        resume = self.config.resume if resume is None else resume
        # what config.yaml records: the settings this run uses, the arguments over the config's (the config's checks
        # apply to the arguments too, naming train.<setting>)
        run_config = dataclasses.replace(self.config, batch_size=batch_size, num_epochs=num_epochs, resume=resume)
        if self.distributed_training:
            self.dist = init_distributed(self.config.ddp_backend, self.device)
            self.device = self.dist.device_for(self.device)
        threads = self.config.num_threads if self.device.type == "cpu" else torch.get_num_threads()
        with torch_threads(threads):  # the caller's count is back afterwards
            # rank 0 draws what a single process draws; DDP copies rank 0's initial weights to every rank
            torch.manual_seed(self.config.seed + self.dist.rank)
            model.to(self.device)
            trained = self._wrap_distributed(model)
            if self.dist.is_main:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                self._write_run_config(run_config)

            train_loader, valid_loader = self._build_loaders(trained, batch_size)
            self._stop_if_interrupted("after building the data loaders")  # setup can take long (caches, evaluations)
            steps_per_epoch = epoch_time_step or len(train_loader)
            optimizer = self._build_optimizer(trained, total_steps=steps_per_epoch * num_epochs)
            self.state = TrainerState()
            if resume:
                self._resume(trained, optimizer)
            self._on_train_start(trained, valid_loader)
            self._stop_if_interrupted("before the first step")
            self._train_epoches(trained, train_loader, valid_loader, optimizer, num_epochs)
            self.check_trained()
            self._on_train_end(trained)
            return model

    def _stop_if_interrupted(self, where: str) -> None:
        """Raise TrainingInterrupted if :attr:`interrupt` is set."""
        if self.interrupt is not None and self.interrupt.is_set():
            raise TrainingInterrupted(f"training interrupted {where}")

    def check_trained(self) -> None:
        """Fail a run that applied no update: its "best" model would be the untrained one.

        Raises:
            TrainingError: every step was skipped (non-finite losses or gradients, no alignable utterance).
        """
        if self.state.applied_steps == 0:
            raise TrainingError(
                f"training applied no update in {self.state.global_step} steps ({self.state.skipped_steps} with a "
                f"non-finite loss or gradient, {self.state.skipped_utterances} unalignable utterances, "
                f"{len(self.excluded_utterances)} utterances excluded); nothing was saved as a trained model"
            )

    def _wrap_distributed(self, model: nn.Module) -> nn.Module:
        """Wrap ``model`` in DistributedDataParallel when this is a multi-process job (and it is not wrapped yet)."""
        if not self.dist.enabled or isinstance(model, DistributedDataParallel):
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        has_adapter = getattr(unwrap_model(model), "adapter", None) is not None
        logger.info("DistributedDataParallel over %d processes (%s)", self.dist.world_size, self.dist.backend)
        return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=has_adapter)

    def _build_loaders(self, model: nn.Module, batch_size: int) -> Tuple[Any, Optional[Any]]:
        """The training loader and the validation loader (``None`` without validation entries)."""
        train_loader = self.build_loader(self.train_entries, batch_size, train=True)
        valid_loader = self.build_loader(self.valid_entries, batch_size, train=False) if self.valid_entries else None
        return train_loader, valid_loader

    def scoring_loader(self, entries: Sequence[ManifestEntry], what: str) -> Optional[Any]:
        """A loader over the usable utterances of a held-out set scored after training (e.g. the test set).

        Its unusable files are left out and added to :attr:`excluded_utterances`, as the training and validation
        sets' are (one bad file must not fail a job whose training is done).

        Returns:
            The loader, or ``None`` when no utterance is usable (logged).
        """
        usable, excluded = screen_entries(entries, self.feature_extractor, what)
        self.excluded_utterances.extend(excluded)
        if not usable:
            logger.warning("none of the %d %s utterances is usable: not scored", len(entries), what)
            return None
        return self.build_loader(usable, self.config.batch_size, train=False)

    def build_loader(
        self, entries: Sequence[ManifestEntry], batch_size: int, train: bool, workers: Optional[int] = None
    ):
        """A length-bucketed loader with this trainer's features (SpecAugment, dither and workers only for training).

        Under DDP the training loader yields this rank's share of the batches (the same count on every rank);
        evaluation loaders are not sharded (rank 0 validates on everything). ``workers`` overrides the training
        loader's worker processes (``None``: the trainer's).
        """
        spec_augment = SpecAugment() if (train and self.config.spec_augment) else None
        padding = SilencePadding(self.feature_config.sample_rate) if (train and self.config.silence_padding) else None
        return build_dataloader(
            entries,
            self.feature_extractor if train else self.feature_extractor.without_dither(),
            batch_size,
            shuffle=train,
            seed=self.config.seed,
            num_workers=(self.loader_workers if workers is None else workers) if train else 0,
            spec_augment=spec_augment,
            silence_padding=padding,
            num_replicas=self.dist.world_size if train else 1,
            rank=self.dist.rank if train else 0,
            pin_memory=train and self.device.type == "cuda",
        )

    def _trainable_parameters(self, model: nn.Module) -> List[nn.Parameter]:
        return [parameter for parameter in model.parameters() if parameter.requires_grad]

    def _build_optimizer(self, model: nn.Module, total_steps: int) -> Optimizer:
        parameters = self._trainable_parameters(model)
        if not parameters:
            raise ValueError("the model has no trainable parameters")
        torch_optimizer = build_optimizer(
            self.config.optimizer, parameters, lr=self.config.init_lr, weight_decay=self.config.weight_decay
        )
        scheduler = build_lr_scheduler(
            self.config.lr_scheduler,
            torch_optimizer,
            init_lr=self.config.init_lr,
            peak_lr=self.config.peak_lr,
            final_lr=self.config.final_lr,
            warmup_steps=self.config.warmup_steps,
            total_steps=total_steps,
        )
        return Optimizer(torch_optimizer, scheduler, max_grad_norm=self.config.max_grad_norm)

    def _forward(self, model: nn.Module, batch) -> tuple:
        with self._output_scope(model):
            outputs = model(batch.inputs.to(self.device), batch.input_lengths.to(self.device))
        return select_log_probs(outputs, self.use_adapter_output)

    def _output_scope(self, model: nn.Module) -> ContextManager:
        """Where this trainer's passes run: base training keeps an attached adapter out of them.

        Its loss and scores read the base output alone; with the adapter in the pass an ``encoder`` adapter's RNN
        layers would run a second time and update their BatchNorm statistics with the adapted activations.
        """
        return nullcontext() if self.use_adapter_output else unwrap_model(model).disable_adapter()

    def _train_epoches(
        self, model: nn.Module, train_loader, valid_loader, optimizer: Optimizer, num_epochs: int
    ) -> None:
        state = self.state
        budget_seconds = self.config.max_minutes * 60 if self.config.max_minutes else None
        out_of_time = False
        while state.epoch < num_epochs and not out_of_time:
            model.train()
            if hasattr(train_loader.batch_sampler, "set_epoch"):
                train_loader.batch_sampler.set_epoch(state.epoch)
            # a run resumed within an epoch goes on with the figures of the steps it did before
            tally = self._epoch_tally = EpochTally.from_counts(self._resumed_tally if state.step_in_epoch else None)
            self._resumed_tally = None
            started = time.monotonic()
            elapsed_before = state.elapsed_seconds
            progress = progress_bar(
                disable=not self.dist.is_main,
                total=len(train_loader),
                initial=state.step_in_epoch,
                desc=f"epoch {state.epoch + 1}/{num_epochs}",
            )
            for batch in self._batches_from(train_loader, state.step_in_epoch):
                self._count_step(tally, self._train_step(model, batch, optimizer, tally.meter), optimizer)
                self._stop_if_interrupted(f"after step {state.global_step}")
                state.elapsed_seconds = elapsed_before + time.monotonic() - started
                if not progress.disable:
                    progress.update(1)
                    progress.set_postfix(loss=f"{tally.mean_loss:.3f}", cer=f"{tally.meter.cer:.3f}")
                if self.config.checkpoint_every and state.global_step % self.config.checkpoint_every == 0:
                    self._gather_rng_states()
                    self._save_checkpoint(model, optimizer, self.checkpoint_name)
                # under DDP every rank must stop after the same step: the budget is agreed on
                if budget_seconds is not None and self.dist.any_true(
                    state.elapsed_seconds >= budget_seconds, self.device
                ):
                    logger.info(
                        "time budget of %.1f min reached at step %d", self.config.max_minutes, state.global_step
                    )
                    out_of_time = True
                    break
            progress.close()
            stop = self._close_epoch(model, optimizer, valid_loader, tally, completed=not out_of_time)
            if self.dist.broadcast_flag(stop, self.device):
                break

    def _count_step(self, tally: EpochTally, loss: Optional[float], optimizer: Optimizer) -> None:
        """Book one training step: its loss, the step counters, and the periodic log line."""
        tally.add(loss)
        self.state.step_in_epoch += 1
        self.state.global_step += 1
        if self.state.global_step % self.config.log_every == 0 and self.dist.is_main:
            self._log_step(tally.mean_loss, tally.meter.cer, optimizer.get_lr())

    def _close_epoch(
        self, model: nn.Module, optimizer: Optimizer, valid_loader, tally: EpochTally, completed: bool
    ) -> bool:
        """Finish an epoch (advance the counters when it ran to its end), validate and record; True stops training."""
        if completed:
            self.state.epoch += 1
            self.state.step_in_epoch = 0
        self._gather_rng_states()
        if not self.dist.is_main:
            return False
        return self._end_of_epoch(model, optimizer, valid_loader, {**tally.figures(), "completed": completed})

    def _batches_from(self, loader, start: int) -> Iterator:
        if start and hasattr(loader.batch_sampler, "start_batch"):
            loader.batch_sampler.start_batch = start
            return iter(loader)
        iterator = iter(loader)
        for _ in range(start):
            next(iterator, None)
        return iterator

    def _train_step(self, model: nn.Module, batch, optimizer: Optimizer, meter: ErrorRateMeter) -> Optional[float]:
        log_probs, output_lengths = self._forward(model, batch)
        loss = self._step_loss(log_probs, output_lengths, batch, meter)
        if self.dist.enabled:
            # every rank joins the gradient all-reduce: nothing kept gives zero gradients, a non-finite loss gives a
            # non-finite all-reduced norm, and Optimizer.step then skips the update on every rank alike
            loss_value = loss.loss.item()
            optimizer.zero_grad()
            loss.loss.backward()
            # a step in which no rank kept an utterance trains nothing, as alone: Adam's momentum would still move the
            # weights, and the schedule would advance
            if not self.dist.any_true(loss.num_kept > 0, self.device):
                return None
            if not math.isfinite(optimizer.step(model)):
                self.state.skipped_steps += 1
            elif loss.num_kept:
                self.state.applied_steps += 1
            return loss_value if loss.num_kept and math.isfinite(loss_value) else None
        optimizer.zero_grad()
        loss_value = self._usable_loss_value(loss)
        if loss_value is None:
            return None
        loss.loss.backward()
        self._apply_update(model, optimizer)
        return loss_value

    def _step_loss(self, log_probs: Tensor, output_lengths: Tensor, batch, meter: ErrorRateMeter) -> CTCLossOutput:
        """The CTC loss of one training batch; books its skipped utterances and its greedy CER in ``meter``.

        Inputs:
            log_probs: (B, T', C) the trained output.
            output_lengths: (B,) valid frames per row.
            batch: the batch (``targets`` (B, L) and ``target_lengths`` (B,) are used).
        """
        loss = self.criterion(log_probs, output_lengths, batch.targets.to(self.device), batch.target_lengths)
        self.state.skipped_utterances += loss.num_skipped
        with torch.no_grad():
            # the greedy decoder takes its argmax where the log-probs are: only (B, T') ids leave a GPU, not (B, T', C)
            hypotheses = [h.text for h in self.decoder(log_probs.detach(), output_lengths)]
            references = [self.vocab.decode(r[:n].tolist()) for r, n in zip(batch.targets, batch.target_lengths)]
            meter.update(references, hypotheses)
        return loss

    def _usable_loss_value(self, loss: CTCLossOutput) -> Optional[float]:
        """A step's loss value if it may be back-propagated (some utterance kept, finite), else ``None`` (booked)."""
        if loss.num_kept == 0:
            return None
        value = loss.loss.item()
        if not math.isfinite(value):
            self.state.skipped_steps += 1
            logger.warning("non-finite loss at step %d: update skipped", self.state.global_step + 1)
            return None
        return value

    def _apply_update(self, model: nn.Module, optimizer: Optimizer) -> None:
        """Clip, step and book the update of the gradients in place (skipped when their norm is not finite)."""
        grad_norm = optimizer.step(model)
        if not math.isfinite(grad_norm):
            self.state.skipped_steps += 1
            logger.warning("non-finite gradient norm at step %d: update skipped", self.state.global_step + 1)
        else:
            self.state.applied_steps += 1

    def _log_step(self, loss: float, cer: float, lr: float) -> None:
        state = self.state
        logger.info(
            "epoch %d step %d loss %.4f cer %.4f lr %.2e elapsed %s",
            state.epoch + 1,
            state.global_step,
            loss,
            cer,
            lr,
            time.strftime("%H:%M:%S", time.gmtime(state.elapsed_seconds)),
        )

    def _validate(self, model: nn.Module, valid_loader) -> EvaluationResult:
        # the bare module: a DDP forward on rank 0 alone could wait for the other ranks (buffer broadcast)
        with self._output_scope(model):
            return evaluate(
                unwrap_model(model) if self.dist.enabled else model,
                valid_loader,
                self.vocab,
                loss_fn=self.criterion,
                device=self.device,
                use_adapter_output=self.use_adapter_output,
                beam_size=self.config.beam_size,
                description="validate",
            )

    def _end_of_epoch(self, model: nn.Module, optimizer: Optimizer, valid_loader, train_figures: Dict) -> bool:
        """Validate, record, checkpoint. Returns True to stop training early."""
        state = self.state
        completed = train_figures.get("completed", True)
        record = {
            # 1-based like the progress bars: a completed epoch has advanced the counter, a cut one has not
            "epoch": state.epoch if completed else state.epoch + 1,
            "step": state.global_step,
            "lr": optimizer.get_lr(),
            "train_loss": train_figures["loss"],
            "train_cer": train_figures["cer"],
            "elapsed_seconds": round(state.elapsed_seconds, 2),
        }
        if not completed:
            record["partial"] = True  # cut by the time budget (train.max_minutes)
        # weights no update has touched are not a result to keep, however they validate
        improved = state.applied_steps > 0
        if valid_loader is not None:
            result = self._validate(model, valid_loader)
            record.update(valid_loss=result.loss, valid_cer=result.cer, valid_wer=result.wer)
            improved = improved and result.cer < state.best_cer
            if improved:
                state.best_cer = result.cer
        state.history.append(record)
        logger.info("validation after epoch %d: %s", state.epoch, _format_record(record))
        if improved:
            self._on_improvement(model, optimizer)
        self._save_checkpoint(model, optimizer, self.checkpoint_name)
        atomic_write_json(self.output_dir / "history.json", state.history)
        return False

    def _on_train_start(self, model: nn.Module, valid_loader) -> None:
        logger.info(
            "training on %s: %d utterances, %d validation",
            self.device,
            len(self.train_entries),
            len(self.valid_entries),
        )

    def _on_improvement(self, model: nn.Module, optimizer: Optimizer) -> None:
        self._save_checkpoint(model, optimizer, self.best_checkpoint_name, with_optimizer=False)

    def _on_train_end(self, model: nn.Module) -> None:
        best = self.output_dir / self.best_checkpoint_name
        if best.exists():
            checkpoint = load_checkpoint(best)
            unwrap_model(model).load_state_dict(checkpoint.model_state_dict)
            logger.info("loaded the best weights (valid CER %.4f) from %s", self.state.best_cer, best)

    def _save_checkpoint(
        self, model: nn.Module, optimizer: Optimizer, name: str, with_optimizer: bool = True
    ) -> Optional[Path]:
        """Write ``output_dir/name`` (rank 0 only; other ranks return ``None``)."""
        if not self.dist.is_main:
            return None
        trainer_state = asdict(self.state)
        trainer_state["rng_states"] = self._rng_states if self._rng_states is not None else [self.own_rng_state()]
        trainer_state["epoch_tally"] = self._epoch_tally.counts() if self.state.step_in_epoch else None
        return save_checkpoint(
            self.output_dir / name,
            model,
            model_config=self.model_config,
            vocab=self.vocab,
            feature_config=self.feature_config,
            optimizer_state_dict=optimizer.state_dict() if with_optimizer else None,
            trainer_state=trainer_state,
            train_config=self.resolved_config,
            metrics=self.state.history[-1] if self.state.history else {},
        )

    def _resume(self, model: nn.Module, optimizer: Optimizer) -> None:
        path = self.output_dir / self.checkpoint_name
        # every rank must resume from the same checkpoint: rank 0 decides, the others must see the same file
        if not self.dist.broadcast_flag(path.exists(), self.device):
            logger.info("no checkpoint at %s: starting from scratch", path)
            return
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: rank {self.dist.rank} cannot read the checkpoint rank 0 resumes from; with several "
                "machines, output_dir must be on storage that every machine shares"
            )
        checkpoint = load_checkpoint(path)
        if checkpoint.vocab != self.vocab:
            raise ValueError(f"{path}: the checkpoint's vocabulary differs from the training vocabulary")
        if checkpoint.feature_config.to_dict() != self.feature_config.to_dict():
            raise ValueError(f"{path}: the checkpoint's feature config differs from the training feature config")
        if checkpoint.optimizer_state_dict is None:
            raise ValueError(f"{path}: no optimizer state, cannot resume training from it")
        try:
            unwrap_model(model).load_state_dict(checkpoint.model_state_dict)
            optimizer.load_state_dict(checkpoint.optimizer_state_dict)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"{path}: cannot resume from it: it was written by a run with another model or optimizer "
                f"({str(exc).splitlines()[0]}); start a new output_dir or drop train.resume"
            ) from exc
        saved = dict(checkpoint.trainer_state)
        rng_states = saved.pop("rng_states", None)
        legacy_rng_state = saved.pop("torch_rng_state", None)  # checkpoints before every rank's streams were kept
        self._resumed_tally = saved.pop("epoch_tally", None)  # checkpoints before it was kept: the epoch's later steps
        # checkpoints written before applied_steps was counted: every step that was not skipped was applied
        saved.setdefault("applied_steps", saved.get("global_step", 0) - saved.get("skipped_steps", 0))
        unknown = sorted(set(saved) - {field.name for field in dataclasses.fields(TrainerState)})
        if unknown:
            raise CheckpointError(
                f"{path}: cannot resume from it: its trainer_state holds {unknown}, which this version of kospeech "
                "does not know (written by another version?); start a new output_dir or drop "
                "train.resume"
            )
        self.state = TrainerState(**saved)
        if rng_states is None and legacy_rng_state is not None:
            rng_states = [{"cpu": legacy_rng_state, "cuda": None}]
        self._restore_rng_state(rng_states)
        logger.info("resumed from %s at epoch %d, step %d", path, self.state.epoch + 1, self.state.global_step)

    def own_rng_state(self) -> Dict[str, Any]:
        """This process' random streams: the CPU generator's, and the CUDA device's on a GPU."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return {"cpu": torch.get_rng_state(), "cuda": cuda}

    def _gather_rng_states(self) -> None:
        """Every rank's random streams, kept for the next checkpoint, so that a resumed run draws each rank's dropout
        masks and augmentation as the uninterrupted run would. Every rank calls it at the same points."""
        self._rng_states = self.dist.gather(self.own_rng_state())

    def _restore_rng_state(self, saved: Optional[List[Dict[str, Any]]]) -> None:
        """Continue this rank's random streams from a checkpoint's (nothing when it has none)."""
        if not saved:
            return
        if len(saved) == self.dist.world_size:
            own = saved[self.dist.rank]
        elif self.dist.is_main:
            logger.warning(
                "the checkpoint holds the random streams of %d processes, this run has %d: only rank 0 continues its own",
                len(saved),
                self.dist.world_size,
            )
            own = saved[0]
        else:
            return
        self.set_own_rng_state(own)

    def set_own_rng_state(self, state: Dict[str, Any]) -> None:
        """Set this process' random streams to ``state`` (as :meth:`own_rng_state` returns them)."""
        torch.set_rng_state(state["cpu"])
        if state.get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.device)

    def _write_run_config(self, run_config: Optional[TrainConfig] = None) -> None:
        """``config.yaml`` in the run folder: the job's resolved config, or (a run started from Python, by the
        service say) this trainer's own settings and features; its ``train`` part holds the settings the run uses.

        Args:
            run_config: the settings the run uses (``train()``'s arguments over the config's); ``None``: the config.
        """
        train = dataclasses.asdict(run_config or self.config)
        if self.resolved_config:
            # the job's keys and their order stay; the values are the run's
            record = {**self.resolved_config, "train": {**self.resolved_config.get("train", {}), **train}}
        else:
            record = {"train": train, "audio": self.feature_config.to_dict()}
        atomic_write_text(self.output_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(record)))


def _format_record(record: Dict[str, Any]) -> str:
    return " ".join(
        f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}" for key, value in record.items()
    )
