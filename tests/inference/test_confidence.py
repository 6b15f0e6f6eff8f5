"""Confidence measures, Platt calibration, AUROC and the reliability table, and their place in a checkpoint."""

import itertools
import math

import numpy as np
import pytest
import torch

from kospeech.checkpoint import load_checkpoint, save_checkpoint, store_confidence_calibration
from kospeech.data.features import FeatureConfig
from kospeech.inference.confidence import (
    ConfidenceCalibration,
    PlattScaling,
    auroc,
    reliability_table,
    utterance_confidence,
    word_confidence,
)
from kospeech.model_builder import build_deepspeech2
from kospeech.vocabs import SPECIAL_TOKENS, Vocabulary


def brute_force_auroc(scores, labels):
    pairs = [(p, n) for p, n in itertools.product(range(len(scores)), repeat=2) if labels[p] and not labels[n]]
    wins = sum(1.0 if scores[p] > scores[n] else 0.5 if scores[p] == scores[n] else 0.0 for p, n in pairs)
    return wins / len(pairs)


def test_auroc_matches_pair_counting_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 5, size=30).astype(float).tolist()
        labels = (rng.random(30) < 0.4).tolist()
        if 0 < sum(labels) < 30:
            assert auroc(scores, labels) == pytest.approx(brute_force_auroc(scores, labels))
    assert auroc([0.1, 0.9], [False, True]) == 1.0
    with pytest.raises(ValueError, match="positive"):
        auroc([0.5, 0.6], [True, True])


def test_platt_fit_recovers_the_generating_map():
    rng = np.random.default_rng(1)
    truth = PlattScaling(slope=2.0, intercept=-1.0)
    raw = rng.uniform(0.02, 0.98, size=20000)
    correct = rng.random(raw.size) < np.array([truth(value) for value in raw])
    fitted = PlattScaling.fit(raw.tolist(), correct.tolist())
    assert fitted.slope == pytest.approx(2.0, abs=0.1)
    assert fitted.intercept == pytest.approx(-1.0, abs=0.1)
    assert PlattScaling()(0.3) == pytest.approx(0.3)
    assert fitted(0.0) == 0.0
    with pytest.raises(ValueError, match="all right or all wrong"):
        PlattScaling.fit([0.2, 0.4], [True, True])


def test_a_steep_fitted_map_never_overflows_and_bad_stored_maps_are_refused():
    """Review, stop 33: a fit on nearly separable items gave a slope near 110, and ``math.exp`` then overflowed for
    any raw measure below about 1e-3, failing the whole transcription; stored maps were taken unchecked."""
    steep = PlattScaling(slope=110.0, intercept=-5.0)
    for raw in (1e-9, 1e-3, 0.5, 1.0 - 1e-9):
        assert 0.0 <= steep(raw) <= 1.0
    assert steep(1e-3) == pytest.approx(0.0, abs=1e-12) and steep(0.99) == pytest.approx(1.0)
    assert PlattScaling(slope=2.0, intercept=-1.0)(0.3) == pytest.approx(1 / (1 + math.exp(-(2 * math.log(3 / 7) - 1))))
    for bad in ({"slope": "2", "intercept": 0.0}, {"slope": float("nan"), "intercept": 0.0}):
        with pytest.raises(ValueError, match="must be a finite number"):
            ConfidenceCalibration.from_dict({"word": bad, "utterance": {"slope": 1.0, "intercept": 0.0}})


def test_raw_measures():
    assert word_confidence([0.9, 0.4, 0.8]) == pytest.approx(0.4)
    assert utterance_confidence([0.9, 0.5]) == pytest.approx(0.7)
    assert word_confidence([]) == utterance_confidence([]) == 0.0


def test_reliability_table_bins():
    table = reliability_table([0.05, 0.15, 0.95, 0.97, 1.0], [False, True, True, True, False], bins=10)
    assert [(row["low"], row["count"]) for row in table] == [(0.0, 1), (0.1, 1), (0.9, 3)]
    assert table[-1]["accuracy"] == pytest.approx(2 / 3)
    # review, stop 37: NaN fell in no bin and 1.2 in the last one, silently
    for bad in (float("nan"), 1.2, -0.1):
        with pytest.raises(
            ValueError, match=r"confidences must be numbers in \[0, 1\]: 1 are not, the first at position 1 \("
        ):
            reliability_table([0.5, bad], [True, False])
    with pytest.raises(ValueError, match="2 confidences but 1 correctness flags"):
        reliability_table([0.5, 0.6], [True])


def test_calibration_is_stored_in_a_checkpoint_without_touching_the_weights(tmp_path):
    vocab = Vocabulary(list(SPECIAL_TOKENS) + ["가", " "])
    model = build_deepspeech2(8, len(vocab), {"num_rnn_layers": 1, "rnn_hidden_dim": 8})
    path = save_checkpoint(
        tmp_path / "base.pt",
        model,
        model_config={"input_dim": 8, "num_classes": len(vocab)},
        vocab=vocab,
        feature_config=FeatureConfig(num_mels=8),
    )
    assert load_checkpoint(path).confidence_calibration == {}
    calibration = ConfidenceCalibration(word=PlattScaling(1.5, 0.2), utterance=PlattScaling(3.0, -2.0))
    store_confidence_calibration(path, calibration.to_dict())
    loaded = load_checkpoint(path)
    assert ConfidenceCalibration.from_dict(loaded.confidence_calibration) == calibration
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.model_state_dict[key], value)
    with pytest.raises(ValueError, match="confidence_calibration"):
        ConfidenceCalibration.from_dict({"word": {"slope": 1.0}})
