"""KsponSpeech preprocessing: corpus transcripts -> cleaned text, manifest and vocabulary.

KsponSpeech (AI Hub, not shipped) stores each utterance as ``KsponSpeech_0001/KsponSpeech_000001.pcm`` (raw 16 kHz
16-bit little-endian mono) next to a cp949 ``.txt`` transcript written with these conventions:

- ``(철자)/(발음)``: a dual transcription, spelling first and pronunciation second, e.g. ``(3시)/(세 시)``;
  ``mode='phonetic'`` keeps the pronunciation (the KoSpeech default), ``mode='spelling'`` the spelling;
- ``o/ n/ u/ b/ l/``: noise and non-speech markers (other, noise, unintelligible, breath, laughter);
- ``word/`` filler, ``word+`` repetition and ``word*`` unclear-word markers: the marker is dropped, the word kept.

Cleaning decisions (:func:`clean_transcript`):

- In ``spelling`` mode the text is passed through :func:`kospeech.data.text_normalization.normalize_text`, so digits
  and symbols become their Hangul readings (``3시`` -> ``세 시``, ``70%`` -> ``칠십 퍼센트``); the spelling part of a
  dual transcription is normalized before markers are stripped, so a fraction such as ``1/2`` survives.
- A ``%`` left over in either mode is read ``퍼센트``; ``#`` is read ``샵``.
- Every other character that is not a Hangul syllable, an ASCII letter, a digit or a space is removed (sentence
  punctuation ``. , ? !`` is kept only with ``keep_punctuation=True``); whitespace is collapsed.
- In ``phonetic`` mode digits written outside a dual transcription are kept as written.
"""

from __future__ import annotations

import codecs
import logging
import os
import random
import re
import unicodedata
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

from tqdm import tqdm

from kospeech.data.audio import AudioError, audio_duration
from kospeech.data.manifest import ManifestEntry, write_manifest
from kospeech.data.text_normalization import normalize_text
from kospeech.errors import InputError, TranscriptError
from kospeech.vocabs import Vocabulary

