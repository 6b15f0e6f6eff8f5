"""CER / WER at corpus level, KoSpeech space convention, empty cases, the per-split meter."""

import unicodedata

import pytest

from kospeech.metrics import ErrorRateMeter, char_errors, character_error_rate, word_error_rate, word_errors


def test_cer_ignores_spaces():
    assert character_error_rate(["오늘 날씨 어때"], ["오늘날씨 어때"]) == 0.0
    assert char_errors("오늘 날씨", "  오늘날시 ") == (1, 4)


def test_cer_is_corpus_level_not_mean_of_utterances():
    refs = ["가나", "다라마바사아자차"]  # 2 + 8 chars
    hyps = ["가", "다라마바사아자차"]  # 1 deletion in the short one
    assert character_error_rate(refs, hyps) == pytest.approx(1 / 10)
    # the mean of per-utterance rates would be (0.5 + 0) / 2 = 0.25


def test_cer_counts_substitutions_insertions_deletions():
    assert character_error_rate(["가나다"], ["가다"]) == pytest.approx(1 / 3)
    assert character_error_rate(["가나다"], ["가나다라마"]) == pytest.approx(2 / 3)
    assert character_error_rate(["가나다"], ["가너다"]) == pytest.approx(1 / 3)
    assert character_error_rate(["가"], ["나다라"]) == pytest.approx(3.0)


def test_wer_splits_on_whitespace():
    assert word_errors("오늘 날씨 어때", "오늘날씨 어때") == (2, 3)
    refs = ["오늘 날씨 어때", "불 꺼 줘"]
    assert word_error_rate(refs, ["오늘 날씨  어때", "불 켜 줘"]) == pytest.approx(1 / 6)


def test_length_mismatch_and_types():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        character_error_rate(["가", "나"], ["가"])
    with pytest.raises(TypeError, match="single str"):
        character_error_rate("가나", "가나")
    with pytest.raises(TypeError, match="utterance 1"):
        word_error_rate(["가", None], ["가", "나"])


def test_empty_references():
    # empty references mixed with non-empty ones: their hypotheses count as insertions
    assert character_error_rate(["", "가나"], ["다", "가나"]) == pytest.approx(1 / 2)
    # no reference characters at all: 0.0 only if every hypothesis is empty too
    assert character_error_rate(["", " "], ["", "  "]) == 0.0
    assert word_error_rate([""], [""]) == 0.0
    with pytest.raises(ValueError, match="no characters"):
        character_error_rate(["", " "], ["", "가"])
    with pytest.raises(ValueError, match="no utterances"):
        character_error_rate([], [])


def test_decomposed_hangul_scores_as_the_same_text():
    """Review, stop 37: 한국어 in NFD (conjoining jamo, as macOS and some tools write it) scored CER 1.0 against
    itself in NFC."""
    decomposed = unicodedata.normalize("NFD", "한국어 말")
    assert char_errors(decomposed, "한국어 말") == (0, 4)
    assert character_error_rate([decomposed], ["한국어 말"]) == word_error_rate([decomposed], ["한국어 말"]) == 0.0
    assert character_error_rate(["한국어 말"], [unicodedata.normalize("NFD", "한국이 말")]) == pytest.approx(1 / 4)


def test_to_dict_gives_every_defined_rate_and_none_for_an_undefined_one():
    """Review, stop 37: one undefined rate made to_dict raise, and with it a whole per-user report."""
    meter = ErrorRateMeter("u2")
    meter.update(["_"], ["가"])  # one character to the usual CER, none to KoSpeech's, which drops "_"
    summary = meter.to_dict()
    assert summary["cer"] == 1.0 and summary["cer_kospeech"] is None
    assert summary["wer"] == 1.0 and summary["num_utterances"] == 1
    assert ErrorRateMeter("empty").to_dict()["cer"] is None
    with pytest.raises(ValueError, match="references contain no characters"):
        _ = meter.cer_kospeech


def test_transcripts_must_come_as_sequences():
    with pytest.raises(TypeError, match="references must be a sequence .* got list_iterator"):
        ErrorRateMeter().update(iter(["가"]), ["가"])


def test_meter_accumulates_per_split_and_resets():
    dev = ErrorRateMeter("dev")
    test = ErrorRateMeter("test")
    refs = ["가나", "다라마바", "사아 자차"]
    hyps = ["가나", "다라마", "사아 자타"]
    dev.update(refs[:2], hyps[:2])
    dev.update(refs[2:], hyps[2:])
    test.update(["가나다"], ["가나다"])
    assert dev.num_utterances == 3
    assert dev.cer == pytest.approx(character_error_rate(refs, hyps))
    assert dev.cer == pytest.approx(2 / 10)
    assert dev.wer == pytest.approx(word_error_rate(refs, hyps))
    assert dev.wer == pytest.approx(2 / 4)
    assert test.cer == 0.0
    summary = dev.to_dict()
    assert summary["name"] == "dev" and summary["char_errors"] == 2 and summary["num_chars"] == 10
    with pytest.raises(ValueError, match="2 references but 1"):
        dev.update(["가", "나"], ["가"])
    assert dev.num_utterances == 3  # a rejected batch adds nothing
    dev.reset()
    assert dev.num_utterances == 0
    with pytest.raises(ValueError, match=r"ErrorRateMeter\('dev'\): no utterances"):
        _ = dev.cer
