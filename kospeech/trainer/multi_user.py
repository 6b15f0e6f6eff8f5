"""Train adapters for many users in one process, sharing one frozen base.

The frozen base is shared (one model, and one trunk cache or one trunk forward per step); each user keeps an adapter,
an optimizer, a learning-rate schedule, a held-out set, early stopping and an adapter file of their own
(``{adapter_save_dir}/{user}_adapter.pt``).

How the base is shared:

- with the trunk cache (``cache_trunk``, the default where valid) the base runs once over every user's utterances
  into one cache, each user's in the length-sorted batches that user's own cache would have
  (:func:`~kospeech.trainer.trunk_cache.build_trunk_cache` with ``group_sizes``); the epochs then train each adapter
  on the cached outputs;
- without it (SpecAugment or dither on, or ``cache_trunk=false``) every step draws each active user's next batch, pads
  them into one batch, runs the frozen trunk once over it (no gradient: nothing below the first adapter trains; on the
  CPU in length-sorted chunks of ``batch_size`` rows, see :meth:`MultiUserAdapterTrainer._shared_trunk`) and hands
  each user its group of rows.

Each user's result equals training that user alone with :class:`~kospeech.trainer.adapter_trainer.AdapterTrainer`
(same config and seed, the adapter initialized after ``torch.manual_seed(config.seed)``): bit for bit on a CPU with
the cache and the users' steps in turn (whatever the group size or shard), within float rounding otherwise:
every user has the batches its own sampler draws, its own optimizer and schedule (sized by its own number of
batches), its own early stopping, and its own stream of random numbers (the global RNG state is swapped per user
around each step, so the adapters' dropout masks are those of the run alone). What can differ is only where the
trunk output of a row comes from without the cache, or with the steps side by side: a batch with other users' rows,
which the padding-invariant base makes equal within 1e-5 (float rounding that the warm start's steps can amplify in
single weights).

For ``encoder`` adapters the shared part is the extractor (the cache point). On a GPU the RNN layers above it run
once per step over every active user's batch side by side, each row through its own user's adapters; on a CPU the
users' steps run one after another (``users_side_by_side``): one CPU thread is already compute-bound at one user's
batch, and padding every user's rows to the longest made side-by-side steps about 10% slower.

Thousands of users in one job (:func:`train_user_adapters`): the users stream through in groups of ``group_size``,
one :class:`MultiUserAdapterTrainer` (and one trunk cache, built and released) per group, so memory is bounded by
a group, not by the job; each group's peak memory and cache size are recorded. A user whose manifest or audio fails
is recorded as failed and the others go on. Across machines, a job takes a *shard* of the users (user ``k`` of the
name-sorted list goes to shard ``k % n``, see :func:`shard_users`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from kospeech.checkpoint import load_checkpoint
from kospeech.data.collate import SpeechBatch, collate_speech_batch
from kospeech.data.dataset import SpeechDataset, worker_init_fn
from kospeech.data.features import FeatureConfig
from kospeech.data.manifest import ManifestEntry, read_manifest
from kospeech.data.sampler import BucketBatchSampler, SampleKey
from kospeech.device import resolve_device, torch_threads
from kospeech.errors import KospeechError, TrainingError, TrainingInterrupted, name_list
from kospeech.fileio import atomic_write_json, atomic_write_text
from kospeech.models import AdapterRouter, DeepSpeech2, RowBlock
from kospeech.models.adapter import AdapterModule
from kospeech.models.adapter_manager import AdapterManager, validate_adapter_name
from kospeech.models.utils import unwrap_model
from kospeech.progress import progress_bar
from kospeech.trainer.adapter_trainer import AdapterTrainer
from kospeech.trainer.configs import AdapterTrainConfig, check_num_epochs
from kospeech.trainer.peak_memory import PeakMemory
from kospeech.trainer.trunk_cache import (
    CachedBatch,
    CachedTrunkModel,
    TrunkCache,
    build_trunk_cache,
    cache_point_for,
    spill_folder,
    train_cache_blocker,
    trunk_features,
)
from kospeech.vocabs import Vocabulary

__all__ = [
    "DEFAULT_GROUP_SIZE",
    "MultiUserAdapterTrainer",
    "UserManifests",
    "discover_user_manifests",
    "job_file_name",
    "shard_users",
    "train_user_adapters",
    "users_side_by_side",
]

logger = logging.getLogger(__name__)

DEFAULT_GROUP_SIZE = 32
"""Users trained together (one trunk cache) by :func:`train_user_adapters` unless told otherwise."""

_BYTES_PER_MB = 1024 * 1024

_JOB_FILE = re.compile(r"(config|results|train)(\.shard-\d+-of-\d+)?\.(json|log|yaml)")
"""Names of the job's own files in its output folder, where the users' run folders are too."""


def job_file_name(stem: str, suffix: str, shard: Optional[Tuple[int, int]]) -> str:
    """The name of one of a multi-user job's own files in its output folder: ``{stem}.{suffix}`` for the whole job,
    ``{stem}.shard-{i}-of-{n}.{suffix}`` for shard ``i`` of ``n`` (``stem``: config, results or train; ``suffix``:
    yaml, json or log). No user may have such a name: a user's run folder sits beside these files."""
    name = f"{stem}.{suffix}" if shard is None else f"{stem}.shard-{shard[0]}-of-{shard[1]}.{suffix}"
    if not _JOB_FILE.fullmatch(name):
        raise ValueError(f"{name!r} is not a job file name")
    return name


