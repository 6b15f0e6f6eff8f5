"""Hangul from jamo: decoded onset / vowel / coda tokens composed into well-formed syllables, never stray jamo.

A grapheme model emits conjoining jamo one by one: onsets (U+1100..U+1112), vowels (U+1161..U+1175) and codas
(U+11A8..U+11C2). Unicode NFC composes only well-ordered runs (onset, vowel, optional coda) and leaves anything
else as stray jamo (``'인ᅵ겨'``). :func:`compose_jamo` reads each run of jamo as a sequence of syllables and
repairs what does not fit, always the same way:

- a vowel without an onset gets the silent onset ㅇ (``ᅦ`` -> ``에``), as Korean spelling writes such syllables;
- a coda directly followed by a vowel opens the next syllable as the same consonant's onset (``한ᅡ`` -> ``하나``,
  as the pair is pronounced), except ㅇ, which stays a coda (its onset form is silent);
- a coda that cannot close a syllable (after a syllable that already has one, or at the start of a run) becomes
  such an onset when a vowel follows, and is dropped otherwise;
- an onset without a vowel closes the previous syllable as its coda when that syllable is open and the consonant
  has a coda form, and is dropped otherwise;
- archaic jamo and the filler characters, which no modern syllable holds, are dropped.

Text that holds no jamo, and jamo runs that are already well formed, come out exactly as NFC gives them.
"""

from __future__ import annotations

import unicodedata
from typing import List, Optional

__all__ = ["compose_jamo", "is_conjoining_jamo"]

_ONSET_FIRST, _ONSET_COUNT = 0x1100, 19
_VOWEL_FIRST, _VOWEL_COUNT = 0x1161, 21
_CODA_FIRST, _CODA_COUNT = 0x11A8, 27  # coda index 1..27 (0 = no coda)
_SYLLABLE_FIRST = 0xAC00
_SILENT_ONSET = 11  # ㅇ
_NG_CODA = 21  # ㅇ
# onset index -> coda index of the same consonant (ㄸ, ㅃ, ㅉ never close a syllable)
_ONSET_TO_CODA = {0: 1, 1: 2, 2: 4, 3: 7, 5: 8, 6: 16, 7: 17, 9: 19, 10: 20, 11: 21, 12: 22, 14: 23, 15: 24, 16: 25}
_ONSET_TO_CODA.update({17: 26, 18: 27})
_CODA_TO_ONSET = {coda: onset for onset, coda in _ONSET_TO_CODA.items()}


def is_conjoining_jamo(character: str) -> bool:
    """Whether a character is a conjoining jamo (U+1100..U+11FF), which well-formed output never holds."""
    return "\u1100" <= character <= "\u11ff"


def _onset(code: int) -> Optional[int]:
    index = code - _ONSET_FIRST
    return index if 0 <= index < _ONSET_COUNT else None


def _vowel(code: int) -> Optional[int]:
    index = code - _VOWEL_FIRST
    return index if 0 <= index < _VOWEL_COUNT else None


def _coda(code: int) -> Optional[int]:
    index = code - _CODA_FIRST + 1
    return index if 1 <= index <= _CODA_COUNT else None


class _Syllable:
    def __init__(self, onset: int, vowel: int) -> None:
        self.onset, self.vowel, self.coda = onset, vowel, 0

    def text(self) -> str:
        return chr(_SYLLABLE_FIRST + (self.onset * _VOWEL_COUNT + self.vowel) * (_CODA_COUNT + 1) + self.coda)


def _compose_run(codes: List[int]) -> str:
    """Syllables of one run of conjoining jamo code points (see the module's rules)."""
    syllables: List[_Syllable] = []
    open_syllable: Optional[_Syllable] = None  # the last syllable, while it can still take a coda
    pending_onset: Optional[int] = None
    for position, code in enumerate(codes):
        following = codes[position + 1] if position + 1 < len(codes) else None
        vowel_follows = following is not None and _vowel(following) is not None
        onset, vowel, coda = _onset(code), _vowel(code), _coda(code)
        if onset is not None:
            if pending_onset is not None:
                _close_with(open_syllable, pending_onset)
                open_syllable = None
            pending_onset = onset
            continue
        if vowel is not None:
            syllable = _Syllable(_SILENT_ONSET if pending_onset is None else pending_onset, vowel)
            syllables.append(syllable)
            open_syllable, pending_onset = syllable, None
            continue
        if coda is not None:
            if pending_onset is not None:
                _close_with(open_syllable, pending_onset)
                open_syllable, pending_onset = None, None
            if open_syllable is not None and (not vowel_follows or coda == _NG_CODA):
                open_syllable.coda = coda
            elif vowel_follows and coda in _CODA_TO_ONSET and coda != _NG_CODA:
                pending_onset = _CODA_TO_ONSET[coda]
            elif open_syllable is not None:
                open_syllable.coda = coda
            open_syllable = None
    if pending_onset is not None:
        _close_with(open_syllable, pending_onset)
    return "".join(syllable.text() for syllable in syllables)


def _close_with(syllable: Optional[_Syllable], onset: int) -> None:
    """Give an open syllable the coda form of a vowel-less onset (dropped when impossible)."""
    if syllable is not None and syllable.coda == 0 and onset in _ONSET_TO_CODA:
        syllable.coda = _ONSET_TO_CODA[onset]


def compose_jamo(text: str) -> str:
    """Well-formed Hangul from text that may hold conjoining jamo (see the module's rules).

    Args:
        text: any text, e.g. a grapheme model's decoded jamo and spaces.

    Returns:
        NFC text in which no conjoining jamo is left.
    """
    pieces: List[str] = []
    run: List[int] = []
    for character in unicodedata.normalize("NFD", text):
        if is_conjoining_jamo(character):
            run.append(ord(character))
            continue
        if run:
            pieces.append(_compose_run(run))
            run = []
        pieces.append(character)
    if run:
        pieces.append(_compose_run(run))
    return unicodedata.normalize("NFC", "".join(pieces))
