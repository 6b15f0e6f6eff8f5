"""KsponSpeech preprocessing: corpus transcripts -> cleaned text, manifest and vocabulary.

KsponSpeech (AI Hub, not shipped) unpacks into one root holding ``KsponSpeech_01`` ... ``KsponSpeech_05`` (training:
``KsponSpeech_01/KsponSpeech_0001/KsponSpeech_000001.pcm``, raw 16 kHz 16-bit little-endian mono, next to a cp949
``.txt`` transcript), ``KsponSpeech_eval`` (``eval_clean/`` and ``eval_other/``, 3,000 ``.pcm`` files each, no
transcripts) and ``KsponSpeech_scripts`` (``train.trn``, ``dev.trn``, ``eval_clean.trn``, ``eval_other.trn``: UTF-8
lines ``<pcm path relative to the root> :: <raw transcript>``, read by :func:`read_trn`). Training reads the ``.txt``
files, as KoSpeech does; the evaluation sets are read from their script files. Transcripts follow these conventions:

- ``(철자)/(발음)``: a dual transcription, spelling first and pronunciation second, e.g. ``(3시)/(세 시)``;
  ``mode='phonetic'`` keeps the pronunciation (the KoSpeech default), ``mode='spelling'`` the spelling;
- ``o/ n/ u/ b/ l/``: noise and non-speech markers (other, noise, unintelligible, breath, laughter);
- ``word/`` filler, ``word+`` repetition and ``word*`` unclear-word markers: the marker is dropped, the word kept.

Cleaning decisions (:func:`clean_transcript`):

- In ``spelling`` mode the text is passed through :func:`kospeech.data.text_normalization.normalize_text`, so digits
  and symbols become their Hangul readings (``3시`` -> ``세 시``, ``70%`` -> ``칠십 퍼센트``). A dual transcription
  whose spelling holds a digit keeps its pronunciation instead: how a number was said (``(1)/(일) 대 (1)/(일)``,
  ``(2)/(두) 개``) is what the speaker said, where a reading guessed from the digits and the next word can differ.
- A ``%`` left over in either mode is read ``퍼센트`` (``프로`` in the three training files whose speaker said so,
  :data:`PERCENT_FILES`); ``#`` is read ``샵``.
- Every other character that is not a Hangul syllable, an ASCII letter, a digit or a space is removed (sentence
  punctuation ``. , ? !`` is kept only with ``keep_punctuation=True``); whitespace is collapsed.
- In ``phonetic`` mode digits written outside a dual transcription are kept as written.
- Full-width ASCII (``（３시）``, ``ＬＧ``) and the ideographic space are read as ASCII first. Dual transcriptions nest
  (resolved from the inside out), and a line's last pair may lack its closing bracket (``(3시)/(세 시``): one side is
  kept, never both run together. Other brackets are dropped and their words kept (``(정말)`` is ``정말``).

KoSpeech compatibility (:func:`sentence_filter`, ``compat='kospeech'``): the rules of upstream KoSpeech's
``dataset/kspon/preprocess/preprocess.py``, giving the same text for every input:

- Brackets, read as a toggle and never as nested pairs. ``phonetic``: each ``(`` switches between dropping and
  keeping (dropping after the first, keeping after the second, ...), every ``)`` is deleted; so ``(3시)/(세 시)``
  gives ``세 시`` and an unclosed ``(`` drops the rest of the line. ``spelling``: each ``)`` switches between keeping
  and dropping (keeping before the first), every ``(`` is deleted; ``(3시)/(세 시)`` gives ``3시``.
- A letter ``o n u b l`` directly before a ``/`` is a noise marker and is dropped, wherever it stands (``blob/``
  gives ``blo``); then ``/ + * - @ $ ^ & [ ] = : ; ,`` are deleted, ``#`` becomes ``샾`` and ``%`` stays in
  ``spelling`` mode but becomes the ``replace`` word in ``phonetic`` mode. Everything else is kept: ``. ? !``,
  digits, Latin letters, jamo, quotes, ``~``.
- Whitespace: stripped at both ends, and every run of two or more whitespace characters becomes one space (a single
  tab or line break between two words stays).
- Corpus level: eight training files (:data:`PERCENT_FILES`) keep a ``%`` outside any dual transcription; upstream
  reads it ``퍼센트`` or ``프로`` by file. A ``%`` left in ``phonetic`` mode with no ``replace`` word has no reading
  (upstream stops with a ``TypeError``): :func:`sentence_filter` raises an :class:`InputError` and preprocessing
  skips and counts the file.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import random
import re
import unicodedata
from collections import Counter
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from kospeech.data.audio import AudioError, audio_duration
from kospeech.data.manifest import ManifestEntry, write_manifest
from kospeech.data.text_normalization import normalize_text
from kospeech.errors import InputError, TranscriptError
from kospeech.fileio import atomic_write_text
from kospeech.progress import progress_bar
from kospeech.vocabs import OUTPUT_UNITS, SPECIAL_TOKENS, Vocabulary

__all__ = [
    "TRANSCRIPT_MODES",
    "TranscriptError",
    "read_transcript",
    "resolve_dual_transcriptions",
    "clean_transcript",
    "COMPAT_MODES",
    "PERCENT_FILES",
    "bracket_filter",
    "special_filter",
    "sentence_filter",
    "percent_word",
    "read_kospeech_transcript",
    "write_kospeech_labels",
    "EVAL_FOLDER",
    "EVAL_SPLITS",
    "SCRIPTS_FOLDER",
    "TRN_SEPARATOR",
    "TrnLines",
    "parse_trn_line",
    "read_trn",
    "preprocess_ksponspeech_eval",
    "preprocess_ksponspeech",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

TRANSCRIPT_MODES = ("phonetic", "spelling")

_DUAL_RE = re.compile(r"\(([^()]*)\)\s*/\s*\(([^()]*)\)")
_UNCLOSED_DUAL_RE = re.compile(r"\(([^()]*)\)\s*/\s*\(([^()]*)$")  # a pair whose last bracket is missing
_NOISE_RE = re.compile(r"(?<![A-Za-z])[onubl]/")
_MARKER_RE = re.compile(r"[+*]|(?<!\d)/|/(?!\d)")
_SYMBOL_READINGS = {"%": "퍼센트", "#": "샵"}
_FULL_WIDTH_TO_ASCII = {**{code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}, 0x3000: ord(" ")}
_PUNCTUATION = ".,?!"
_WHITESPACE_RE = re.compile(r"\s+")
_HANGUL_SYLLABLES = ("\uac00", "\ud7a3")

COMPAT_MODES = ("kospeech", "clean")
PERCENT_FILES: Mapping[str, str] = MappingProxyType(
    {
        "087797": "퍼센트",
        "215401": "퍼센트",
        "284574": "퍼센트",
        "397184": "퍼센트",
        "501006": "프로",
        "502173": "프로",
        "542363": "프로",
        "581483": "퍼센트",
    }
)
"""KoSpeech's reading of a bare ``%`` per training file, keyed by the file's six-digit number."""
_KOSPEECH_NOISE_RE = re.compile(r"[onubl](?=/)")
_KOSPEECH_TABLE: Dict[int, Optional[str]] = {**dict.fromkeys(map(ord, "/+*-@$^&[]=:;,")), ord("#"): "샾"}
_KOSPEECH_SPACES_RE = re.compile(r"\s\s+")
KOSPEECH_SPECIAL_TOKENS = ("<pad>", "<sos>", "<eos>")
KOSPEECH_MAX_CHARACTER_LABELS = 2000
"""Rows KoSpeech keeps in a character label file (its three special tokens included)."""
EVAL_FOLDER = "KsponSpeech_eval"
"""The folder of the evaluation audio under the corpus root (``eval_clean/`` and ``eval_other/``, pcm only)."""
EVAL_SPLITS = ("eval_clean", "eval_other")
SCRIPTS_FOLDER = "KsponSpeech_scripts"
"""The folder of the script files under the corpus root: ``train.trn``, ``dev.trn``, ``eval_clean.trn``,
``eval_other.trn``."""
TRN_SEPARATOR = " :: "
"""What separates the audio path from the raw transcript on a script-file line."""
_EVAL_SKIPS = (
    "skipped_malformed_line",
    "skipped_undecodable_transcript",
    "skipped_missing_audio",
    "skipped_empty_audio",
    "skipped_bad_audio",
    "skipped_percent_without_reading",
    "skipped_empty_transcript",
)
_LINE_BREAKS = {ord("\t"): " ", ord("\r"): " ", ord("\n"): " "}


def _hangul_share(text: str) -> float:
    """Fraction of the non-ASCII characters of ``text`` that are Hangul syllables (1.0 for pure ASCII)."""
    non_ascii = [ch for ch in text if ord(ch) > 0x7F]
    if not non_ascii:
        return 1.0
    low, high = _HANGUL_SYLLABLES
    return sum(low <= ch <= high for ch in non_ascii) / len(non_ascii)


def read_transcript(path: PathLike) -> str:
    """Read a KsponSpeech transcript file (cp949, the corpus encoding, or UTF-8).

    Bytes that decode under both encodings (short texts can) are read with the one giving Hangul rather than
    mojibake, cp949 on a tie. Lines are joined with spaces; a UTF-8 byte order mark is dropped.

    Args:
        path: the ``.txt`` file.

    Returns:
        The transcript text, NFC-normalized, not yet cleaned.

    Raises:
        FileNotFoundError: the file does not exist.
        TranscriptError: the bytes are neither cp949 nor UTF-8 (the message names the file).
    """
    text = _decoded_transcript(path)
    return unicodedata.normalize("NFC", " ".join(text.splitlines()))


def _decoded_transcript(path: PathLike) -> str:
    """The text of a cp949 or UTF-8 transcript file, whichever decoding gives Hangul rather than mojibake (cp949 on a
    tie; a UTF-8 byte order mark means UTF-8 and is dropped); nothing else changed.

    Raises:
        FileNotFoundError: the file does not exist.
        TranscriptError: the bytes are neither cp949 nor UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"transcript file not found: {path}")
    raw = path.read_bytes()
    encodings = ("utf-8-sig",) if raw.startswith(codecs.BOM_UTF8) else ("cp949", "utf-8")
    decoded: List[str] = []
    errors: List[str] = []
    for encoding in encodings:
        try:
            decoded.append(raw.decode(encoding))
        except UnicodeDecodeError as exc:
            errors.append(f"{encoding}: {exc.reason} at byte {exc.start}")
    if not decoded:
        raise TranscriptError(f"{path}: transcript is neither cp949 nor UTF-8 text ({'; '.join(errors)})")
    return max(decoded, key=_hangul_share)  # max keeps the first (cp949) on a tie


