"""Greedy (best path) CTC decoding: argmax per frame, merge repeats, drop blanks."""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor

from kospeech.decode.ctc import CTCHypothesis, CTCVocabulary, check_ctc_inputs

__all__ = ["GreedyCTCDecoder", "greedy_ctc_ids"]


def _best_paths(
    log_probs: Tensor, lengths: Tensor, blank_id: int
) -> Tuple[List[List[int]], List[List[int]], List[float]]:
    """Collapse the per-frame argmax of each row.

    Args:
        log_probs: (B, T', C) log-probabilities.
        lengths: (B,) int64 CPU tensor of valid frames per row.
        blank_id: CTC blank index.

    Returns:
        Per row: collapsed label ids, the frame where each starts, and the log-probability of the best path.
    """
    best_scores, best_ids = log_probs.detach().max(dim=-1)  # (B, T') each
    best_scores = best_scores.cpu().double()
    best_ids = best_ids.cpu()
    batch, frames = best_ids.shape
    valid = torch.arange(frames)[None, :] < lengths[:, None]  # (B, T')
    previous = torch.full_like(best_ids, -1)
    previous[:, 1:] = best_ids[:, :-1]
    starts = valid & (best_ids != blank_id) & (best_ids != previous)  # (B, T'): a new token begins here
    scores = torch.where(valid, best_scores, torch.zeros_like(best_scores)).sum(dim=1)  # (B,)
    tokens = [best_ids[row][starts[row]].tolist() for row in range(batch)]
    timesteps = [starts[row].nonzero().squeeze(1).tolist() for row in range(batch)]
    return tokens, timesteps, scores.tolist()


def greedy_ctc_ids(log_probs: Tensor, lengths: Tensor, blank_id: int) -> List[List[int]]:
    """Greedy CTC label ids, without a vocabulary (for CER during training).

    Args:
        log_probs: (B, T', C) log-probabilities (or any scores whose argmax is meaningful).
        lengths: (B,) valid output frames per row; frames beyond are ignored.
        blank_id: CTC blank index.

    Returns:
        B lists of collapsed label ids (repeats merged, blanks removed).
    """
    checked = check_ctc_inputs(log_probs, lengths, blank_id)
    tokens, _, _ = _best_paths(log_probs, checked, blank_id)
    return tokens


class GreedyCTCDecoder:
    """Best-path CTC decoder.

    Args:
        vocab: provides ``blank_id``, ``decode(ids)`` and ``len(vocab)`` (the number of classes C).

    Inputs:
        log_probs: (B, T', C) log-probabilities, batch-major.
        output_lengths: (B,) valid output frames per row, any order, any device.

    Returns:
        One ``CTCHypothesis`` per row; ``score`` is the log-probability of the best path.
    """

    def __init__(self, vocab: CTCVocabulary) -> None:
        self.vocab = vocab
        self.blank_id = int(vocab.blank_id)

    def __call__(self, log_probs: Tensor, output_lengths: Tensor) -> List[CTCHypothesis]:
        lengths = check_ctc_inputs(log_probs, output_lengths, self.blank_id)
        if log_probs.size(-1) != len(self.vocab):
            raise ValueError(f"log_probs have {log_probs.size(-1)} classes but the vocabulary has {len(self.vocab)}")
        tokens, timesteps, scores = _best_paths(log_probs, lengths, self.blank_id)
        return [
            CTCHypothesis(tokens=ids, text=self.vocab.decode(ids), score=score, timesteps=steps)
            for ids, steps, score in zip(tokens, timesteps, scores)
        ]
