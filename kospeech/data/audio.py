"""Audio file I/O: read any format soundfile reads as 16 kHz mono float32, write 16-bit PCM WAV.

Every reader fails loudly: a missing, unreadable, truncated, empty or non-finite file raises an error that names the
file and the problem, instead of returning ``None`` or silently shorter audio.

KsponSpeech ships header-less ``.pcm`` files (16 kHz, 16-bit little-endian, mono); any path ending in ``.pcm`` is read
with that raw layout.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import Any, Dict, Iterator, NamedTuple, Optional, Union

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from kospeech.errors import AudioError, InputError
from kospeech.fileio import atomic_write

__all__ = [
    "AudioError",
    "check_sample_rate",
    "AudioInfo",
    "DEFAULT_SAMPLE_RATE",
    "PCM_SAMPLE_RATE",
    "audio_info",
    "audio_duration",
    "load_audio",
    "resample",
    "save_audio",
    "iter_audio_chunks",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

DEFAULT_SAMPLE_RATE = 16000
"""Sample rate every waveform is converted to before feature extraction."""

PCM_SAMPLE_RATE = 16000
"""Sample rate of header-less KsponSpeech ``.pcm`` files (16-bit little-endian mono)."""

_PCM_SUFFIX = ".pcm"
_WAV_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # data-chunk sizes written by streaming encoders that did not know the length


def check_sample_rate(sample_rate: Any, where: Optional[str] = None) -> int:
    """The one check of a sample rate given by a caller (a file's own rate is read from its header).

    Args:
        sample_rate: the value to check: a positive int (numpy integers included), in Hz.
        where: what the rate belongs to (a file, an input), named in the error.

    Returns:
        ``sample_rate`` as a Python int.

    Raises:
        InputError: not a positive integer.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        prefix = f"{where}: " if where else ""
        raise InputError(f"{prefix}sample_rate must be a positive int (Hz), got {sample_rate!r}")
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
    """Extra ``soundfile`` arguments for ``path``: the raw layout for KsponSpeech ``.pcm`` files, none otherwise."""
    if path.suffix.lower() == _PCM_SUFFIX:
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


def _check_wav_not_truncated(path: Path) -> None:
    """Raise if a RIFF/WAVE file declares more audio data than it holds.

    libsndfile quietly returns the samples that are present when a WAV file was cut short, so a copy interrupted half
    way would otherwise train on half an utterance. Files from streaming encoders (declared size 0 or 0xFFFFFFFF) and
    non-RIFF files are not checked here.
    """
    with open(path, "rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        file_size = os.fstat(handle.fileno()).st_size
        position = 12
        while position + 8 <= file_size:
            handle.seek(position)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                available = file_size - position - 8
                if chunk_size not in _WAV_UNKNOWN_SIZES and chunk_size > available:
                    raise AudioError(
                        f"{path}: truncated WAV file: its header declares {chunk_size} bytes of audio data "
                        f"but only {available} are present"
                    )
                return
            position += 8 + chunk_size + (chunk_size & 1)


def audio_info(path: PathLike) -> AudioInfo:
    """Read an audio file's header (cheap: no samples are decoded).

    Args:
        path: any file soundfile reads, or a KsponSpeech ``.pcm`` file.

    Returns:
        The file's :class:`AudioInfo`.

    Raises:
        FileNotFoundError: the file does not exist.
        AudioError: the file is not readable audio, or a WAV file holds less audio data than its header declares.
    """
    path = _existing_file(path)
    _check_wav_not_truncated(path)
    try:
        with sf.SoundFile(str(path), **_open_kwargs(path)) as handle:
            sample_rate, num_frames, channels = int(handle.samplerate), int(handle.frames), int(handle.channels)
    except sf.SoundFileError as exc:
        raise AudioError(f"{path}: not a readable audio file ({exc})") from exc
    return AudioInfo(sample_rate, num_frames, channels, num_frames / sample_rate)


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
    """Resample a mono waveform with band-limited sinc interpolation (deterministic).

    Args:
        waveform: (N,) float32 samples.
        orig_sample_rate: the waveform's sample rate.
        new_sample_rate: the wanted sample rate.

    Returns:
        (N',) float32 samples, ``N' = ceil(N * new_sample_rate / orig_sample_rate)``.
    """
    if orig_sample_rate == new_sample_rate:
        return waveform
    with torch.no_grad():
        resampled = AF.resample(torch.from_numpy(np.ascontiguousarray(waveform)), orig_sample_rate, new_sample_rate)
    return resampled.numpy().astype(np.float32, copy=False)


def load_audio(path: PathLike, sample_rate: int = DEFAULT_SAMPLE_RATE, min_duration_s: float = 0.0) -> np.ndarray:
    """Read an audio file as a mono float32 waveform at ``sample_rate``.

    Any format, sample rate, channel count and bit depth that soundfile reads is accepted (``.pcm`` is read as
    KsponSpeech raw 16 kHz 16-bit mono). Channels are averaged to mono, then the waveform is resampled.

    Args:
        path: the audio file.
        sample_rate: output sample rate in Hz.
        min_duration_s: refuse waveforms shorter than this many seconds (after resampling).

    Returns:
        (N,) float32 waveform, integer formats scaled to [-1, 1).

    Raises:
        FileNotFoundError: the file does not exist.
        AudioError: the file is unreadable, corrupt, truncated, has no samples, holds NaN/Inf samples or is shorter
            than ``min_duration_s``.
        ValueError: ``sample_rate`` is not a positive integer or ``min_duration_s`` is negative.
    """
    sample_rate = check_sample_rate(sample_rate)
    if min_duration_s < 0:
        raise ValueError(f"min_duration_s must be >= 0, got {min_duration_s!r}")
    path = _existing_file(path)
    _check_wav_not_truncated(path)
    try:
        data, file_sample_rate = sf.read(str(path), dtype="float32", always_2d=True, **_open_kwargs(path))
    except sf.SoundFileError as exc:
        raise AudioError(f"{path}: not a readable audio file ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the audio file contains no samples")
    if not np.isfinite(data).all():
        bad = int(data.size - np.isfinite(data).sum())
        raise AudioError(f"{path}: the audio contains {bad} NaN/Inf samples")
    waveform = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    waveform = resample(np.ascontiguousarray(waveform, dtype=np.float32), int(file_sample_rate), sample_rate)
    duration = waveform.shape[0] / sample_rate
    if duration < min_duration_s:
        raise AudioError(f"{path}: the audio is {duration:.4f} s long, shorter than the minimum {min_duration_s} s")
    return waveform


def save_audio(path: PathLike, waveform: Union[np.ndarray, torch.Tensor], sample_rate: int) -> Path:
    """Atomically write a waveform as a 16-bit PCM WAV file.

    Samples outside [-1, 1] are clipped (a warning is logged) instead of wrapping around.

    Args:
        path: destination file; its directory is created if needed.
        waveform: (N,) mono or (N, channels) float samples in [-1, 1].
        sample_rate: sample rate in Hz.

    Returns:
        The destination as a ``Path``.

    Raises:
        ValueError: the waveform is empty, not 1-D/2-D, holds NaN/Inf, or ``sample_rate`` is not positive.
    """
    path = Path(path)
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().cpu().numpy()
    data = np.asarray(waveform, dtype=np.float32)
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

    Chunks keep the file's own sample rate (read it with :func:`audio_info`); resample the pieces you need.

    Args:
        path: the audio file.
        chunk_seconds: length of every chunk but the last, in seconds.

    Yields:
        (n,) float32 mono chunks, in order; together they are the whole file.

    Raises:
        FileNotFoundError: the file does not exist.
        AudioError: the file is unreadable or corrupt, or a chunk holds NaN/Inf samples.
        ValueError: ``chunk_seconds`` is not positive.
    """
    if chunk_seconds <= 0:
        raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds!r}")
    info = audio_info(path)
    path = Path(path)
    block_frames = max(1, int(round(chunk_seconds * info.sample_rate)))
    try:
        for offset, block in enumerate(
            sf.blocks(str(path), blocksize=block_frames, dtype="float32", always_2d=True, **_open_kwargs(path))
        ):
            if not np.isfinite(block).all():
                raise AudioError(f"{path}: chunk {offset} (from {offset * chunk_seconds:.1f} s) holds NaN/Inf samples")
            yield block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else np.ascontiguousarray(block[:, 0])
    except sf.SoundFileError as exc:
        raise AudioError(f"{path}: not a readable audio file ({exc})") from exc