def _strip_markers(text: str) -> str:
    """Drop noise markers (``o/ n/ u/ b/ l/``) and the ``/ + *`` word markers; a ``/`` between digits stays."""
    return _MARKER_RE.sub("", _NOISE_RE.sub(" ", text))


def resolve_dual_transcriptions(text: str, mode: str = "phonetic") -> str:
    """Replace every ``(spelling)/(pronunciation)`` pair by one of its sides.

    Args:
        text: a raw KsponSpeech transcript.
        mode: ``phonetic`` keeps the pronunciation, ``spelling`` keeps the spelling, except where it holds a digit:
            a number's reading is the pronunciation (``(2)/(두) 개`` is ``두 개``, ``(1)/(일) 대`` is ``일 대``).

    Returns:
        The text with the pairs resolved, nested ones from the inside out, and a last pair whose closing bracket
        the line lacks (``(3시)/(세 시``); everything else untouched.

    Raises:
        ValueError: unknown mode.
    """
    if mode not in TRANSCRIPT_MODES:
        raise ValueError(f"mode must be one of {TRANSCRIPT_MODES}, got {mode!r}")

    def side(match: re.Match) -> str:
        if mode == "phonetic" or any(ch.isdigit() for ch in match.group(1)):
            return match.group(2)
        return match.group(1)

    resolved = None
    while resolved != text:
        resolved, text = text, _DUAL_RE.sub(side, text)
    return _UNCLOSED_DUAL_RE.sub(side, text)