__all__ = [
    "TRANSCRIPT_MODES",
    "TranscriptError",
    "read_transcript",
    "resolve_dual_transcriptions",
    "clean_transcript",
    "preprocess_ksponspeech",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

TRANSCRIPT_MODES = ("phonetic", "spelling")

_DUAL_RE = re.compile(r"\(([^()]*)\)\s*/\s*\(([^()]*)\)")
_NOISE_RE = re.compile(r"(?<![A-Za-z])[onubl]/")
_MARKER_RE = re.compile(r"[+*]|(?<!\d)/|/(?!\d)")
_SYMBOL_READINGS = {"%": "퍼센트", "#": "샵"}
_PUNCTUATION = ".,?!"
_WHITESPACE_RE = re.compile(r"\s+")
_HANGUL_SYLLABLES = ("\uac00", "\ud7a3")


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
    text = max(decoded, key=_hangul_share)  # max keeps the first (cp949) on a tie
    return unicodedata.normalize("NFC", " ".join(text.splitlines()))


def _strip_markers(text: str) -> str:
    """Drop noise markers (``o/ n/ u/ b/ l/``) and the ``/ + *`` word markers; a ``/`` between digits stays."""
    return _MARKER_RE.sub("", _NOISE_RE.sub(" ", text))


def resolve_dual_transcriptions(text: str, mode: str = "phonetic") -> str:
    """Replace every ``(spelling)/(pronunciation)`` pair by one of its sides.

    Args:
        text: a raw KsponSpeech transcript.
        mode: ``phonetic`` keeps the pronunciation, ``spelling`` keeps the spelling (with its digits and symbols
            read out by ``normalize_text``).

    Returns:
        The text with the pairs resolved; everything else untouched.

    Raises:
        ValueError: unknown mode.
    """
    if mode not in TRANSCRIPT_MODES:
        raise ValueError(f"mode must be one of {TRANSCRIPT_MODES}, got {mode!r}")
    if mode == "phonetic":
        return _DUAL_RE.sub(lambda match: match.group(2), text)
    return _DUAL_RE.sub(lambda match: normalize_text(_strip_markers(match.group(1))), text)


def clean_transcript(text: str, mode: str = "phonetic", keep_punctuation: bool = False) -> str:
    """Turn a raw KsponSpeech transcript into training text (see the module docstring for the rules).

    Args:
        text: the raw transcript, e.g. ``"b/ 아/ (3시)/(세 시)에 n/ 만나+ 만나자."``.
        mode: ``phonetic`` or ``spelling``.
        keep_punctuation: keep ``. , ? !``.

    Returns:
        The cleaned text, e.g. ``"아 세 시에 만나 만나자"``; may be empty (a noise-only utterance).

    Raises:
        ValueError: unknown mode.
    """
    text = resolve_dual_transcriptions(unicodedata.normalize("NFC", text), mode)
    text = _strip_markers(text)
    if mode == "spelling":
        text = normalize_text(text)
    for symbol, reading in _SYMBOL_READINGS.items():
        text = text.replace(symbol, f" {reading} ")
    low, high = _HANGUL_SYLLABLES
    kept = []
    for ch in text:
        if low <= ch <= high or (ch.isascii() and ch.isalnum()) or ch.isspace():
            kept.append(" " if ch.isspace() else ch)
        elif keep_punctuation and ch in _PUNCTUATION:
            kept.append(ch)
    return _WHITESPACE_RE.sub(" ", "".join(kept)).strip()


def _split_valid(count: int, valid_ratio: float, seed: int) -> Tuple[List[int], List[int]]:
    """Train and valid index lists (each in corpus order): a seeded ``valid_ratio`` share goes to valid."""
    if valid_ratio <= 0 or count < 2:
        return list(range(count)), []
    num_valid = min(count - 1, max(1, int(round(count * valid_ratio))))
    valid = set(random.Random(seed).sample(range(count), num_valid))
    return [i for i in range(count) if i not in valid], sorted(valid)


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
) -> Dict[str, Any]:
    """Walk a KsponSpeech tree, clean every transcript, and write the manifest(s) and the vocabulary.

    Every ``*.pcm`` under ``root_dir`` (e.g. ``KsponSpeech_01/KsponSpeech_0001/KsponSpeech_000001.pcm``) is paired
    with the ``.txt`` of the same name. Utterances whose transcript is missing or decodes neither as cp949 nor as
    UTF-8, whose audio header is unreadable or holds no samples, or whose transcript is empty after cleaning are
    skipped, counted and logged (one bad file never ends a run over 600,000).

    Args:
        root_dir: the corpus root.
        out_dir: where ``train.tsv``, ``valid.tsv`` (when ``valid_ratio > 0``) and ``vocab.csv`` are written.
        mode: ``phonetic`` (KoSpeech default) or ``spelling``, see :func:`clean_transcript`.
        unit: vocabulary unit, ``character`` or ``grapheme``.
        valid_ratio: share of utterances held out (seeded) into ``valid.tsv``; 0 writes only ``train.tsv``.
        seed: seed of the valid split.
        keep_punctuation: keep ``. , ? !`` in the transcripts.
        audio_extension: suffix of the audio files to collect.
        progress: show a tqdm progress bar.

    Returns:
        A summary: ``utterances``, ``train_utterances``, ``valid_utterances``, ``hours``,
        ``skipped_empty_transcript``, ``skipped_missing_transcript``, ``skipped_undecodable_transcript``,
        ``skipped_empty_audio``, ``skipped_bad_audio``,
        ``vocab_size``, ``mode``, ``unit`` and the written paths ``train_manifest``, ``valid_manifest`` (or None),
        ``vocab``.

    Raises:
        FileNotFoundError: ``root_dir`` is not a directory.
        ValueError: bad ``mode``, ``unit`` or ``valid_ratio``.
        InputError: (a ValueError) no audio files, or no utterance left after cleaning.
    """
    root = Path(root_dir).resolve()
    out = Path(out_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"KsponSpeech root directory not found: {root}")
    if mode not in TRANSCRIPT_MODES:
        raise ValueError(f"mode must be one of {TRANSCRIPT_MODES}, got {mode!r}")
    if unit not in ("character", "grapheme"):
        raise ValueError(f"unit must be 'character' or 'grapheme', got {unit!r}")
    if not 0.0 <= valid_ratio < 1.0:
        raise ValueError(f"valid_ratio must be in [0, 1), got {valid_ratio}")
    audio_files = sorted(root.rglob(f"*{audio_extension}"))
    if not audio_files:
        raise InputError(f"no {audio_extension} files under {root}")
    skipped = {
        "skipped_empty_transcript": 0,
        "skipped_missing_transcript": 0,
        "skipped_undecodable_transcript": 0,
        "skipped_empty_audio": 0,
        "skipped_bad_audio": 0,
    }
    kept: List[Tuple[Path, Path, str]] = []
    total_seconds = 0.0
    for audio_path in tqdm(audio_files, desc="KsponSpeech transcripts", unit="utt", disable=not progress):
        transcript_path = audio_path.with_suffix(".txt")
        if not transcript_path.is_file():
            skipped["skipped_missing_transcript"] += 1
            logger.warning("skipping %s: no transcript %s", audio_path, transcript_path.name)
            continue
        try:
            duration = audio_duration(audio_path)
        except AudioError as exc:
            skipped["skipped_bad_audio"] += 1
            logger.warning("skipping %s: %s", audio_path, exc)
            continue
        if duration <= 0:
            skipped["skipped_empty_audio"] += 1
            logger.warning("skipping %s: empty audio file", audio_path)
            continue
        try:
            raw_text = read_transcript(transcript_path)
        except TranscriptError as exc:
            skipped["skipped_undecodable_transcript"] += 1
            logger.warning("skipping %s: %s", audio_path, exc)
            continue
        text = clean_transcript(raw_text, mode=mode, keep_punctuation=keep_punctuation)
        if not text:
            skipped["skipped_empty_transcript"] += 1
            logger.info("skipping %s: transcript empty after cleaning", transcript_path)
            continue
        kept.append((audio_path, transcript_path, text))
        total_seconds += duration
    if not kept:
        raise InputError(f"no utterance under {root} has a non-empty transcript after cleaning ({skipped})")
    vocab = Vocabulary.build((text for _, _, text in kept), unit=unit)
    entries = [
        ManifestEntry(audio_path=audio, transcript=text, label_ids=tuple(vocab.encode(text, where=str(txt))))
        for audio, txt, text in kept
    ]
    train_ids, valid_ids = _split_valid(len(entries), valid_ratio, seed)
    train_manifest = write_manifest(out / "train.tsv", _pick(entries, train_ids))
    valid_manifest = write_manifest(out / "valid.tsv", _pick(entries, valid_ids)) if valid_ids else None
    vocab_path = vocab.to_csv(out / "vocab.csv")
    summary: Dict[str, Any] = {
        "utterances": len(entries),
        "train_utterances": len(train_ids),
        "valid_utterances": len(valid_ids),
        "hours": total_seconds / 3600,
        **skipped,
        "vocab_size": len(vocab),
        "mode": mode,
        "unit": unit,
        "train_manifest": str(train_manifest),
        "valid_manifest": str(valid_manifest) if valid_manifest is not None else None,
        "vocab": str(vocab_path),
    }
    logger.info("KsponSpeech preprocessing done: %s", summary)
    return summary


def _pick(entries: Sequence[ManifestEntry], indices: Sequence[int]) -> List[ManifestEntry]:
    return [entries[i] for i in indices]