class _UsersDataset(Dataset):
    """Items of several users' datasets, addressed as ``(user position, key)``; each item also says its user."""

    def __init__(self, datasets: Sequence[SpeechDataset]) -> None:
        self.datasets = list(datasets)

    def __len__(self) -> int:
        return sum(len(dataset) for dataset in self.datasets)

    def __getitem__(self, item: Tuple[int, Union[int, SampleKey]]) -> Tuple[Tensor, Tensor, int]:
        user, key = item
        features, targets = self.datasets[user][key]
        return features, targets, user


def _collate_users(samples: Sequence[Tuple[Tensor, Tensor, int]]) -> Tuple[SpeechBatch, Tensor]:
    """Pad every user's rows into one batch; also returns the (B,) user position of each row."""
    batch = collate_speech_batch([(features, targets) for features, targets, _ in samples])
    return batch, torch.tensor([user for _, _, user in samples], dtype=torch.int64)


class _LockstepSampler(Sampler):
    """Step ``k`` of an epoch is the ``k``-th batch of every active user, rows grouped by user in user order."""

    def __init__(self, samplers: Sequence[BucketBatchSampler]) -> None:
        self.samplers = list(samplers)
        self.active = [True] * len(self.samplers)

    def set_epoch(self, epoch: int) -> None:
        for sampler in self.samplers:
            sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return max((len(sampler) for sampler, on in zip(self.samplers, self.active) if on), default=0)

    def __iter__(self) -> Iterator[List[Tuple[int, Union[int, SampleKey]]]]:
        iterators = [iter(sampler) if on else None for sampler, on in zip(self.samplers, self.active)]
        for _ in range(len(self)):
            rows: List[Tuple[int, Union[int, SampleKey]]] = []
            for user, iterator in enumerate(iterators):
                keys = next(iterator, None) if iterator is not None else None
                if keys is not None:
                    rows.extend((user, key) for key in keys)
            yield rows


def users_side_by_side(config: AdapterTrainConfig, device: torch.device) -> bool:
    """Whether a multi-user step runs the active users' batches as one batch: ``config.users_side_by_side``, or when
    that is ``None`` only on a GPU (one CPU thread is already compute-bound at one user's batch, and side-by-side
    steps measured about 10% slower there: docs/performance.md, section 5)."""
    return device.type != "cpu" if config.users_side_by_side is None else config.users_side_by_side