def clean_transcript(
    text: str, mode: str = "phonetic", keep_punctuation: bool = False, percent: Optional[str] = None
) -> str:
    """Turn a raw KsponSpeech transcript into training text (see the module docstring for the rules).

    Args:
        text: the raw transcript, e.g. ``"b/ 아/ (3시)/(세 시)에 n/ 만나+ 만나자."``.
        mode: ``phonetic`` or ``spelling``.
        keep_punctuation: keep ``. , ? !``.
        percent: how a ``%`` left outside a dual transcription is read (the file's :func:`percent_word`: in three
            training files the speaker said 프로); ``None`` reads it ``퍼센트``. Spelling mode reads a number with its
            ``%`` first (``50%`` is ``오십 퍼센트``), so there it applies to a ``%`` after no digit only.

    Returns:
        The cleaned text, e.g. ``"아 세 시에 만나 만나자"``; may be empty (a noise-only utterance).

    Raises:
        ValueError: unknown mode.
    """
    text = resolve_dual_transcriptions(unicodedata.normalize("NFC", text).translate(_FULL_WIDTH_TO_ASCII), mode)
    text = _strip_markers(text)
    if mode == "spelling":
        text = normalize_text(text)
    readings = {**_SYMBOL_READINGS, **({"%": percent} if percent else {})}
    for symbol, reading in readings.items():
        text = text.replace(symbol, f" {reading} ")
    low, high = _HANGUL_SYLLABLES
    kept = []
    for ch in text:
        if low <= ch <= high or (ch.isascii() and ch.isalnum()) or ch.isspace():
            kept.append(" " if ch.isspace() else ch)
        elif keep_punctuation and ch in _PUNCTUATION:
            kept.append(ch)
    return _WHITESPACE_RE.sub(" ", "".join(kept)).strip()


def bracket_filter(raw: str, mode: str = "phonetic") -> str:
    """Resolve the brackets of a raw transcript the way KoSpeech does (see the module docstring).

    Args:
        raw: a raw KsponSpeech transcript.
        mode: ``phonetic`` (each ``(`` toggles dropping; ``)`` deleted) or ``spelling`` (each ``)`` toggles
            dropping; ``(`` deleted).

    Returns:
        The text outside the dropped stretches, every bracket removed.

    Raises:
        ValueError: unknown mode.
    """
    if mode not in TRANSCRIPT_MODES:
        raise ValueError(f"mode must be one of {TRANSCRIPT_MODES}, got {mode!r}")
    toggle, deleted = ("(", ")") if mode == "phonetic" else (")", "(")
    # the stretches between toggles alternate kept, dropped, kept, ...: the even-numbered pieces are kept
    return "".join(raw.replace(deleted, "").split(toggle)[::2])


def special_filter(sentence: str, mode: str = "phonetic", replace: Optional[str] = None) -> str:
    """Drop noise markers and special characters, read ``#`` and ``%``, and squeeze whitespace the way KoSpeech does.

    Args:
        sentence: a transcript whose brackets are resolved (:func:`bracket_filter`).
        mode: ``phonetic`` (``%`` becomes ``replace``) or ``spelling`` (``%`` stays).
        replace: the reading of ``%`` in ``phonetic`` mode (see :data:`PERCENT_FILES`).

    Returns:
        The filtered text.

    Raises:
        ValueError: unknown mode.
        InputError: (a ValueError) a ``%`` in ``phonetic`` mode with no ``replace`` word.
    """
    if mode not in TRANSCRIPT_MODES:
        raise ValueError(f"mode must be one of {TRANSCRIPT_MODES}, got {mode!r}")
    text = _KOSPEECH_NOISE_RE.sub("", sentence)
    percent = "%"
    if mode == "phonetic":
        if replace is None and "%" in text:
            raise InputError(
                f"{sentence!r}: a '%' outside a dual transcription has no reading in phonetic mode; pass replace= "
                "(upstream KoSpeech reads it only in its percent files, PERCENT_FILES)"
            )
        percent = replace or ""
    text = text.translate({**_KOSPEECH_TABLE, ord("%"): percent})
    return _KOSPEECH_SPACES_RE.sub(" ", text.strip())


def sentence_filter(raw: str, mode: str = "phonetic", replace: Optional[str] = None) -> str:
    """Turn a raw KsponSpeech transcript into KoSpeech's training text: :func:`bracket_filter`, then
    :func:`special_filter`; the same output as upstream KoSpeech's ``sentence_filter`` for every input.

    Args:
        raw: the raw transcript, e.g. ``"b/ (70%)/(칠십 퍼센트) 할인+ 할인이야?"``.
        mode: ``phonetic`` (the pronunciation side, KoSpeech's default) or ``spelling``.
        replace: the reading of a ``%`` left in ``phonetic`` mode (:func:`percent_word` of the file).

    Returns:
        The filtered text, e.g. ``"칠십 퍼센트 할인 할인이야?"``; may be empty.

    Raises:
        ValueError: unknown mode.
        InputError: (a ValueError) a ``%`` in ``phonetic`` mode with no ``replace`` word.
    """
    return special_filter(bracket_filter(raw, mode), mode, replace)


