"""Uploaded audio: copied to disk within a byte limit, then decoded to 16 kHz mono within a duration limit.

WAV, FLAC, Ogg (Vorbis, Opus), AIFF and MP3 with an ID3 tag are read by the library as its own commands read them
(:func:`kospeech.data.audio.load_audio`: soundfile, with its checks for truncated and inconsistent containers);
anything whose first bytes name no container soundfile knows (WebM, MP4/M4A, MP3 without a tag) is decoded by PyAV,
which ships its own FFmpeg libraries. Both check the length before decoding where the header states it exactly, and
count it while decoding otherwise (FLAC written to a pipe, MP3 without a frame count, any WebM or M4A: a duration
the container merely declares is not trusted), so a long file is never decoded whole. Every refusal is a
:class:`~kospeech.service.errors.ServiceError`: 413 for too many bytes, 422 for audio that is unreadable, empty or
too long, with a message naming the upload.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, List

import av
import numpy as np

from kospeech.data.audio import check_sample_rate, load_audio
from kospeech.data.audio_headers import container_name
from kospeech.errors import AudioError, AudioTooLongError
from kospeech.service.errors import ServiceError

__all__ = [
    "CHUNK_BYTES",
    "FFMPEG_MAX_ALLOCATION_BYTES",
    "PYAV_DEMUXERS",
    "SAMPLE_RATE",
    "decode_audio",
    "limit_ffmpeg_allocations",
    "spooled_upload",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""Every upload is decoded to this rate (the base model's features resample anything else anyway)."""

CHUNK_BYTES = 1 << 20
"""Uploads are copied in pieces of this size."""

PYAV_DEMUXERS = "matroska,webm,mov,mp4,m4a,3gp,3g2,mj2,mp3,aac,ogg,wav,flac"
"""The containers PyAV may open an upload as (FFmpeg's ``format_whitelist``): the formats the API names. Others are
refused before they are read, e.g. a concat or playlist script that would make FFmpeg open other files."""

FFMPEG_MAX_ALLOCATION_BYTES = 64 << 20
"""The largest single allocation FFmpeg may make in the service's process (:func:`limit_ffmpeg_allocations`). Decoding
an upload of the largest allowed size needs a few MB at a time; FFmpeg's own default is about 2 GiB."""


def limit_ffmpeg_allocations(max_bytes: int = FFMPEG_MAX_ALLOCATION_BYTES) -> bool:
    """Cap every single allocation of PyAV's FFmpeg libraries in this process (``av_max_alloc``).

    Containers size some tables from counts in their headers before any audio is read: a 34 KB MP4 whose sample table
    claims 89 million samples made FFmpeg allocate 3 GB inside ``av.open``. With the cap such a file fails at once as
    unreadable. PyAV's wheels ship their own ``libavutil``, which is looked for beside the package first.

    Args:
        max_bytes: the cap.

    Returns:
        Whether the cap is set (``False``, with a warning, where no ``libavutil`` is found).
    """
    package = Path(av.__file__).resolve().parent
    candidates = sorted(package.parent.glob("av.libs/libavutil*")) + sorted(package.glob(".dylibs/libavutil*"))
    system = ctypes.util.find_library("avutil")
    for library in [str(path) for path in candidates] + ([system] if system else []):
        try:
            ctypes.CDLL(library).av_max_alloc(ctypes.c_size_t(max_bytes))
        except (OSError, AttributeError):
            continue
        logger.info("FFmpeg allocations capped at %d bytes (%s)", max_bytes, library)
        return True
    logger.warning("no libavutil found beside PyAV: FFmpeg's allocations are not capped for uploads")
    return False


def _too_large(name: str, limit: int) -> ServiceError:
    return ServiceError(
        413,
        "upload_too_large",
        f"{name}: the upload is larger than the limit of {limit} bytes (server.max_upload_bytes)",
    )


