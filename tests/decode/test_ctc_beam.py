"""CTC prefix beam search against greedy decoding and an exhaustive sum over all paths."""

import itertools
import math
from collections import defaultdict

import pytest
import torch

from kospeech.decode import BeamSearchCTCDecoder, GreedyCTCDecoder
from kospeech.vocabs import SPECIAL_TOKENS, Vocabulary


@pytest.fixture
def vocab() -> Vocabulary:
    return Vocabulary(list(SPECIAL_TOKENS) + ["가", "나", " "])


def peaked_batch(vocab: Vocabulary, paths, peak: float = 6.0):
    frames = max(len(p) for p in paths)
    logits = torch.zeros(len(paths), frames, len(vocab))
    for row, path in enumerate(paths):
        for t, char in enumerate(path):
            logits[row, t, vocab.blank_id if char == "-" else vocab.encode(char)[0]] = peak
    return logits.log_softmax(dim=-1), torch.tensor([len(p) for p in paths])


def collapse(path, blank):
    out = []
    previous = None
    for label in path:
        if label != blank and label != previous:
            out.append(label)
        previous = label
    return tuple(out)


def exhaustive_labelling_log_probs(log_probs: torch.Tensor, blank: int):
    """log P(labelling) for every labelling, by summing over all C^T' paths of a (T', C) distribution."""
    probs = log_probs.double().exp()
    frames, classes = probs.shape
    totals = defaultdict(float)
    for path in itertools.product(range(classes), repeat=frames):
        p = 1.0
        for t, label in enumerate(path):
            p *= probs[t, label].item()
        totals[collapse(path, blank)] += p
    return {labelling: math.log(p) for labelling, p in totals.items()}


def test_beam_size_one_equals_greedy_on_peaked_paths(vocab):
    log_probs, lengths = peaked_batch(vocab, ["가가-가--나나", "--나 나", "나-나나", "-"])
    lengths[0] = 5
    greedy = GreedyCTCDecoder(vocab)(log_probs, lengths)
    beam = BeamSearchCTCDecoder(vocab, beam_size=1)(log_probs, lengths)
    assert [h.tokens for h in beam] == [h.tokens for h in greedy]
    assert [h.text for h in beam] == ["가가", "나 나", "나나", ""]
    assert [h.timesteps for h in beam] == [h.timesteps for h in greedy]


def test_repeated_characters_need_a_blank(vocab):
    log_probs, lengths = peaked_batch(vocab, ["가-가", "가가가", "가--가가-가"])
    hyps = BeamSearchCTCDecoder(vocab, beam_size=8)(log_probs, lengths)
    assert [h.text for h in hyps] == ["가가", "가", "가가가"]
    assert hyps[2].timesteps == [0, 3, 6]


def test_finds_best_labelling_where_greedy_finds_best_path(vocab):
    # Two frames, P(blank)=0.6, P(가)=0.4 each. Best path "--" (0.36) gives "", but the labelling "가"
    # collects the paths "가가", "가-", "-가": 0.16 + 0.24 + 0.24 = 0.64.
    probs = torch.full((1, 2, len(vocab)), 1e-12)
    probs[0, :, vocab.blank_id] = 0.6
    probs[0, :, vocab.encode("가")[0]] = 0.4
    log_probs = probs.log()
    lengths = torch.tensor([2])
    greedy = GreedyCTCDecoder(vocab)(log_probs, lengths)[0]
    beam = BeamSearchCTCDecoder(vocab, beam_size=4)(log_probs, lengths)[0]
    assert greedy.text == ""
    assert greedy.score == pytest.approx(math.log(0.36), abs=1e-6)
    assert beam.text == "가"
    assert beam.score == pytest.approx(math.log(0.64), abs=1e-6)
    assert beam.timesteps == [0]


def test_nbest_matches_exhaustive_sum_over_paths():
    vocab = Vocabulary(list(SPECIAL_TOKENS) + ["가"])  # C = 5, so 5^4 paths
    generator = torch.Generator().manual_seed(3)
    log_probs = torch.randn(1, 4, len(vocab), generator=generator).mul(2.0).log_softmax(dim=-1)
    exact = exhaustive_labelling_log_probs(log_probs[0], vocab.blank_id)
    ranked = sorted(exact.items(), key=lambda item: -item[1])
    # a beam wider than the number of possible prefixes never prunes, so the search is exact
    decoder = BeamSearchCTCDecoder(vocab, beam_size=len(exact) + 10)
    nbest = decoder.nbest(log_probs, torch.tensor([4]), n=6)[0]
    assert [tuple(h.tokens) for h in nbest] == [labelling for labelling, _ in ranked[:6]]
    assert [h.score for h in nbest] == pytest.approx([score for _, score in ranked[:6]], abs=1e-9)
    assert decoder(log_probs, torch.tensor([4]))[0].tokens == list(ranked[0][0])