class MultiUserAdapterTrainer:
    """Adapters for several users trained together on one frozen base (see the module docstring).

    Args:
        config: adapter settings shared by every user; ``adapter_name`` is replaced by each user's name and each
            user's run folder is ``{config.output_dir}/{user}``.
        vocab: the base model's vocabulary.
        feature_config: the base model's feature pipeline.
        users: enrollment utterances per user name (names follow the adapter name rule).
        valid_users: optional validation utterances per user; users without them hold out
            ``config.valid_fraction`` of their enrollment set.
        model_config: architecture record of the base (stored for reference).
        resolved_config: the full job config; each user's ``config.yaml`` is it with that user's ``train`` settings.

    Example:
        >>> users = {"john": john_entries, "mina": mina_entries}
        >>> trainer = MultiUserAdapterTrainer(config, vocab, feature_config, users)
        >>> results = trainer.train(model)   # writes john_adapter.pt and mina_adapter.pt
    """

    def __init__(
        self,
        config: AdapterTrainConfig,
        vocab: Vocabulary,
        feature_config: FeatureConfig,
        users: Mapping[str, Sequence[ManifestEntry]],
        valid_users: Optional[Mapping[str, Sequence[ManifestEntry]]] = None,
        model_config: Optional[Dict[str, Any]] = None,
        resolved_config: Optional[Dict[str, Any]] = None,
    ) -> None:
        if not users:
            raise ValueError("no users to train adapters for")
        valid_users = dict(valid_users or {})
        unknown = sorted(set(valid_users) - set(users))
        if unknown:
            raise ValueError(f"validation sets given for users without enrollment sets: {unknown}")
        self.config = config
        self.vocab = vocab
        self.feature_config = feature_config
        self.trainers: Dict[str, AdapterTrainer] = {}
        self.failed_users: Dict[str, str] = {}
        for name, entries in users.items():
            validate_adapter_name(name)
            user_config = dataclasses.replace(config, adapter_name=name, output_dir=str(Path(config.output_dir) / name))
            user_resolved = {**resolved_config, "train": dataclasses.asdict(user_config)} if resolved_config else None
            try:
                self.trainers[name] = AdapterTrainer(
                    user_config, vocab, feature_config, entries, valid_users.get(name), model_config, user_resolved
                )
            except TrainingError as exc:  # one user's unusable recordings must not cost the others their adapters
                logger.error("user %r is left out: %s", name, exc)
                self.failed_users[name] = str(exc)
        if not self.trainers:
            raise TrainingError(f"no user has usable enrollment audio: {self.failed_users}")
        self.adapters: Dict[str, AdapterModule] = {}
        self.device = resolve_device(config.device)
        self.side_by_side = users_side_by_side(config, self.device)
        """Whether a step runs the users' batches as one batch (else one user after another)."""
        self.loader_workers = next(iter(self.trainers.values())).loader_workers  # every unit has the same settings
        self.cache_seconds = 0.0
        self.cache_mb = 0.0
        """Size of the last shared trunk cache (memory and spilled), in MB."""

    # ------------------------------------------------------------------ setup

    def _shared_cache(
        self, model: DeepSpeech2, point: str, cache_train: bool, batch_size: int
    ) -> Tuple[TrunkCache, Dict[str, Tuple[Optional[List[int]], List[int]]]]:
        """One cache over every user's utterances and each user's keys. Each user's utterances are batched as that
        user's own cache batches them, so that every adapter equals its single-user run bit for bit on a CPU: batches
        mixing users change the cached outputs by float rounding, which the warm start's steps amplified to 0.1 in
        some weights (review K, stop 40)."""
        entries: List[ManifestEntry] = []
        group_sizes: List[int] = []
        keys: Dict[str, Tuple[Optional[List[int]], List[int]]] = {}
        for name, trainer in self.trainers.items():
            first = len(entries)
            train_keys = None
            if cache_train:
                train_keys = list(range(len(entries), len(entries) + len(trainer.train_entries)))
                entries.extend(trainer.train_entries)
            valid_keys = list(range(len(entries), len(entries) + len(trainer.valid_entries)))
            entries.extend(trainer.valid_entries)
            keys[name] = (train_keys, valid_keys)
            group_sizes.append(len(entries) - first)
        started = time.monotonic()
        cache = build_trunk_cache(
            model,
            entries,
            next(iter(self.trainers.values())).feature_extractor.without_dither(),  # dither: held-out sets only
            point=point,
            batch_size=batch_size,
            device=self.device,
            max_mb=self.config.trunk_cache_max_mb,
            spill_dir=spill_folder(self.config.output_dir, self.config.trunk_cache_dir)
            if self.config.trunk_cache_spill
            else None,
            num_workers=self.loader_workers,
            group_sizes=group_sizes,
        )
        self.cache_seconds = time.monotonic() - started
        self.cache_mb = (cache.memory_bytes + cache.disk_bytes) / _BYTES_PER_MB
        logger.info(
            "shared trunk cache for %d users: %s, built in %.1f s",
            len(self.trainers),
            cache.describe(),
            self.cache_seconds,
        )
        return cache, keys

    # ------------------------------------------------------------------ training

    def train(
        self, model: DeepSpeech2, batch_size: Optional[int] = None, num_epochs: Optional[int] = None
    ) -> Dict[str, Dict[str, Any]]:
        """Train every user's adapter; each improvement is saved as ``{adapter_save_dir}/{user}_adapter.pt``.

        Args:
            model: the base DeepSpeech2 (not wrapped); an adapter attached to it is set aside and put back after.
            batch_size: utterances per batch and user (default ``config.batch_size``).
            num_epochs: maximum epochs (default ``config.num_epochs``); each user may stop early.

        Returns:
            Per user: ``adapter_path`` plus the figures of :meth:`AdapterTrainer.training_stats`. The trained
            adapters (best weights) are in ``self.adapters``. A user who trained nothing (no usable utterance, no
            applied update) has ``adapter_path`` ``None`` and an ``error``; no file is written for that user.
        """
        if unwrap_model(model) is not model:
            raise ValueError(f"multi-user training takes the bare DeepSpeech2, got a {type(model).__name__} wrapper")
        config = self.config
        batch_size = batch_size or config.batch_size
        num_epochs = check_num_epochs(config.num_epochs if num_epochs is None else num_epochs)
        model.to(self.device)
        set_aside = model.remove_adapter()
        cache: Optional[TrunkCache] = None
        threads = config.num_threads if self.device.type == "cpu" else torch.get_num_threads()
        with torch_threads(threads):  # the caller's count is back afterwards
            try:
                self.adapters = {name: trainer.new_adapter(model) for name, trainer in self.trainers.items()}
                model.freeze_base_model()
                point = cache_point_for(config.adapter_type)
                blocker = train_cache_blocker(config, self.feature_config)
                cache_train = config.cache_trunk and blocker is None
                if config.cache_trunk and blocker is not None:
                    logger.info(
                        "trunk cache for the held-out sets only: %s; each step runs the trunk once for all users",
                        blocker,
                    )
                keys: Dict[str, Tuple[Optional[List[int]], List[int]]] = {name: (None, []) for name in self.trainers}
                if config.cache_trunk:
                    cache, keys = self._shared_cache(model, point, cache_train, batch_size)
                torch.manual_seed(config.seed)  # the CPU's and every CUDA device's generator
                rng_state = next(iter(self.trainers.values())).own_rng_state()
                for name, trainer in self.trainers.items():
                    adapter = self.adapters[name]
                    trainer.start(
                        model,
                        adapter,
                        batch_size=batch_size,
                        num_epochs=num_epochs,
                        rng_state=rng_state,
                        cached_model=CachedTrunkModel(model, point, adapter),
                        cache=cache,
                        train_keys=keys[name][0],
                        valid_keys=keys[name][1],
                    )
                runs = list(self.trainers.values())
                mixed_loader = None if cache_train else self._mixed_loader(runs)
                self._train_lockstep(model, runs, mixed_loader, point, num_epochs)
                results = {name: trainer.finish() for name, trainer in self.trainers.items()}
                results.update(
                    {name: {"adapter_path": None, "error": error} for name, error in self.failed_users.items()}
                )
                return results
            finally:
                if cache is not None:
                    cache.close()
                if set_aside is not None:
                    model.attach_adapter(set_aside)

    def _mixed_loader(self, runs: Sequence[AdapterTrainer]) -> DataLoader:
        """One loader over every user's training set: each step holds every active user's next batch."""
        samplers = [run.train_loader.batch_sampler for run in runs]
        datasets = [run.train_loader.dataset for run in runs]
        workers = self.loader_workers
        return DataLoader(
            _UsersDataset(datasets),
            batch_sampler=_LockstepSampler(samplers),
            collate_fn=_collate_users,
            num_workers=workers,
            persistent_workers=workers > 0,
            worker_init_fn=worker_init_fn if workers > 0 else None,
            generator=torch.Generator().manual_seed(self.config.seed),
        )

    def _step_batches(
        self,
        model: DeepSpeech2,
        runs: Sequence[AdapterTrainer],
        mixed: Optional[Tuple[SpeechBatch, Tensor]],
        point: str,
        iterators: Dict[str, Iterator],
    ) -> List[Tuple[AdapterTrainer, CachedBatch]]:
        """This step's batch of every active user: from the cache, or split from one shared trunk forward.

        ``runs`` are all users in the order of the mixed loader's user positions; finished users are skipped.
        """
        if mixed is None:
            pairs = []
            for run in runs:
                batch = next(iterators[run.adapter_name], None) if not run.done else None
                if batch is not None:
                    pairs.append((run, batch))
            return pairs
        batch, users = mixed
        with torch.no_grad():
            features, lengths = self._shared_trunk(model, batch, point)  # (B, T', F), (B,)
        lengths = lengths.cpu()
        pairs = []
        for position, run in enumerate(runs):
            rows = (users == position).nonzero(as_tuple=True)[0]
            if run.done or rows.numel() == 0:
                continue
            frames = int(lengths[rows].max())
            labels = int(batch.target_lengths[rows].max())
            pairs.append(
                (
                    run,
                    CachedBatch(
                        inputs=features[rows.to(features.device), :frames],  # (n, T'_u, F): the user's own padding
                        input_lengths=lengths[rows],
                        targets=batch.targets[rows, :labels],
                        target_lengths=batch.target_lengths[rows],
                    ),
                )
            )
        return pairs

    def _step_together(self, shared: CachedTrunkModel, pairs: Sequence[Tuple[AdapterTrainer, CachedBatch]]) -> None:
        """One optimizer step of every user in ``pairs``, their batches side by side through the frozen layers.

        The users' batches (each padded to its own longest row) are stacked into one batch padded to the longest of
        all; the frozen layers above the cache point run once over it, and each user's rows go through that user's
        adapter, cut to the user's own frames and inside the user's random stream (:meth:`AdapterRouter.side_by_side`),
        so every adapter sees and draws what it would alone. Each user's loss is its own; their sum is
        back-propagated once (the adapters share no parameter, so each gets exactly its own gradient), then every
        user takes its own update (clipping, optimizer, schedule).

        Args:
            shared: the model above the cache point, without an adapter of its own.
            pairs: this step's (unit, batch) of every active user.
        """
        if not pairs:
            return
        blocks = [
            RowBlock(self.adapters[run.adapter_name], batch.inputs.size(0), batch.inputs.size(1), run.random_stream)
            for run, batch in pairs
        ]
        frames = max(block.frames for block in blocks)
        inputs = torch.cat(
            [F.pad(batch.inputs.to(self.device), (0, 0, 0, frames - batch.inputs.size(1))) for _, batch in pairs]
        )  # (sum n_u, T'_max, F)
        lengths = torch.cat([batch.input_lengths for _, batch in pairs])
        log_probs, lengths = shared(inputs, lengths, router=AdapterRouter.side_by_side(blocks))  # (sum n_u, T', C)
        losses, start = [], 0
        for (run, batch), block in zip(pairs, blocks):
            rows = slice(start, start + block.num_rows)
            start += block.num_rows
            loss = run.step_loss(log_probs[rows, : block.frames], lengths[rows], batch)
            if loss is not None:
                losses.append(loss)
        if losses:
            torch.stack(losses).sum().backward()
        for run, _ in pairs:
            run.finish_step()

    def _shared_trunk(self, model: DeepSpeech2, batch: SpeechBatch, point: str) -> Tuple[Tensor, Tensor]:
        """The frozen trunk's output at ``point`` for every row of a mixed-user batch (call without gradient).

        On a GPU one forward over the whole batch. On the CPU the rows go through in length-sorted chunks of
        ``batch_size``: there the convolutions cost what every row padded to the step's longest row costs, which is
        more than one big batch saves. Each row's output is the same either way (the base is padding-invariant).

        Returns:
            features: (B, ceil(T / 2), F), zero beyond each row's frames.
            lengths: (B,) int64 output frames per row.
        """
        inputs, input_lengths = batch.inputs.to(self.device), batch.input_lengths.to(self.device)
        if self.device.type != "cpu":
            return trunk_features(model, inputs, input_lengths, point)
        chunk_size = self.config.batch_size
        output_frames = int(model.output_lengths(torch.tensor([inputs.size(1)]))[0])
        features = inputs.new_zeros(inputs.size(0), output_frames, model.point_dim(model.cache_layer(point)))
        lengths = torch.zeros_like(input_lengths)
        order = torch.argsort(batch.input_lengths, descending=True)
        for start in range(0, order.numel(), chunk_size):
            rows = order[start : start + chunk_size]
            frames = int(input_lengths[rows].max())
            chunk, chunk_lengths = trunk_features(model, inputs[rows, :frames], input_lengths[rows], point)
            features[rows, : chunk.size(1)] = chunk
            lengths[rows] = chunk_lengths
        return features, lengths

    def _train_lockstep(
        self,
        model: DeepSpeech2,
        runs: List[AdapterTrainer],
        mixed_loader: Optional[DataLoader],
        point: str,
        num_epochs: int,
    ) -> None:
        """Every user's epochs, one step of each active user at a time (side by side or in turn), until each stops
        early, runs out of epochs or has spent ``config.max_minutes`` training: each user's own time, its steps and
        validations (a side-by-side step counts whole for each of its users). A user trained alone counts its steps
        only, so under the same budget it may run a little longer."""
        budget = self.config.max_minutes * 60 if self.config.max_minutes else None
        spent = {run.adapter_name: 0.0 for run in runs}
        shared = CachedTrunkModel(model, point)
        for epoch in range(num_epochs):
            active = [run for run in runs if not run.done]
            if not active:
                break
            for run in active:
                run.start_epoch(epoch)
            iterators = {run.adapter_name: iter(run.train_loader) for run in active} if mixed_loader is None else {}
            if mixed_loader is not None:
                mixed_loader.batch_sampler.active = [not run.done for run in runs]
                mixed_loader.batch_sampler.set_epoch(epoch)
                steps: Iterator = iter(mixed_loader)
                total = len(mixed_loader.batch_sampler)
            else:
                total = max(len(run.train_loader) for run in active)
                steps = iter([None] * total)
            for mixed in progress_bar(steps, total=total, desc=f"epoch {epoch + 1}/{num_epochs} ({len(active)} users)"):
                pairs = self._step_batches(model, runs, mixed, point, iterators)
                for together in [pairs] if self.side_by_side else [[pair] for pair in pairs]:
                    began = time.monotonic()
                    self._step_together(shared, together)
                    seconds = time.monotonic() - began
                    for run, _ in together:
                        spent[run.adapter_name] += seconds
                for run, _ in pairs:
                    if budget is not None and spent[run.adapter_name] >= budget:
                        logger.info(
                            "user %r: time budget of %.1f min reached", run.adapter_name, self.config.max_minutes
                        )
                        run.end_epoch(completed=False)
                        run.done = True  # its partial epoch is recorded; it takes no further step
                if all(run.done for run in active):
                    break
            for run in active:
                if not run.done:
                    began = time.monotonic()
                    run.end_epoch()
                    spent[run.adapter_name] += time.monotonic() - began


