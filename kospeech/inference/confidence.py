"""Confidence that means something: per word and per utterance, from token posteriors, calibrated on held-out data.

The per-frame geometric mean of the best path's probability says nothing: blank frames, most of any utterance,
are near-certain even when every word is wrong. The measures here look at the decoded tokens only:

- a token's probability is its mean posterior over the frames where it is the most likely label
  (:func:`kospeech.decode.token_spans`);
- a word's raw confidence is the lowest probability of its tokens (one doubtful jamo makes a wrong syllable);
- an utterance's raw confidence is the mean probability of its tokens (an empty transcript: 0).

Raw measures rank well but are not probabilities. :class:`PlattScaling` maps one to a probability with two
parameters fitted on held-out data (regularized logistic regression on the raw measure's logit): for words, the probability
that the word is right; for utterances, that the transcript's CER is at most 10 %. A checkpoint carries its
:class:`ConfidenceCalibration` (``benchmarks/confidence.py`` fits and stores it); without one the raw measures are
reported as they are.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
from scipy.optimize import minimize

__all__ = [
    "ConfidenceCalibration",
    "PlattScaling",
    "auroc",
    "reliability_table",
    "utterance_confidence",
    "word_confidence",
]

_EPSILON = 1e-6


def word_confidence(token_probabilities: Sequence[float]) -> float:
    """Raw confidence of one word: the lowest probability of its tokens (0 for no token)."""
    return float(min(token_probabilities)) if len(token_probabilities) else 0.0


def utterance_confidence(token_probabilities: Sequence[float]) -> float:
    """Raw confidence of one transcript: the mean probability of its tokens (0 for an empty transcript)."""
    return float(np.mean(token_probabilities)) if len(token_probabilities) else 0.0


def _logit(value: float) -> float:
    clipped = min(max(value, _EPSILON), 1.0 - _EPSILON)
    return math.log(clipped / (1.0 - clipped))


@dataclass
class PlattScaling:
    """``p = sigmoid(slope * logit(raw) + intercept)``; the identity map by default."""

    slope: float = 1.0
    intercept: float = 0.0

    def __call__(self, raw: float) -> float:
        """Calibrated probability of a raw measure in [0, 1] (0 stays 0: nothing was decoded)."""
        if raw <= 0.0:
            return 0.0
        z = self.slope * _logit(raw) + self.intercept
        return 0.5 * (1.0 + math.tanh(0.5 * z))  # the sigmoid, without exp's overflow for a steep fitted slope

    @classmethod
    def fit(cls, raw: Sequence[float], correct: Sequence[bool], ridge: float = 1e-2) -> PlattScaling:
        """Fit by maximum likelihood: logistic regression on the raw measure's logit, lightly regularized.

        Args:
            raw: raw measures of held-out items.
            correct: whether each item was right.
            ridge: L2 penalty on both parameters (keeps the fit finite when the items are separable).

        Raises:
            ValueError: fewer than two items, lengths differ, or all labels equal.
        """
        if len(raw) != len(correct) or len(raw) < 2:
            raise ValueError(
                f"need two or more (raw, correct) pairs of equal length, got {len(raw)} and {len(correct)}"
            )
        labels = np.asarray(correct, dtype=np.float64)
        if labels.min() == labels.max():
            raise ValueError("the held-out items are all right or all wrong: nothing to calibrate against")
        logits = np.array([_logit(value) for value in raw])

        def loss_and_gradient(weights: np.ndarray):
            z = weights[0] * logits + weights[1]
            loss = np.sum(np.logaddexp(0.0, z) - labels * z) + 0.5 * ridge * float(weights @ weights)
            residual = 0.5 * (1.0 + np.tanh(0.5 * z)) - labels  # sigmoid(z) - y, overflow-free
            gradient = np.array([residual @ logits, residual.sum()]) + ridge * weights
            return loss, gradient

        result = minimize(loss_and_gradient, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        return cls(slope=float(result.x[0]), intercept=float(result.x[1]))


@dataclass
class ConfidenceCalibration:
    """The two maps a checkpoint carries: for word confidences and for utterance confidences."""

    word: PlattScaling = field(default_factory=PlattScaling)
    utterance: PlattScaling = field(default_factory=PlattScaling)

    def to_dict(self) -> Dict[str, Any]:
        """Plain values, as stored in a checkpoint's ``confidence_calibration``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Optional[Mapping[str, Any]]) -> ConfidenceCalibration:
        """Inverse of :meth:`to_dict`; ``None`` or ``{}`` gives the identity maps.

        Raises:
            ValueError: a malformed entry.
        """
        if not values:
            return cls()
        try:
            maps = {kind: PlattScaling(**values[kind]) for kind in ("word", "utterance")}
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bad confidence_calibration {dict(values)!r}: {exc}") from exc
        for kind, scaling in maps.items():
            for name, value in asdict(scaling).items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(
                        f"bad confidence_calibration: {kind}.{name} must be a finite number, got {value!r}"
                    )
        return cls(**maps)


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random negative (ties: half).

    Raises:
        ValueError: lengths differ, or no positive or no negative.
    """
    values = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(positives, dtype=bool)
    if values.shape != labels.shape:
        raise ValueError(f"{values.size} scores for {labels.size} labels")
    count_positive, count_negative = int(labels.sum()), int((~labels).sum())
    if not count_positive or not count_negative:
        raise ValueError("AUROC needs at least one positive and one negative")
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size)
    sorted_values = values[order]
    start = 0
    while start < values.size:
        stop = start
        while stop + 1 < values.size and sorted_values[stop + 1] == sorted_values[start]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop) / 2.0 + 1.0
        start = stop + 1
    rank_sum = ranks[labels].sum()
    return float((rank_sum - count_positive * (count_positive + 1) / 2.0) / (count_positive * count_negative))


def reliability_table(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> List[Dict[str, Any]]:
    """Reliability diagram data: per confidence bin, the mean confidence, the share correct and the count.

    Args:
        confidences: calibrated confidences in [0, 1].
        correct: whether each item was right.
        bins: equal-width bins over [0, 1].

    Returns:
        One ``{"low", "high", "confidence", "accuracy", "count"}`` per non-empty bin.

    Raises:
        ValueError: a confidence that is not a number in [0, 1] (it would fall in no bin, or the wrong one), or the
            two sequences differ in length.
    """
    values = np.asarray(confidences, dtype=np.float64)
    labels = np.asarray(correct, dtype=np.float64)
    if values.shape != labels.shape:
        raise ValueError(f"got {values.size} confidences but {labels.size} correctness flags; they must pair up")
    outside = ~((values >= 0.0) & (values <= 1.0))  # NaN included
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"confidences must be numbers in [0, 1]: {int(outside.sum())} are not, the first at position {first} "
            f"({float(values[first])})"
        )
    index = np.minimum((values * bins).astype(int), bins - 1)
    table = []
    for position in range(bins):
        members = index == position
        if members.any():
            table.append(
                {
                    "low": position / bins,
                    "high": (position + 1) / bins,
                    "confidence": float(values[members].mean()),
                    "accuracy": float(labels[members].mean()),
                    "count": int(members.sum()),
                }
            )
    return table
