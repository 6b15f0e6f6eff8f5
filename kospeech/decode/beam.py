"""CTC prefix beam search in log space (no language model).

Each prefix (a collapsed label sequence) carries two log-probabilities: ``p_b``, the total probability of the
paths that produce the prefix and end in a blank, and ``p_nb``, of those ending in its last label. Per frame with
label log-probabilities ``y``:

- the prefix itself survives through a blank (``logaddexp(p_b, p_nb) + y[blank]`` into ``p_b``) or by repeating
  its last label (``p_nb + y[last]`` into ``p_nb``);
- it extends with a label ``c`` into ``prefix + c`` (into ``p_nb``) from ``logaddexp(p_b, p_nb) + y[c]``, except
  when ``c`` equals its last label: then only blank-ending paths can extend (``p_b + y[c]``), since ``aa`` without a
  blank in between collapses to ``a``.

An extension that equals a prefix already in the beam is merged into it (log-sum), so every kept prefix carries
the probability of all paths the beam followed to it. The ``beam_size`` best prefixes by ``logaddexp(p_b, p_nb)``
survive each frame. The search is exact over all labels unless ``prune_top_k`` restricts each frame's extensions
to its k most likely non-blank labels (faster for large vocabularies).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
from torch import Tensor

from kospeech.decode.ctc import CTCHypothesis, CTCVocabulary, check_ctc_inputs

__all__ = ["BeamSearchCTCDecoder", "MAX_BEAM_SIZE", "check_beam_size"]

MAX_BEAM_SIZE = 256
"""The widest beam accepted: past a few dozen prefixes CTC beam search stops gaining accuracy, and the work per frame
grows with the beam (10**6 ran for minutes per second of audio), so a larger value is a mistake, not a setting."""


def check_beam_size(beam_size: object) -> int:
    """The one check of a beam width, for the decoders and every caller that takes one.

    Raises:
        ValueError: not an int in ``[1, MAX_BEAM_SIZE]``.
    """
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or not 1 <= beam_size <= MAX_BEAM_SIZE:
        raise ValueError(f"beam_size must be an integer from 1 to {MAX_BEAM_SIZE}, got {beam_size!r}")
    return beam_size


Prefix = Tuple[int, ...]


class BeamSearchCTCDecoder:
    """CTC prefix beam search returning the most probable labelling found per utterance.

    Args:
        vocab: provides ``blank_id``, ``decode(ids)`` and ``len(vocab)`` (the number of classes C).
        beam_size: prefixes kept per frame (>= 1). ``beam_size=1`` follows a single prefix.
        prune_top_k: if given (>= 1), only the k most likely non-blank labels of each frame are tried as extensions.

    Inputs:
        log_probs: (B, T', C) natural-log probabilities, batch-major.
        output_lengths: (B,) valid output frames per row, any order, any device.

    Returns:
        ``__call__``: one ``CTCHypothesis`` per row, the best prefix. ``nbest``: per row, up to ``n`` hypotheses,
        best first. ``score`` is the prefix log-probability (summed over the paths the beam kept);
        ``timesteps`` come from the most probable way the beam reached each prefix.
    """

    def __init__(self, vocab: CTCVocabulary, beam_size: int = 10, prune_top_k: Optional[int] = None) -> None:
        check_beam_size(beam_size)
        if prune_top_k is not None and (
            isinstance(prune_top_k, bool) or not isinstance(prune_top_k, int) or prune_top_k < 1
        ):
            raise ValueError(f"prune_top_k must be None or an integer >= 1, got {prune_top_k!r}")
        self.vocab = vocab
        self.blank_id = int(vocab.blank_id)
        self.beam_size = beam_size
        self.prune_top_k = prune_top_k

    def __call__(self, log_probs: Tensor, output_lengths: Tensor) -> List[CTCHypothesis]:
        return [hypotheses[0] for hypotheses in self.nbest(log_probs, output_lengths, n=1)]

    def nbest(self, log_probs: Tensor, output_lengths: Tensor, n: Optional[int] = None) -> List[List[CTCHypothesis]]:
        """Up to ``n`` (default ``beam_size``, at most ``beam_size``) hypotheses per row, best first.

        Args:
            log_probs: (B, T', C) log-probabilities.
            output_lengths: (B,) valid output frames per row.
            n: hypotheses to return per row, in ``[1, beam_size]``.

        Returns:
            B lists of ``CTCHypothesis`` sorted by descending score; a zero-length row gives one empty hypothesis
            with score 0.0; a row with NaN in its valid frames is searched with NaN as impossible (-inf) and every
            hypothesis gets score NaN.
        """
        n = self.beam_size if n is None else n
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.beam_size:
            raise ValueError(f"n must be an integer in [1, beam_size={self.beam_size}], got {n!r}")
        lengths = check_ctc_inputs(log_probs, output_lengths, self.blank_id)
        if log_probs.size(-1) != len(self.vocab):
            raise ValueError(f"log_probs have {log_probs.size(-1)} classes but the vocabulary has {len(self.vocab)}")
        frames = log_probs.detach().cpu().double().numpy()  # (B, T', C)
        results = []
        for row, length in enumerate(lengths.tolist()):
            valid = frames[row, :length]
            has_nan = bool(np.isnan(valid).any())
            beam = self._search(np.where(np.isnan(valid), -np.inf, valid) if has_nan else valid)
            if has_nan:
                beam = [(prefix, float("nan"), ts) for prefix, _, ts in beam]
            results.append(
                [
                    CTCHypothesis(tokens=list(prefix), text=self.vocab.decode(prefix), score=score, timesteps=list(ts))
                    for prefix, score, ts in beam[:n]
                ]
            )
        return results

    def _search(self, log_probs: np.ndarray) -> List[Tuple[Prefix, float, Tuple[int, ...]]]:
        """Beam search over one utterance.

        Args:
            log_probs: (T', C) float64 log-probabilities of the valid frames.

        Returns:
            The final beam as (prefix, log-probability, timesteps), best first.
        """
        num_classes = log_probs.shape[1]
        blank = self.blank_id
        non_blank = np.array([label for label in range(num_classes) if label != blank], dtype=np.int64)
        prefixes: List[Prefix] = [()]
        stamps: List[Tuple[int, ...]] = [()]
        p_b = np.array([0.0])
        p_nb = np.array([-np.inf])
        for t, frame in enumerate(log_probs):
            size = len(prefixes)
            total = np.logaddexp(p_b, p_nb)  # (K,)
            last = np.array([prefix[-1] if prefix else -1 for prefix in prefixes], dtype=np.int64)  # (K,)
            has_last = last >= 0

            # The prefix itself, through a blank or a repeat of its last label.
            stay_b = total + frame[blank]
            stay_nb = np.full(size, -np.inf)
            stay_nb[has_last] = p_nb[has_last] + frame[last[has_last]]

            # Extensions prefix + c, as a dense (K, C) matrix with -inf for blank and pruned labels.
            labels = non_blank
            if self.prune_top_k is not None and self.prune_top_k < len(non_blank):
                top = np.argpartition(-frame[non_blank], self.prune_top_k - 1)[: self.prune_top_k]
                labels = non_blank[top]
            extend = np.full((size, num_classes), -np.inf)
            extend[:, labels] = total[:, None] + frame[labels][None, :]
            repeat = has_last & np.isin(last, labels)
            extend[repeat, last[repeat]] = p_b[repeat] + frame[last[repeat]]

            # Merge extensions that land on a prefix already in the beam.
            index: Dict[Prefix, int] = {prefix: k for k, prefix in enumerate(prefixes)}
            new_stamps = list(stamps)
            for k, prefix in enumerate(prefixes):
                parent = index.get(prefix[:-1]) if prefix else None
                if parent is None:
                    continue
                merged = extend[parent, prefix[-1]]
                if merged > np.logaddexp(stay_b[k], stay_nb[k]):
                    new_stamps[k] = stamps[parent] + (t,)
                stay_nb[k] = np.logaddexp(stay_nb[k], merged)
                extend[parent, prefix[-1]] = -np.inf

            candidates: List[Tuple[float, Prefix, float, float, Tuple[int, ...]]] = [
                (float(np.logaddexp(stay_b[k], stay_nb[k])), prefixes[k], stay_b[k], stay_nb[k], new_stamps[k])
                for k in range(size)
            ]
            flat = extend.ravel()
            keep = min(self.beam_size, flat.size)
            best = np.argpartition(-flat, keep - 1)[:keep]
            for position in best.tolist():
                score = float(flat[position])
                if score == -np.inf:  # blank, pruned or merged above: a frame of -inf would add them as duplicates
                    continue
                k, label = divmod(position, num_classes)
                candidates.append((score, prefixes[k] + (label,), -np.inf, score, stamps[k] + (t,)))

            candidates.sort(key=lambda item: (-item[0], item[1]))
            finite = [item for item in candidates if item[0] > -np.inf]
            survivors = (finite or candidates)[: self.beam_size]
            prefixes = [item[1] for item in survivors]
            p_b = np.array([item[2] for item in survivors])
            p_nb = np.array([item[3] for item in survivors])
            stamps = [item[4] for item in survivors]

        scores = np.logaddexp(p_b, p_nb)
        return [(prefixes[k], float(scores[k]), stamps[k]) for k in range(len(prefixes))]
