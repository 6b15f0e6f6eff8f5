"""Length-bucketed batch sampling, deterministic per (seed, epoch) and sharded for DDP."""

from __future__ import annotations

import math
from typing import Iterator, List, NamedTuple, Sequence, Union

import numpy as np
from torch.utils.data import Sampler

__all__ = ["SampleKey", "BucketBatchSampler"]


class SampleKey(NamedTuple):
    """A dataset index tagged with the epoch it is drawn for.

    DataLoader workers (persistent ones in particular) hold their own copy of the dataset, so they cannot see a
    ``set_epoch`` call made in the main process; the sampler, which does, hands the epoch over with each index.
    """

    index: int
    epoch: int


class BucketBatchSampler(Sampler):
    """Batches of similar-length utterances, so padding stays small.

    With ``shuffle=True``, every epoch shuffles all indices, cuts them into pools of
    ``batch_size * bucket_size_multiplier``, sorts each pool by length, cuts it into batches, and shuffles the order
    of all batches; everything is drawn from ``(seed, epoch)`` alone, so every rank of a DDP job computes the same
    batches. With ``shuffle=False`` the indices are sorted by length once (shortest first) and batched in that order.

    For DDP, rank ``r`` takes batches ``r, r + R, r + 2R, ...``; when the batch count is not a multiple of R the
    list is padded with batches from its start (``drop_last=False``) or cut (``drop_last=True``), so every rank
    gets the same number of batches.

    Args:
        lengths: one length per dataset index (seconds or frames).
        batch_size: utterances per batch (the last batch may be smaller unless ``drop_last``).
        shuffle: reshuffle every epoch (training) or keep the fixed length order (evaluation).
        seed: base seed; the epoch's randomness comes from ``(seed, epoch)``.
        drop_last: drop the final short batch, and cut the batch list to a multiple of ``num_replicas``.
        num_replicas: DDP world size R.
        rank: this process's rank in [0, R).
        bucket_size_multiplier: pool size in batches; larger pools give less padding but less randomness.
        keyed: yield :class:`SampleKey` (index, epoch) pairs instead of bare indices (for datasets whose
            augmentation depends on the epoch, such as :class:`kospeech.data.dataset.SpeechDataset`).
    """

    def __init__(
        self,
        lengths: Sequence[float],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        bucket_size_multiplier: int = 100,
        keyed: bool = False,
    ) -> None:
        if len(lengths) == 0:
            raise ValueError("BucketBatchSampler needs at least one length, got an empty sequence")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        if bucket_size_multiplier < 1:
            raise ValueError(f"bucket_size_multiplier must be >= 1, got {bucket_size_multiplier}")
        self.lengths = np.asarray(lengths, dtype=np.float64)
        if self.lengths.ndim != 1 or not np.isfinite(self.lengths).all():
            raise ValueError("lengths must be a flat sequence of finite numbers")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.bucket_size_multiplier = int(bucket_size_multiplier)
        self.keyed = bool(keyed)
        self.epoch = 0
        if len(self) == 0:
            raise ValueError(
                f"{len(self.lengths)} utterances give no batch for rank {rank} of {num_replicas} with "
                f"batch_size={batch_size} and drop_last={drop_last}"
            )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields (call before each epoch)."""
        self.epoch = int(epoch)

    def _num_global_batches(self) -> int:
        num_items = len(self.lengths)
        if self.drop_last:
            return num_items // self.batch_size
        return math.ceil(num_items / self.batch_size)

    def __len__(self) -> int:
        """Batches this rank yields per epoch."""
        num_batches = self._num_global_batches()
        if self.drop_last:
            return num_batches // self.num_replicas
        return math.ceil(num_batches / self.num_replicas)

    def global_batches(self) -> List[List[int]]:
        """All batches of the current epoch, across ranks, before sharding (indices into ``lengths``)."""
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = rng.permutation(len(self.lengths))
            pool_size = self.batch_size * self.bucket_size_multiplier
            batches: List[List[int]] = []
            for pool_start in range(0, len(order), pool_size):
                pool = order[pool_start : pool_start + pool_size]
                pool = pool[np.argsort(self.lengths[pool], kind="stable")]
                batches.extend(self._cut(pool))
            return [batches[i] for i in rng.permutation(len(batches))]
        order = np.argsort(self.lengths, kind="stable")
        return self._cut(order)

    def _cut(self, indices: np.ndarray) -> List[List[int]]:
        batches = [indices[i : i + self.batch_size].tolist() for i in range(0, len(indices), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __iter__(self) -> Iterator[List[Union[int, SampleKey]]]:
        batches = self.global_batches()
        per_rank = len(self)
        total = per_rank * self.num_replicas
        if total > len(batches):
            batches = [batches[i % len(batches)] for i in range(total)]
        for batch in batches[self.rank : total : self.num_replicas]:
            if self.keyed:
                yield [SampleKey(index, self.epoch) for index in batch]
            else:
                yield list(batch)
