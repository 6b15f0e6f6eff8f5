"""Greedy CTC decoding on hand-made paths."""

import math

import pytest
import torch

from kospeech.decode import CTCHypothesis, GreedyCTCDecoder, greedy_ctc_ids, spelling_tokens, token_spans
from kospeech.vocabs import SPECIAL_TOKENS, Vocabulary

BLANK = "-"


@pytest.fixture
def vocab() -> Vocabulary:
    return Vocabulary(list(SPECIAL_TOKENS) + ["가", "나", " "])


def peaked(vocab: Vocabulary, path: str, peak: float = 6.0) -> torch.Tensor:
    """(T', C) log-probs whose argmax spells ``path`` ('-' is the blank)."""
    logits = torch.zeros(len(path), len(vocab))
    for t, char in enumerate(path):
        label = vocab.blank_id if char == BLANK else vocab.encode(char)[0]
        logits[t, label] = peak
    return logits.log_softmax(dim=-1)


def batch(vocab: Vocabulary, paths):
    frames = max(len(p) for p in paths)
    log_probs = torch.full((len(paths), frames, len(vocab)), math.log(1.0 / len(vocab)))
    for row, path in enumerate(paths):
        log_probs[row, : len(path)] = peaked(vocab, path)
    return log_probs, torch.tensor([len(p) for p in paths])


def test_collapses_repeats_and_drops_blanks(vocab):
    log_probs, lengths = batch(vocab, ["가가-가--나나", "--나 나", "가"])
    hyps = GreedyCTCDecoder(vocab)(log_probs, lengths)
    assert [h.text for h in hyps] == ["가가나", "나 나", "가"]
    assert hyps[0].tokens == [4, 4, 5]
    assert hyps[0].timesteps == [0, 3, 6]
    assert hyps[1].timesteps == [2, 3, 4]
    assert all(isinstance(h, CTCHypothesis) for h in hyps)


def test_frames_beyond_length_are_ignored(vocab):
    log_probs, _ = batch(vocab, ["가-나나가", "가-나나가"])
    hyps = GreedyCTCDecoder(vocab)(log_probs, torch.tensor([5, 3]))
    assert [h.text for h in hyps] == ["가나가", "가나"]
    assert greedy_ctc_ids(log_probs, torch.tensor([2, 0]), vocab.blank_id) == [[4], []]


def test_repeat_across_padding_boundary_not_merged_with_next_row(vocab):
    # a token that starts exactly at frame 0 of a row is kept even if the previous row ended with it
    log_probs, lengths = batch(vocab, ["나나", "나-"])
    assert greedy_ctc_ids(log_probs, lengths, vocab.blank_id) == [[5], [5]]


def test_score_is_best_path_log_prob(vocab):
    log_probs, lengths = batch(vocab, ["가-나", "나--"])
    lengths = torch.tensor([3, 2])
    hyps = GreedyCTCDecoder(vocab)(log_probs, lengths)
    expected = [log_probs[0, :3].max(-1).values.sum().item(), log_probs[1, :2].max(-1).values.sum().item()]
    assert [h.score for h in hyps] == pytest.approx(expected)
    assert all(math.isfinite(h.score) and h.score < 0 for h in hyps)


def test_empty_and_all_blank(vocab):
    log_probs, _ = batch(vocab, ["---"])
    hyp = GreedyCTCDecoder(vocab)(log_probs, torch.tensor([3]))[0]
    assert (hyp.tokens, hyp.text, hyp.timesteps) == ([], "", [])
    hyp = GreedyCTCDecoder(vocab)(log_probs, torch.tensor([0]))[0]
    assert (hyp.tokens, hyp.score) == ([], 0.0)


def test_input_validation(vocab):
    log_probs, lengths = batch(vocab, ["가-"])
    decoder = GreedyCTCDecoder(vocab)
    with pytest.raises(ValueError, match="output_lengths must lie"):
        decoder(log_probs, torch.tensor([3]))
    with pytest.raises(ValueError, match="shape"):
        decoder(log_probs[0], lengths)
    for wrong in (lengths.float(), torch.tensor([True])):  # review, stop 37: True decoded one frame
        with pytest.raises(TypeError, match="integer tensor"):
            decoder(log_probs, wrong)
    with pytest.raises(ValueError, match="classes"):
        decoder(log_probs[..., :-1], lengths)


def test_nan_rows_get_nan_score_without_raising(vocab):
    log_probs, lengths = batch(vocab, ["가-나", "나-가"])
    log_probs[0, 1, 0] = float("nan")
    hyps = GreedyCTCDecoder(vocab)(log_probs, lengths)
    assert math.isnan(hyps[0].score)
    assert hyps[1].text == "나가" and math.isfinite(hyps[1].score)
    padded = GreedyCTCDecoder(vocab)(log_probs, torch.tensor([1, 3]))[0]  # NaN only in a padded frame
    assert padded.text == "가" and math.isfinite(padded.score)


def test_token_spans_cover_each_tokens_frames_and_its_posterior(vocab):
    log_probs = peaked(vocab, "-가가--나-가")
    (hypothesis,) = GreedyCTCDecoder(vocab)(log_probs[None], torch.tensor([8]))
    spans = token_spans(log_probs, hypothesis.tokens, hypothesis.timesteps, 8)
    assert [(span.start, span.end) for span in spans] == [(1, 3), (5, 6), (7, 8)]
    expected = log_probs[1, vocab.encode("가")[0]].exp()
    assert spans[0].probability == pytest.approx(float(expected), abs=1e-6)
    assert token_spans(log_probs, [], [], 8) == []


def test_token_spans_of_beam_search_starts_are_at_least_one_frame(vocab):
    log_probs = peaked(vocab, "--가--")
    spans = token_spans(log_probs, [vocab.encode("나")[0]], [2], 5)
    assert (spans[0].start, spans[0].end) == (2, 3)
    assert spans[0].probability < 0.1


def test_the_tokens_that_spell_a_text_drop_empty_words_and_doubled_spaces():
    """Review, stop 34: a doubled space (space, blank, space) and a word of a lone jamo (composing to nothing) left
    two spaces in a transcript's text, while its words and timings had none."""
    vocab = Vocabulary.build(["가나 다"], unit="grapheme")
    ids = {token: index for index, token in enumerate(vocab.tokens)}
    space, g, n, d, a = ids[" "], ids["ᄀ"], ids["ᄂ"], ids["ᄃ"], ids["ᅡ"]
    cases = [
        ([g, a, space, space, n, a], [0, 1, 2, 4, 5], "가 나"),  # the space CTC emitted twice
        ([g, a, space, d, space, n, a], [0, 1, 2, 5, 6], "가 나"),  # a lone onset between two words
        ([space, d, space, g, a, space], [3, 4], "가"),  # nothing before, nothing after
        ([d, space, d], [], ""),  # nothing spells anything
        ([], [], ""),
    ]
    for tokens, positions, text in cases:
        assert spelling_tokens(tokens, vocab, space) == positions, tokens
        assert vocab.decode(tokens[position] for position in positions) == text
    assert spelling_tokens([g, a, space, space, n, a], vocab, None) == list(range(6))  # no space token: one word
    assert spelling_tokens([d], vocab, None) == []
