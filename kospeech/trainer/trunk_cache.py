"""Cached-trunk adapter training: run the frozen base once per utterance, then train only the adapter.

While an adapter trains, everything below it is frozen and in eval mode, so the base computes the same value for
an utterance in every epoch. This module computes that value once (eval mode, ``torch.inference_mode``), keeps it
per utterance (in memory up to a bound, then on disk, or refuses), and serves padded batches of it so that each
epoch runs only the part of the model above the cache point.

Cache points (the output of the last frozen computation before the first adapter) come from each adapter type's
registry entry (:class:`~kospeech.models.adapter.CachePoint`):

- adapters placed at the head (``head``, ``residual_head``) read the trunk output, so the cache holds the unadapted
  trunk's output (T', H * num_directions) (:data:`RNN_OUTPUT`).
- adapters placed after the RNN layers start after RNN layer 0, whose output does not depend on any adapter; the
  cache holds that layer's output (T', H * num_directions) (:data:`FIRST_RNN_LAYER`). Each step still runs RNN layers
  1..N-1 (frozen, but the gradient must flow through them to the earlier adapters).
- ``encoder`` adapters also adapt the extractor's output, so the cache holds that (T', F_conv)
  (:data:`EXTRACTOR`) and each step runs every RNN layer.

All are ranges of the model's one trunk loop (:meth:`DeepSpeech2.run`): the cache is ``run(..., to_layer=k)``
without adapters, a step continues with ``run(..., from_layer=k, router=...)``.

Batches come from the same :class:`~kospeech.data.sampler.BucketBatchSampler` (same lengths, batch size, seed and
epoch) as the uncached loader, so they hold the same utterances in the same order and the adapter's dropout draws
the same random numbers: the loss trajectory matches the uncached path within float rounding.

The cache is valid only while the features of an utterance do not change between epochs: silence padding,
SpecAugment and dither draw new random values every epoch, so :func:`train_cache_blocker` rules caching out for the
training set then (the held-out set, decoded without augmentation, can still be cached).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from itertools import accumulate
from pathlib import Path
from typing import Dict, Iterator, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from kospeech.data.collate import PAD_ID
from kospeech.data.dataset import build_dataloader
from kospeech.data.features import FeatureConfig, FeatureExtractor
from kospeech.data.manifest import ManifestEntry
from kospeech.data.sampler import BucketBatchSampler
from kospeech.errors import TrunkCacheTooLargeError
from kospeech.fileio import atomic_torch_save, safe_torch_load
from kospeech.models import AdapterRouter, CachePoint, DeepSpeech2, registered_adapter
from kospeech.trainer.configs import TrainConfig

__all__ = [
    "RNN_OUTPUT",
    "FIRST_RNN_LAYER",
    "EXTRACTOR",
    "TrunkCacheTooLargeError",
    "CachedBatch",
    "TrunkCache",
    "CachedFeatureLoader",
    "CachedTrunkModel",
    "cache_point_for",
    "trunk_features",
    "train_cache_blocker",
    "estimate_cache_bytes",
    "build_trunk_cache",
    "spill_folder",
]

logger = logging.getLogger(__name__)

RNN_OUTPUT = CachePoint.TRUNK_OUTPUT
"""Cache point of head-placed adapters: the output of the whole (unadapted) trunk."""
FIRST_RNN_LAYER = CachePoint.FIRST_RNN_LAYER
"""Cache point of layer-placed adapters: the output of RNN layer 0, which feeds the first adapter."""
EXTRACTOR = CachePoint.EXTRACTOR
"""Cache point of adapters that start on the extractor's output (``encoder``)."""

_BYTES_PER_MB = 1 << 20


class CachedBatch(NamedTuple):
    """A padded batch of cached trunk outputs, batch-major (the field names follow ``SpeechBatch``).

    Attributes:
        inputs: (B, T', F) float trunk outputs at the cache point, zero after each row's valid frames.
        input_lengths: (B,) int64 valid frames T'_i per row (already after the conv stride), on the CPU.
        targets: (B, L) int64 label ids, padded with ``PAD_ID``.
        target_lengths: (B,) int64 valid labels per row.
    """

    inputs: Tensor
    input_lengths: Tensor
    targets: Tensor
    target_lengths: Tensor


