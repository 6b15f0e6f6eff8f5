"""SpeechDataset, BucketBatchSampler, collate_speech_batch and build_dataloader."""

from collections import Counter
from pathlib import Path
from typing import List

import numpy as np
import pytest
import soundfile as sf
import torch

from kospeech.data.audio import AudioError
from kospeech.data.collate import SpeechBatch, collate_speech_batch
from kospeech.data.dataset import SpeechDataset, build_dataloader, screen_entries
from kospeech.data.features import FeatureConfig, FeatureExtractor, SpecAugment
from kospeech.data.manifest import ManifestEntry
from kospeech.data.sampler import BucketBatchSampler, SampleKey


@pytest.fixture
def entries(tmp_path: Path) -> List[ManifestEntry]:
    """Ten short utterances of different lengths (0.1 s .. 0.55 s), some at 8 kHz, one stereo."""
    rng = np.random.default_rng(0)
    made = []
    for i in range(10):
        sample_rate = 8000 if i % 3 == 0 else 16000
        num_samples = int(sample_rate * (0.1 + 0.05 * ((i * 7) % 10)))
        shape = (num_samples, 2) if i == 4 else (num_samples,)
        path = tmp_path / f"utt{i:02d}.wav"
        sf.write(path, (0.1 * rng.standard_normal(shape)).astype(np.float32), sample_rate, subtype="PCM_16")
        label_ids = tuple(int(x) for x in rng.integers(4, 20, size=1 + i % 4))
        made.append(ManifestEntry(audio_path=path, transcript="가" * len(label_ids), label_ids=label_ids))
    return made


@pytest.fixture
def extractor() -> FeatureExtractor:
    return FeatureExtractor(FeatureConfig(num_mels=40))


def _padding_fraction(batches: List[List[int]], lengths: List[float]) -> float:
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1.0 - sum(lengths[i] for b in batches for i in b) / padded


# --- SpeechDataset -------------------------------------------------------------------------------------------------


def test_items_equal_the_extractor_on_the_file(entries, extractor) -> None:
    dataset = SpeechDataset(entries, extractor)
    assert len(dataset) == 10
    for index in (0, 4, 9):
        features, targets = dataset[index]
        assert torch.equal(features, extractor.from_file(entries[index].audio_path))
        assert targets.dtype == torch.int64
        assert targets.tolist() == list(entries[index].label_ids)
    with pytest.raises(IndexError):
        dataset[10]


def test_durations_come_from_the_headers(entries, extractor) -> None:
    dataset = SpeechDataset(entries, extractor)
    expected = [0.1 + 0.05 * ((i * 7) % 10) for i in range(10)]
    np.testing.assert_allclose(dataset.durations, expected, atol=1e-4)
    assert dataset.durations is dataset.durations  # computed once


def test_errors_name_the_audio_file(entries, extractor, tmp_path: Path) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all" * 10)
    bad_entries = [
        ManifestEntry(audio_path=tmp_path / "missing.wav", transcript="가", label_ids=(4,)),
        ManifestEntry(audio_path=broken, transcript="가", label_ids=(4,)),
    ]
    dataset = SpeechDataset(entries + bad_entries, extractor)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        dataset[10]
    with pytest.raises(AudioError, match="broken.wav"):
        dataset[11]
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        _ = dataset.durations


def test_screening_audio_leaves_the_global_random_stream_alone(entries, tmp_path: Path) -> None:
    """Review, stop 37: with dither on, checking the training audio drew from torch's global generator."""
    broken = ManifestEntry(audio_path=tmp_path / "missing.wav", transcript="가", label_ids=(4,))
    dithered = FeatureExtractor(FeatureConfig(num_mels=40, dither=1.0))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    usable, excluded = screen_entries([*entries, broken], dithered)
    assert torch.equal(torch.rand(3), expected)
    assert usable == entries and [item.audio_path for item in excluded] == [str(broken.audio_path)]


