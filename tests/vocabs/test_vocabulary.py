import pytest

from kospeech.vocabs import SPECIAL_TOKENS, UnknownCharacterError, Vocabulary

TRANSCRIPTS = ["오늘 날씨 어때", "세 시에 회의 있어", "불 꺼 줘"]


@pytest.mark.parametrize("unit", ["character", "grapheme"])
def test_build_encode_decode_round_trip(unit):
    vocab = Vocabulary.build(TRANSCRIPTS, unit=unit)
    assert tuple(vocab.tokens[:4]) == SPECIAL_TOKENS
    assert (vocab.pad_id, vocab.sos_id, vocab.eos_id, vocab.blank_id) == (0, 1, 2, 3)
    for text in TRANSCRIPTS:
        ids = vocab.encode(text)
        assert min(ids) >= 4
        assert vocab.decode(ids) == text


def test_grapheme_units_are_jamo():
    vocab = Vocabulary.build(["한"], unit="grapheme")
    assert len(vocab) == 4 + 3
    assert vocab.tokenize("한") == ["\u1112", "\u1161", "\u11ab"]


def test_csv_round_trip(tmp_path):
    vocab = Vocabulary.build(TRANSCRIPTS)
    path = vocab.to_csv(tmp_path / "vocab.csv")
    assert path.read_text(encoding="utf-8").splitlines()[0] == "id,char,freq"
    loaded = Vocabulary.from_csv(path)
    assert loaded == vocab
    assert loaded.freqs == vocab.freqs
    assert loaded.fingerprint() == vocab.fingerprint()
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab
    awkward = Vocabulary.build(['가\r나 "x,'])  # review, stop 34: a lone \r was written unquoted and split its row
    assert Vocabulary.from_csv(awkward.to_csv(tmp_path / "awkward.csv")) == awkward


def test_frequencies_order_tokens():
    vocab = Vocabulary.build(["가가가 나"])
    assert vocab.tokens[4] == "가"
    assert vocab.freqs[4] == 3


def test_unknown_character_names_character_and_place():
    vocab = Vocabulary.build(TRANSCRIPTS)
    with pytest.raises(UnknownCharacterError, match=r"train\.tsv:7.*'힣'"):
        vocab.encode("오늘 힣", where="train.tsv:7")


def test_special_tokens_are_not_transcript_characters():
    vocab = Vocabulary.build(TRANSCRIPTS)
    with pytest.raises(UnknownCharacterError):
        vocab.encode("<")


def test_fingerprint_differs_for_different_ids():
    a = Vocabulary.build(TRANSCRIPTS)
    b = Vocabulary.build(TRANSCRIPTS + ["새"])
    assert a.fingerprint() != b.fingerprint()


def test_bad_csv_is_refused(tmp_path):
    path = tmp_path / "vocab.csv"
    path.write_text("id,char,freq\n0,<pad>,0\n2,<sos>,0\n", encoding="utf-8")
    with pytest.raises(ValueError, match="out of order"):
        Vocabulary.from_csv(path)
    path.write_text("id,char,freq\n0,a,0\n1,b,0\n2,c,0\n3,d,0\n", encoding="utf-8")
    with pytest.raises(ValueError, match="must start with"):
        Vocabulary.from_csv(path)
    with pytest.raises(FileNotFoundError):
        Vocabulary.from_csv(tmp_path / "missing.csv")


def test_with_unit_covers_every_text_and_csv_infers_the_unit(tmp_path):
    characters = Vocabulary.build(TRANSCRIPTS)
    graphemes = characters.with_unit("grapheme")
    assert graphemes == Vocabulary.build(TRANSCRIPTS, unit="grapheme")
    assert graphemes.freqs == Vocabulary.build(TRANSCRIPTS, unit="grapheme").freqs
    for text in TRANSCRIPTS:
        assert graphemes.decode(graphemes.encode(text)) == text
    assert characters.with_unit("character") is characters
    assert Vocabulary.from_csv(graphemes.to_csv(tmp_path / "g.csv")).unit == "grapheme"
    assert Vocabulary.from_csv(characters.to_csv(tmp_path / "c.csv")).unit == "character"