@dataclass
class UserManifests:
    """A user's manifests found by :func:`discover_user_manifests`, or why the entry cannot be used (``problem``: the
    job fails that user alone and trains the others)."""

    enroll: Path
    valid: Optional[Path] = None
    problem: Optional[str] = None


def discover_user_manifests(users_dir: Union[str, Path]) -> Dict[str, UserManifests]:
    """Find one enrollment manifest per user in a folder.

    Two layouts are recognized (they may be mixed): ``{users_dir}/{user}.tsv`` (``.TSV`` too), and
    ``{users_dir}/{user}/enroll.tsv`` with an optional ``{users_dir}/{user}/valid.tsv`` (the layout of the built-in
    corpus' ``users/`` folder). Hidden entries (names starting with ``.``), other files and folders holding no ``.tsv``
    at all (the users' audio, ``lost+found``) are skipped, each with an INFO line. An entry that names a user but
    cannot be used is returned with its ``problem``, so that the job reports it and trains the others: a name that is
    not a valid adapter name, a user in both layouts, a folder with manifests but no ``enroll.tsv``, a ``.tsv`` link
    to nothing, and names that differ only in case (their adapter files would be one file on a case-insensitive file
    system, as shared folders often are).

    Returns:
        Manifests per user name, sorted by name.

    Raises:
        FileNotFoundError: the folder does not exist or holds no user entry.
    """
    folder = Path(users_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"users folder {folder} does not exist")
    found: Dict[str, UserManifests] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):  # hidden: editors' lock files, macOS' ._ resource forks
            continue
        if path.suffix.lower() == ".tsv" and not path.is_dir():
            name, manifests = path.stem, UserManifests(path)
            if not path.is_file():
                manifests.problem = f"{path} is not a readable file (a link to nothing?)"
        elif path.is_dir() and not any(child.suffix.lower() == ".tsv" for child in path.iterdir()):
            logger.info("skipping %s: a folder without manifests is no user", path)
            continue
        elif path.is_dir():
            valid = path / "valid.tsv"
            name, manifests = path.name, UserManifests(path / "enroll.tsv", valid if valid.is_file() else None)
            if not manifests.enroll.is_file():
                manifests.problem = f"{path} holds manifests but no enroll.tsv"
        else:
            logger.info("skipping %s: not a .tsv manifest", path)
            continue
        try:
            validate_adapter_name(name)
        except ValueError as exc:
            manifests.problem = f"{path}: the user name {name!r} is not a valid adapter name: {exc}"
        if name in found:
            manifests.problem = (
                f"user {name!r} has two enrollment manifests: {found[name].enroll} and {manifests.enroll}"
            )
        found[name] = manifests
    for name, manifests in found.items():
        alike = sorted(other for other in found if other.lower() == name.lower())
        if len(alike) > 1:
            manifests.problem = (
                f"user names {alike} differ only in case: their adapter files would be one file on a case-insensitive "
                "file system; rename all but one"
            )
    if not found:
        raise FileNotFoundError(
            f"no user manifests in {folder}: expected <user>.tsv files or <user>/enroll.tsv folders"
        )
    return dict(sorted(found.items()))


