"""Subtitles from a transcription: SubRip (``.srt``) and WebVTT (``.vtt``) cues built from word timings.

A cue holds consecutive words of one segment; a new cue starts at every segment, after a silence of more than
``max_gap_seconds`` between two words, and before a cue would last more than ``max_cue_seconds`` or hold more than
``max_cue_characters`` (the usual limits of subtitle style guides: about 7 s and 42 characters per line).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from kospeech.inference.records import Transcription, WordTiming

__all__ = ["Cue", "subtitle_cues", "to_srt", "to_vtt"]


@dataclass
class Cue:
    """One subtitle: its time span in seconds and its text."""

    start: float
    end: float
    text: str


def subtitle_cues(
    transcription: Transcription,
    max_gap_seconds: float = 1.0,
    max_cue_seconds: float = 7.0,
    max_cue_characters: int = 42,
) -> List[Cue]:
    """Group a transcription's words into cues (see the module docstring).

    Args:
        transcription: a result with ``words`` (``return_timestamps=True``).
        max_gap_seconds: a longer silence between two words starts a new cue.
        max_cue_seconds: the longest cue.
        max_cue_characters: the most characters in a cue.

    Returns:
        The cues in time order.

    Raises:
        ValueError: the transcription has no word timings.
    """
    if transcription.words is None:
        raise ValueError("subtitles need word timings: transcribe with return_timestamps=True")
    cues: List[Cue] = []
    current: List[WordTiming] = []
    boundaries = [segment.end for segment in transcription.segments]

    def flush() -> None:
        if current:
            cues.append(Cue(current[0].start, current[-1].end, " ".join(word.word for word in current)))
            current.clear()

    for word in transcription.words:
        if current:
            crosses_segment = any(current[-1].end <= boundary <= word.start for boundary in boundaries)
            too_long = word.end - current[0].start > max_cue_seconds
            too_wide = len(" ".join(w.word for w in current)) + 1 + len(word.word) > max_cue_characters
            if crosses_segment or word.start - current[-1].end > max_gap_seconds or too_long or too_wide:
                flush()
        current.append(word)
    flush()
    return cues


def _clock(seconds: float, decimal: str) -> str:
    milliseconds = int(round(seconds * 1000.0))
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def to_srt(transcription: Transcription) -> str:
    """SubRip text: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` times, blank line between cues."""
    blocks = [
        f"{number}\n{_clock(cue.start, ',')} --> {_clock(cue.end, ',')}\n{cue.text}\n"
        for number, cue in enumerate(subtitle_cues(transcription), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(transcription: Transcription) -> str:
    """WebVTT text: the ``WEBVTT`` header, then cues with ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` times."""
    blocks = [
        f"{_clock(cue.start, '.')} --> {_clock(cue.end, '.')}\n{cue.text}\n" for cue in subtitle_cues(transcription)
    ]
    return "\n".join(["WEBVTT\n", *blocks])
