"""Jamo composition: well-formed runs compose as NFC does, malformed ones are repaired, never left as stray jamo."""

import random
import unicodedata

import pytest

from kospeech.vocabs import Vocabulary
from kospeech.vocabs.hangul import compose_jamo, is_conjoining_jamo

ONSETS = [chr(code) for code in range(0x1100, 0x1113)]
VOWELS = [chr(code) for code in range(0x1161, 0x1176)]
CODAS = [chr(code) for code in range(0x11A8, 0x11C3)]


@pytest.mark.parametrize(
    "text",
    ["안녕하세요", "닭 값 읽고 앉아", "서현 씨 포장해 주세요", "abc ㅋㅋ 3.5%", "", "  띄어 쓰기  "],
)
def test_well_formed_text_comes_back_as_nfc(text):
    assert compose_jamo(unicodedata.normalize("NFD", text)) == unicodedata.normalize("NFC", text)
    assert compose_jamo(text) == unicodedata.normalize("NFC", text)


@pytest.mark.parametrize(
    "jamo, expected",
    [
        ("\u1166", "에"),  # a vowel alone takes the silent onset
        ("\u110b\u1175\u11ab\u1175", "이니"),  # coda before a vowel opens the next syllable
        ("\u110b\u1167\u11bc\u1161", "영아"),  # except ㅇ, whose onset form is silent
        ("\u1109\u1165\u110b\u1109\u1169", "성소"),  # an onset without a vowel closes the open syllable
        ("\u1100\u1161\u11a8\u1100", "각"),  # ... and is dropped when the syllable is closed
        ("\u1104", ""),  # ㄸ has no coda form and no vowel: dropped
        ("\u11a8", ""),  # a coda alone
        ("\u1100\u1161\u11a8\u11ab", "각"),  # a second coda
        ("\u1112\u1161\u11ab\u1100", "한"),
        ("\u1113\u1161", "아"),  # archaic jamo dropped
    ],
)
def test_malformed_runs_are_repaired(jamo, expected):
    assert compose_jamo(jamo) == expected


def test_random_jamo_never_leaves_a_stray_jamo():
    rng = random.Random(0)
    alphabet = ONSETS + VOWELS + CODAS + [" ", " "]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        composed = compose_jamo(text)
        assert not any(is_conjoining_jamo(character) for character in composed), (text, composed)
        assert composed.count(" ") == text.count(" ")


def test_grapheme_vocabulary_decodes_without_stray_jamo():
    vocab = Vocabulary.build(["안녕 하세요 닭"], unit="grapheme")
    ids = vocab.encode("안녕 하세요")
    vowel_id = vocab.encode("아")[1]
    assert vocab.decode(ids) == "안녕 하세요"
    assert vocab.decode([vowel_id] + ids) == "아안녕 하세요"
