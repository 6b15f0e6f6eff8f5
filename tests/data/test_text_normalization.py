"""Tests for kospeech.data.text_normalization."""

import random
import re

import pytest

from kospeech.data.text_normalization import native_korean_number, normalize_text, read_digits, sino_korean_number


@pytest.mark.parametrize(
    "number, reading",
    [
        (0, "영"),
        (1, "일"),
        (10, "십"),
        (11, "십일"),
        (20, "이십"),
        (100, "백"),
        (105, "백오"),
        (1000, "천"),
        (1234, "천이백삼십사"),
        (10000, "만"),
        (10001, "만일"),
        (20000, "이만"),
        (110000, "십일만"),
        (12345678, "천이백삼십사만오천육백칠십팔"),
        (100000000, "일억"),
        (100010000, "일억만"),
        (300000000000, "삼천억"),
        (10**12, "일조"),
    ],
)
def test_sino_korean_number(number, reading):
    assert sino_korean_number(number) == reading


@pytest.mark.parametrize(
    "number, plain, attributive",
    [
        (1, "하나", "한"),
        (2, "둘", "두"),
        (3, "셋", "세"),
        (4, "넷", "네"),
        (5, "다섯", "다섯"),
        (10, "열", "열"),
        (11, "열하나", "열한"),
        (20, "스물", "스무"),
        (21, "스물하나", "스물한"),
        (34, "서른넷", "서른네"),
        (99, "아흔아홉", "아흔아홉"),
    ],
)
def test_native_korean_number(number, plain, attributive):
    assert native_korean_number(number) == plain
    assert native_korean_number(number, attributive=True) == attributive


@pytest.mark.parametrize("bad", [0, 100, -1, 1.5, "3", True])
def test_native_korean_number_rejects_out_of_range(bad):
    with pytest.raises(ValueError, match="native_korean_number"):
        native_korean_number(bad)


@pytest.mark.parametrize("bad", [-1, 10**20, 2.0, None])
def test_sino_korean_number_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="sino_korean_number"):
        sino_korean_number(bad)


def test_read_digits():
    assert read_digits("0109") == "공일공구"
    with pytest.raises(ValueError, match="12a"):
        read_digits("12a")
    with pytest.raises(ValueError):
        read_digits("")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1234", "천이백삼십사"),
        ("3.14", "삼 점 일사"),
        ("50%", "오십 퍼센트"),
        ("5,000원", "오천 원"),
        ("3만 원", "삼만 원"),
        ("1억 2천만 원", "일억 이천만 원"),
        ("12,345,678원", "천이백삼십사만오천육백칠십팔 원"),
        ("3시", "세 시"),
        ("3시 30분", "세 시 삼십 분"),
        ("12시 5분", "열두 시 오 분"),
        ("10:30", "열 시 삼십 분"),
        ("7:00", "일곱 시"),
        ("사과 3개", "사과 세 개"),
        ("학생 20명", "학생 스무 명"),
        ("121개", "백스물한 개"),
        ("25살", "스물다섯 살"),
        ("1번째", "첫 번째"),
        ("11번째", "열한 번째"),
        ("2시간", "두 시간"),
        ("3개월", "삼 개월"),
        ("3달", "세 달"),
        ("5달러", "오 달러"),
        ("2024년 3월 5일", "이천이십사 년 삼월 오 일"),
        ("6월 10일", "유월 십 일"),
        ("10월", "시월"),
        ("1번 출구", "일 번 출구"),
        ("101동 1203호", "백일 동 천이백삼 호"),
        ("010-1234-5678", "공일공 일이삼사 오육칠팔"),
        ("02-123-4567", "공이 일이삼 사오육칠"),
        ("007", "공공칠"),
        ("3km", "삼 킬로미터"),
        ("1.5kg", "일 점 오 킬로그램"),
        ("30℃", "삼십 도"),
        ("-3도", "마이너스 삼 도"),
        ("1/2", "이 분의 일"),
        ("3~5개", "삼 에서 다섯 개"),
        ("A+", "A 플러스"),
        ("  오늘은   맑음 ", "오늘은 맑음"),
        ("숫자 없는 문장입니다.", "숫자 없는 문장입니다."),
        # review, stop 34: full-width digits matched the patterns, then stopped the reading with a ValueError
        ("０１０-１２３４-５６７８", "공일공 일이삼사 오육칠팔"),
        ("３시 ３０분", "세 시 삼십 분"),
        ("٣개", "세 개"),
    ],
)
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected


def test_normalize_text_removes_every_digit():
    rng = random.Random(0)
    pieces = ["3시", "5,000원", "010-2222-3333", "12.5%", "7개", "2024년", "1/4", "09", "x", " ", "~", "-", "."]
    for _ in range(500):
        text = "".join(
            rng.choice(pieces) + rng.choice(["", " "]) + str(rng.randrange(10 ** rng.randrange(1, 12)))
            for _ in range(rng.randrange(1, 6))
        )
        assert not re.search(r"\d", normalize_text(text)), text


def test_normalize_text_rejects_non_string():
    with pytest.raises(TypeError, match="str"):
        normalize_text(123)