def cache_point_for(adapter_type: str) -> CachePoint:
    """The cache point of an adapter type, from its registry entry."""
    return registered_adapter(adapter_type).cache_point


def _check_point(point: str) -> CachePoint:
    try:
        return CachePoint(point)
    except ValueError as exc:
        choices = [item.value for item in CachePoint]
        raise ValueError(f"unknown cache point {point!r}; choose one of {choices}") from exc


def trunk_features(model: DeepSpeech2, inputs: Tensor, input_lengths: Tensor, point: str) -> Tuple[Tensor, Tensor]:
    """The frozen base's output at a cache point, for a padded batch (adapters never take part).

    Call it in eval mode (and under ``torch.inference_mode`` / ``no_grad``): it is what every training epoch would
    recompute.

    Inputs:
        inputs: (B, T, D) float padded features.
        input_lengths: (B,) int64 valid frames per row.

    Returns:
        features: (B, T', F) with F the point's width (:meth:`DeepSpeech2.point_dim`), zero at padded frames.
        output_lengths: (B,) int64 on ``input_lengths.device``, ``ceil(L / 2)``.
    """
    return model.run(inputs, input_lengths, to_layer=model.cache_layer(_check_point(point)))


def train_cache_blocker(train_config: TrainConfig, feature_config: FeatureConfig) -> Optional[str]:
    """Why the training features cannot be cached (``None`` when they can).

    Silence padding, SpecAugment masks and dither are drawn anew for every (utterance, epoch): the frozen trunk
    then sees different inputs every epoch, and a cache would train on the first epoch's draw forever.
    """
    if train_config.silence_padding:
        return "silence padding draws new silences every epoch, before the trunk"
    if train_config.spec_augment:
        return "SpecAugment draws new masks every epoch, before the trunk"
    if feature_config.dither > 0:
        return f"dither={feature_config.dither} adds new noise every epoch, before the trunk"
    return None


