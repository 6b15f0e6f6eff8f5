"""Shared pieces of the CTC decoders: the hypothesis record, the vocabulary interface and input checks.

Every decoder reads batch-major log-probabilities ``(B, T', C)`` (the output of ``DeepSpeech2.forward``) and
``output_lengths`` ``(B,)``, the number of valid output frames of each row; frames at or beyond a row's length are
padding and are never read. Lengths may be in any order and on any device.

Decoding never raises on NaN log-probabilities (a diverged batch must not stop a training loop that skips
non-finite steps): a row with NaN in its valid frames gets ``score = nan`` and its tokens are meaningless.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Protocol, Sequence

import torch
from torch import Tensor

__all__ = ["CTCHypothesis", "CTCVocabulary", "TokenSpan", "check_ctc_inputs", "spelling_tokens", "token_spans"]


@dataclass
class CTCHypothesis:
    """One decoded utterance.

    Attributes:
        tokens: collapsed label ids (repeats merged, blanks removed), in output order.
        text: ``vocab.decode(tokens)``.
        score: natural-log probability: of the single best path for greedy decoding, of the prefix (summed over
            all CTC paths that collapse to ``tokens``, as far as the beam kept them) for beam search.
        timesteps: for each token, the output frame index (0-based, in T' frames) where it starts.
    """

    tokens: List[int] = field(default_factory=list)
    text: str = ""
    score: float = 0.0
    timesteps: List[int] = field(default_factory=list)


class CTCVocabulary(Protocol):
    """What a decoder needs from a vocabulary (``kospeech.vocabs.Vocabulary`` provides it)."""

    blank_id: int

    def decode(self, ids: Iterable[int]) -> str:
        """Text of label ids, special ids skipped."""

    def __len__(self) -> int:
        """Number of classes C."""


def check_ctc_inputs(log_probs: Tensor, output_lengths: Tensor, blank_id: int) -> Tensor:
    """Validate decoder inputs and return the lengths as a CPU int64 tensor.

    Args:
        log_probs: (B, T', C) floating log-probabilities.
        output_lengths: (B,) integer tensor, valid output frames per row, each in ``[0, T']``.
        blank_id: index of the CTC blank, must be in ``[0, C)``.

    Returns:
        (B,) int64 CPU tensor of lengths.

    Raises:
        TypeError: ``log_probs`` or ``output_lengths`` is not a tensor of the right kind.
        ValueError: wrong shapes, lengths out of range, or blank id out of range.
    """
    if not isinstance(log_probs, Tensor) or not log_probs.is_floating_point():
        raise TypeError(f"log_probs must be a floating-point tensor of shape (B, T', C), got {type(log_probs)!r}")
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must have shape (B, T', C), got shape {tuple(log_probs.shape)}")
    if (
        not isinstance(output_lengths, Tensor)
        or output_lengths.is_floating_point()
        or output_lengths.is_complex()
        or output_lengths.dtype == torch.bool
    ):
        raise TypeError(f"output_lengths must be an integer tensor of shape (B,), got {output_lengths!r}")
    batch, frames, classes = log_probs.shape
    if output_lengths.shape != (batch,):
        raise ValueError(
            f"output_lengths must have shape ({batch},) to match log_probs {tuple(log_probs.shape)}, "
            f"got {tuple(output_lengths.shape)}"
        )
    if not 0 <= blank_id < classes:
        raise ValueError(f"blank_id {blank_id} is out of range for {classes} classes")
    lengths = output_lengths.detach().to(device="cpu", dtype=torch.int64)
    if batch and (int(lengths.min()) < 0 or int(lengths.max()) > frames):
        raise ValueError(f"output_lengths must lie in [0, {frames}] (the T' of log_probs), got {lengths.tolist()}")
    return lengths


@dataclass
class TokenSpan:
    """Where one decoded token lies in the output frames, and how sure the model is of it.

    Attributes:
        start: first output frame of the token (its ``timesteps`` entry).
        end: one past its last frame: the frames from ``start`` on where the token stays the most likely label
            (at least one frame).
        probability: the token's mean posterior probability over ``[start, end)``.
    """

    start: int
    end: int
    probability: float


def token_spans(log_probs: Tensor, tokens: List[int], starts: List[int], length: int) -> List[TokenSpan]:
    """Frame spans and posteriors of one row's decoded tokens (greedy or beam search alike).

    Args:
        log_probs: (T', C) log-probabilities of one row.
        tokens: the hypothesis' label ids.
        starts: the frame where each token starts (``CTCHypothesis.timesteps``), non-decreasing.
        length: valid output frames of the row.

    Returns:
        One :class:`TokenSpan` per token; a span never reaches the next token's start or ``length``.
    """
    if not tokens:
        return []
    rows = log_probs[:length].detach().float().cpu()
    best = rows.argmax(dim=-1).tolist()
    spans = []
    for index, (token, start) in enumerate(zip(tokens, starts)):
        limit = starts[index + 1] if index + 1 < len(starts) else length
        end = start + 1
        while end < limit and best[end] == token:
            end += 1
        probability = float(rows[start:end, token].exp().mean())
        spans.append(TokenSpan(start, end, probability))
    return spans


def spelling_tokens(tokens: Sequence[int], vocab: CTCVocabulary, space_id: Optional[int]) -> List[int]:
    """The positions of the tokens that spell a hypothesis' text: the words (runs between space tokens) whose text is
    not empty, one space token between two of them and none at the ends.

    A CTC path can emit a space twice (space, blank, space), and a word of lone jamo composes to no text
    (:func:`~kospeech.vocabs.hangul.compose_jamo`); without this the text held double spaces, and the tokens, the
    word timings and the text disagreed.

    Args:
        tokens: label ids without special ids (e.g. :attr:`CTCHypothesis.tokens` less pad, sos, eos and blank).
        vocab: the vocabulary that spells them.
        space_id: the space token's id; ``None`` (a vocabulary without one): the tokens are one word.

    Returns:
        Increasing positions into ``tokens``: ``vocab.decode`` of the tokens there is the text, one space between
        words.
    """
    if space_id is None:
        return list(range(len(tokens))) if vocab.decode(tokens).strip() else []
    kept: List[int] = []
    word: List[int] = []
    joint = -1  # the space after the last word kept: it joins that word to the next one kept
    for position, token in enumerate([*tokens, space_id]):  # a space after the last word ends it
        if token != space_id:
            word.append(position)
            continue
        if vocab.decode([tokens[index] for index in word]).strip():
            kept.extend(([joint] if kept else []) + word)
            joint = position
        word = []
    return kept
