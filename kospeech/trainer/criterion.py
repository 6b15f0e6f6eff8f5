"""CTC loss that skips impossible alignments instead of turning them into NaN or silent zeros."""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CTCLoss", "CTCLossOutput", "min_output_frames"]

logger = logging.getLogger(__name__)


def min_output_frames(targets: Tensor, target_lengths: Tensor) -> Tensor:
    """The fewest output frames a CTC alignment of each label sequence needs: its length plus its repeats (a blank
    must separate two equal labels in a row).

    Inputs:
        targets: (B, L) label ids, padded.
        target_lengths: (B,) int64 valid labels per row.

    Returns:
        (B,) int64 on the CPU.
    """
    targets, target_lengths = targets.cpu(), target_lengths.to(torch.long).cpu()
    if targets.size(1) < 2:
        return target_lengths.clone()
    repeats = targets[:, 1:] == targets[:, :-1]  # (B, L - 1)
    within = torch.arange(targets.size(1) - 1).unsqueeze(0) < (target_lengths.unsqueeze(1) - 1)
    return target_lengths + (repeats & within).sum(dim=1)


class CTCLossOutput(NamedTuple):
    """Result of :class:`CTCLoss`.

    Args:
        loss: scalar, mean over the kept utterances of (CTC loss / target length); 0 with no grad path
            when nothing was kept.
        num_kept: utterances that contributed.
        num_skipped: utterances whose transcript cannot be aligned to their frames.
    """

    loss: Tensor
    num_kept: int
    num_skipped: int


class CTCLoss(nn.Module):
    """CTC loss over batch-major log-probs.

    Non-finite log-probabilities on valid frames make the loss ``inf`` (not the zero that ``zero_infinity``
    would give), so the trainer skips and counts the step.

    An utterance needs at least ``L + repeats`` output frames for a label sequence of length ``L``
    (a blank must separate repeated labels); shorter ones cannot be aligned and are dropped from the
    batch and counted, rather than producing ``inf`` (``zero_infinity`` is kept as a second guard).

    Args:
        blank_id: the vocabulary's blank id.

    Inputs:
        log_probs: (B, T', C) log-softmax outputs.
        output_lengths: (B,) valid frames per row.
        targets: (B, L) label ids, padded.
        target_lengths: (B,) valid labels per row.

    Returns:
        :class:`CTCLossOutput`.
    """

    def __init__(self, blank_id: int) -> None:
        super().__init__()
        self.blank_id = blank_id

    def forward(
        self, log_probs: Tensor, output_lengths: Tensor, targets: Tensor, target_lengths: Tensor
    ) -> CTCLossOutput:
        output_lengths = output_lengths.to(torch.long).cpu()
        target_lengths = target_lengths.to(torch.long).cpu()
        feasible = (target_lengths > 0) & (output_lengths >= min_output_frames(targets, target_lengths))
        num_skipped = int((~feasible).sum())
        if num_skipped:
            logger.debug("skipping %d utterance(s) whose transcript is longer than their frames allow", num_skipped)
        if not bool(feasible.any()):
            return CTCLossOutput(log_probs.sum() * 0.0, 0, num_skipped)
        keep = feasible.nonzero(as_tuple=True)[0].to(log_probs.device)
        kept_log_probs = log_probs.index_select(0, keep).transpose(0, 1).float()
        kept_lengths = output_lengths[feasible]
        frames = torch.arange(kept_log_probs.size(0)).unsqueeze(1) < kept_lengths.unsqueeze(0)  # (T', kept)
        if not bool(torch.isfinite(kept_log_probs[frames.to(kept_log_probs.device)]).all()):
            # zero_infinity would quietly turn this into a zero loss: report it so the step is skipped and counted.
            # It stays in the graph with non-finite gradients, so that under DDP this rank still joins the gradient
            # all-reduce and every rank skips the update alike
            return CTCLossOutput(log_probs.sum() * float("inf"), int(keep.numel()), num_skipped)
        per_utterance = F.ctc_loss(
            kept_log_probs,
            targets.index_select(0, keep),
            kept_lengths,
            target_lengths[feasible],
            blank=self.blank_id,
            reduction="none",
            zero_infinity=True,
        )
        loss = (per_utterance / target_lengths[feasible].to(per_utterance.device).clamp(min=1)).mean()
        return CTCLossOutput(loss, int(keep.numel()), num_skipped)