def percent_word(transcript_name: str) -> Optional[str]:
    """The reading KoSpeech gives a bare ``%`` in this training file (:data:`PERCENT_FILES`), or ``None``.

    Args:
        transcript_name: the file name, e.g. ``KsponSpeech_087797.txt`` (KoSpeech looks at characters 12 to 17).
    """
    return PERCENT_FILES.get(transcript_name[12:18])


def read_kospeech_transcript(path: PathLike) -> str:
    """Read a transcript as KoSpeech does: cp949, ``\\r\\n`` and ``\\r`` read as ``\\n``, nothing else changed.

    A file converted to UTF-8 (which KoSpeech cannot read) is read as UTF-8, giving the text of its cp949 original:
    a short UTF-8 text can also decode as cp949, into mojibake (진짜 as 吏꾩쭨), so the decoding that gives Hangul
    is taken, as :func:`read_transcript` does. The converse is possible in principle (cp949 Hanja followed by rare
    syllables, ``媛곴컖``, whose bytes are the UTF-8 of ``각각``) and would be read as UTF-8, unlike upstream; spoken
    transcripts hold no such text.

    Args:
        path: the ``.txt`` file.

    Returns:
        The raw text (no Unicode normalization, line breaks kept).

    Raises:
        FileNotFoundError: the file does not exist.
        TranscriptError: the bytes are neither cp949 nor UTF-8 (the message names the file).
    """
    return _decoded_transcript(path).replace("\r\n", "\n").replace("\r", "\n")


def _split_valid(count: int, valid_ratio: float, seed: int) -> Tuple[List[int], List[int]]:
    """Train and valid index lists (each in corpus order): a seeded ``valid_ratio`` share goes to valid."""
    if valid_ratio <= 0 or count < 2:
        return list(range(count)), []
    num_valid = min(count - 1, max(1, int(round(count * valid_ratio))))
    valid = set(random.Random(seed).sample(range(count), num_valid))
    return [i for i in range(count) if i not in valid], sorted(valid)


def _kospeech_transcript_files(root: Path) -> List[Path]:
    """``root/KsponSpeech*/<folder>/*.txt``, the files KoSpeech reads (sorted; the evaluation folder left out)."""
    return [
        path
        for top in sorted(root.iterdir())
        if top.name.startswith("KsponSpeech") and top.name != EVAL_FOLDER and top.is_dir()
        for folder in sorted(top.iterdir())
        if folder.is_dir()
        for path in sorted(folder.iterdir())
        if path.name.endswith(".txt") and path.is_file()
    ]


def _read_and_filter(transcript_path: Path, mode: str, compat: str, keep_punctuation: bool) -> str:
    """The training text of one transcript file under ``compat``'s rules.

    Raises:
        TranscriptError: the file cannot be decoded.
        InputError: (KoSpeech rules) a ``%`` with no reading in ``phonetic`` mode.
    """
    if compat == "kospeech":
        raw = read_kospeech_transcript(transcript_path)
        return sentence_filter(raw, mode, percent_word(transcript_path.name))
    return clean_transcript(
        read_transcript(transcript_path), mode, keep_punctuation, percent=percent_word(transcript_path.name)
    )


def _check_options(mode: str, unit: str, compat: str, keep_punctuation: bool, audio_extension: str) -> None:
    if not (audio_extension.startswith(".") and len(audio_extension) > 1 and "/" not in audio_extension):
        raise ValueError(
            f"audio_extension (--audio-extension) must be a file suffix with its dot, e.g. '.wav', got "
            f"{audio_extension!r}"
        )
    if mode not in TRANSCRIPT_MODES:
        raise ValueError(f"mode must be one of {TRANSCRIPT_MODES}, got {mode!r}")
    if unit not in OUTPUT_UNITS:
        raise ValueError(f"unit must be one of {OUTPUT_UNITS}, got {unit!r}")
    if compat not in COMPAT_MODES:
        raise ValueError(f"compat must be one of {COMPAT_MODES}, got {compat!r}")
    if keep_punctuation and compat == "kospeech":
        raise ValueError("keep_punctuation applies to compat='clean' only (KoSpeech's rules keep '. ? !' anyway)")


def _manifest_text(text: str) -> str:
    """``text`` as a manifest column holds it: a tab or line break (a rare multi-line file) becomes a space."""
    return text.translate(_LINE_BREAKS)


