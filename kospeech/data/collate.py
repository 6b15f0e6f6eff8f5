"""Padding a list of (features, targets) samples into one batch."""

from __future__ import annotations

from typing import NamedTuple, Sequence, Tuple, Union

import torch

__all__ = ["PAD_ID", "SpeechBatch", "collate_speech_batch"]

PAD_ID = 0
"""Target padding id (the vocabulary's ``<pad>``)."""


class SpeechBatch(NamedTuple):
    """A padded batch, batch-major.

    Attributes:
        inputs: (B, T, D) float32 features, zero-padded after each row's valid frames.
        input_lengths: (B,) int64 valid frames per row, in dataset order (not sorted), on the CPU.
        targets: (B, L) int64 label ids, padded with ``PAD_ID`` (0) after each row's valid labels.
        target_lengths: (B,) int64 valid labels per row.
    """

    inputs: torch.Tensor
    input_lengths: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor

    def to(self, device: Union[str, torch.device], non_blocking: bool = False) -> SpeechBatch:
        """The batch with ``inputs`` and ``targets`` moved to ``device`` (lengths stay on the CPU)."""
        return SpeechBatch(
            self.inputs.to(device, non_blocking=non_blocking),
            self.input_lengths,
            self.targets.to(device, non_blocking=non_blocking),
            self.target_lengths,
        )


def collate_speech_batch(samples: Sequence[Tuple[torch.Tensor, torch.Tensor]]) -> SpeechBatch:
    """Pad samples into a :class:`SpeechBatch` (a top-level function, so DataLoader workers can pickle it).

    Args:
        samples: B pairs of features (T_i, D) float and targets (L_i,) int.

    Returns:
        The padded batch; row order is the order of ``samples``.

    Raises:
        ValueError: ``samples`` is empty, or the samples disagree on D or have the wrong number of dimensions.
    """
    if len(samples) == 0:
        raise ValueError("collate_speech_batch got an empty list of samples")
    feature_dims = {features.shape[-1] for features, _ in samples}
    if any(features.dim() != 2 for features, _ in samples) or len(feature_dims) != 1:
        shapes = [tuple(features.shape) for features, _ in samples]
        raise ValueError(f"every sample's features must be (T, D) with the same D, got shapes {shapes}")
    if any(targets.dim() != 1 for _, targets in samples):
        raise ValueError(f"every sample's targets must be (L,), got shapes {[tuple(t.shape) for _, t in samples]}")
    batch_size = len(samples)
    input_lengths = torch.tensor([features.shape[0] for features, _ in samples], dtype=torch.int64)
    target_lengths = torch.tensor([targets.shape[0] for _, targets in samples], dtype=torch.int64)
    inputs = torch.zeros(batch_size, int(input_lengths.max()), feature_dims.pop(), dtype=torch.float32)
    targets = torch.full((batch_size, int(target_lengths.max())), PAD_ID, dtype=torch.int64)
    for row, (sample_features, sample_targets) in enumerate(samples):
        inputs[row, : sample_features.shape[0]] = sample_features
        targets[row, : sample_targets.shape[0]] = sample_targets
    return SpeechBatch(inputs, input_lengths, targets, target_lengths)
