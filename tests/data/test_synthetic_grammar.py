"""Tests for the synthetic corpus' sentence generator (kospeech.data.synthetic.grammar)."""

import random
import re

import pytest

from kospeech.data.synthetic.grammar import (
    RARE_PERSONS,
    RARE_PLACES,
    TEMPLATES,
    SentenceGenerator,
    count_syllables,
    with_particle,
)
from kospeech.data.text_normalization import normalize_text


@pytest.fixture(scope="module")
def samples():
    generator = SentenceGenerator()
    rng = random.Random(0)
    return [generator.sample(rng) for _ in range(30000)]


def test_reaches_20000_sentences_and_600_syllables(samples):
    texts = {sentence.text for sentence in samples}
    syllables = {char for text in texts for char in text if char != " "}
    assert len(texts) >= 20000
    assert len(syllables) >= 600


def test_sentences_are_4_to_40_hangul_syllables_and_spaces(samples):
    for sentence in samples:
        assert 4 <= count_syllables(sentence.text) <= 40, sentence
        assert re.fullmatch(r"[가-힣]+( [가-힣]+)*", sentence.text), sentence
        assert sentence.text == normalize_text(sentence.written)


def test_every_domain_is_used(samples):
    domains = {domain for domain, _ in TEMPLATES}
    assert {sentence.domain for sentence in samples} == domains
    assert {"numbers", "dates", "times", "money", "places", "schedules", "weather", "devices", "names"} <= domains


def test_digits_are_read_out(samples):
    written_with_digits = [s for s in samples if re.search(r"\d", s.written)]
    assert len(written_with_digits) > len(samples) // 3
    assert not any(re.search(r"\d", s.text) for s in written_with_digits)


def test_same_seed_same_sentences_different_seed_different():
    generator = SentenceGenerator()
    first = [s.written for s in generator.sample_unique(random.Random(7), 50)]
    second = [s.written for s in generator.sample_unique(random.Random(7), 50)]
    other = [s.written for s in generator.sample_unique(random.Random(8), 50)]
    assert first == second
    assert other != first


def test_sample_unique_excludes_and_never_repeats():
    generator = SentenceGenerator()
    taken = {s.text for s in generator.sample_unique(random.Random(1), 300)}
    fresh = generator.sample_unique(random.Random(1), 300, exclude=taken)
    texts = [s.text for s in fresh]
    assert len(set(texts)) == 300
    assert not taken & set(texts)


def test_favourites_are_frequent_for_users_and_rare_otherwise():
    favourites = {"person": [RARE_PERSONS[0]], "place": [RARE_PLACES[0]]}
    generator = SentenceGenerator(rare_prob=0.02)
    user = generator.sample_unique(random.Random(3), 200, favourites=favourites, favourite_prob=0.5)
    base = generator.sample_unique(random.Random(4), 2000)
    words = (RARE_PERSONS[0], RARE_PLACES[0])

    def hits(sentences):
        return sum(any(word in s.text for word in words) for s in sentences)

    assert hits(user) >= 60
    assert all(s.favourite in words for s in user if s.favourite is not None)
    assert hits(base) <= 10


def test_favourite_kind_is_checked():
    with pytest.raises(ValueError, match="favourite kinds"):
        SentenceGenerator().sample(random.Random(0), favourites={"food": ["김밥"]}, favourite_prob=1.0)


@pytest.mark.parametrize(
    "word, particle, expected",
    [
        ("사과", "이/가", "사과가"),
        ("책", "이/가", "책이"),
        ("서울", "으로/로", "서울로"),
        ("부산역", "으로/로", "부산역으로"),
        ("3층", "으로/로", "3층으로"),
        ("7", "으로/로", "7로"),
        ("10%", "이야/야", "10%야"),
        ("5,000원", "이에요/예요", "5,000원이에요"),
        ("민수", "아/야", "민수야"),
        ("지훈", "아/야", "지훈아"),
    ],
)
def test_with_particle(word, particle, expected):
    assert with_particle(word, particle) == expected


def test_with_particle_rejects_unknown_particle():
    with pytest.raises(ValueError, match="unknown particle"):
        with_particle("사과", "도/두")


def test_generator_validates_bounds():
    with pytest.raises(ValueError, match="min_syllables"):
        SentenceGenerator(min_syllables=10, max_syllables=5)
    with pytest.raises(ValueError, match="rare_prob"):
        SentenceGenerator(rare_prob=1.5)
