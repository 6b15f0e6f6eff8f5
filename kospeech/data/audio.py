"""Audio file I/O: read any format soundfile reads as 16 kHz mono float32, write 16-bit PCM WAV.

Every reader fails loudly: a missing, unreadable, truncated, empty or non-finite file raises an error that names the
file and the problem, instead of returning ``None`` or silently shorter audio.

KsponSpeech ships header-less ``.pcm`` files (16 kHz, 16-bit little-endian, mono); any path ending in ``.pcm`` is read
with that raw layout.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple, Union

import numpy as np
import soundfile as sf
import soxr
import torch

from kospeech.data.audio_headers import check_container, container_name, mp3_counts_frames
from kospeech.errors import AudioError, AudioTooLongError, InputError
from kospeech.fileio import atomic_write

__all__ = [
    "AudioError",
    "AudioTooLongError",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "pcm_to_float",
    "check_sample_rate",
    "AudioInfo",
    "DEFAULT_SAMPLE_RATE",
    "PCM_SAMPLE_RATE",
    "audio_info",
    "audio_duration",
    "stated_frames",
    "load_audio",
    "resample",
    "resample_blocks",
    "save_audio",
    "iter_audio_chunks",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

DEFAULT_SAMPLE_RATE = 16000
"""Sample rate every waveform is converted to before feature extraction."""

PCM_SAMPLE_RATE = 16000
"""Sample rate of header-less KsponSpeech ``.pcm`` files (16-bit little-endian mono)."""

MIN_SAMPLE_RATE = 4000
"""Lowest sample rate read or produced (below telephone band, speech is not intelligible)."""

MAX_SAMPLE_RATE = 384000
"""Highest sample rate read or produced (the highest rate audio interfaces record at)."""

_PCM_SUFFIX = ".pcm"
_DECODE_SHORTFALL_TOLERANCE = 0.02
_READ_BLOCK_FRAMES = 1 << 16  # frames read at a time by load_audio, each block mixed down to mono at once
_UNSTATED_FRAMES = 1 << 62  # libsndfile's count for a stream whose header leaves the length out (SF_COUNT_MAX)


def check_sample_rate(sample_rate: Any, where: Optional[str] = None) -> int:
    """The one check of a sample rate, given by a caller or read from a file's header.

    Args:
        sample_rate: the value to check: an int (numpy integers included) in Hz, from :data:`MIN_SAMPLE_RATE` to
            :data:`MAX_SAMPLE_RATE`.
        where: what the rate belongs to (a file, an input), named in the error.

    Returns:
        ``sample_rate`` as a Python int.

    Raises:
        InputError: not an integer, or outside the plausible range (a header claiming 1 Hz would turn a 40 KB file
            into hours of audio; 96001 Hz would make an exact resampler build a kernel of gigabytes).
    """
    prefix = f"{where}: " if where else ""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise InputError(f"{prefix}sample_rate must be a positive int (Hz), got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{prefix}implausible sample rate {int(sample_rate)} Hz; audio is read at {MIN_SAMPLE_RATE} to "
            f"{MAX_SAMPLE_RATE} Hz"
        )
    return int(sample_rate)


class AudioInfo(NamedTuple):
    """Header information of an audio file (no samples decoded).

    Attributes:
        sample_rate: samples per second per channel, as stored in the file.
        num_frames: samples per channel.
        channels: number of channels.
        duration: ``num_frames / sample_rate`` in seconds.
    """

    sample_rate: int
    num_frames: int
    channels: int
    duration: float


def _open_kwargs(path: Path) -> Dict[str, Any]:
    """Extra ``soundfile`` arguments for ``path``: the raw layout for KsponSpeech ``.pcm`` files, none otherwise.

    A ``.pcm`` file that starts with a container's magic bytes (a WAV saved under a ``.pcm`` name) is read with its
    own header instead: decoding its header as samples would add a click and, for other layouts, noise.
    """
    if path.suffix.lower() == _PCM_SUFFIX:
        container = container_name(path)
        if container is not None:
            logger.warning("%s: named .pcm but holds a %s header; reading it with its header", path, container)
            return {}
        return {
            "format": "RAW",
            "samplerate": PCM_SAMPLE_RATE,
            "channels": 1,
            "subtype": "PCM_16",
            "endian": "LITTLE",
        }
    return {}


def _existing_file(path: PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    return path


def _check_decoded_length(path: Path, decoded: int, declared: int) -> None:
    """Refuse a decode that stopped short of the length the file's header declares (e.g. an MP3's Xing frame count).

    Decoders may differ from the declared count by an encoder delay or a final partial frame; more than
    :data:`_DECODE_SHORTFALL_TOLERANCE` of the audio missing is a truncated file.
    """
    if declared > 0 and decoded < declared * (1.0 - _DECODE_SHORTFALL_TOLERANCE):
        raise AudioError(
            f"{path}: truncated file: its header declares {declared} samples per channel but only {decoded} "
            f"could be decoded ({decoded / declared:.0%})"
        )


def audio_info(path: PathLike) -> AudioInfo:
    """Read an audio file's header (cheap: no samples are decoded, unless the header leaves the length out).

    Args:
        path: any file soundfile reads, or a KsponSpeech ``.pcm`` file.

    Returns:
        The file's :class:`AudioInfo`. Where the header does not state the length exactly (:func:`stated_frames`),
        the file is decoded once to count its frames.

    Raises:
        FileNotFoundError: the file does not exist.
        AudioError: the file is not readable audio, holds less audio data than its header declares or
            inconsistent header fields (:mod:`kospeech.data.audio_headers`), or has an implausible sample rate.
    """
    path, header = _probe(path)
    num_frames = header.frames
    if num_frames is None:  # counted: decoding is the only way to know
        num_frames = sum(mono.shape[0] for mono, _ in _mono_blocks(path, header, _READ_BLOCK_FRAMES))
    return AudioInfo(header.sample_rate, num_frames, header.channels, num_frames / header.sample_rate)


def stated_frames(path: PathLike) -> Optional[int]:
    """The number of frames (samples per channel) a file's header states exactly, without decoding anything.

    Args:
        path: any file soundfile reads, or a KsponSpeech ``.pcm`` file.

    Returns:
        The count, or ``None`` where the file does not state it: a FLAC stream written to a pipe (its header's total
        is 0), or an MP3 without a frame-counting first frame (:func:`~kospeech.data.audio_headers.
        mp3_counts_frames`), whose length decoders only estimate from the first frame's bit rate.

    Raises:
        FileNotFoundError: the file does not exist.
        AudioError: the file is not readable audio, holds less audio data than its header declares or inconsistent
            header fields, or has an implausible sample rate.
    """
    return _probe(path)[1].frames


class _Header(NamedTuple):
    """What one read of a file's header tells: enough to decode the file and to check the decode.

    Attributes:
        sample_rate: samples per second per channel.
        frames: samples per channel where the header states them exactly, else ``None`` (only decoding counts them).
        channels: number of channels.
        pyav_format: the FFmpeg demuxer that decodes a file libsndfile cannot read to its end, else ``None``: a FLAC
            stream without its length (libsndfile fails on its last block) or an MP3 without a frame count
            (libsndfile stops at the length it estimated from the first frame's bit rate, half of a stream that
            starts loud) (:func:`_pyav_mono_blocks`).
    """

    sample_rate: int
    frames: Optional[int]
    channels: int
    pyav_format: Optional[str]


def _probe(path: PathLike) -> Tuple[Path, _Header]:
    """Check that ``path`` exists and that its container holds what it declares, then read its header once.

    Raises:
        FileNotFoundError: the file does not exist.
        AudioError: see :func:`audio_info`.
    """
    path = _existing_file(path)
    check_container(path)
    try:
        with sf.SoundFile(str(path), **_open_kwargs(path)) as handle:
            sample_rate, num_frames, channels = int(handle.samplerate), int(handle.frames), int(handle.channels)
            file_format = handle.format
    except sf.SoundFileError as exc:
        raise AudioError(f"{path}: not a readable audio file ({exc})") from exc
    check_sample_rate(sample_rate, str(path))
    estimated = file_format == "MP3" and not mp3_counts_frames(path)
    frames = None if estimated or num_frames >= _UNSTATED_FRAMES else num_frames
    pyav_format = file_format.lower() if frames is None and file_format in ("FLAC", "MP3") else None
    return path, _Header(sample_rate, frames, channels, pyav_format)


def audio_duration(path: PathLike) -> float:
    """Duration of an audio file in seconds, from its header (used for length bucketing).

    Args:
        path: any file soundfile reads, or a KsponSpeech ``.pcm`` file.

    Returns:
        Seconds of audio.

    Raises:
        FileNotFoundError: the file does not exist.
        AudioError: the file is not readable audio.
    """
    return audio_info(path).duration


def resample(waveform: np.ndarray, orig_sample_rate: int, new_sample_rate: int) -> np.ndarray:
    """Resample a mono waveform with the SoX polyphase resampler (``soxr``, high quality, deterministic).

    Time and memory grow with the number of samples only, whatever the two rates are: an exact rational resampler
    builds a kernel from the rates' greatest common divisor, which for 16001 -> 16000 Hz is 16000 phases long.

    Args:
        waveform: (N,) float32 samples.
        orig_sample_rate: the waveform's sample rate, :data:`MIN_SAMPLE_RATE` to :data:`MAX_SAMPLE_RATE`.
        new_sample_rate: the wanted sample rate, in the same range.

    Returns:
        (N',) float32 samples, ``N' = round(N * new_sample_rate / orig_sample_rate)``.

    Raises:
        AudioError: a rate outside the plausible range.
    """
    orig_sample_rate = check_sample_rate(orig_sample_rate, "resample")
    new_sample_rate = check_sample_rate(new_sample_rate, "resample")
    if orig_sample_rate == new_sample_rate:
        return waveform
    resampled = soxr.resample(
        np.ascontiguousarray(waveform, dtype=np.float32), orig_sample_rate, new_sample_rate, quality="HQ"
    )
    return np.asarray(resampled, dtype=np.float32)


def resample_blocks(blocks: Iterable[np.ndarray], orig_sample_rate: int, new_sample_rate: int) -> Iterator[np.ndarray]:
    """Resample a stream of mono blocks as one signal, with :func:`resample`'s filter kept running across blocks.

    The pieces joined equal :func:`resample` of the whole stream, however it is split: a long file streamed with
    :func:`iter_audio_chunks` and resampled here gives the samples :func:`load_audio` would.

    Args:
        blocks: consecutive (n,) float32 mono pieces of one stream at ``orig_sample_rate``.
        orig_sample_rate: their rate.
        new_sample_rate: the wanted rate.

    Yields:
        (n',) float32 pieces at ``new_sample_rate``, none empty (the blocks themselves when the rates are equal).

    Raises:
        AudioError: a rate outside the plausible range.
    """
    orig_sample_rate = check_sample_rate(orig_sample_rate, "resample")
    new_sample_rate = check_sample_rate(new_sample_rate, "resample")
    if orig_sample_rate == new_sample_rate:
        yield from blocks
        return
    stream = soxr.ResampleStream(orig_sample_rate, new_sample_rate, 1, dtype="float32", quality="HQ")
    for block in blocks:
        piece = stream.resample_chunk(np.ascontiguousarray(block, dtype=np.float32))
        if piece.size:
            yield piece
    tail = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
    if tail.size:
        yield tail


def _mono_blocks(path: Path, header: _Header, block_frames: int) -> Iterator[Tuple[np.ndarray, int]]:
    """Decode ``path`` (whose :func:`_probe` gave ``header``) ``block_frames`` at a time until the decoder stops, each
    block mixed down to mono at once.

    Reads with ``read()``: ``sf.blocks()`` counts down the declared length instead and, for a cut file, yields
    full-size blocks whose tail is the previous block's samples.

    Yields:
        ((n,) float32 mono samples at the file's rate, how many of the block's samples in any channel are NaN/Inf).

    Raises:
        AudioError: the file cannot be decoded.
    """
    if header.pyav_format is not None:
        yield from _pyav_mono_blocks(path, header.pyav_format, block_frames)
        return
    try:
        with sf.SoundFile(str(path), **_open_kwargs(path)) as handle:
            while True:
                block = handle.read(block_frames, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    return
                nonfinite = int(block.size - np.isfinite(block).sum())
                yield block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0].copy(), nonfinite
    except sf.SoundFileError as exc:
        raise AudioError(f"{path}: not a readable audio file ({exc})") from exc


def _pyav_mono_blocks(path: Path, pyav_format: str, block_frames: int) -> Iterator[Tuple[np.ndarray, int]]:
    """:func:`_mono_blocks` of a file whose header leaves the length out (``_Header.pyav_format``), decoded by PyAV
    with the demuxer ``pyav_format`` to the end of its stream."""
    import av  # FFmpeg is needed for these streams only

    pieces: List[np.ndarray] = []
    held = nonfinite = 0
    try:
        with av.open(str(path), mode="r", format=pyav_format) as container:
            converter = av.AudioResampler(format="fltp")  # float planes; the stream's own layout and rate
            for frame in container.decode(container.streams.audio[0]):
                for converted in converter.resample(frame):
                    planes = converted.to_ndarray()
                    nonfinite += int(planes.size - np.isfinite(planes).sum())
                    pieces.append(planes.mean(axis=0, dtype=np.float32))
                    held += pieces[-1].shape[0]
                while held >= block_frames:
                    joined = np.concatenate(pieces)
                    yield joined[:block_frames], nonfinite
                    pieces, held, nonfinite = [joined[block_frames:]], held - block_frames, 0
    except av.FFmpegError as exc:
        raise AudioError(f"{path}: not a readable audio file ({exc})") from exc
    if held:
        yield np.concatenate(pieces), nonfinite


def load_audio(
    path: PathLike,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    min_duration_s: float = 0.0,
    max_duration_s: Optional[float] = None,
) -> np.ndarray:
    """Read an audio file as a mono float32 waveform at ``sample_rate``.

    Any format, sample rate, channel count and bit depth that soundfile reads is accepted (``.pcm`` is read as
    KsponSpeech raw 16 kHz 16-bit mono). Channels are averaged to mono, then the waveform is resampled.

    Args:
        path: the audio file.
        sample_rate: output sample rate in Hz.
        min_duration_s: refuse waveforms shorter than this many seconds (after resampling).
        max_duration_s: refuse files longer than this many seconds, without decoding them where the header states
            the length, and as soon as the decoded audio passes it where it does not: the work and memory for a file
            from an untrusted source stay bounded by the limit. ``None``: no limit.

    Returns:
        (N,) float32 waveform, integer formats scaled to [-1, 1).

    Raises:
        FileNotFoundError: the file does not exist.
        AudioError: the file is unreadable, corrupt, truncated (its header or its decoded length says so), has an
            implausible sample rate, has no samples, holds NaN/Inf samples or is shorter than ``min_duration_s``.
        AudioTooLongError: the file is longer than ``max_duration_s``.
        ValueError: ``sample_rate`` is not a positive integer, ``min_duration_s`` is negative or ``max_duration_s``
            is not a number above 0.
    """
    sample_rate = check_sample_rate(sample_rate)
    if min_duration_s < 0:
        raise ValueError(f"min_duration_s must be >= 0, got {min_duration_s!r}")
    if max_duration_s is not None and not 0 < max_duration_s < float("inf"):
        raise ValueError(f"max_duration_s must be a finite number > 0 or None, got {max_duration_s!r}")
    path, header = _probe(path)
    frame_limit = float("inf") if max_duration_s is None else max_duration_s * header.sample_rate
    if header.frames is not None and header.frames > frame_limit:
        raise AudioTooLongError.exceeding(path, header.frames / header.sample_rate, max_duration_s)
    # block by block, each mixed down at once: memory follows the mono length, not channels x samples (a small FLAC
    # of 8 channels of silence at 384 kHz would decode to gigabytes of float32 at once)
    pieces: List[np.ndarray] = []
    decoded = bad = 0
    for mono, nonfinite in _mono_blocks(path, header, _READ_BLOCK_FRAMES):
        pieces.append(mono)
        decoded += mono.shape[0]
        bad += nonfinite
        if decoded > frame_limit:  # a length the header does not state, or understates
            raise AudioTooLongError.exceeding(path, decoded / header.sample_rate, max_duration_s, counted=True)
    waveform = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    if header.frames is not None:  # else the decode itself was the count
        _check_decoded_length(path, decoded, header.frames)
    if decoded == 0:
        raise AudioError(f"{path}: the audio file contains no samples")
    if bad:
        raise AudioError(f"{path}: the audio contains {bad} NaN/Inf samples")
    waveform = resample(np.ascontiguousarray(waveform, dtype=np.float32), header.sample_rate, sample_rate)
    duration = waveform.shape[0] / sample_rate
    if duration < min_duration_s:
        raise AudioError(f"{path}: the audio is {duration:.4f} s long, shorter than the minimum {min_duration_s} s")
    return waveform


def pcm_to_float(data: np.ndarray, where: str) -> np.ndarray:
    """Samples of any numeric dtype as float32 at the usual scale: integer PCM divided by its full scale.

    ``int16`` / ``int32`` / ``int8`` are divided by 2**15 / 2**31 / 2**7, ``uint8`` is centred at 128 first (WAV's
    8-bit convention); floating point is kept as it is. Float values beyond float32's range would become infinite,
    so they are refused.

    Args:
        data: a numpy array of samples, any shape.
        where: the input, named in errors.

    Returns:
        float32 array of the same shape.

    Raises:
        InputError: a non-numeric dtype, or floating point samples beyond float32's range.
    """
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(data.dtype, np.signedinteger) and data.dtype.itemsize in (1, 2, 4):
        return data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize - 1))
    if not np.issubdtype(data.dtype, np.floating):
        raise InputError(
            f"{where}: sample dtype must be floating point or int8/int16/int32/uint8 PCM, got {data.dtype}"
        )
    if data.dtype.itemsize > 4 and data.size:
        finite = data[np.isfinite(data)]
        if finite.size and float(np.abs(finite).max()) > float(np.finfo(np.float32).max):
            raise InputError(
                f"{where}: samples reach {float(np.abs(finite).max()):.3g}, beyond float32's range "
                f"({float(np.finfo(np.float32).max):.3g}); audio is processed as float32"
            )
    return data.astype(np.float32, copy=False)


def save_audio(path: PathLike, waveform: Union[np.ndarray, torch.Tensor], sample_rate: int) -> Path:
    """Atomically write a waveform as a 16-bit PCM WAV file.

    Integer PCM arrays are scaled by their full scale first (:func:`pcm_to_float`); float samples outside [-1, 1] are
    clipped (a warning is logged) instead of wrapping around.

    Args:
        path: destination file; its directory is created if needed.
        waveform: (N,) mono or (N, channels) float samples in [-1, 1], or integer PCM (int16, int32, ...).
        sample_rate: sample rate in Hz.

    Returns:
        The destination as a ``Path``.

    Raises:
        ValueError: the waveform is empty, not 1-D/2-D, not numeric, holds NaN/Inf or values beyond float32, or
            ``sample_rate`` is not a plausible rate.
    """
    path = Path(path)
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().cpu()
        waveform = (waveform.float() if waveform.dtype in (torch.float16, torch.bfloat16) else waveform).numpy()
    data = pcm_to_float(np.asarray(waveform), str(path))
    if data.ndim not in (1, 2) or data.shape[0] == 0:
        raise ValueError(f"{path}: waveform must have shape (N,) or (N, channels) with N > 0, got {data.shape}")
    if not np.isfinite(data).all():
        raise ValueError(f"{path}: waveform contains NaN/Inf samples")
    sample_rate = check_sample_rate(sample_rate, str(path))
    peak = float(np.abs(data).max())
    if peak > 1.0:
        logger.warning("%s: clipping waveform with peak %.3f to [-1, 1] for 16-bit PCM", path, peak)
        data = np.clip(data, -1.0, 1.0)
    return atomic_write(path, lambda handle: sf.write(handle, data, sample_rate, subtype="PCM_16", format="WAV"))


def iter_audio_chunks(path: PathLike, chunk_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Stream a long audio file as consecutive mono float32 chunks, without decoding it whole.

    Chunks keep the file's own sample rate (read it with :func:`audio_info`); :func:`resample_blocks` converts the
    stream.

    Args:
        path: the audio file.
        chunk_seconds: length of every chunk but the last, in seconds.

    Yields:
        (n,) float32 mono chunks, in order; together they are the whole file.

    Raises:
        FileNotFoundError: the file does not exist.
        AudioError: the file is unreadable, corrupt or truncated (found at its end when only the decoded length
            shows it), or a chunk holds NaN/Inf samples.
        ValueError: ``chunk_seconds`` is not a finite positive number.
    """
    if not 0 < chunk_seconds < float("inf"):
        raise ValueError(f"chunk_seconds must be a finite number > 0, got {chunk_seconds!r}")
    path, header = _probe(path)
    block_frames = max(1, int(round(chunk_seconds * header.sample_rate)))
    decoded = 0
    for offset, (mono, nonfinite) in enumerate(_mono_blocks(path, header, block_frames)):
        if nonfinite:
            raise AudioError(f"{path}: chunk {offset} (from {offset * chunk_seconds:.1f} s) holds NaN/Inf samples")
        decoded += mono.shape[0]
        yield mono
    if header.frames is not None:  # else the decode itself was the count
        _check_decoded_length(path, decoded, header.frames)