def test_scores_finite_and_sorted_with_narrow_beam(vocab):
    log_probs = torch.randn(3, 12, len(vocab)).log_softmax(dim=-1)
    lengths = torch.tensor([12, 7, 1])
    decoder = BeamSearchCTCDecoder(vocab, beam_size=3)
    for hyps in decoder.nbest(log_probs, lengths):
        scores = [h.score for h in hyps]
        assert all(math.isfinite(s) and s <= 0.0 for s in scores)
        assert scores == sorted(scores, reverse=True)
        for h in hyps:
            assert len(h.timesteps) == len(h.tokens)
            assert h.timesteps == sorted(set(h.timesteps))
            assert vocab.blank_id not in h.tokens
    # a labelling never scores below its best path
    greedy = GreedyCTCDecoder(vocab)(log_probs, lengths)
    best = decoder(log_probs, lengths)
    assert all(b.score >= g.score - 1e-9 for b, g in zip(best, greedy))


def test_frames_beyond_length_are_ignored(vocab):
    log_probs, _ = peaked_batch(vocab, ["가-나", "가-나"])
    hyps = BeamSearchCTCDecoder(vocab, beam_size=4)(log_probs, torch.tensor([3, 1]))
    assert [h.text for h in hyps] == ["가나", "가"]
    empty = BeamSearchCTCDecoder(vocab)(log_probs, torch.tensor([0, 2]))[0]
    assert (empty.tokens, empty.score) == ([], 0.0)


def test_prune_top_k(vocab):
    log_probs = torch.randn(2, 10, len(vocab)).mul(3.0).log_softmax(dim=-1)
    lengths = torch.tensor([10, 8])
    full = BeamSearchCTCDecoder(vocab, beam_size=5).nbest(log_probs, lengths)
    unpruned = BeamSearchCTCDecoder(vocab, beam_size=5, prune_top_k=len(vocab)).nbest(log_probs, lengths)
    assert [[h.tokens for h in row] for row in unpruned] == [[h.tokens for h in row] for row in full]
    top1 = BeamSearchCTCDecoder(vocab, beam_size=5, prune_top_k=1)(log_probs, lengths)
    assert all(math.isfinite(h.score) for h in top1)
    # with one candidate label per frame only that frame's best non-blank label can start a token
    best_non_blank = log_probs.clone()
    best_non_blank[..., vocab.blank_id] = -math.inf
    best_non_blank = best_non_blank.argmax(-1)
    for row, h in enumerate(top1):
        assert all(best_non_blank[row, t].item() == token for token, t in zip(h.tokens, h.timesteps))


def test_nan_rows_get_nan_score_without_raising(vocab):
    log_probs, lengths = peaked_batch(vocab, ["가-나", "나-가"])
    log_probs[0, 1, :] = float("nan")
    hyps = BeamSearchCTCDecoder(vocab, beam_size=3)(log_probs, lengths)
    assert math.isnan(hyps[0].score)
    assert hyps[1].text == "나가" and math.isfinite(hyps[1].score)


def test_argument_validation(vocab):
    with pytest.raises(ValueError, match="beam_size"):
        BeamSearchCTCDecoder(vocab, beam_size=0)
    with pytest.raises(ValueError, match="prune_top_k"):
        BeamSearchCTCDecoder(vocab, prune_top_k=0)
    log_probs, lengths = peaked_batch(vocab, ["가"])
    with pytest.raises(ValueError, match=r"\[1, beam_size=2\]"):
        BeamSearchCTCDecoder(vocab, beam_size=2).nbest(log_probs, lengths, n=3)


@pytest.mark.parametrize("impossible", [float("-inf"), float("nan")])
def test_a_frame_that_rules_out_every_class_leaves_distinct_hypotheses(vocab, impossible):
    """Review, stop 37: with no finite extension left, merged (-inf) extensions entered the beam beside the prefix
    they had been merged into: the n-best held one prefix twice."""
    log_probs = torch.randn(1, 4, len(vocab), generator=torch.Generator().manual_seed(0)).log_softmax(dim=-1)
    log_probs[0, 1] = impossible
    (hypotheses,) = BeamSearchCTCDecoder(vocab, beam_size=4).nbest(log_probs, torch.tensor([4]), n=4)
    prefixes = [tuple(hypothesis.tokens) for hypothesis in hypotheses]
    assert len(prefixes) == len(set(prefixes)), prefixes
