"""Korean text normalization: digits and symbols to their Hangul readings.

Transcripts for speech recognition must spell out what is spoken. ``normalize_text`` rewrites Arabic
numerals, unit abbreviations and a few symbols as Hangul:

* plain numbers use Sino-Korean readings: ``1234`` -> ``천이백삼십사``, ``3.14`` -> ``삼 점 일사``,
  ``5,000원`` -> ``오천 원``, ``3만 원`` -> ``삼만 원``;
* counters that take native numbers (``시``, ``개``, ``명``, ``살``, ``번째``, ``마리``, ...):
  ``3시`` -> ``세 시``, ``1번째`` -> ``첫 번째``, ``25살`` -> ``스물다섯 살``;
* dates and times: ``2024년 3월 5일`` -> ``이천이십사 년 삼월 오 일``, ``6월`` -> ``유월``,
  ``10:30`` -> ``열 시 삼십 분``;
* phone-number style digit strings (``010-1234-5678``, or any digit string with a leading zero) are
  read digit by digit with ``공`` for zero: ``공일공 일이삼사 오육칠팔``;
* ``%`` -> ``퍼센트``, ``km`` -> ``킬로미터``, ``℃`` -> ``도``, fractions ``1/2`` -> ``이 분의 일``.

A number and the unit that follows it are written with a space between them (Korean orthography writes
units as separate words); month names (``삼월``, ``유월``, ``시월``) and the large-number words
``만``/``억``/``조`` stay attached. Everything that is not a number or a listed symbol is left unchanged,
and runs of whitespace are collapsed to one space.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Dict, List, Match

__all__ = ["normalize_text", "sino_korean_number", "native_korean_number", "read_digits"]

_SINO_DIGITS = ["영", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"]
_PHONE_DIGITS = ["공", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"]
_SMALL_UNITS = ["", "십", "백", "천"]
_LARGE_UNITS = ["", "만", "억", "조", "경"]
_MAX_SINO = 10 ** (4 * len(_LARGE_UNITS)) - 1

_NATIVE_ONES = ["", "하나", "둘", "셋", "넷", "다섯", "여섯", "일곱", "여덟", "아홉"]
_NATIVE_ONES_ATTRIBUTIVE = ["", "한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉"]
_NATIVE_TENS = ["", "열", "스물", "서른", "마흔", "쉰", "예순", "일흔", "여든", "아흔"]

_MONTHS = {6: "유월", 10: "시월"}

# Counters read with native numbers (below 100; hundreds and above switch to Sino-Korean for the hundreds).
_NATIVE_COUNTERS = [
    "번째",
    "시간",
    "시",
    "개",
    "명",
    "살",
    "마리",
    "잔",
    "권",
    "장",
    "대",
    "병",
    "벌",
    "켤레",
    "그릇",
    "송이",
    "가지",
    "군데",
    "사람",
    "달",
    "척",
    "곳",
]
# Units and counters read with Sino-Korean numbers.
_SINO_COUNTERS = [
    "개월",
    "년",
    "월",
    "일",
    "분",
    "초",
    "원",
    "층",
    "호",
    "번",
    "동",
    "주",
    "도",
    "회",
    "인분",
    "킬로미터",
    "킬로그램",
    "미터",
    "센티미터",
    "그램",
    "리터",
    "퍼센트",
    "점",
    "세",
    "학년",
    "단계",
    "페이지",
    "쪽",
    "등",
    "위",
    "차",
    "박",
    "일차",
    "년도",
    "달러",
    "명분",
    "킬로",
    "평",
]
# Latin or symbolic unit spellings and their readings (matched right after a number).
_SYMBOL_UNITS: Dict[str, str] = {
    "km": "킬로미터",
    "kg": "킬로그램",
    "cm": "센티미터",
    "mm": "밀리미터",
    "ml": "밀리리터",
    "m": "미터",
    "g": "그램",
    "l": "리터",
    "L": "리터",
    "%": "퍼센트",
    "℃": "도",
    "°C": "도",
    "°": "도",
    "$": "달러",
}
# Symbols read out wherever they stand.
_SYMBOL_WORDS: Dict[str, str] = {"%": "퍼센트", "+": "플러스", "&": "앤드", "℃": "도", "°": "도"}
_ATTACHED_LARGE = ["십", "백", "천", "만", "억", "조"]

_NUMBER = r"\d{1,3}(?:,\d{3})+|\d+"
_PHONE_RE = re.compile(r"(?<![\d-])(\d{2,4})-(\d{3,4})-(\d{4})(?![\d-])")
_TIME_RE = re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?![\d:])")
_FRACTION_RE = re.compile(r"(?<![\d/])(\d+)/(\d+)(?![\d/])")
_RANGE_RE = re.compile(r"(?<=\d)\s*~\s*(?=\d)")
_NEGATIVE_RE = re.compile(r"(?:(?<=^)|(?<=\s))-(?=\d)")


def _alternation(words: List[str]) -> str:
    return "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))


_UNIT_KIND: Dict[str, str] = {
    **dict.fromkeys(_SINO_COUNTERS, "sino"),
    **dict.fromkeys(_NATIVE_COUNTERS, "native"),
    **dict.fromkeys(_SYMBOL_UNITS, "symbol"),
}
_NUMBER_RE = re.compile(
    rf"(?P<number>{_NUMBER})(?P<fraction>\.\d+)?(?P<large>{_alternation(_ATTACHED_LARGE)})?"
    rf"(?:\s?(?P<unit>{_alternation(list(_UNIT_KIND))})(?![A-Za-z]))?"
)
_WHITESPACE_RE = re.compile(r"\s+")
_DIGIT_RE = re.compile(r"\d")


def sino_korean_number(n: int) -> str:
    """Sino-Korean reading of a non-negative integer (``1234`` -> ``천이백삼십사``, ``10000`` -> ``만``).

    A leading ``일`` is dropped before ``십``, ``백``, ``천`` and a lone ``만`` (as spoken); ``억`` and above
    keep it (``일억``).

    Args:
        n: the number, ``0 <= n < 10**20``.

    Returns:
        The reading in Hangul without spaces.

    Raises:
        ValueError: ``n`` is negative, too large, or not an integer.
    """
    if not isinstance(n, int) or isinstance(n, bool):
        raise ValueError(f"sino_korean_number expects an int, got {n!r}")
    if n < 0 or n > _MAX_SINO:
        raise ValueError(f"sino_korean_number supports 0 <= n <= {_MAX_SINO}, got {n}")
    if n == 0:
        return _SINO_DIGITS[0]
    parts = []
    for position in range(len(_LARGE_UNITS) - 1, -1, -1):
        group = (n // 10 ** (4 * position)) % 10000
        if group == 0:
            continue
        group_text = _sino_below_10000(group)
        if position == 1 and group == 1:
            group_text = ""
        parts.append(group_text + _LARGE_UNITS[position])
    return "".join(parts)


def _sino_below_10000(n: int) -> str:
    text = []
    for position in range(3, -1, -1):
        digit = (n // 10**position) % 10
        if digit == 0:
            continue
        if digit == 1 and position > 0:
            text.append(_SMALL_UNITS[position])
        else:
            text.append(_SINO_DIGITS[digit] + _SMALL_UNITS[position])
    return "".join(text)


def native_korean_number(n: int, attributive: bool = False) -> str:
    """Native Korean reading of ``1 <= n <= 99`` (``3`` -> ``셋``; before a counter ``세``).

    Args:
        n: the number.
        attributive: the form used before a counter (``한``, ``두``, ``세``, ``네``, ``스무``), as in ``세 시``.

    Returns:
        The reading in Hangul without spaces.

    Raises:
        ValueError: ``n`` is outside 1..99 or not an integer.
    """
    if not isinstance(n, int) or isinstance(n, bool):
        raise ValueError(f"native_korean_number expects an int, got {n!r}")
    if not 1 <= n <= 99:
        raise ValueError(f"native_korean_number supports 1 <= n <= 99, got {n}")
    tens, ones = divmod(n, 10)
    if attributive:
        if ones == 0:
            return "스무" if tens == 2 else _NATIVE_TENS[tens]
        return _NATIVE_TENS[tens] + _NATIVE_ONES_ATTRIBUTIVE[ones]
    return _NATIVE_TENS[tens] + _NATIVE_ONES[ones]


def read_digits(digits: str) -> str:
    """Digit-by-digit reading as for phone numbers (``010`` -> ``공일공``).

    Args:
        digits: a string of ASCII digits.

    Returns:
        The reading in Hangul.

    Raises:
        ValueError: ``digits`` is empty or contains a non-digit.
    """
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ValueError(f"read_digits expects a non-empty string of ASCII digits, got {digits!r}")
    return "".join(_PHONE_DIGITS[int(d)] for d in digits)


def _counted(n: int, counter: str) -> str:
    """Reading of ``n`` before a native-number counter: native below 100, Sino hundreds above."""
    if counter == "번째" and n == 1:
        return "첫"
    if n == 0:
        return _SINO_DIGITS[0]
    hundreds, rest = divmod(n, 100)
    if hundreds == 0:
        return native_korean_number(rest, attributive=True)
    head = sino_korean_number(hundreds * 100)
    return head + native_korean_number(rest, attributive=True) if rest else head


def _decimal(integer: str, fraction: str) -> str:
    return f"{_plain_number(integer)} 점 {''.join(_SINO_DIGITS[int(d)] for d in fraction)}"


def _plain_number(digits: str) -> str:
    value = int(digits)
    if value > _MAX_SINO:
        return read_digits(digits)
    return sino_korean_number(value)


def _replace_number(match: Match[str]) -> str:
    raw = match.group("number")
    digits = raw.replace(",", "")
    fraction = match.group("fraction")
    large = match.group("large") or ""
    unit = match.group("unit")
    kind = _UNIT_KIND.get(unit or "")
    if fraction:
        reading = _decimal(digits, fraction[1:]) + large
    elif large:
        value = int(digits)
        reading = large if value == 1 and large in ("십", "백", "천", "만") else _plain_number(digits) + large
    elif unit is None:
        if len(digits) > 1 and digits.startswith("0") and "," not in raw:
            return read_digits(digits)
        return _plain_number(digits)
    elif kind == "native":
        return f"{_counted(int(digits), unit)} {unit}"
    elif unit == "월" and 1 <= int(digits) <= 12:
        return _MONTHS.get(int(digits), sino_korean_number(int(digits)) + "월")
    else:
        reading = _plain_number(digits)
    if unit is None:
        return reading
    return f"{reading} {_SYMBOL_UNITS[unit] if kind == 'symbol' else unit}"


def _replace_phone(match: Match[str]) -> str:
    return " ".join(read_digits(group) for group in match.groups())


def _replace_time(match: Match[str]) -> str:
    hour, minute = int(match.group(1)), int(match.group(2))
    if minute >= 60:
        return match.group(0)
    hour_text = f"{_counted(hour, '시')} 시" if hour > 0 else "영 시"
    return hour_text if minute == 0 else f"{hour_text} {sino_korean_number(minute)} 분"


def _replace_fraction(match: Match[str]) -> str:
    numerator, denominator = match.group(1), match.group(2)
    return f"{_plain_number(denominator)} 분의 {_plain_number(numerator)}"


def normalize_text(text: str) -> str:
    """Rewrite digits, units and symbols in Korean text as their Hangul readings.

    Args:
        text: input text, e.g. ``"3시 30분에 5,000원 보내 줘"``.

    Returns:
        The text with every digit (ASCII, full-width or any other decimal digit) replaced by its reading and
        whitespace collapsed, e.g. ``"세 시 삼십 분에 오천 원 보내 줘"``.

    Raises:
        TypeError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_text expects a str, got {type(text).__name__}")
    if not text.isascii():  # full-width (０-９) and other scripts' decimal digits read as the digits they are
        text = _DIGIT_RE.sub(lambda match: str(unicodedata.decimal(match.group())), text)
    text = _PHONE_RE.sub(_replace_phone, text)
    text = _TIME_RE.sub(_replace_time, text)
    text = _FRACTION_RE.sub(_replace_fraction, text)
    text = _RANGE_RE.sub(" 에서 ", text)
    text = _NEGATIVE_RE.sub("마이너스 ", text)
    text = _NUMBER_RE.sub(_replace_number, text)
    for symbol, word in _SYMBOL_WORDS.items():
        text = text.replace(symbol, f" {word} ")
    return _WHITESPACE_RE.sub(" ", text).strip()