def shard_users(names: Sequence[str], index: int, count: int) -> List[str]:
    """The users of shard ``index`` of ``count``: user ``k`` of the name-sorted list goes to shard ``k % count``.

    Every user is in exactly one shard, the same one on every machine (the assignment depends on the names only),
    and the shards' sizes differ by at most one.

    Raises:
        ValueError: ``count < 1`` or ``index`` outside ``[0, count)``.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"the number of shards must be a positive int, got {count!r}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise ValueError(f"shard index must lie in [0, {count}), got {index!r}")
    return [name for position, name in enumerate(sorted(names)) if position % count == index]


def _failed(error: str) -> Dict[str, Any]:
    return {"adapter_path": None, "error": error}


def _train_group(
    config: AdapterTrainConfig,
    checkpoint: Any,
    model: DeepSpeech2,
    manifests: Mapping[str, UserManifests],
    resolved_config: Dict[str, Any],
    active_before: Mapping[str, Optional[str]],
) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, float]]:
    """Train one group of users together; returns per-user figures and the group's ``cache_mb`` and ``cache_seconds``.

    A user whose manifests cannot be read is failed alone. When the group's training itself fails on some user's
    data (e.g. audio unreadable past its header, or a recording so long that the device runs out of memory), each
    user of the group is trained again alone, so only that user fails. A user who fails has the adapter of before
    the job active again (``active_before``: :meth:`AdapterManager.active_digest` per user, where it could be read):
    the group's steps may have saved an improvement over it before the failure.
    """
    per_user, cache = _train_together(config, checkpoint, model, manifests, resolved_config)
    for name, figures in per_user.items():
        if figures["adapter_path"] is not None or name not in active_before:
            continue
        try:
            if AdapterManager.reinstate(config.adapter_save_dir, name, active_before[name]):
                logger.warning("user %r failed: the adapter active before this job is active again", name)
        except (OSError, ValueError) as exc:  # the other users' results must still be written
            logger.error("user %r failed, and the adapter active before this job could not be put back: %s", name, exc)
    return per_user, cache


def _active_digests(save_dir: Union[str, Path], names: Sequence[str]) -> Dict[str, Optional[str]]:
    """:meth:`AdapterManager.active_digest` of each user whose active file can be read (the others are left out)."""
    digests: Dict[str, Optional[str]] = {}
    for name in names:
        try:
            digests[name] = AdapterManager.active_digest(save_dir, name)
        except (OSError, ValueError) as exc:
            logger.warning(
                "user %r: the active adapter cannot be read (%s); it is not put back should they fail", name, exc
            )
    return digests


def _train_together(
    config: AdapterTrainConfig,
    checkpoint: Any,
    model: DeepSpeech2,
    manifests: Mapping[str, UserManifests],
    resolved_config: Dict[str, Any],
) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, float]]:
    """:func:`_train_group`'s training, the active adapters of failed users as the run left them."""
    vocab = checkpoint.vocab
    per_user: Dict[str, Dict[str, Any]] = {}
    enroll: Dict[str, List[ManifestEntry]] = {}
    valid: Dict[str, List[ManifestEntry]] = {}
    for name, item in manifests.items():
        try:
            enroll[name] = read_manifest(item.enroll, vocab)
            if item.valid is not None:
                valid[name] = read_manifest(item.valid, vocab)
        except (KospeechError, OSError) as exc:
            logger.error("user %r is left out: %s", name, exc)
            enroll.pop(name, None)
            per_user[name] = _failed(str(exc))
    cache = {"cache_mb": 0.0, "cache_seconds": 0.0}
    if not enroll:
        return per_user, cache
    try:
        trainer = MultiUserAdapterTrainer(
            config, vocab, checkpoint.feature_config, enroll, valid, checkpoint.model_config, resolved_config
        )
        per_user.update(trainer.train(model))
        return per_user, {"cache_mb": trainer.cache_mb, "cache_seconds": trainer.cache_seconds}
    except TrainingInterrupted:
        raise
    except (KospeechError, OSError, RuntimeError, MemoryError) as exc:  # RuntimeError: e.g. CUDA out of memory
        if len(enroll) == 1:
            logger.error("user %r: no adapter: %s", next(iter(enroll)), exc)
            per_user.update({name: _failed(str(exc)) for name in enroll})
            return per_user, cache
        logger.error("a group of %d users failed (%s); training each of them alone", len(enroll), exc)
    for name in enroll:
        figures, user_cache = _train_together(config, checkpoint, model, {name: manifests[name]}, resolved_config)
        per_user.update(figures)
        cache = {
            "cache_mb": max(cache["cache_mb"], user_cache["cache_mb"]),
            "cache_seconds": cache["cache_seconds"] + user_cache["cache_seconds"],
        }
    return per_user, cache


