"""Per-user adapter training on a frozen DeepSpeech2 base."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torchaudio.functional import forced_align

from kospeech.data.audio import audio_duration
from kospeech.data.features import FeatureConfig
from kospeech.data.manifest import ManifestEntry
from kospeech.data.perturbation import speed_perturbed_copies
from kospeech.errors import TrainingError
from kospeech.evaluation import EvaluationResult, evaluate
from kospeech.metrics import char_errors
from kospeech.models import AdapterManager, DeepSpeech2, adapter_type_of, count_parameters, registered_adapter
from kospeech.models.adapter_manager import validate_adapter_name
from kospeech.models.utils import unwrap_model
from kospeech.optim import Optimizer
from kospeech.progress import progress_bar
from kospeech.trainer.configs import AdapterTrainConfig
from kospeech.trainer.supervised_trainer import EpochTally, SupervisedTrainer, TrainerState
from kospeech.trainer.trunk_cache import (
    CachedBatch,
    CachedFeatureLoader,
    CachedTrunkModel,
    TrunkCache,
    build_trunk_cache,
    cache_point_for,
    spill_folder,
    train_cache_blocker,
)
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


def _base_model(model: nn.Module) -> DeepSpeech2:
    """The DeepSpeech2 under a cached-trunk view or a DataParallel / DDP wrapper."""
    return model.model if isinstance(model, CachedTrunkModel) else unwrap_model(model)


@dataclass
class _UnitRun:
    """What a started unit of a multi-user run holds between calls."""

    model: DeepSpeech2
    cached_model: CachedTrunkModel
    optimizer: Optimizer
    train_loader: Any
    valid_loader: Any
    rng_state: Dict[str, Any]  # the CPU generator's state, and the CUDA device's on a GPU (own_rng_state)
    full_model: CachedTrunkModel
    tally: EpochTally = field(default_factory=EpochTally)
    pending_loss: Optional[float] = None  # the loss of a shared step between step_loss and finish_step


class AdapterTrainer(SupervisedTrainer):
    """Trains only a model's adapter on one user's enrollment set.

    The base model is frozen (weights, BatchNorm statistics and dropout), the optimizer sees only the
    adapter's parameters, validation scores the adapter output, and every improvement of the
    validation CER is saved to ``{adapter_save_dir}/{adapter_name}_adapter.pt``. The base model's CER
    on the same validation set (adapter bypassed) is measured first and stored with the adapter.
    Without ``valid_entries`` a seeded ``config.valid_fraction`` of the enrollment set is held out, and
    training stops after ``config.early_stopping_patience`` validations without improvement.

    An adapter is never served worse than the base: one whose best held-out CER is not below the base model's on the
    same utterances, by at least ``config.min_fewer_errors`` character errors (2: on the few held-out utterances of a
    small enrollment set one lucky character decided too often), is saved marked ``rejected`` (with the reason),
    which makes the
    :class:`~kospeech.inference.Recognizer` serve the base for that user. An accepted adapter already active is never
    overwritten by a rejected one: the run writes over it only once it beats the base, and a run that ends rejected
    saves its adapter as the newest kept version instead, for inspection (:attr:`outcome`). An active adapter trained
    on other base weights (the base file replaced in place) is not kept in force: it cannot be served with this base.

    An adapter type that does not start at the base (``head``: a random replacing MLP) is first *warm-started*:
    ``config.warm_start_steps`` Adam steps fit its output to the base model's on the training frames (KL divergence,
    no labels; seconds with the trunk cache), so it starts where the base is (:meth:`base_divergence`). Then, for any
    type, ``config.alignment_steps`` steps of frame-level cross-entropy on each transcript's CTC alignment under the
    base come before the CTC steps (the head's value; the other types' recipes set none).

    With ``config.cache_trunk`` (the default) the frozen base runs once per utterance and every epoch trains the
    adapter on the cached output of the last frozen computation before it (:mod:`kospeech.trainer.trunk_cache`):
    the same batches, the same random draws and the same losses as recomputing (within float rounding), at a
    fraction of the cost. SpecAugment or dither change the features every epoch, so the training set is then
    recomputed every epoch (the held-out set is still cached). Cached steps run on the bare model (a DataParallel
    wrapper is bypassed for them); a model wrapped in DistributedDataParallel is never cached, since its steps must
    go through the wrapper.

    One trainer is one *per-user training unit*: the adapter, its optimizer and LR schedule, counters and history,
    early stopping, its best-adapter file and (in a multi-user run) its own stream of random numbers. :meth:`train`
    runs it alone through :class:`SupervisedTrainer`'s epoch loop; :class:`~kospeech.trainer.multi_user.
    MultiUserAdapterTrainer` runs many in lockstep through the public unit API :meth:`start`, :meth:`start_epoch`,
    :meth:`step`, :meth:`end_epoch` and :meth:`finish`, with each user's adapter left unattached (the frozen model
    is shared; each unit routes its batches through its own adapter).

    Args:
        config: adapter hyper-parameters, adapter folder and run folder.
        vocab: the base model's vocabulary.
        feature_config: the base model's feature pipeline.
        train_entries: the user's enrollment utterances.
        valid_entries: optional separate validation utterances of the same user.
        model_config: architecture record of the base (stored for reference).
        resolved_config: the full job config, written as ``config.yaml``.

    Raises:
        TrainingError: fewer than two enrollment utterances and no validation set, or no usable utterance left on
            either side once unusable ones are screened out (the user's data, not the job, is at fault).
    """

    use_adapter_output = True
    distributed_training = False

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
            if len(train_entries) < 2:  # one user's data: a multi-user job fails this user alone
                raise TrainingError(
                    f"an enrollment set needs at least 2 utterances (some are held out), got {len(train_entries)}"
                )
            train_entries, valid_entries = split_holdout(train_entries, config.valid_fraction, config.seed)
        super().__init__(config, vocab, feature_config, train_entries, valid_entries, model_config, resolved_config)
        if not self.valid_entries:
            first = self.excluded_utterances[-1]  # the held-out set is screened last
            raise TrainingError(
                f"none of the {len(valid_entries)} held-out utterances is usable (e.g. {first.audio_path}: {first.reason})"
            )
        # copies of the usable utterances only (screened above); the held-out part stays as recorded
        self.train_entries += speed_perturbed_copies(self.train_entries, config.speed_perturbation)
        self.adapter_save_dir = Path(config.adapter_save_dir)
        self.adapter_name = "default"
        self.adapter_path: Optional[Path] = None
        self.adapter: Optional[nn.Module] = None
        self.done = False
        self.parameter_stats: Dict[str, Any] = {}
        self.base_result: Optional[EvaluationResult] = None
        self.trunk_cache: Optional[TrunkCache] = None
        self.cache_info: Dict[str, Any] = {"train": False, "valid": False}
        self._cached_model: Optional[CachedTrunkModel] = None
        self._owns_cache = False
        self._shared_cache: Optional[Tuple[TrunkCache, Optional[List[int]], List[int]]] = None
        self._best_adapter_state: Optional[Dict[str, Any]] = None
        self._saved_active = False
        self._train_loader: Any = None
        self.warm_start_info: Dict[str, Any] = {}
        self.outcome: Dict[str, Any] = {"rejected": False, "rejected_reason": None, "previous_adapter_kept": False}
        self._stale_validations = 0
        self._started = 0.0
        # read now, while the screened files are there: a recording deleted during training must not fail its stats
        self._audio_seconds = round(
            sum(audio_duration(entry.audio_path) for entry in self.train_entries if entry.speed == 1.0), 3
        )
        self._unit: Optional[_UnitRun] = None

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
        self.prepare_adapter(model, adapter_name)
        self._started = time.monotonic()
        try:
            return super().train(model, batch_size, epoch_time_step, num_epochs, resume=False)
        finally:
            self.release_trunk_cache()

    def new_adapter(self, model: DeepSpeech2) -> nn.Module:
        """A fresh adapter of the configured type and sizes for ``model``, not attached to it.

        Initialized right after ``torch.manual_seed(config.seed)``, so the same seed gives the same adapter whatever
        the caller drew from the global RNG before.
        """
        torch.manual_seed(self.config.seed)
        config = self.config.adapter_config()
        adapter = registered_adapter(self.config.adapter_type).create(config, model.trunk_dims)
        return adapter.to(device=model.device)

    def _warn_if_unlike_the_config(self, base: DeepSpeech2) -> None:
        """Say so when the adapter the caller attached is not the one the config describes: it is trained as it is,
        so ``train.adapter_*`` settings (a recipe's dropout, a type) would otherwise be ignored without a word."""
        attached = base.adapter.adapter_config()
        with torch.random.fork_rng(devices=[]):  # building the configured one for comparison draws no caller's numbers
            configured = self.new_adapter(base).adapter_config()
        differences = [
            f"{key} {attached.get(key)!r} (config: {configured.get(key)!r})"
            for key in sorted(set(attached) | set(configured))
            if attached.get(key) != configured.get(key)
        ]
        if differences:
            logger.warning(
                "training the adapter attached to the model, which differs from the one train.adapter_type and "
                "train.adapter_* describe: %s; attach none to train the configured one",
                ", ".join(differences),
            )

    def prepare_adapter(self, model: nn.Module, adapter_name: str, adapter: Optional[nn.Module] = None) -> DeepSpeech2:
        """Check the name, pick the adapter to train, freeze the base, log sizes.

        Args:
            model: the DeepSpeech2 (possibly wrapped).
            adapter_name: the user's adapter name.
            adapter: an unattached adapter to train (a unit of a multi-user run); ``None`` trains the model's attached
                adapter (with a warning when it is not the configured one), attaching :meth:`new_adapter` when it has
                none.

        Returns:
            The bare DeepSpeech2 (unwrapped).
        """
        validate_adapter_name(adapter_name)
        self.adapter_name = adapter_name
        base = unwrap_model(model)
        if adapter is None:
            if not base.use_adapter:
                base.attach_adapter(self.new_adapter(base))
            else:
                self._warn_if_unlike_the_config(base)
            adapter = base.adapter
        else:
            base.check_adapter_fits(adapter)
        self.adapter = adapter
        base.freeze_base_model()
        attached = adapter is base.adapter
        stats = count_parameters(base if attached else nn.ModuleList([base, adapter]))
        # one way to state the share everywhere (logs, results, docs): trainable parameters per frozen base parameter
        stats["percent_of_base"] = 100.0 * stats["trainable"] / stats["frozen"] if stats["frozen"] else 0.0
        self.parameter_stats = stats
        logger.info(
            "adapter %r (%s): %d trainable parameters, %.2f%% of the frozen base's %d",
            adapter_name,
            base.adapter_type if attached else type(adapter).__name__,
            stats["trainable"],
            stats["percent_of_base"],
            stats["frozen"],
        )
        return base

    # ------------------------------------------------------------------ one unit of a multi-user run

    def start(
        self,
        model: DeepSpeech2,
        adapter: nn.Module,
        *,
        batch_size: int,
        num_epochs: int,
        rng_state: Dict[str, Any],
        cached_model: CachedTrunkModel,
        cache: Optional[TrunkCache] = None,
        train_keys: Optional[Sequence[int]] = None,
        valid_keys: Sequence[int] = (),
    ) -> None:
        """Start this user's training as one unit of a run that shares ``model`` (its adapter stays unattached).

        Args:
            model: the shared DeepSpeech2 (bare, base frozen).
            adapter: this user's adapter (:meth:`new_adapter`).
            batch_size: utterances per batch.
            num_epochs: maximum epochs (sizes the LR schedule with this user's own number of batches).
            rng_state: the random streams this user's steps start from (as if it trained alone): the CPU
                generator's and, on a GPU, the CUDA device's (``own_rng_state()``), so dropout on a GPU draws from the
                user's own stream too.
            cached_model: the model above the cache point with ``adapter`` (``CachedTrunkModel(model, point,
                adapter)``); the unit trains and validates through it.
            cache: a trunk cache shared by several units (never closed by this one), or ``None``.
            train_keys: keys of ``self.train_entries`` in ``cache``, or ``None`` when the training batches are
                handed to :meth:`step` as :class:`CachedBatch` of a shared trunk forward.
            valid_keys: keys of ``self.valid_entries`` in ``cache``.
        """
        self.prepare_adapter(model, self.config.adapter_name, adapter)
        self._started = time.monotonic()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._write_run_config(dataclasses.replace(self.config, batch_size=batch_size, num_epochs=num_epochs))
        self._use_shared_trunk_cache(cache, train_keys, valid_keys, cached_model)
        train_loader, valid_loader = self._build_loaders(model, batch_size)
        optimizer = self._build_optimizer(cached_model, total_steps=len(train_loader) * num_epochs)
        self.state = TrainerState()
        self.done = False
        self._unit = _UnitRun(
            model,
            cached_model,
            optimizer,
            train_loader,
            valid_loader,
            rng_state,
            CachedTrunkModel(model, None, adapter),
        )
        self._on_train_start(model, valid_loader)

    @property
    def train_loader(self):
        """The training loader of the started unit (its ``batch_sampler`` decides this user's batches)."""
        return self._running().train_loader

    def start_epoch(self, epoch: int) -> None:
        """Begin epoch ``epoch``: this user's batch order for it, fresh epoch figures, training mode."""
        unit = self._running()
        unit.train_loader.batch_sampler.set_epoch(epoch)
        unit.tally = EpochTally()
        unit.cached_model.train()

    def step(self, batch: CachedBatch) -> Optional[float]:
        """One optimizer step of this user's adapter on its batch, with its own RNG stream.

        Returns:
            The step's loss, or ``None`` when it trained nothing (no alignable utterance, non-finite loss).
        """
        unit = self._running()
        with self.random_stream():
            loss = self._train_step(unit.cached_model, batch, unit.optimizer, unit.tally.meter)
        self._count_step(unit.tally, loss, unit.optimizer)
        self.state.elapsed_seconds = time.monotonic() - self._started
        return loss

    def end_epoch(self, completed: bool = True) -> bool:
        """Validate and record the epoch, save an improvement; returns (and sets) :attr:`done` on early stopping.

        Args:
            completed: the epoch ran to its end (False when a time budget cut it short).
        """
        unit = self._running()
        self.done = self._close_epoch(unit.cached_model, unit.optimizer, unit.valid_loader, unit.tally, completed)
        return self.done

    def finish(self) -> Dict[str, Any]:
        """Load the best weights into the adapter; returns ``adapter_path``, :attr:`outcome` and :meth:`training_stats`.

        A unit that applied no update saved no adapter: its ``adapter_path`` is ``None`` and ``error`` says why (the
        other users of a multi-user run are not affected).
        """
        unit = self._running()
        self._unit = None
        try:
            self.check_trained()
        except TrainingError as exc:
            logger.error("adapter %r: %s", self.adapter_name, exc)
            return {"adapter_path": None, "error": str(exc), **self.training_stats()}
        self._on_train_end(unit.model)
        return {"adapter_path": str(self.adapter_path), **self.outcome, **self.training_stats()}

    def step_loss(self, log_probs: Tensor, output_lengths: Tensor, batch: CachedBatch) -> Optional[Tensor]:
        """First half of a step computed together with other users' (one backward for all): this user's loss.

        The caller ran this user's batch through the unit's adapter (inside :meth:`random_stream`), e.g. as one
        block of a batch that several users share, sums the returned losses, calls ``backward()`` once, then
        :meth:`finish_step` on every unit. The loss, CER tally and counters are those :meth:`step` books.

        Inputs:
            log_probs: (n, T'_u, C) the adapted output of this user's rows.
            output_lengths: (n,) their valid frames.
            batch: this user's batch (targets).

        Returns:
            The loss to back-propagate, or ``None`` when this step trains nothing (no alignable utterance,
            non-finite loss); :meth:`finish_step` must still be called.
        """
        unit = self._running()
        unit.optimizer.zero_grad()
        loss = self._step_loss(log_probs, output_lengths, batch, unit.tally.meter)
        unit.pending_loss = self._usable_loss_value(loss)
        return None if unit.pending_loss is None else loss.loss

    def finish_step(self) -> Optional[float]:
        """Second half of a shared step (see :meth:`step_loss`): this user's update from the gradients in place.

        Returns:
            The step's loss, or ``None`` when it trained nothing.
        """
        unit = self._running()
        loss, unit.pending_loss = unit.pending_loss, None
        if loss is not None:
            self._apply_update(unit.cached_model, unit.optimizer)
        self._count_step(unit.tally, loss, unit.optimizer)
        self.state.elapsed_seconds = time.monotonic() - self._started
        return loss

    @contextlib.contextmanager
    def random_stream(self) -> Iterator[None]:
        """Inside a started unit: draw from this user's RNG stream (the run's global stream is restored after).

        Outside a unit (a run alone) the global stream is used as it is.
        """
        unit = self._unit
        if unit is None:
            yield
            return
        outside = self.own_rng_state()
        self.set_own_rng_state(unit.rng_state)
        try:
            yield
        finally:
            unit.rng_state = self.own_rng_state()
            self.set_own_rng_state(outside)

    def _running(self) -> _UnitRun:
        if self._unit is None:
            raise RuntimeError("this trainer's unit has not been started: call start() first")
        return self._unit

    # ------------------------------------------------------------------ trunk cache

    def _use_shared_trunk_cache(
        self,
        cache: Optional[TrunkCache],
        train_keys: Optional[Sequence[int]],
        valid_keys: Sequence[int],
        cached_model: CachedTrunkModel,
    ) -> None:
        """Take trunk outputs from a cache built for several trainers (this trainer never closes it).

        Args:
            cache: a trunk cache at the cache point of this trainer's adapter type, or ``None`` when nothing is
                cached (batches of trunk outputs may still be handed to :meth:`_train_step` as ``CachedBatch``).
            train_keys: keys of ``self.train_entries`` in order, or ``None`` to load the training set from audio.
            valid_keys: keys of ``self.valid_entries`` in order (ignored without a cache).
            cached_model: the model above the cache point (it uses whatever adapter the model has attached).
        """
        self._cached_model = cached_model
        if cache is None:
            self._shared_cache = None
            return
        if train_keys is not None and len(train_keys) != len(self.train_entries):
            raise ValueError(f"{len(train_keys)} training keys for {len(self.train_entries)} training utterances")
        if len(valid_keys) != len(self.valid_entries):
            raise ValueError(f"{len(valid_keys)} validation keys for {len(self.valid_entries)} validation utterances")
        self._shared_cache = (cache, None if train_keys is None else list(train_keys), list(valid_keys))

    def _cache_plan(self, model: nn.Module) -> Tuple[bool, bool]:
        """Whether to cache the training set and the validation set, logging why not."""
        if not self.config.cache_trunk:
            logger.info("trunk cache off (cache_trunk=false): the frozen base runs on every step")
            return False, False
        if isinstance(model, DistributedDataParallel):
            logger.info("trunk cache off: under DistributedDataParallel every step goes through its forward")
            return False, False
        blocker = train_cache_blocker(self.config, self.feature_config)
        if blocker is not None:
            logger.info("trunk cache for the held-out set only: %s, so training recomputes the trunk", blocker)
        return blocker is None, True

    def _build_loaders(self, model: nn.Module, batch_size: int):
        self.release_trunk_cache()
        seed, device = self.config.seed, self.device
        if self._shared_cache is not None:
            cache, train_keys, valid_keys = self._shared_cache
        else:
            cache_train, cache_valid = self._cache_plan(model)
            if not (cache_train or cache_valid):
                self._train_loader, valid_loader = super()._build_loaders(model, batch_size)
                return self._train_loader, valid_loader
            base = unwrap_model(model)
            point = cache_point_for(base.adapter_type)
            entries = list(self.train_entries) if cache_train else []
            started = time.monotonic()
            cache = build_trunk_cache(
                base,
                entries + list(self.valid_entries),
                self.feature_extractor.without_dither(),  # dither blocks caching the training set: held-out only
                point=point,
                batch_size=batch_size,
                device=device,
                max_mb=self.config.trunk_cache_max_mb,
                spill_dir=spill_folder(self.output_dir, self.config.trunk_cache_dir)
                if self.config.trunk_cache_spill
                else None,
                num_workers=self.loader_workers,
            )
            build_seconds = time.monotonic() - started
            self._owns_cache = True
            self._cached_model = CachedTrunkModel(base, point)
            train_keys = list(range(len(entries))) if cache_train else None
            valid_keys = list(range(len(entries), len(entries) + len(self.valid_entries)))
            logger.info("trunk cache: %s, built in %.1f s", cache.describe(), build_seconds)
        self.trunk_cache = cache
        self.cache_info = {
            "train": train_keys is not None,
            "valid": True,
            "point": cache.point.value,
            "memory_mb": round(cache.memory_bytes / 2**20, 2),
            "disk_mb": round(cache.disk_bytes / 2**20, 2),
        }
        if self._owns_cache:
            self.cache_info["build_seconds"] = round(build_seconds, 3)
        if train_keys is not None:
            train_loader = CachedFeatureLoader(cache, train_keys, batch_size, shuffle=True, seed=seed, device=device)
        else:
            # in a multi-user group the epochs read the group's mixed loader: this one feeds the warm start only, and
            # persistent workers of their own would idle through the whole group, one set per user
            workers = 0 if self._shared_cache is not None else None
            train_loader = self.build_loader(self.train_entries, batch_size, train=True, workers=workers)
        valid_loader = CachedFeatureLoader(cache, valid_keys, batch_size, shuffle=False, seed=seed, device=device)
        self._train_loader = train_loader
        return train_loader, valid_loader

    def release_trunk_cache(self) -> None:
        """Free the trunk cache this trainer built (and its spilled files); a shared cache is left alone."""
        if self.trunk_cache is not None and self._owns_cache:
            self.trunk_cache.close()
        self.trunk_cache = None
        self._owns_cache = False

    # ------------------------------------------------------------------ steps and validation

    def _forward(self, model: nn.Module, batch) -> tuple:
        if isinstance(batch, CachedBatch):
            return self._cached_model(batch.inputs.to(self.device), batch.input_lengths.to(self.device))
        if isinstance(model, DeepSpeech2):
            # only the adapted output is trained: for encoder adapters forward() would also run the unadapted stack
            features, lengths = model.encode(batch.inputs.to(self.device), batch.input_lengths.to(self.device))
            return model.head(features), lengths
        return super()._forward(model, batch)

    def _evaluate(self, model: nn.Module, loader, use_adapter_output: bool, description: str) -> EvaluationResult:
        if isinstance(loader, CachedFeatureLoader):
            # the cached model returns the active output alone: the adapter's, or the base's inside disable_adapter()
            model, use_adapter_output = self._cached_model, False
        elif self._unit is not None:
            # a unit's adapter is not attached: run the whole model with it (the base alone inside disable_adapter())
            model, use_adapter_output = self._unit.full_model, False
        return evaluate(
            model,
            loader,
            self.vocab,
            loss_fn=self.criterion,
            device=self.device,
            use_adapter_output=use_adapter_output,
            beam_size=self.config.beam_size,
            description=description,
        )

    def _validate(self, model: nn.Module, valid_loader) -> EvaluationResult:
        return self._evaluate(model, valid_loader, True, "validate")

    def _on_train_start(self, model: nn.Module, valid_loader) -> None:
        base = unwrap_model(model)
        with base.disable_adapter():
            self.base_result = self._evaluate(model, valid_loader, False, "base model")
        logger.info(
            "base model on %d held-out utterances: loss %.4f CER %.4f",
            self.base_result.num_utterances,
            self.base_result.loss,
            self.base_result.cer,
        )
        distill = not adapter_type_of(self.adapter).starts_at_base and self.config.warm_start_steps > 0
        if distill or self.config.alignment_steps > 0:
            self._warm_start(model, self._train_loader, valid_loader, distill)
        super()._on_train_start(model, valid_loader)

    # ------------------------------------------------------------------ warm start

    def _adapted_output(self, model: nn.Module, batch) -> Tuple[Tensor, Tensor]:
        """(log_probs (B, T', C), lengths (B,)) of this trainer's adapter (the base's inside ``disable_adapter()``)."""
        if self._unit is not None and not isinstance(batch, CachedBatch):
            return self._unit.full_model(batch.inputs.to(self.device), batch.input_lengths.to(self.device))
        return self._forward(model, batch)

    def _frame_divergence(self, model: nn.Module, batch, aligned: bool = False) -> Tensor:
        """KL(target || adapted) of every valid output frame of ``batch``: (frames,), differentiable in the adapter.

        The target is the base model's output distribution, or with ``aligned`` the one-hot label of each frame on its
        transcript's CTC alignment under the base (the divergence is then the frame's cross-entropy).
        """
        with unwrap_model(model).disable_adapter(), torch.no_grad():
            base_log_probs, lengths = self._adapted_output(model, batch)
        log_probs, _ = self._adapted_output(model, batch)
        frames = torch.arange(log_probs.shape[1], device=log_probs.device)
        valid = frames[None, :] < lengths.to(log_probs.device)[:, None]
        if aligned:
            labels = self._aligned_labels(base_log_probs, lengths, batch)
            divergence = -log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        else:
            target = base_log_probs.exp()
            divergence = (target * (base_log_probs - log_probs)).sum(dim=-1)
        return divergence[valid]

    def _aligned_labels(self, base_log_probs: Tensor, lengths: Tensor, batch) -> Tensor:
        """(B, T') label ids of each frame on the best CTC path of its transcript (the base's own argmax where no path
        fits)."""
        aligned = base_log_probs.argmax(dim=-1)
        for row in range(base_log_probs.shape[0]):
            frames, labels = int(lengths[row]), int(batch.target_lengths[row])
            try:
                path, _ = forced_align(
                    base_log_probs[row : row + 1, :frames].float().cpu(),
                    batch.targets[row : row + 1, :labels].cpu(),
                    blank=self.vocab.blank_id,
                )
            except (RuntimeError, ValueError):  # a transcript too long for its frames has no CTC path
                continue
            aligned[row, :frames] = path[0].to(aligned.device)
        return aligned

    def base_divergence(self, model: nn.Module, loader) -> float:
        """How far the adapted output is from the base model's: mean KL(base || adapted) per valid output frame.

        Args:
            model: the model being trained (the adapter in eval mode while measuring; its mode is restored).
            loader: batches to measure on, e.g. the held-out loader.

        Returns:
            Nats per frame (0.0 for an adapter that starts at the base).
        """
        was_training = self.adapter.training
        self.adapter.eval()
        total, frames = 0.0, 0
        try:
            with torch.no_grad():
                for batch in loader:
                    divergence = self._frame_divergence(model, batch)
                    total += float(divergence.sum())
                    frames += divergence.numel()
        finally:
            self.adapter.train(was_training)
        return total / frames if frames else 0.0

    def _warm_start(self, model: nn.Module, train_loader, valid_loader, distill: bool) -> None:
        """Fit the adapter to the base's output (distillation, when ``distill``), then to the transcripts' CTC
        alignment under the base (``config.alignment_steps``); record both in :attr:`warm_start_info`."""
        started = time.monotonic()
        optimizer = torch.optim.Adam(
            [parameter for parameter in self.adapter.parameters() if parameter.requires_grad],
            lr=self.config.warm_start_lr,
        )
        info: Dict[str, Any] = {"steps": 0}
        self.adapter.train()  # base_divergence measures in eval mode and restores this
        with self.random_stream():
            if distill:
                info["held_out_kl_before"] = round(self.base_divergence(model, valid_loader), 5)
                info["steps"] = self._fit_frames(
                    model, train_loader, optimizer, self.config.warm_start_steps, False, "warm start"
                )
                info["held_out_kl_after"] = round(self.base_divergence(model, valid_loader), 5)
                logger.info(
                    "warm start of %r: %d steps fitting the base's output, held-out KL %.4f -> %.4f nats/frame",
                    self.adapter_name,
                    info["steps"],
                    info["held_out_kl_before"],
                    info["held_out_kl_after"],
                )
            info["alignment_steps"] = self._fit_frames(
                model, train_loader, optimizer, self.config.alignment_steps, True, "alignment"
            )
        info["seconds"] = round(time.monotonic() - started, 2)
        self.warm_start_info = info
        logger.info(
            "adapter %r: %d steps on the transcripts' CTC alignment under the base; warm start took %.1f s",
            self.adapter_name,
            info["alignment_steps"],
            info["seconds"],
        )

    def _fit_frames(
        self,
        model: nn.Module,
        train_loader,
        optimizer: torch.optim.Optimizer,
        steps: int,
        aligned: bool,
        phase: str,
    ) -> int:
        """``steps`` Adam steps on the frame divergence to the base / aligned targets, cycling the training batches."""
        done = 0
        with progress_bar(
            disable=steps <= 0, total=steps, desc=f"{phase} {self.adapter_name}", leave=False
        ) as progress:
            while done < steps:
                fitted = done
                for batch in train_loader:
                    divergence = self._frame_divergence(model, batch, aligned)
                    if divergence.numel() == 0:
                        continue
                    optimizer.zero_grad()
                    divergence.mean().backward()
                    optimizer.step()
                    done += 1
                    progress.update(1)
                    self._stop_if_interrupted(f"at {phase} step {done}")  # a shutdown need not wait for the rest
                    if done >= steps:
                        break
                if done == fitted:  # no batch has a valid frame: nothing to fit
                    break
        return done

    def _end_of_epoch(self, model: nn.Module, optimizer: Optimizer, valid_loader, train_figures: Dict) -> bool:
        best_before = self.state.best_cer
        super()._end_of_epoch(model, optimizer, valid_loader, train_figures)
        self._stale_validations = 0 if self.state.best_cer < best_before else self._stale_validations + 1
        if self._stale_validations >= self.config.early_stopping_patience:
            logger.info("early stop: no better validation CER for %d epochs", self._stale_validations)
            return True
        return False

    def fewer_errors_than_base(self) -> int:
        """How many fewer character errors than the base the best adapter so far makes on the held-out utterances
        (negative when more; 0 before the base is measured)."""
        if self.base_result is None:
            return 0
        characters = sum(char_errors(reference, "")[1] for reference, _ in self.base_result.pairs)  # CER's denominator
        return round((self.base_result.cer - self.state.best_cer) * characters)

    def rejection_reason(self) -> Optional[str]:
        """Why the best adapter so far must not be served (``None`` while it beats the base on the held-out set by
        ``config.min_fewer_errors`` character errors or more)."""
        if self.base_result is None:
            return None
        if self.state.best_cer >= self.base_result.cer:
            return (
                f"held-out CER {self.state.best_cer:.4f} is not below the base model's {self.base_result.cer:.4f} on "
                f"the same {self.base_result.num_utterances} utterances"
            )
        fewer = self.fewer_errors_than_base()
        if fewer >= self.config.min_fewer_errors:
            return None
        return (
            f"held-out CER {self.state.best_cer:.4f} against the base model's {self.base_result.cer:.4f} on the same "
            f"{self.base_result.num_utterances} utterances is {fewer} character error(s) fewer, under the "
            f"{self.config.min_fewer_errors} train.min_fewer_errors asks for"
        )

    def _on_improvement(self, model: nn.Module, optimizer: Optimizer) -> None:
        self._best_adapter_state = copy.deepcopy(dict(self.adapter.state_dict()))
        reason = self.rejection_reason()
        if reason is not None and not self._saved_active and self._accepted_adapter_active(model):
            # an accepted adapter serves this user: it stays in force until this run has a better one
            logger.info(
                "adapter %r: best so far is no better than the base; the active adapter stays", self.adapter_name
            )
            return
        if not self._saved_active:  # this run's first save replaces the active adapter: keep that one
            AdapterManager.keep_version(self.adapter_save_dir, self.adapter_name)
        self.adapter_path = self._save(model, reason)
        self._saved_active = True
        logger.info(
            "saved adapter %r (valid CER %.4f) to %s", self.adapter_name, self.state.best_cer, self.adapter_path
        )

    def _accepted_adapter_active(self, model: nn.Module) -> bool:
        """Whether the user's active adapter file exists, was not rejected and was trained on ``model``'s base
        weights: a damaged file, or one of a base since replaced (it cannot be served with this one), counts as none."""
        path = AdapterManager.adapter_file(self.adapter_save_dir, self.adapter_name)
        if not path.is_file():
            return False
        try:
            info = AdapterManager.get_adapter_info(path)
        except ValueError:
            return False
        return not info["rejected"] and info["base_fingerprint"] == _base_model(model).base_fingerprint()

    def _save(self, model: nn.Module, rejected: Optional[str], as_version: bool = False) -> Path:
        return AdapterManager.save_adapter(
            _base_model(model),
            self.adapter_save_dir,
            self.adapter_name,
            vocab_fingerprint=self.vocab.fingerprint(),
            feature_config=self.feature_config.to_dict(),
            training_stats=self.training_stats(),
            adapter=self.adapter,
            rejected=rejected,
            as_version=as_version,
        )

    def _save_checkpoint(self, model: nn.Module, optimizer: Optimizer, name: str, with_optimizer: bool = True):
        """Adapter runs keep no full-model checkpoints: the frozen base never changes, the adapter file is the result."""
        return None

    def _on_train_end(self, model: nn.Module) -> None:
        if self._best_adapter_state is not None:
            self.adapter.load_state_dict(self._best_adapter_state, strict=True)
        logger.info(
            "adapter %r: base CER %.4f -> adapter CER %.4f on the held-out set (%s)",
            self.adapter_name,
            self.base_result.cer if self.base_result else float("nan"),
            self.state.best_cer,
            self.adapter_path,
        )
        reason = self.rejection_reason()
        kept = reason is not None and self._best_adapter_state is not None and not self._saved_active
        self.outcome = {"rejected": reason is not None, "rejected_reason": reason, "previous_adapter_kept": kept}
        if reason is None or self._best_adapter_state is None:
            return
        if kept and self.dist.is_main:  # the rejected adapter goes next to the versions, for inspection only
            self.adapter_path = self._save(model, reason, as_version=True)
        logger.warning(
            "adapter %r rejected: %s; %s (file kept at %s)",
            self.adapter_name,
            reason,
            "the previous adapter stays active" if kept else "the base model serves this user",
            self.adapter_path,
        )

    def training_stats(self) -> Dict[str, Any]:
        """Plain figures stored in the adapter file: data used, base vs adapter CER, curves, parameters."""
        recorded = [entry for entry in self.train_entries if entry.speed == 1.0]
        return {
            "utterances": len(recorded),
            "audio_seconds": self._audio_seconds,
            "speed_perturbed_copies": len(self.train_entries) - len(recorded),
            "valid_utterances": len(self.valid_entries),
            "cer_before": self.base_result.cer if self.base_result else None,
            "cer_after": self.state.best_cer,
            "epochs": self.state.epoch,
            "steps": self.state.global_step,
            "skipped_steps": self.state.skipped_steps,
            "excluded_utterances": len(self.excluded_utterances),
            "train_seconds": round(time.monotonic() - self._started, 2),
            "trainable_params": self.parameter_stats.get("trainable"),
            "total_params": self.parameter_stats.get("total"),
            "history": list(self.state.history),
            "trunk_cache": dict(self.cache_info),
            "warm_start": dict(self.warm_start_info),
        }