def preprocess_ksponspeech(
    root_dir: PathLike,
    out_dir: PathLike,
    mode: str = "phonetic",
    unit: str = "character",
    valid_ratio: float = 0.0,
    seed: int = 0,
    keep_punctuation: bool = False,
    audio_extension: str = ".pcm",
    progress: bool = True,
    compat: str = "kospeech",
) -> Dict[str, Any]:
    """Walk a KsponSpeech tree, filter every transcript, and write the manifest(s) and the vocabulary.

    ``compat='clean'`` pairs every ``*.pcm`` under ``root_dir`` (outside ``KsponSpeech_eval``) with the ``.txt`` of
    the same name and cleans it with :func:`clean_transcript`. ``compat='kospeech'`` reads what upstream KoSpeech reads, every
    ``KsponSpeech*/<folder>/*.txt`` (e.g. ``KsponSpeech_01/KsponSpeech_0001/KsponSpeech_000001.txt``; the
    ``KsponSpeech_eval`` folder is left out, see :func:`preprocess_ksponspeech_eval`), as cp949 (or UTF-8: :func:`read_kospeech_transcript`), filters it
    with :func:`sentence_filter` and the file's :func:`percent_word`, and also writes KoSpeech's label files
    (:func:`write_kospeech_labels`) from every decoded transcript, empty ones included, as upstream does.

    Utterances whose transcript is missing, undecodable or (KoSpeech rules) holds a ``%`` with no reading, whose
    audio is missing, unreadable or holds no samples, or whose transcript is empty after filtering are left out of
    the manifests, counted and logged (one bad file never ends a run over 600,000).

    Args:
        root_dir: the corpus root.
        out_dir: where ``train.tsv``, ``valid.tsv`` (when ``valid_ratio > 0``) and ``vocab.csv`` are written (and,
            with KoSpeech rules, ``aihub_labels.csv`` and ``transcripts.txt``). An earlier run's files there that
            this run does not write (``valid.tsv``, the label files, and ``eval_*.tsv``, which
            :func:`preprocess_ksponspeech_eval` writes anew with this run's vocabulary) are removed, with a warning.
        mode: ``phonetic`` (KoSpeech default) or ``spelling``.
        unit: vocabulary unit, ``character`` or ``grapheme``.
        valid_ratio: share of utterances held out (seeded) into ``valid.tsv``; 0 writes only ``train.tsv``.
        seed: seed of the valid split.
        keep_punctuation: keep ``. , ? !`` in the transcripts (``compat='clean'`` only).
        audio_extension: suffix of the audio files.
        progress: show a tqdm progress bar.
        compat: ``kospeech`` (upstream KoSpeech's rules, the default here, in ``kospeech-preprocess-kspon`` and in
            :func:`preprocess_ksponspeech_eval`) or ``clean`` (this project's rules, :func:`clean_transcript`).

    Returns:
        A summary: ``utterances``, ``train_utterances``, ``valid_utterances``, ``hours``,
        ``skipped_empty_transcript``, ``skipped_missing_transcript``, ``skipped_undecodable_transcript``,
        ``skipped_percent_without_reading``, ``skipped_missing_audio``, ``skipped_empty_audio``,
        ``skipped_bad_audio``, ``vocab_size``, ``mode``, ``unit``, ``compat`` and the written paths
        ``train_manifest``, ``valid_manifest`` (or None), ``vocab``, ``kospeech_labels`` and
        ``kospeech_transcripts`` (None under ``clean``).

    Raises:
        FileNotFoundError: ``root_dir`` is not a directory.
        ValueError: bad ``mode``, ``unit``, ``compat``, ``valid_ratio``, or ``keep_punctuation`` with KoSpeech rules.
        InputError: (a ValueError) no audio (or, KoSpeech rules, transcript) files, no utterance left, or
            ``out_dir`` cannot be made.
    """
    root = Path(root_dir).resolve()
    out = Path(out_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"KsponSpeech root directory not found: {root}")
    _check_options(mode, unit, compat, keep_punctuation, audio_extension)
    if not 0.0 <= valid_ratio < 1.0:
        raise ValueError(f"valid_ratio must be in [0, 1), got {valid_ratio}")
    try:  # before the corpus is read (hours on the real one), not when the first output is written
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"the output folder {out} cannot be made: {exc.strerror or exc}") from exc
    if compat == "kospeech":
        pairs = [(path.with_suffix(audio_extension), path) for path in _kospeech_transcript_files(root)]
        if not pairs:
            raise InputError(f"no transcript files KsponSpeech*/<folder>/*.txt under {root}")
    else:
        pairs = [
            (path, path.with_suffix(".txt"))
            for path in sorted(root.rglob(f"*{audio_extension}"))
            if EVAL_FOLDER not in path.relative_to(root).parts
        ]
        if not pairs:
            raise InputError(f"no {audio_extension} files under {root}")
    kept, upstream_rows, skipped, total_seconds = _collect(pairs, mode, compat, keep_punctuation, progress)
    if not kept:
        raise InputError(f"no utterance under {root} has a non-empty transcript after filtering ({skipped})")
    vocab = Vocabulary.build((text for _, _, text in kept), unit=unit)
    entries = [
        ManifestEntry(audio_path=audio, transcript=text, label_ids=tuple(vocab.encode(text, where=str(txt))))
        for audio, txt, text in kept
    ]
    train_ids, valid_ids = _split_valid(len(entries), valid_ratio, seed)
    train_manifest = write_manifest(out / "train.tsv", _pick(entries, train_ids))
    valid_manifest = write_manifest(out / "valid.tsv", _pick(entries, valid_ids)) if valid_ids else None
    # an earlier run's outputs that this run does not write are of other utterances or another vocabulary: they must
    # not pass for this run's (the evaluation manifests are written anew by preprocess_ksponspeech_eval)
    unwritten = [f"{split}.tsv" for split in EVAL_SPLITS]
    if valid_manifest is None:
        unwritten.append("valid.tsv")
    if compat != "kospeech":
        unwritten += ["aihub_labels.csv", "transcripts.txt"]
    for name in unwritten:
        if (out / name).exists():
            (out / name).unlink()
            logger.warning("removed %s left by an earlier run: this run does not write it", out / name)
    vocab_path = vocab.to_csv(out / "vocab.csv")
    labels: Dict[str, Optional[str]] = {"kospeech_labels": None, "kospeech_transcripts": None}
    if compat == "kospeech":
        rows = [(_upstream_audio_path(root, txt), text) for txt, text in upstream_rows]
        written = write_kospeech_labels(out, rows, unit)
        labels = {"kospeech_labels": str(written[0]), "kospeech_transcripts": str(written[1])}
    summary: Dict[str, Any] = {
        "utterances": len(entries),
        "train_utterances": len(train_ids),
        "valid_utterances": len(valid_ids),
        "hours": total_seconds / 3600,
        **skipped,
        "vocab_size": len(vocab),
        "mode": mode,
        "unit": unit,
        "compat": compat,
        "train_manifest": str(train_manifest),
        "valid_manifest": str(valid_manifest) if valid_manifest is not None else None,
        "vocab": str(vocab_path),
        **labels,
    }
    logger.info("KsponSpeech preprocessing done: %s", summary)
    return summary