def estimate_cache_bytes(durations: Sequence[float], feature_config: FeatureConfig, feature_dim: int) -> int:
    """Bytes that float32 cached trunk outputs of utterances with these durations take (a close estimate).

    Args:
        durations: seconds of audio per utterance.
        feature_config: the feature pipeline (frame length and shift).
        feature_dim: F, features per cached frame.

    Returns:
        ``sum(ceil(T_i / 2)) * F * 4`` with ``T_i`` the feature frames of utterance i.
    """
    total_frames = 0
    for seconds in durations:
        samples = int(round(seconds * feature_config.sample_rate))
        frames = max(0, 1 + (samples - feature_config.win_length) // feature_config.hop_length)
        total_frames += (frames + 1) // 2
    return total_frames * feature_dim * 4


class TrunkCache:
    """Per-utterance trunk outputs with their targets and durations, in memory up to a bound, then on disk.

    Args:
        point: the cache point (:data:`RNN_OUTPUT`, :data:`FIRST_RNN_LAYER` or :data:`EXTRACTOR`).
        max_bytes: bytes of features kept in memory; beyond it entries go to disk or are refused.
        spill_dir: a folder under which a private sub-folder receives spilled entries; ``None`` refuses to go over
            ``max_bytes`` (:class:`TrunkCacheTooLargeError`).

    Keys are integers chosen by the caller (positions in the list of entries the cache was built from).
    Call :meth:`close` (or use the cache as a context manager) to delete spilled files.
    """

    def __init__(self, point: str, max_bytes: int, spill_dir: Optional[Union[str, Path]] = None) -> None:
        point = _check_point(point)
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.point = point
        self.max_bytes = int(max_bytes)
        self.spill_root = Path(spill_dir) if spill_dir is not None else None
        self._spill_dir: Optional[Path] = None
        self._memory: Dict[int, Tensor] = {}
        self._on_disk: Dict[int, Path] = {}
        self._targets: Dict[int, Tensor] = {}
        self._durations: Dict[int, float] = {}
        self.memory_bytes = 0
        self.disk_bytes = 0
        self.feature_dim: Optional[int] = None

    def __enter__(self) -> TrunkCache:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._targets)

    def __contains__(self, key: object) -> bool:
        return key in self._targets

    @property
    def num_spilled(self) -> int:
        """Entries kept on disk."""
        return len(self._on_disk)

    def add(self, key: int, features: Tensor, targets: Tensor, duration: float) -> None:
        """Store one utterance.

        Args:
            key: the utterance's key (an int not yet in the cache).
            features: (T'_i, F) float trunk output of the utterance's valid frames (a normal tensor, not an
                inference tensor).
            targets: (L_i,) int64 label ids.
            duration: seconds of audio (for length bucketing).

        Raises:
            TrunkCacheTooLargeError: the entry would exceed ``max_bytes`` and there is no spill folder.
        """
        if key in self._targets:
            raise ValueError(f"trunk cache key {key} is already stored")
        if features.dim() != 2:
            raise ValueError(f"cached features must be (T', F), got shape {tuple(features.shape)}")
        if self.feature_dim is None:
            self.feature_dim = int(features.size(1))
        size = features.numel() * features.element_size()
        if self.memory_bytes + size <= self.max_bytes:
            self._memory[key] = features
            self.memory_bytes += size
        elif self.spill_root is not None:
            self._on_disk[key] = self._spill(key, features)
            self.disk_bytes += size
        else:
            raise TrunkCacheTooLargeError(
                f"trunk cache: {(self.memory_bytes + size) / _BYTES_PER_MB:.1f} MB of features exceed the bound of "
                f"{self.max_bytes / _BYTES_PER_MB:.1f} MB (trunk_cache_max_mb); raise the bound, set "
                "trunk_cache_spill=true to keep the rest on disk, or cache_trunk=false to recompute the trunk"
            )
        self._targets[key] = targets
        self._durations[key] = float(duration)

    def _spill(self, key: int, features: Tensor) -> Path:
        if self._spill_dir is None:
            self.spill_root.mkdir(parents=True, exist_ok=True)
            self._spill_dir = Path(tempfile.mkdtemp(prefix="trunk_cache_", dir=self.spill_root))
            logger.info("trunk cache over %.1f MB: spilling to %s", self.max_bytes / _BYTES_PER_MB, self._spill_dir)
        return atomic_torch_save({"features": features.detach().cpu()}, self._spill_dir / f"{key}.pt")

    def features(self, key: int, device: Optional[torch.device] = None) -> Tensor:
        """The (T'_i, F) features of ``key`` (read back from disk when spilled), on ``device`` if given."""
        if key in self._memory:
            features = self._memory[key]
        elif key in self._on_disk:
            features = safe_torch_load(self._on_disk[key], what="trunk cache entry")["features"]
        else:
            raise KeyError(f"trunk cache has no key {key} ({len(self)} entries)")
        return features if device is None else features.to(device)

    def targets(self, key: int) -> Tensor:
        """The (L_i,) int64 label ids of ``key``."""
        return self._targets[key]

    def duration(self, key: int) -> float:
        """Seconds of audio of ``key``."""
        return self._durations[key]

    def batch(self, keys: Sequence[int], device: Optional[torch.device] = None) -> CachedBatch:
        """Pad the entries of ``keys`` (in that order) into a :class:`CachedBatch` (features on ``device``)."""
        features = [self.features(key, device) for key in keys]
        targets = [self._targets[key] for key in keys]
        return CachedBatch(
            inputs=pad_sequence(features, batch_first=True),  # (B, T', F), zero padding
            input_lengths=torch.tensor([item.size(0) for item in features], dtype=torch.int64),
            targets=pad_sequence(targets, batch_first=True, padding_value=PAD_ID),  # (B, L)
            target_lengths=torch.tensor([item.numel() for item in targets], dtype=torch.int64),
        )

    def describe(self) -> str:
        """One line: entries, memory and disk use."""
        text = f"{len(self)} utterances at {self.point.value}, {self.memory_bytes / _BYTES_PER_MB:.1f} MB in memory"
        if self._on_disk:
            text += f", {self.num_spilled} spilled ({self.disk_bytes / _BYTES_PER_MB:.1f} MB) to {self._spill_dir}"
        return text

    def close(self) -> None:
        """Drop every entry and delete the spill folder this cache created."""
        self._memory.clear()
        self._on_disk.clear()
        self.memory_bytes = 0
        self.disk_bytes = 0
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)
            self._spill_dir = None