@contextmanager
def spooled_upload(source: BinaryIO, name: str, folder: Path, max_bytes: int) -> Iterator[Path]:
    """Copy an upload to a temporary file in ``folder`` piece by piece, stopping at ``max_bytes``; delete it after.

    Args:
        source: the uploaded file object (read from its current position).
        name: the upload's name, used in messages.
        folder: where the temporary file goes.
        max_bytes: the most bytes accepted.

    Yields:
        The temporary file's path.

    Raises:
        ServiceError: 413 beyond ``max_bytes``; 422 for an empty upload.
    """
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix="upload-", suffix=".audio", dir=folder)
    path = Path(temporary)
    try:
        total = 0
        with os.fdopen(handle, "wb") as target:
            while True:
                chunk = source.read(CHUNK_BYTES)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise _too_large(name, max_bytes)
                target.write(chunk)
        if total == 0:
            raise ServiceError(422, "invalid_audio", f"{name}: the uploaded file is empty")
        yield path
    finally:
        path.unlink(missing_ok=True)


def _decode_with_pyav(path: Path, name: str, max_seconds: float) -> np.ndarray:
    """Decode the first audio stream to float32 mono at :data:`SAMPLE_RATE`, refusing more than ``max_seconds``.

    The length is counted at each frame's own rate before the frame is resampled, and rates are checked as the
    library checks a header's: a frame of a few KB at 1 Hz would otherwise become gigabytes at 16 kHz. A duration the
    container declares is not trusted: FFmpeg estimates one where the file has none (an MP3 without a frame count,
    from its first frame's bit rate), and counting stops at ``max_seconds`` anyway.
    """
    limit = int(max_seconds * SAMPLE_RATE)
    pieces: List[np.ndarray] = []
    seconds = 0.0
    try:
        with av.open(
            str(path), mode="r", metadata_errors="replace", container_options={"format_whitelist": PYAV_DEMUXERS}
        ) as container:
            if not container.streams.audio:
                raise AudioError(f"{name}: the file holds no audio stream")
            stream = container.streams.audio[0]
            if stream.rate:
                check_sample_rate(stream.rate, name)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                seconds += frame.samples / check_sample_rate(frame.sample_rate, name)
                if seconds > max_seconds:
                    raise AudioTooLongError.exceeding(name, seconds, max_seconds, counted=True)
                for converted in resampler.resample(frame):
                    pieces.append(converted.to_ndarray().reshape(-1))
            for converted in resampler.resample(None):
                pieces.append(converted.to_ndarray().reshape(-1))
    except AudioError:
        raise
    except av.error.EOFError as exc:  # a browser's recorder stopped before its first frame writes only a header
        raise AudioError(
            f"{name}: the file ends before its first audio frame (a recording stopped as soon as it started?)"
        ) from exc
    except Exception as exc:  # FFmpeg's errors, and anything else PyAV raises on a malformed file: the upload's fault
        # FFmpeg's own words, without its error number and the server's spool path
        reason = exc.strerror if isinstance(exc, av.FFmpegError) and exc.strerror else exc
        raise AudioError(
            f"{name}: not a readable audio file (wav, flac, ogg/opus, webm, mp3 or m4a expected): {reason}"
        ) from exc
    waveform = np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)
    if waveform.size == 0:
        raise AudioError(f"{name}: the audio contains no samples")
    if waveform.size > limit:
        raise AudioTooLongError.exceeding(name, waveform.size / SAMPLE_RATE, max_seconds)
    if not np.isfinite(waveform).all():
        raise AudioError(f"{name}: the audio contains NaN/Inf samples")
    return waveform


def decode_audio(path: Path, name: str, max_seconds: float) -> np.ndarray:
    """Decode an uploaded file to a float32 mono waveform at :data:`SAMPLE_RATE`.

    Args:
        path: the spooled upload.
        name: the upload's file name, used in messages instead of the temporary path.
        max_seconds: the longest audio accepted.

    Returns:
        (N,) float32 samples, N >= 1.

    Raises:
        ServiceError: 422 (code ``invalid_audio`` or ``audio_too_long``) naming the upload and the problem.
    """
    try:
        if container_name(path) is None:
            return _decode_with_pyav(path, name, max_seconds)
        return load_audio(path, sample_rate=SAMPLE_RATE, max_duration_s=max_seconds)
    except AudioTooLongError as exc:  # its wording says whether the length was stated or counted
        message = f"{str(exc).replace(str(path), name)} (server.max_audio_seconds)"
        raise ServiceError(422, "audio_too_long", message) from exc
    except (AudioError, FileNotFoundError) as exc:
        raise ServiceError(422, "invalid_audio", str(exc).replace(str(path), name)) from exc