def _collect(
    pairs: Sequence[Tuple[Path, Path]], mode: str, compat: str, keep_punctuation: bool, progress: bool
) -> Tuple[List[Tuple[Path, Path, str]], List[Tuple[Path, str]], Dict[str, int], float]:
    """Filter every ``(audio, transcript)`` pair.

    Returns:
        ``(kept, decoded, skipped, seconds)``: the manifest's ``(audio, transcript file, text)``; every decoded
        ``(transcript file, text)``, empty texts and missing audio included (KoSpeech's label files list them); the
        skip counters; the kept audio's total duration.
    """
    skipped = dict.fromkeys(
        (
            "skipped_empty_transcript",
            "skipped_missing_transcript",
            "skipped_undecodable_transcript",
            "skipped_percent_without_reading",
            "skipped_missing_audio",
            "skipped_empty_audio",
            "skipped_bad_audio",
        ),
        0,
    )
    kept: List[Tuple[Path, Path, str]] = []
    decoded: List[Tuple[Path, str]] = []
    total_seconds = 0.0
    for audio_path, transcript_path in progress_bar(
        pairs, disable=not progress, desc="KsponSpeech transcripts", unit="utt"
    ):
        if not transcript_path.is_file():
            skipped["skipped_missing_transcript"] += 1
            logger.warning("skipping %s: no transcript %s", audio_path, transcript_path.name)
            continue
        try:
            text = _read_and_filter(transcript_path, mode, compat, keep_punctuation)
        except TranscriptError as exc:
            skipped["skipped_undecodable_transcript"] += 1
            logger.warning("skipping %s", exc)  # the message names the file
            continue
        except InputError as exc:
            skipped["skipped_percent_without_reading"] += 1
            logger.warning("skipping %s: %s", transcript_path, exc)
            continue
        decoded.append((transcript_path, text))
        reason = _audio_problem(audio_path)
        if isinstance(reason, str):
            skipped[reason] += 1
            continue
        if not text:
            skipped["skipped_empty_transcript"] += 1
            logger.info("skipping %s: transcript empty after filtering", transcript_path)
            continue
        kept.append((audio_path, transcript_path, _manifest_text(text)))
        total_seconds += reason
    return kept, decoded, skipped, total_seconds


def _audio_problem(audio_path: Path, where: Optional[str] = None) -> Union[float, str]:
    """The duration of a usable audio file, else the name of the skip counter it falls under (and a log line).

    Args:
        audio_path: the audio file.
        where: what the log line names (default: the audio path), e.g. the script line that lists the file.
    """
    where = where or str(audio_path)
    if not audio_path.is_file():
        logger.warning("skipping %s: no audio file", where)
        return "skipped_missing_audio"
    try:
        duration = audio_duration(audio_path)
    except AudioError as exc:
        logger.warning("skipping %s: %s", where, exc)
        return "skipped_bad_audio"
    if duration <= 0:
        logger.warning("skipping %s: empty audio file", where)
        return "skipped_empty_audio"
    return duration


def _upstream_audio_path(root: Path, transcript_path: Path) -> str:
    """The audio path KoSpeech writes: the transcript's path relative to the root with every ``txt`` read ``pcm``."""
    return transcript_path.relative_to(root).as_posix().replace("txt", "pcm")


def _kospeech_tokens(text: str, unit: str) -> List[str]:
    """KoSpeech's label units of a text: its characters, or (``grapheme``) the NFKD jamo, ``|`` for a space,
    upper-cased and split at whitespace."""
    if unit == "character":
        return list(text)
    return " ".join(unicodedata.normalize("NFKD", text).replace(" ", "|")).upper().split()


def write_kospeech_labels(
    out_dir: PathLike, utterances: Sequence[Tuple[str, str]], unit: str = "character"
) -> Tuple[Path, Path]:
    """Write KoSpeech's label files for ``utterances`` the way upstream's ``character.py`` / ``grapheme.py`` do.

    - ``aihub_labels.csv`` (UTF-8): ``id,char,freq`` (``id,grpm,freq`` for ``grapheme``); ``<pad> <sos> <eos>`` at
      ids 0-2, then every unit by falling count, equal counts by falling code points; ``character`` keeps the first
      2,000 rows. Units are characters, or for ``grapheme`` the NFKD jamo of the text upper-cased, with ``|`` for a
      space.
    - ``transcripts.txt`` (UTF-8): ``AUDIO<TAB>TRANSCRIPT<TAB>IDS`` per utterance in the given order, the ids
      space-separated; a character cut from the label list has no id and is left out of IDS.

    Upstream writes the character ``transcripts.txt`` into its working directory; here both files go to ``out_dir``.

    Args:
        out_dir: the output folder.
        utterances: ``(audio path as written, filtered transcript)``, empty transcripts included.
        unit: ``character`` or ``grapheme`` (KoSpeech's ``subword`` is not supported).

    Returns:
        The paths of ``aihub_labels.csv`` and ``transcripts.txt``.

    Raises:
        ValueError: unknown unit.
        InputError: (a ValueError) the transcripts hold no unit at all (upstream fails on that too).
    """
    if unit not in OUTPUT_UNITS:
        raise ValueError(f"unit must be one of {OUTPUT_UNITS}, got {unit!r}")
    tokenized = [_kospeech_tokens(text, unit) for _, text in utterances]
    counts = Counter(token for tokens in tokenized for token in tokens)
    if not counts:
        raise InputError("no label units in the transcripts: KoSpeech's label file would be empty")
    ordered = sorted(counts.items(), key=lambda item: (item[1], item[0]), reverse=True)
    rows = [(index, token, 0) for index, token in enumerate(KOSPEECH_SPECIAL_TOKENS)]
    rows += [(index, token, count) for index, (token, count) in enumerate(ordered, start=len(rows))]
    if unit == "character":
        rows = rows[:KOSPEECH_MAX_CHARACTER_LABELS]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("id", "char" if unit == "character" else "grpm", "freq"))
    writer.writerows(rows)
    out = Path(out_dir)
    labels_path = atomic_write_text(out / "aihub_labels.csv", buffer.getvalue())
    token_ids = {token: str(index) for index, token, _ in rows}
    lines = [
        f"{audio}\t{text}\t{' '.join(token_ids[token] for token in tokens if token in token_ids)}\n"
        for (audio, text), tokens in zip(utterances, tokenized)
    ]
    return labels_path, atomic_write_text(out / "transcripts.txt", "".join(lines))


