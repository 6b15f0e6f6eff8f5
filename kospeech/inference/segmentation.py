"""Cutting an input into the segments the model decodes: speech regions, long ones cut at quiet points.

Documented behaviour:

- With voice activity detection (the recognizer's default), only the spoken regions of an input are decoded
  (:mod:`kospeech.data.voice_activity`): leading and trailing silence is dropped and every pause of at least
  ``min_silence_seconds`` (0.3 s) separates two segments; an input in which no one speaks gives no segment. Without
  it the whole input is one region.
- A region longer than ``chunk_seconds`` (30 s) is cut at the centre of the quietest 10 ms frame of each
  segment's last ``split_search_seconds``. Files longer than one segment are streamed from disk in blocks of 5 s,
  twice with detection (levels first, then the regions), so memory stays bounded for hour-long files. Segment
  texts are joined with a space; all times are relative to the start of the input.
- A corrupt block found while streaming a long file raises :class:`AudioError` when it is reached.
"""

from __future__ import annotations

from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from kospeech.data.audio import iter_audio_chunks, resample, resample_blocks
from kospeech.data.voice_activity import VoiceActivityConfig, quietest_point, speech_regions
from kospeech.inference.audio_inputs import AudioItem

__all__ = ["item_segments", "segments"]

_SPLIT_FRAME_SECONDS = 0.01  # granularity of the quietest-point search when cutting long audio
_STREAM_BLOCK_SECONDS = 5.0  # block size when streaming a long file from disk
_WHOLE_INPUT = [(0, np.iinfo(np.int64).max)]


def _quietest_cut(waveform: np.ndarray, start: int, stop: int, frame: int) -> int:
    """Sample index in ``[start, stop)`` at the centre of the lowest-energy ``frame``-sample frame (``stop`` if none)."""
    point = quietest_point(waveform, start, stop, frame)
    return stop if point is None else point


class _RegionCutter:
    """Collects one region's samples and cuts off a segment whenever more than ``max_samples`` are held."""

    def __init__(self, offset: int, max_samples: int, search: int, frame: int) -> None:
        self.offset = offset
        self.max_samples = max_samples
        self.search = search
        self.frame = frame
        self.buffer = np.zeros(0, dtype=np.float32)

    def feed(self, piece: np.ndarray) -> List[Tuple[int, np.ndarray]]:
        self.buffer = np.concatenate([self.buffer, piece]) if self.buffer.size else piece
        cut_off = []
        while self.buffer.size > self.max_samples:
            cut = _quietest_cut(self.buffer, self.max_samples - self.search, self.max_samples, self.frame)
            cut_off.append((self.offset, self.buffer[:cut]))
            self.offset += cut
            self.buffer = self.buffer[cut:]
        return cut_off

    def finish(self) -> List[Tuple[int, np.ndarray]]:
        return [(self.offset, self.buffer)] if self.buffer.size else []


def segments(
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    max_seconds: float,
    search_seconds: float,
    regions: Optional[Sequence[Tuple[int, int]]] = None,
) -> Iterator[Tuple[int, np.ndarray]]:
    """Cut the given regions of a stream of mono blocks into segments of at most ``max_seconds``.

    The cut of a segment that would be too long falls at the centre of the quietest 10 ms frame of its last
    ``search_seconds``; how the stream is split into blocks does not change the segments.

    Args:
        blocks: consecutive (n,) float32 mono pieces of one stream, at ``sample_rate``.
        sample_rate: Hz of the blocks.
        max_seconds: longest segment.
        search_seconds: how far back from a segment's end the quietest cut point is searched.
        regions: sorted, disjoint ``(start, stop)`` sample ranges to keep; ``None`` keeps the whole stream.

    Yields:
        ``(offset, segment)``: the segment's first sample index in the whole stream, and its (n,) samples.
    """
    max_samples = max(1, int(max_seconds * sample_rate))
    search = min(max_samples - 1, int(search_seconds * sample_rate))
    frame = max(1, int(_SPLIT_FRAME_SECONDS * sample_rate))
    wanted = list(_WHOLE_INPUT if regions is None else regions)
    index, position = 0, 0
    cutter: Optional[_RegionCutter] = None
    for block in blocks:
        block_start, position = position, position + block.size
        while index < len(wanted) and wanted[index][0] < position:
            start, stop = wanted[index]
            if cutter is None:
                cutter = _RegionCutter(start, max_samples, search, frame)
            low, high = max(start, block_start), min(stop, position)
            if high > low:
                yield from cutter.feed(block[low - block_start : high - block_start])
            if stop > position:
                break
            yield from cutter.finish()
            cutter, index = None, index + 1
    if cutter is not None:
        yield from cutter.finish()


def item_segments(
    item: AudioItem,
    sample_rate: int,
    max_seconds: float,
    search_seconds: float,
    voice_activity: Optional[VoiceActivityConfig] = None,
) -> Iterator[Tuple[int, np.ndarray]]:
    """The :func:`segments` of one checked input at ``sample_rate``: its waveform in memory, or its file streamed in
    5 s blocks and resampled as it goes (:func:`~kospeech.data.audio.resample_blocks`: the samples a file read whole
    gives). Speech is detected and cuts are placed at ``sample_rate``, so what the model does not hear (a whine above
    its band) does not move them.

    Args:
        item: the input (:func:`~kospeech.inference.audio_inputs.prepare_input`).
        sample_rate: the rate the segments are wanted at (the model's feature rate).
        max_seconds: longest segment (the recognizer's ``chunk_seconds``).
        search_seconds: how far back the quietest cut point is searched (``split_search_seconds``).
        voice_activity: detector settings to decode the speech regions only, or ``None`` for the whole input.

    Returns:
        An iterator of ``(offset, segment)`` at ``sample_rate`` (see :func:`segments`); a streamed file is read as
        the iterator advances.

    Raises:
        AudioError: a corrupt block of a streamed file, when it is reached.
    """
    if item.waveform is not None:
        waveform = resample(item.waveform, item.sample_rate, sample_rate)

        def blocks() -> Iterable[np.ndarray]:
            return [waveform]
    else:
        path, file_rate = item.path, item.sample_rate

        def blocks() -> Iterable[np.ndarray]:
            return resample_blocks(iter_audio_chunks(path, chunk_seconds=_STREAM_BLOCK_SECONDS), file_rate, sample_rate)

    regions = None if voice_activity is None else speech_regions(blocks(), sample_rate, voice_activity)
    return segments(blocks(), sample_rate, max_seconds, search_seconds, regions)