def test_spec_augment_is_seeded_by_seed_epoch_and_index(entries, extractor) -> None:
    augment = SpecAugment(freq_mask_param=10, time_mask_ratio=0.2)
    dataset = SpeechDataset(entries, extractor, spec_augment=augment, seed=5)
    clean = SpeechDataset(entries, extractor)
    first = dataset[SampleKey(3, 0)][0]
    assert torch.equal(first, dataset[SampleKey(3, 0)][0])
    assert torch.equal(first, SpeechDataset(entries, extractor, spec_augment=augment, seed=5)[SampleKey(3, 0)][0])
    assert not torch.equal(first, clean[3][0])
    assert (first == 0).any()
    other_epochs = [dataset[SampleKey(3, epoch)][0] for epoch in range(1, 5)]
    assert any(not torch.equal(first, other) for other in other_epochs)
    dataset.set_epoch(2)
    assert torch.equal(dataset[3][0], other_epochs[1])


# --- BucketBatchSampler -------------------------------------------------------------------------------------------


def test_every_index_once_per_epoch() -> None:
    lengths = list(np.random.default_rng(1).uniform(1, 20, size=103))
    sampler = BucketBatchSampler(lengths, batch_size=8, seed=3, bucket_size_multiplier=4)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 13
        assert sorted(i for b in batches for i in b) == list(range(103))
        assert all(len(b) <= 8 for b in batches)


def test_buckets_reduce_padding_against_random_batches() -> None:
    rng = np.random.default_rng(2)
    lengths = list(rng.uniform(1, 20, size=400))
    sampler = BucketBatchSampler(lengths, batch_size=16, seed=0, bucket_size_multiplier=10)
    bucketed = _padding_fraction(list(sampler), lengths)
    order = rng.permutation(400)
    random_batches = [order[i : i + 16].tolist() for i in range(0, 400, 16)]
    random_padding = _padding_fraction(random_batches, lengths)
    assert bucketed < 0.15 and random_padding > 0.3 and bucketed < random_padding / 3


def test_deterministic_per_seed_and_epoch() -> None:
    lengths = list(np.random.default_rng(3).uniform(1, 20, size=60))
    a = BucketBatchSampler(lengths, batch_size=4, seed=11, bucket_size_multiplier=3)
    b = BucketBatchSampler(lengths, batch_size=4, seed=11, bucket_size_multiplier=3)
    assert list(a) == list(b)
    epoch0 = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) != epoch0
    c = BucketBatchSampler(lengths, batch_size=4, seed=12, bucket_size_multiplier=3)
    assert list(c) != epoch0


def test_without_shuffle_batches_follow_length_order() -> None:
    lengths = [5.0, 1.0, 3.0, 4.0, 2.0]
    sampler = BucketBatchSampler(lengths, batch_size=2, shuffle=False)
    assert list(sampler) == [[1, 4], [2, 3], [0]]
    sampler.set_epoch(4)
    assert list(sampler) == [[1, 4], [2, 3], [0]]
    assert list(BucketBatchSampler(lengths, batch_size=2, shuffle=False, drop_last=True)) == [[1, 4], [2, 3]]


def test_ddp_shards_are_disjoint_and_equal() -> None:
    lengths = list(np.random.default_rng(4).uniform(1, 20, size=96))
    shards = []
    for rank in range(4):
        sampler = BucketBatchSampler(lengths, batch_size=4, seed=9, num_replicas=4, rank=rank, bucket_size_multiplier=5)
        sampler.set_epoch(2)
        shards.append(list(sampler))
    assert [len(s) for s in shards] == [6, 6, 6, 6]
    indices = [i for shard in shards for batch in shard for i in batch]
    assert sorted(indices) == list(range(96))


def test_ddp_uneven_batches_are_padded_or_dropped_to_equal_length() -> None:
    lengths = list(np.random.default_rng(5).uniform(1, 20, size=50))  # 13 batches of 4 (last has 2)
    padded = [list(BucketBatchSampler(lengths, 4, seed=1, num_replicas=3, rank=r)) for r in range(3)]
    assert [len(s) for s in padded] == [5, 5, 5]
    assert {i for s in padded for b in s for i in b} == set(range(50))
    dropped = [list(BucketBatchSampler(lengths, 4, seed=1, num_replicas=3, rank=r, drop_last=True)) for r in range(3)]
    assert [len(s) for s in dropped] == [4, 4, 4]
    counts = Counter(i for s in dropped for b in s for i in b)
    assert all(len(b) == 4 for s in dropped for b in s) and max(counts.values()) == 1


