"""The one reader of every text file kospeech takes: manifests, user maps, vocabularies, word and phrase lists.

Every text input goes through :func:`read_text` (or :func:`read_lines`), so all of them agree on:

- **Encoding**: UTF-8, with or without a byte-order mark. Anything else (cp949, EUC-KR, UTF-16) is refused with an
  :class:`~kospeech.errors.InputError` naming the file, the line and the byte, and a conversion hint; it is never
  guessed or read with replacement characters.
- **Line ends**: only ``\\n`` ends a line; one ``\\r`` before it (CRLF) is dropped. A lone ``\\r``, U+2028, U+0085,
  form feed and the other characters ``str.splitlines()`` splits at stay inside their line, so a stray one can
  neither split a line in two nor shift the line numbers errors report.
- **Unicode form**: the text is NFC-normalized, so decomposed (NFD) Hangul from macOS or from a jamo-level tool reads
  as the same characters as precomposed text.
"""

from __future__ import annotations

import codecs
import os
import unicodedata
from pathlib import Path
from typing import List, Tuple, Type, Union

from kospeech.errors import InputError

__all__ = ["read_lines", "read_text", "decode_text"]

PathLike = Union[str, os.PathLike]


def decode_text(raw: bytes, where: str, error: Type[InputError] = InputError) -> str:
    """Decode a text file's bytes by the rules of this module (UTF-8, optional BOM, NFC; line ends untouched).

    Args:
        raw: the file's bytes.
        where: the file, named in the error.
        error: the :class:`InputError` subclass to raise (``ManifestError`` for a manifest, ...).

    Raises:
        InputError: the bytes are not UTF-8, naming the line and the offset of the first bad byte in ``raw`` (a BOM
            included).
    """
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start  # exc.start counts from after the BOM; the error names the byte of the file
        line = raw.count(b"\n", 0, offset) + 1
        hint = (
            " (it starts with a UTF-16 byte-order mark)"
            if raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
            else ""
        )
        raise error(
            f"{where}:{line}: not UTF-8 text{hint}: {exc.reason} at byte {offset}; "
            "convert it (e.g. from cp949: iconv -f cp949 -t utf-8) first"
        ) from exc
    return unicodedata.normalize("NFC", text)


def read_text(path: PathLike, what: str = "text file", error: Type[InputError] = InputError) -> str:
    """The whole text of a file, decoded by :func:`decode_text` (for formats with their own line rules, e.g. CSV).

    Args:
        path: the file.
        what: what the file is ("manifest", "user map"), named when it does not exist.
        error: the :class:`InputError` subclass raised for text that is not UTF-8.

    Raises:
        FileNotFoundError: no such file.
        InputError: not UTF-8 text.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return decode_text(path.read_bytes(), str(path), error)


def read_lines(path: PathLike, what: str = "text file", error: Type[InputError] = InputError) -> List[Tuple[int, str]]:
    """A file's lines with their 1-based numbers: split at ``\\n`` only, one trailing ``\\r`` dropped, NFC.

    Args:
        path: the file.
        what: what the file is, named when it does not exist.
        error: the :class:`InputError` subclass raised for text that is not UTF-8.

    Returns:
        ``(line_number, line)`` for every line, blank ones included (a final newline adds no empty line).

    Raises:
        FileNotFoundError: no such file.
        InputError: not UTF-8 text.
    """
    text = read_text(path, what, error)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [(number, line[:-1] if line.endswith("\r") else line) for number, line in enumerate(lines, start=1)]