def parse_trn_line(line: str) -> Tuple[str, str]:
    """Split one line of a ``KsponSpeech_scripts/*.trn`` file into its audio path and raw transcript.

    A line is ``<audio path relative to the corpus root> :: <raw transcript>``, e.g.
    ``KsponSpeech_eval/eval_clean/KsponSpeech_E00001.pcm :: 그 다음에 (3시)/(세 시)에 봐``; it is split at the
    first ``" :: "`` and the transcript is returned as written (not yet filtered).

    Args:
        line: one line, its line break removed.

    Returns:
        ``(audio path, raw transcript)``, the path stripped of surrounding spaces (AI Hub's files separate its
        folders with ``/``).

    Raises:
        TranscriptError: no ``" :: "``, no audio path, or a path that is absolute or climbs out of the root (``..``).
    """
    path, separator, transcript = line.partition(TRN_SEPARATOR)
    if not separator:
        raise TranscriptError(f"no {TRN_SEPARATOR!r} between the audio path and the transcript")
    path = path.strip()
    if not path:
        raise TranscriptError(f"no audio path before {TRN_SEPARATOR!r}")
    parts = PurePosixPath(path)
    if parts.is_absolute() or ".." in parts.parts:
        raise TranscriptError(f"audio path {path!r} is not relative to the corpus root")
    return path, transcript


class TrnLines(NamedTuple):
    """What :func:`read_trn` makes of a script file: its parsed lines and its bad ones, with line numbers."""

    lines: List[Tuple[int, str, str]]
    """``(line number, audio path, raw transcript)`` per parsed line."""
    undecodable: List[Tuple[int, str]]
    """``(line number, reason)`` per line that is not UTF-8."""
    malformed: List[Tuple[int, str]]
    """``(line number, reason)`` per line :func:`parse_trn_line` refuses."""


