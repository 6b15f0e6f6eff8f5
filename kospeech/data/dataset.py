"""A lazily loading speech dataset and the DataLoader built around it.

Features are computed from the audio file at ``__getitem__`` time, so memory does not grow with the corpus. The
random choices of training augmentation (silence padding, SpecAugment masks, dither) are drawn from a generator seeded by
``(seed, epoch, index)``: the same utterance in the same epoch gets the same masks whatever the number of
DataLoader workers and whichever worker loads it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from kospeech.data.audio import audio_duration
from kospeech.data.collate import SpeechBatch, collate_speech_batch
from kospeech.data.features import FeatureExtractor, SpecAugment
from kospeech.data.perturbation import speed_perturb
from kospeech.data.sampler import BucketBatchSampler, SampleKey
from kospeech.data.silence_padding import SilencePadding
from kospeech.errors import InputError
from kospeech.progress import progress_bar

if TYPE_CHECKING:
    from kospeech.data.manifest import ManifestEntry

__all__ = [
    "ExcludedUtterance",
    "SpeechDataset",
    "build_dataloader",
    "screen_entries",
    "worker_init_fn",
    "SpeechBatch",
    "collate_speech_batch",
]

logger = logging.getLogger(__name__)


class SpeechDataset(Dataset):
    """Manifest entries -> (features, targets) pairs, computed on demand.

    Args:
        entries: the utterances (``audio_path`` and ``label_ids`` are used).
        feature_extractor: the same extractor that evaluation and inference use.
        spec_augment: masking applied to every item (training only); ``None`` for clean features.
        silence_padding: waveform augmentation applied before the features (training only), or ``None``.
        seed: base seed of the per-item augmentation randomness (>= 0).

    Items are indexed by an ``int`` (the epoch is then the one last given to :meth:`set_epoch`) or by a
    :class:`~kospeech.data.sampler.SampleKey` ``(index, epoch)`` as yielded by a keyed
    :class:`~kospeech.data.sampler.BucketBatchSampler`.
    """

    def __init__(
        self,
        entries: Sequence[ManifestEntry],
        feature_extractor: FeatureExtractor,
        spec_augment: Optional[SpecAugment] = None,
        seed: int = 0,
        silence_padding: Optional[SilencePadding] = None,
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.entries = list(entries)
        self.feature_extractor = feature_extractor
        self.spec_augment = spec_augment
        self.silence_padding = silence_padding
        self.seed = int(seed)
        self.epoch = 0
        self._durations: Optional[List[float]] = None

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for items requested by a bare ``int`` index."""
        self.epoch = int(epoch)

    @property
    def durations(self) -> List[float]:
        """Seconds of audio per entry, read from the file headers once (for length bucketing).

        Raises:
            FileNotFoundError / AudioError: an entry's audio file is missing or unreadable (named in the message).
        """
        if self._durations is None:
            logger.info("reading the durations of %d audio files", len(self.entries))
            self._durations = [audio_duration(entry.audio_path) / entry.speed for entry in self.entries]
        return self._durations

    def item_generator(self, index: int, epoch: int) -> torch.Generator:
        """The random source of item ``index`` in ``epoch``: a pure function of (seed, epoch, index)."""
        state = np.random.SeedSequence([self.seed, epoch, index]).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)

    def __getitem__(self, key: Union[int, SampleKey]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Load one utterance.

        Args:
            key: an index in [0, len), or a ``SampleKey(index, epoch)``.

        Returns:
            features: (T, D) float32, augmented when the dataset has a SpecAugment.
            targets: (L,) int64 label ids.

        Raises:
            IndexError: the index is out of range.
            FileNotFoundError / AudioError: the entry's audio file is missing, unusable or shorter than one frame
                (the message names the file).
        """
        if isinstance(key, SampleKey):
            index, epoch = int(key.index), int(key.epoch)
        else:
            index, epoch = int(key), self.epoch
        if not 0 <= index < len(self.entries):
            raise IndexError(f"index {index} out of range for a dataset of {len(self.entries)} utterances")
        entry = self.entries[index]
        augmented = self.spec_augment is not None or self.silence_padding is not None
        needs_randomness = augmented or self.feature_extractor.config.dither > 0
        generator = self.item_generator(index, epoch) if needs_randomness else None
        if self.silence_padding is None and entry.speed == 1.0:
            features = self.feature_extractor.from_file(entry.audio_path, generator=generator)
        else:
            extractor = self.feature_extractor
            waveform = speed_perturb(extractor.load_waveform(entry.audio_path), entry.speed, extractor.sample_rate)
            if self.silence_padding is not None:
                waveform = self.silence_padding(waveform, generator)
            features = extractor(waveform, generator=generator, where=str(entry.audio_path))
        if self.spec_augment is not None:
            features = self.spec_augment(features, generator=generator)
        targets = torch.tensor(entry.label_ids, dtype=torch.int64)
        return features, targets


class ExcludedUtterance(NamedTuple):
    """An utterance :func:`screen_entries` left out, and why."""

    audio_path: str
    reason: str


def screen_entries(
    entries: Sequence[ManifestEntry], feature_extractor: FeatureExtractor, what: str = "training"
) -> Tuple[List[ManifestEntry], List[ExcludedUtterance]]:
    """Compute every entry's features once and keep the usable ones, so that one bad file cannot spoil a run.

    An utterance whose audio is missing or unusable, or whose features are not finite, would otherwise fail every
    batch it lands in (or turn the whole batch's loss into NaN, so every step is skipped). Each one left out is logged
    as a warning naming the file and the problem.

    Args:
        entries: the utterances.
        feature_extractor: the extractor training uses (its features are checked without augmentation).
        what: the set's name in the log ("training", "validation").

    Returns:
        ``(usable, excluded)``: the usable entries in their order, and the others with the reason.
    """
    usable: List[ManifestEntry] = []
    excluded: List[ExcludedUtterance] = []
    extractor = feature_extractor.without_dither()  # dither would draw from the global random stream
    for entry in progress_bar(entries, disable=len(entries) < 1000, desc=f"checking {what} audio", unit="utt"):
        try:
            extractor.from_file(entry.audio_path)
        except (FileNotFoundError, InputError) as exc:
            logger.warning("excluding %s utterance %s: %s", what, entry.audio_path, exc)
            excluded.append(ExcludedUtterance(str(entry.audio_path), str(exc)))
        else:
            usable.append(entry)
    return usable, excluded


def worker_init_fn(worker_id: int) -> None:
    """Keep each DataLoader worker to one intra-op thread, so workers do not oversubscribe the CPU cores."""
    del worker_id
    torch.set_num_threads(1)


def build_dataloader(
    entries: Sequence[ManifestEntry],
    feature_extractor: FeatureExtractor,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    spec_augment: Optional[SpecAugment] = None,
    silence_padding: Optional[SilencePadding] = None,
    num_replicas: int = 1,
    rank: int = 0,
    drop_last: bool = False,
    bucket_size_multiplier: int = 100,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of length-bucketed, padded :class:`SpeechBatch` es.

    Call ``loader.batch_sampler.set_epoch(epoch)`` before each epoch: it reshuffles the batches and reseeds
    the augmentation, including in persistent workers.

    Args:
        entries: the utterances.
        feature_extractor: the feature pipeline (shared with inference).
        batch_size: utterances per batch.
        shuffle: reshuffle batches every epoch (training); otherwise fixed shortest-first order.
        seed: seed of the batch order and of the augmentation.
        num_workers: worker processes (0 loads in the main process); workers are persistent and single-threaded.
        spec_augment: training augmentation of the features, or ``None``.
        silence_padding: training augmentation of the waveforms, or ``None``.
        num_replicas: DDP world size.
        rank: this process's DDP rank.
        drop_last: drop short batches (see :class:`BucketBatchSampler`).
        bucket_size_multiplier: pool size in batches for length sorting.
        pin_memory: pin batches in page-locked memory (for fast GPU copies).

    Returns:
        The DataLoader; its ``dataset`` is a :class:`SpeechDataset`, its ``batch_sampler`` a
        :class:`BucketBatchSampler`.

    Raises:
        ValueError: ``num_workers`` < 0, or a sampler argument is invalid.
        FileNotFoundError / AudioError: an audio file's header cannot be read (when the durations are read).
    """
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    dataset = SpeechDataset(
        entries, feature_extractor, spec_augment=spec_augment, seed=seed, silence_padding=silence_padding
    )
    sampler = BucketBatchSampler(
        dataset.durations,
        batch_size,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
        num_replicas=num_replicas,
        rank=rank,
        bucket_size_multiplier=bucket_size_multiplier,
        keyed=True,
    )
    # The loader's own generator: starting an epoch must not draw from the global RNG, or a run resumed from a
    # checkpoint would see different dropout masks than the uninterrupted run.
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_speech_batch,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        worker_init_fn=worker_init_fn if num_workers > 0 else None,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
    )