class CachedFeatureLoader:
    """Batches of cached trunk outputs, the same batches as the uncached loader of the same entries.

    Its ``batch_sampler`` is a :class:`BucketBatchSampler` over the entries' durations with the given batch size,
    shuffle flag and seed, exactly as :func:`kospeech.data.dataset.build_dataloader` builds it; call
    ``loader.batch_sampler.set_epoch(epoch)`` before each epoch.

    Args:
        cache: the trunk cache.
        keys: the cache keys of this loader's utterances; sampler index ``i`` is ``keys[i]``.
        batch_size: utterances per batch.
        shuffle: reshuffle every epoch (training) or fixed shortest-first order (evaluation).
        seed: seed of the batch order.
        device: where the features of each batch go.
    """

    def __init__(
        self,
        cache: TrunkCache,
        keys: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        device: Optional[torch.device] = None,
    ) -> None:
        self.cache = cache
        self.keys = list(keys)
        missing = [key for key in self.keys if key not in cache]
        if missing:
            raise ValueError(f"keys {missing[:5]} are not in the trunk cache")
        self.device = device
        self.batch_sampler = BucketBatchSampler(
            [cache.duration(key) for key in self.keys], batch_size, shuffle=shuffle, seed=seed
        )

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[CachedBatch]:
        for positions in self.batch_sampler:
            yield self.cache.batch([self.keys[position] for position in positions], self.device)