def read_trn(path: PathLike) -> TrnLines:
    """Read a ``KsponSpeech_scripts/*.trn`` file (UTF-8, as AI Hub ships it) line by line.

    The text rules are those of :mod:`kospeech.text_files` (UTF-8 with or without a byte-order mark, lines split at
    ``\\n`` only, one ``\\r`` before it dropped), except that each line is decoded on its own, so one corrupt line
    is reported and skipped instead of ending the file, and the text is not NFC-normalized (KoSpeech reads it as
    written). Blank lines are ignored.

    Args:
        path: the ``.trn`` file.

    Returns:
        The parsed lines, and the lines that do not decode or do not parse, each with its 1-based number.

    Raises:
        FileNotFoundError: no such file.
        TranscriptError: the file is not UTF-8 at all (no line with non-ASCII text decodes); the message names the
            file and its first such line, and says when the bytes read as cp949.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"KsponSpeech script file not found: {path}")
    raw = path.read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    lines = raw.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    result = TrnLines([], [], [])
    decoded_non_ascii = False
    for number, line in enumerate(lines, start=1):
        line = line[:-1] if line.endswith(b"\r") else line
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            result.undecodable.append((number, f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line)"))
            continue
        decoded_non_ascii = decoded_non_ascii or not text.isascii()
        if not text.strip():
            continue
        try:
            result.lines.append((number, *parse_trn_line(text)))
        except TranscriptError as exc:
            result.malformed.append((number, str(exc)))
    if result.undecodable and not decoded_non_ascii:
        first = result.undecodable[0][0]
        raise TranscriptError(
            f"{path}:{first}: not UTF-8 text{_cp949_hint(lines[first - 1])}, nor is any other line with non-ASCII "
            "text; AI Hub ships the scripts in UTF-8: convert this file first (e.g. iconv -f cp949 -t utf-8)"
        )
    return result


def _cp949_hint(line: bytes) -> str:
    """`` (its bytes read as cp949)`` when ``line`` decodes as cp949, else nothing (for :func:`read_trn`)."""
    try:
        line.decode("cp949")
    except UnicodeDecodeError:
        return ""
    return " (its bytes read as cp949)"


def _eval_text(raw: str, audio_name: str, mode: str, compat: str, keep_punctuation: bool) -> str:
    """The reference text of a raw ``.trn`` transcript under ``compat``'s rules, as a manifest column holds it.

    Raises:
        InputError: (KoSpeech rules) a ``%`` with no reading in ``phonetic`` mode.
    """
    if compat == "kospeech":
        text = sentence_filter(raw, mode, percent_word(audio_name))
    else:
        text = clean_transcript(raw, mode=mode, keep_punctuation=keep_punctuation)
    return _manifest_text(text)


def preprocess_ksponspeech_eval(
    root_dir: PathLike,
    out_dir: PathLike,
    vocab: Vocabulary,
    mode: str = "phonetic",
    compat: str = "kospeech",
    keep_punctuation: bool = False,
    scripts_dir: Optional[PathLike] = None,
    splits: Sequence[str] = EVAL_SPLITS,
    audio_extension: str = ".pcm",
    progress: bool = True,
) -> Dict[str, Any]:
    """Preprocess KsponSpeech's evaluation sets from their script files into manifests.

    AI Hub ships the evaluation audio as ``KsponSpeech_eval/eval_clean/*.pcm`` and ``KsponSpeech_eval/eval_other/
    *.pcm`` (3,000 files each, no transcripts beside them) and their transcripts in
    ``KsponSpeech_scripts/eval_clean.trn`` and ``eval_other.trn``, one ``<pcm path relative to the root> :: <raw
    transcript>`` line per utterance (:func:`read_trn`). Each transcript is filtered as training's are, with the
    same ``compat`` and ``mode``. A reference is scored as KoSpeech scores it, against its label ids: characters the
    training vocabulary lacks are removed from it (counted as ``dropped_characters``).

    Lines are skipped, counted and logged with their ``file:line`` when they do not decode
    (``skipped_undecodable_transcript``) or parse (``skipped_malformed_line``), when their audio is missing
    (``skipped_missing_audio``), empty or unreadable, when (KoSpeech rules) a ``%`` has no reading, or when the
    reference is empty after filtering (``skipped_empty_transcript``).

    Args:
        root_dir: the corpus root; the paths in the script files are relative to it.
        out_dir: where ``<split>.tsv`` is written for each split.
        vocab: the training vocabulary (its ``vocab.csv``).
        mode: ``phonetic`` or ``spelling``, as for training.
        compat: ``kospeech`` or ``clean``, as for training.
        keep_punctuation: as for training (``compat='clean'`` only).
        scripts_dir: the folder holding ``<split>.trn`` (default ``root_dir/KsponSpeech_scripts``).
        splits: the splits to preprocess, among :data:`EVAL_SPLITS`.
        audio_extension: suffix of the audio files (replaces the ``.pcm`` the scripts name, for a converted copy).
        progress: show a tqdm progress bar.

    Returns:
        Per split: ``utterances``, ``dropped_characters``, the skip counters above (and ``skipped_empty_audio``,
        ``skipped_bad_audio``, ``skipped_percent_without_reading``), ``script`` and ``manifest``.

    Raises:
        FileNotFoundError: ``root_dir`` or a split's script file is missing.
        ValueError: bad ``mode``, ``compat``, ``keep_punctuation`` or split name.
        InputError: (a ValueError) a script file is not UTF-8, or a split has no utterance left.
    """
    _check_options(mode, vocab.unit, compat, keep_punctuation, audio_extension)
    unknown = [split for split in splits if split not in EVAL_SPLITS]
    if unknown:
        raise ValueError(f"evaluation splits must be among {EVAL_SPLITS}, got {unknown}")
    root = Path(root_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"KsponSpeech root directory not found: {root}")
    scripts = Path(scripts_dir) if scripts_dir is not None else root / SCRIPTS_FOLDER
    known = set(vocab.tokens[len(SPECIAL_TOKENS) :])
    results: Dict[str, Any] = {}
    for split in splits:
        script = scripts / f"{split}.trn"
        trn = read_trn(script)
        skipped = dict.fromkeys(_EVAL_SKIPS, 0)
        for key, bad in (
            ("skipped_undecodable_transcript", trn.undecodable),
            ("skipped_malformed_line", trn.malformed),
        ):
            skipped[key] = len(bad)
            for number, reason in bad:
                logger.warning("skipping %s:%d: %s", script, number, reason)
        entries: List[ManifestEntry] = []
        dropped = 0
        for number, relative, raw in progress_bar(
            trn.lines, disable=not progress, desc=f"KsponSpeech {split}", unit="utt"
        ):
            where = f"{script}:{number}"
            audio = (root / relative).with_suffix(audio_extension)
            try:
                text = _eval_text(raw, audio.name, mode, compat, keep_punctuation)
            except InputError as exc:
                skipped["skipped_percent_without_reading"] += 1
                logger.warning("skipping %s: %s", where, exc)
                continue
            problem = _audio_problem(audio, where=f"{where} ({audio})")
            if isinstance(problem, str):
                skipped[problem] += 1
                continue
            kept = "".join(ch for ch in text if known.issuperset(vocab.tokenize(ch)))
            dropped += len(text) - len(kept)
            reference = " ".join(kept.split())  # a removed word leaves no doubled or edge space (the reader strips)
            if not reference:
                skipped["skipped_empty_transcript"] += 1
                logger.info("skipping %s: transcript empty after filtering", where)
                continue
            entries.append(
                ManifestEntry(
                    audio_path=audio, transcript=reference, label_ids=tuple(vocab.encode(reference, where=where))
                )
            )
        if not entries:
            raise InputError(f"no utterance of {script} has audio and a non-empty transcript ({skipped})")
        if dropped:
            logger.warning(
                "%s: %d characters outside the training vocabulary removed from the references", split, dropped
            )
        manifest = write_manifest(Path(out_dir) / f"{split}.tsv", entries)
        results[split] = {
            "utterances": len(entries),
            "dropped_characters": dropped,
            **skipped,
            "script": str(script),
            "manifest": str(manifest),
        }
    logger.info("KsponSpeech evaluation sets done: %s", results)
    return results


def _pick(entries: Sequence[ManifestEntry], indices: Sequence[int]) -> List[ManifestEntry]:
    return [entries[i] for i in indices]
