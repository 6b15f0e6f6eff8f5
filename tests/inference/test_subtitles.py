"""SubRip and WebVTT from word timings: cue grouping, clock format, refusal without timings."""

import pytest

from kospeech.inference import Transcription, TranscriptSegment, WordTiming, to_srt, to_vtt
from kospeech.inference.subtitles import subtitle_cues


def transcription(words, segments):
    return Transcription(
        text=" ".join(w.word for w in words),
        tokens=[],
        score=0.0,
        confidence=0.5,
        num_frames=10,
        duration=4000.0,
        num_segments=len(segments),
        segments=segments,
        words=words,
    )


def test_cues_break_at_segments_gaps_and_length():
    words = [
        WordTiming("안녕", 0.5, 0.9, 0.9),
        WordTiming("하세요", 1.0, 1.6, 0.9),
        WordTiming("다음", 3.2, 3.6, 0.9),  # after a gap of 1.6 s
        WordTiming("문장", 5.1, 5.5, 0.8),  # next segment
    ]
    segments = [TranscriptSegment(0.4, 4.0, "안녕 하세요 다음"), TranscriptSegment(5.0, 5.6, "문장")]
    cues = subtitle_cues(transcription(words, segments))
    assert [(cue.start, cue.end, cue.text) for cue in cues] == [
        (0.5, 1.6, "안녕 하세요"),
        (3.2, 3.6, "다음"),
        (5.1, 5.5, "문장"),
    ]
    many = [WordTiming("가나다라마", 0.1 + i * 0.5, 0.5 + i * 0.5, 0.9) for i in range(30)]
    long_cues = subtitle_cues(transcription(many, [TranscriptSegment(0.0, 16.0, "")]))
    assert all(len(cue.text) <= 42 and cue.end - cue.start <= 7.0 for cue in long_cues)
    assert sum(len(cue.text.split()) for cue in long_cues) == 30


def test_srt_and_vtt_text():
    words = [WordTiming("안녕", 0.5, 0.9, 0.9), WordTiming("문장", 3725.25, 3726.0, 0.9)]
    segments = [TranscriptSegment(0.4, 1.0, "안녕"), TranscriptSegment(3725.0, 3726.1, "문장")]
    result = transcription(words, segments)
    assert to_srt(result) == ("1\n00:00:00,500 --> 00:00:00,900\n안녕\n\n2\n01:02:05,250 --> 01:02:06,000\n문장\n")
    assert to_vtt(result) == "WEBVTT\n\n00:00:00.500 --> 00:00:00.900\n안녕\n\n01:02:05.250 --> 01:02:06.000\n문장\n"
    assert to_vtt(transcription([], [])) == "WEBVTT\n"


def test_subtitles_need_word_timings():
    result = transcription([], [])
    result.words = None
    with pytest.raises(ValueError, match="return_timestamps"):
        to_srt(result)