class CachedTrunkModel(nn.Module):
    """The part of a frozen-base DeepSpeech2 above a cache point: its output from cached trunk outputs.

    Without ``adapter`` ``forward`` returns what ``model.head(model.encode(x, L)[0])`` returns for the same
    utterances: the attached adapter's output when one is attached and enabled, the base model's otherwise. With
    ``adapter`` (a module not attached to the model, e.g. one user's of many) that adapter serves every row. Inside
    ``model.disable_adapter()`` the output is the base model's either way. The model and the adapter are
    submodules, so ``train()`` / ``eval()`` reach them (a frozen base stays in eval mode) and their parameters are
    this module's parameters.

    Args:
        model: the DeepSpeech2 (base frozen while an adapter trains).
        point: the cache point the inputs come from; ``None``: the inputs are features (B, T, D) and the whole
            model runs (how a unit with an unattached adapter scores batches that are not cached).
        adapter: an adapter module to use instead of the model's attached one.

    Inputs:
        features: (B, T', H * num_directions) cached outputs at ``point``, zero-padded.
        lengths: (B,) int64 valid frames T'_i per row, any device.
        router: the adapters and their rows for this call (default: ``adapter``, else the attached adapter).

    Returns:
        log_probs: (B, T', C).
        lengths: the given lengths.
    """

    def __init__(self, model: DeepSpeech2, point: Optional[str], adapter: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.model = model
        self.point = None if point is None else _check_point(point)
        self.adapter = adapter
        self.router = None if adapter is None else AdapterRouter.single(adapter)

    def forward(
        self, features: Tensor, lengths: Tensor, router: Optional[AdapterRouter] = None
    ) -> Tuple[Tensor, Tensor]:
        model = self.model
        if not model.adapters_enabled:
            router = None
        elif router is None:
            router = self.router if self.router is not None else model.active_router()
        if self.point is None:
            hidden, lengths = model.run(features, lengths, router=router)
            return model.classify(hidden, router), lengths
        if router is not None and any(route.entry.cache_point is not self.point for route in router.routes):
            names = sorted({route.entry.name for route in router.routes})
            raise ValueError(f"cache point {self.point.value!r} cannot serve {names} adapters")
        start = model.cache_layer(self.point)
        if start == model.num_rnn_layers:
            return model.classify(features, router), lengths
        hidden, lengths = model.run(features, lengths, from_layer=start, router=router)
        return model.classify(hidden, router), lengths


def build_trunk_cache(
    model: DeepSpeech2,
    entries: Sequence[ManifestEntry],
    feature_extractor: FeatureExtractor,
    *,
    point: str,
    batch_size: int,
    device: Union[str, torch.device] = "cpu",
    max_mb: float = 2048.0,
    spill_dir: Optional[Union[str, Path]] = None,
    num_workers: int = 0,
    group_sizes: Optional[Sequence[int]] = None,
) -> TrunkCache:
    """Run the frozen base once over ``entries`` and cache its output at ``point`` (key = position in ``entries``).

    Utterances are batched shortest-first (little padding); the model runs in eval mode under
    ``torch.inference_mode`` and its previous mode is restored. Every utterance's output equals (within 1e-5) the
    output it gets inside any other padded batch, which is what makes the cache interchangeable with recomputing.
    With ``group_sizes``, ``entries`` is consecutive groups (users) batched each on its own, exactly as a cache of
    that group alone would be: its outputs are then bit for bit those of the group's own cache (on a CPU), where
    batches mixing groups would differ by float rounding that training amplifies.

    Args:
        model: the DeepSpeech2 whose (frozen) base computes the outputs; adapters do not take part.
        entries: the utterances.
        feature_extractor: the feature pipeline of the model.
        point: :data:`RNN_OUTPUT`, :data:`FIRST_RNN_LAYER` or :data:`EXTRACTOR`.
        batch_size: utterances per forward pass.
        device: where the model runs and the in-memory cache lives.
        max_mb: megabytes of cached features kept in memory.
        spill_dir: where entries beyond ``max_mb`` go; ``None`` refuses to exceed the bound.
        num_workers: DataLoader workers for feature extraction.
        group_sizes: the sizes of consecutive groups of ``entries`` batched apart (summing to ``len(entries)``);
            ``None`` batches all of them together.

    Returns:
        The filled :class:`TrunkCache`.

    Raises:
        TrunkCacheTooLargeError: ``spill_dir`` is ``None`` and the estimated or actual size exceeds ``max_mb``
            (the estimate is checked before any compute).
    """
    point = _check_point(point)
    if not entries:
        raise ValueError("no utterances to cache")
    sizes = [len(entries)] if group_sizes is None else [size for size in group_sizes if size]
    if sum(sizes) != len(entries) or min(sizes) < 0:
        raise ValueError(f"group sizes {list(group_sizes or [])} do not split {len(entries)} utterances")
    device = torch.device(device)
    max_bytes = int(max_mb * _BYTES_PER_MB)
    starts = [0, *accumulate(sizes)][:-1]
    loaders = [
        build_dataloader(
            entries[start : start + size], feature_extractor, batch_size, shuffle=False, num_workers=num_workers
        )
        for start, size in zip(starts, sizes)
    ]
    durations = [duration for loader in loaders for duration in loader.dataset.durations]
    estimate = estimate_cache_bytes(durations, feature_extractor.config, model.point_dim(model.cache_layer(point)))
    if spill_dir is None and estimate > max_bytes:
        raise TrunkCacheTooLargeError(
            f"trunk cache: about {estimate / _BYTES_PER_MB:.1f} MB of features for {len(entries)} utterances exceed "
            f"the bound of {max_mb:.1f} MB (trunk_cache_max_mb); raise the bound, set trunk_cache_spill=true to keep "
            "the rest on disk, or cache_trunk=false to recompute the trunk every epoch"
        )
    cache = TrunkCache(point, max_bytes, spill_dir)
    was_training = model.training
    model.eval()
    completed = False
    try:
        for start, loader in zip(starts, loaders):
            for keys, batch in zip(loader.batch_sampler.global_batches(), loader):
                with torch.inference_mode():
                    features, lengths = trunk_features(
                        model, batch.inputs.to(device), batch.input_lengths.to(device), point
                    )  # (B, T', F), (B,)
                lengths = lengths.tolist()
                target_lengths = batch.target_lengths.tolist()
                for row, key in enumerate(keys):
                    # cloned outside inference mode: a normal tensor, which autograd may save for the adapter's backward
                    cache.add(
                        start + key,
                        features[row, : lengths[row]].clone(),
                        batch.targets[row, : target_lengths[row]].clone(),
                        durations[start + key],
                    )
        completed = True
    finally:
        model.train(was_training)
        if not completed:
            cache.close()
    return cache


def spill_folder(output_dir: Union[str, Path], configured: Optional[str]) -> Path:
    """The folder under which spilled cache entries go: ``configured`` or ``{output_dir}/trunk_cache``."""
    return Path(configured) if configured else Path(output_dir) / "trunk_cache"