_RESUME_NEUTRAL_SETTINGS = ("output_dir", "num_workers", "num_threads", "log_every", "device")
"""Settings a resumed run may change: where the run's logs go and how fast it runs, not what its adapters are."""


def _adapter_settings(config: AdapterTrainConfig) -> Dict[str, Any]:
    """The settings that decide a job's adapters, as its results file records them (JSON types)."""
    settings = dataclasses.asdict(config)
    return json.loads(
        json.dumps({key: value for key, value in settings.items() if key not in _RESUME_NEUTRAL_SETTINGS})
    )


def _finished_before(
    results_file: Path,
    config: AdapterTrainConfig,
    base_fingerprint: str,
    users_dir: Path,
    this_run: Sequence[str],
    names: Sequence[str],
) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, Optional[str]]]:
    """The figures of the users among ``names`` that an earlier run's ``results_file`` lists with an adapter whose
    file is still there (marked ``resumed``), and the ``active_before`` digests that run recorded (the adapters active
    before it, which its groups may have replaced before it was killed); nothing when there is no such file.

    Raises:
        ValueError: the file is not a results file; its run had another base (path or weights), users folder or
            other settings; or it lists users that this run (``this_run``: its ``--users`` and shard) leaves out,
            whom the results this run writes would drop, so that a later resume would train them again.
    """
    if not results_file.is_file():
        logger.info("nothing to resume: %s does not exist", results_file)
        return {}, {}
    try:
        earlier = json.loads(results_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{results_file} cannot be resumed from: it is not a results file ({exc})") from exc
    if not isinstance(earlier, dict) or not isinstance(earlier.get("users"), dict):
        raise ValueError(f"{results_file} cannot be resumed from: it is not a results file (no 'users' object)")
    recorded = {
        "base_model_path": str(config.base_model_path),
        "adapter_save_dir": str(config.adapter_save_dir),
        "base_fingerprint": base_fingerprint,
        "users_dir": str(users_dir),
    }
    for key, value in recorded.items():
        if earlier.get(key) != value:
            raise ValueError(
                f"{results_file} is from a run with {key} {earlier.get(key)!r}, not {value!r}: "
                "run without resume, or with another output folder"
            )
    settings, before = _adapter_settings(config), earlier.get("adapter_settings") or {}
    changed = sorted(key for key in settings.keys() | before.keys() if settings.get(key) != before.get(key))
    if changed:
        differences = ", ".join(f"{key}: {before.get(key)!r} -> {settings.get(key)!r}" for key in changed)
        raise ValueError(
            f"{results_file} is from a run with other settings ({differences}): "
            "run without resume, or with another output folder"
        )
    left_out = sorted(set(earlier["users"]) - set(this_run))
    if left_out:
        raise ValueError(
            f"{results_file} lists users this run leaves out ({name_list(left_out)}): its results would drop them, "
            "and a later resume would train them again; resume with the same --users (or none), or use another "
            "--output-dir"
        )
    finished = {
        name: {**figures, "resumed": True}
        for name, figures in earlier["users"].items()
        if name in names and figures.get("adapter_path") and Path(figures["adapter_path"]).is_file()
    }
    logger.info("resuming %s: %d of %d users already have their adapter", results_file, len(finished), len(names))
    recorded_before = earlier.get("active_before") or {}
    active_before = {
        name: digest
        for name, digest in recorded_before.items()
        if name in names and name not in finished and (digest is None or isinstance(digest, str))
    }
    return finished, active_before


def train_user_adapters(
    config: AdapterTrainConfig,
    users_dir: Union[str, Path],
    users: Optional[Sequence[str]] = None,
    *,
    group_size: int = DEFAULT_GROUP_SIZE,
    shard: Optional[Tuple[int, int]] = None,
    resume: bool = False,
) -> Dict[str, Any]:
    """Train one adapter per user found in ``users_dir`` on the base ``config.base_model_path``, in one process.

    The users (sorted by name) go through in groups of ``group_size``: each group is one
    :class:`MultiUserAdapterTrainer` with its own trunk cache, released before the next group starts, so the job's
    memory is that of one group however many users it has. Each user's adapter is the one it would get alone, in any
    group.

    Args:
        config: shared adapter settings (``base_model_path``, ``adapter_save_dir``, ``output_dir``, ...).
        users_dir: folder of per-user manifests (see :func:`discover_user_manifests`).
        users: train only these users (default: all found).
        group_size: users trained together (one trunk cache).
        shard: ``(index, count)``: train only shard ``index`` of ``count`` (see :func:`shard_users`); ``None``: all.
        resume: keep the users that the results file of an earlier run of this job (same output folder and shard)
            lists with an adapter whose file is still there, marked ``resumed``; train only the others (a job killed
            mid-way goes on where it stopped). The earlier run must have had the same base (path and weights),
            adapter folder and adapter settings (all but ``output_dir``, ``num_workers``, ``num_threads``,
            ``log_every`` and ``device``).

    Returns:
        ``users`` (per-user figures and adapter paths), ``failed_users`` (names of users without an adapter: their
        manifests or audio failed, no update was applied (see :meth:`MultiUserAdapterTrainer.train`), the entry in
        ``users_dir`` cannot be used (see :func:`discover_user_manifests`), or the name is one of the job's own files,
        see :func:`job_file_name`),
        ``rejected_users`` (users whose new adapter is no better than the base on their held-out utterances, so it is
        not served: see :class:`AdapterTrainer`), ``train_seconds``, ``cache_seconds``, ``shard``, ``group_size``,
        ``users_side_by_side`` (how the steps ran, see :func:`users_side_by_side`) and ``groups``: per group its
        ``users``, ``seconds``, ``cache_mb`` (its trunk cache, memory and spilled) and its peak memory (see
        :class:`~kospeech.trainer.peak_memory.PeakMemory`): ``peak_rss_mb`` (this process; ``peak_rss_since_start``
        where the kernel cannot reset that record), ``workers_peak_mb`` (what the DataLoader worker processes add)
        and ``gpu_peak_mb`` (CUDA only, else null); ``active_before`` (per user trained, the SHA-256 of the adapter
        file active before the job, or null for none: what a user who fails gets back, also after ``resume``); and
        ``complete``. Written to
        ``{config.output_dir}/results.json`` (``results.shard-{index}-of-{count}.json`` for a shard) with
        ``complete: false`` before the first group (an earlier run's file is never left to be resumed from) and after
        every group (a crash keeps the groups done), and at the end with ``complete: true``; with ``base_fingerprint``
        and ``adapter_settings``, which a resumed run must match. The
        job's resolved config goes to ``config.yaml`` (``config.shard-{index}-of-{count}.yaml``) beside it, each user's
        to the user's run folder.

    Raises:
        ValueError: ``group_size < 1``, a bad shard, ``users`` empty or naming a user without a manifest, or ``resume``
            from a file that is not a results file, or after a run with another base, adapter folder or settings.
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    manifests = discover_user_manifests(users_dir)
    if users is not None:
        if not users:
            raise ValueError("the list of users to train is empty")
        missing = sorted(set(users) - set(manifests))
        if missing:
            raise ValueError(f"users {name_list(missing)} have no manifest in {users_dir}")
        manifests = {name: manifests[name] for name in users}
    names = sorted(manifests) if shard is None else shard_users(list(manifests), *shard)
    this_run = list(names)
    checkpoint = load_checkpoint(config.base_model_path)
    torch.manual_seed(config.seed)
    model_device = resolve_device(config.device)
    model = checkpoint.build_model(device=model_device)
    output_dir = Path(config.output_dir)
    shard_record = None if shard is None else {"index": shard[0], "count": shard[1]}
    resolved_config = {"train": dataclasses.asdict(config), "users_dir": str(users_dir), "shard": shard_record}
    config_yaml = OmegaConf.to_yaml(OmegaConf.create(resolved_config))
    atomic_write_text(output_dir / job_file_name("config", "yaml", shard), config_yaml)
    if shard is not None:
        logger.info("shard %d of %d: %d of %d users", shard[0], shard[1], len(names), len(manifests))
    started = time.monotonic()
    per_user: Dict[str, Dict[str, Any]] = {}
    for name in names:
        problem = manifests[name].problem
        if problem is None and _JOB_FILE.fullmatch(name):
            problem = f"the user name {name!r} is the name of one of the job's own files in {output_dir}"
        if problem is not None:
            per_user[name] = _failed(problem)
            logger.error("user %r is left out: %s", name, problem)
    names = [name for name in names if name not in per_user]
    base_fingerprint = model.base_fingerprint()
    active_before: Dict[str, Optional[str]] = {}  # per user, the digest of the adapter active before the job
    if resume:
        results_file = output_dir / job_file_name("results", "json", shard)
        finished, active_before = _finished_before(results_file, config, base_fingerprint, users_dir, this_run, names)
        per_user.update(finished)
        names = [name for name in names if name not in per_user]
    groups: List[Dict[str, Any]] = []

    def write_results(complete: bool) -> Dict[str, Any]:
        results = {
            "complete": complete,
            "base_model_path": str(config.base_model_path),
            "users_dir": str(users_dir),
            "adapter_save_dir": str(config.adapter_save_dir),
            "base_fingerprint": base_fingerprint,
            "adapter_settings": _adapter_settings(config),
            "train_seconds": round(time.monotonic() - started, 2),
            "cache_seconds": round(sum(group["cache_seconds"] for group in groups), 2),
            "shard": shard_record,
            "group_size": group_size,
            "users_side_by_side": users_side_by_side(config, model_device),
            "groups": groups,
            "failed_users": sorted(name for name, figures in per_user.items() if figures["adapter_path"] is None),
            "rejected_users": sorted(name for name, figures in per_user.items() if figures.get("rejected")),
            "users": per_user,
            "active_before": active_before,
        }
        atomic_write_json(output_dir / job_file_name("results", "json", shard), results)
        return results

    # at once: a run killed in its first group must not leave an earlier run's results to be resumed from
    write_results(complete=False)
    for start in range(0, len(names), group_size):
        group = names[start : start + group_size]
        group_started = time.monotonic()
        unread = [name for name in group if name not in active_before]  # a resumed run keeps the earlier run's
        active_before.update(_active_digests(config.adapter_save_dir, unread))
        write_results(complete=False)  # before any of the group's saves: a resumed run puts back the same adapters
        with PeakMemory(model_device) as memory:
            figures, cache = _train_group(
                config,
                checkpoint,
                model,
                {name: manifests[name] for name in group},
                resolved_config,
                {name: active_before[name] for name in group if name in active_before},
            )
        per_user.update(figures)
        groups.append(
            {
                "users": group,
                "seconds": round(time.monotonic() - group_started, 2),
                "cache_mb": round(cache["cache_mb"], 2),
                "cache_seconds": round(cache["cache_seconds"], 2),
                **memory.figures(),
            }
        )
        logger.info(
            "group %d/%d (%d users) done in %.1f s: trunk cache %.1f MB, peak RSS %.0f MB, workers %s MB, GPU %s MB",
            len(groups),
            -(-len(names) // group_size),
            len(group),
            groups[-1]["seconds"],
            cache["cache_mb"],
            groups[-1]["peak_rss_mb"],
            groups[-1]["workers_peak_mb"],
            groups[-1]["gpu_peak_mb"],
        )
        write_results(complete=False)  # the groups done so far survive a crash of a later one
    return write_results(complete=True)