def test_keyed_sampler_tags_the_epoch() -> None:
    sampler = BucketBatchSampler([1.0, 2.0, 3.0], batch_size=2, seed=0, keyed=True)
    sampler.set_epoch(7)
    keys = [key for batch in sampler for key in batch]
    assert all(isinstance(key, SampleKey) and key.epoch == 7 for key in keys)
    assert sorted(key.index for key in keys) == [0, 1, 2]


def test_sampler_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="empty"):
        BucketBatchSampler([], batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        BucketBatchSampler([1.0], batch_size=0)
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler([1.0], batch_size=1, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="no batch"):
        BucketBatchSampler([1.0, 2.0], batch_size=4, drop_last=True)


# --- collate ------------------------------------------------------------------------------------------------------


def test_collate_pads_features_and_targets() -> None:
    samples = [
        (torch.full((5, 3), 2.0), torch.tensor([7, 8])),
        (torch.full((2, 3), -1.0), torch.tensor([9, 10, 11, 12])),
        (torch.full((4, 3), 0.5), torch.tensor([13])),
    ]
    batch = collate_speech_batch(samples)
    assert isinstance(batch, SpeechBatch)
    assert batch.inputs.shape == (3, 5, 3) and batch.inputs.dtype == torch.float32
    assert batch.input_lengths.tolist() == [5, 2, 4] and batch.input_lengths.dtype == torch.int64
    assert batch.targets.tolist() == [[7, 8, 0, 0], [9, 10, 11, 12], [13, 0, 0, 0]]
    assert batch.target_lengths.tolist() == [2, 4, 1] and batch.target_lengths.dtype == torch.int64
    assert torch.equal(batch.inputs[1, :2], samples[1][0])
    assert (batch.inputs[1, 2:] == 0).all() and (batch.inputs[2, 4:] == 0).all()
    moved = batch.to("cpu")
    assert torch.equal(moved.inputs, batch.inputs)


def test_collate_refuses_inconsistent_samples() -> None:
    with pytest.raises(ValueError, match="empty"):
        collate_speech_batch([])
    with pytest.raises(ValueError, match="same D"):
        collate_speech_batch([(torch.zeros(3, 4), torch.tensor([4])), (torch.zeros(3, 5), torch.tensor([4]))])


# --- DataLoader ---------------------------------------------------------------------------------------------------


def _epochs(loader, num_epochs: int = 2) -> List[List[SpeechBatch]]:
    result = []
    for epoch in range(num_epochs):
        loader.batch_sampler.set_epoch(epoch)
        result.append(list(loader))
    return result


def test_workers_return_the_same_batches_as_the_main_process(entries, extractor) -> None:
    augment = SpecAugment(freq_mask_param=8, time_mask_ratio=0.1)
    kwargs = dict(batch_size=3, shuffle=True, seed=4, spec_augment=augment)
    serial = _epochs(build_dataloader(entries, extractor, num_workers=0, **kwargs))
    parallel_loader = build_dataloader(entries, extractor, num_workers=2, **kwargs)
    assert parallel_loader.persistent_workers
    parallel = _epochs(parallel_loader)
    for serial_epoch, parallel_epoch in zip(serial, parallel):
        assert len(serial_epoch) == len(parallel_epoch) == 4
        for a, b in zip(serial_epoch, parallel_epoch):
            for field_a, field_b in zip(a, b):
                assert torch.equal(field_a, field_b)
    assert any(not torch.equal(a.input_lengths, b.input_lengths) for a, b in zip(serial[0], serial[1]))


def test_loader_batches_match_the_dataset_items(entries, extractor) -> None:
    loader = build_dataloader(entries, extractor, batch_size=4, shuffle=False)
    batches = list(loader)
    assert [b.inputs.shape[0] for b in batches] == [4, 4, 2]
    dataset = loader.dataset
    for batch, indices in zip(batches, loader.batch_sampler.global_batches()):
        for row, index in enumerate(indices):
            features, targets = dataset[index]
            assert torch.equal(batch.inputs[row, : batch.input_lengths[row]], features)
            assert batch.targets[row, : batch.target_lengths[row]].tolist() == list(entries[index].label_ids)
        durations = [dataset.durations[i] for i in indices]
        assert durations == sorted(durations)
