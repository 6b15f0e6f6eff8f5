"""Long audio: streaming a file in blocks and cutting a stream of samples into segments at quiet points.

Documented behaviour:

- Long audio is cut into segments of at most ``chunk_seconds`` (30 s) at the quietest 10 ms frame of each
  segment's last ``split_search_seconds`` (so cuts fall into pauses where there are pauses); files longer than
  one segment are streamed from disk (in blocks of 5 s), so memory stays bounded for hour-long files. Segment
  texts are joined with a space, timestamps are relative to the start of the input.
- A corrupt block found while streaming a long file raises :class:`AudioError` when it is reached.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Tuple

import numpy as np

from kospeech.data.audio import iter_audio_chunks
from kospeech.inference.audio_inputs import AudioItem

__all__ = ["item_segments", "segments"]

_SPLIT_FRAME_SECONDS = 0.01  # granularity of the quietest-point search when cutting long audio
_STREAM_BLOCK_SECONDS = 5.0  # block size when streaming a long file from disk


def _quietest_cut(waveform: np.ndarray, start: int, stop: int, frame: int) -> int:
    """Sample index in ``[start, stop)`` at the centre of the lowest-energy ``frame``-sample frame."""
    count = (stop - start) // frame
    if count < 1:
        return stop
    frames = waveform[start : start + count * frame].reshape(count, frame).astype(np.float64)
    return start + int(np.argmin(np.square(frames).sum(axis=1))) * frame + frame // 2


def segments(
    blocks: Iterable[np.ndarray], sample_rate: int, max_seconds: float, search_seconds: float
) -> Iterator[Tuple[int, np.ndarray]]:
    """Cut a stream of mono blocks into segments of at most ``max_seconds``, each cut at a quiet point.

    The cut of a segment that would be too long falls at the centre of the quietest 10 ms frame of its last
    ``search_seconds``; how the stream is split into blocks does not change the segments.

    Args:
        blocks: consecutive (n,) float32 mono pieces of one stream, at ``sample_rate``.
        sample_rate: Hz of the blocks.
        max_seconds: longest segment.
        search_seconds: how far back from a segment's end the quietest cut point is searched.

    Yields:
        ``(offset, segment)``: the segment's first sample index in the whole stream, and its (n,) samples.
    """
    max_samples = max(1, int(max_seconds * sample_rate))
    search = min(max_samples - 1, int(search_seconds * sample_rate))
    frame = max(1, int(_SPLIT_FRAME_SECONDS * sample_rate))
    buffer = np.zeros(0, dtype=np.float32)
    offset = 0
    for block in blocks:
        buffer = np.concatenate([buffer, block]) if buffer.size else block
        while buffer.size > max_samples:
            cut = _quietest_cut(buffer, max_samples - search, max_samples, frame)
            yield offset, buffer[:cut]
            offset += cut
            buffer = buffer[cut:]
    if buffer.size:
        yield offset, buffer


def item_segments(item: AudioItem, max_seconds: float, search_seconds: float) -> Iterator[Tuple[int, np.ndarray]]:
    """The :func:`segments` of one checked input: its waveform in memory, or its file streamed in 5 s blocks.

    Args:
        item: the input (:func:`~kospeech.inference.audio_inputs.prepare_input`).
        max_seconds: longest segment (the recognizer's ``chunk_seconds``).
        search_seconds: how far back the quietest cut point is searched (``split_search_seconds``).

    Returns:
        An iterator of ``(offset, segment)`` at ``item.sample_rate`` (see :func:`segments`); a streamed file is
        read as the iterator advances.

    Raises:
        AudioError: a corrupt block of a streamed file, when it is reached.
    """
    if item.waveform is not None:
        blocks: Iterable[np.ndarray] = [item.waveform]
    else:
        blocks = iter_audio_chunks(item.path, chunk_seconds=_STREAM_BLOCK_SECONDS)
    return segments(blocks, item.sample_rate, max_seconds, search_seconds)
