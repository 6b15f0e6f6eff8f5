"""Audio inputs of the recognizer: a path, a numpy array, a torch tensor or a ``(waveform, rate)`` pair, checked.

:func:`prepare_input` turns one input into an :class:`AudioItem`: a mono float32 waveform in memory, or (for a
file longer than one segment) a file to stream in segments (:mod:`kospeech.inference.segmentation`).

Documented behaviour:

- Inputs: a path (any format soundfile reads; ``.pcm`` is KsponSpeech raw 16 kHz), a numpy array or torch tensor
  with its sample rate (``sample_rate=`` or a ``(waveform, sample_rate)`` pair), or a list of these. Waveforms are
  float in [-1, 1] or integer PCM (int8/16/32, uint8; :func:`~kospeech.data.audio.pcm_to_float`); 2-D waveforms are multi-channel, the shorter axis being the channels (at most 16),
  and are averaged to mono. Everything is resampled to the checkpoint's feature sample rate.
- Errors are raised before any model computation and name the input: a missing file (``FileNotFoundError``), an
  unreadable, corrupt or truncated file, an input with no samples or with NaN/Inf samples (:class:`AudioError`),
  an unsupported waveform type, shape or sample rate (``ValueError``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from kospeech.data.audio import (
    AudioError,
    AudioTooLongError,
    audio_info,
    check_sample_rate,
    load_audio,
    pcm_to_float,
    resample,
)
from kospeech.errors import InputError

__all__ = ["MAX_CHANNELS", "AudioInput", "AudioItem", "prepare_input"]

PathLike = Union[str, os.PathLike]
AudioInput = Union[PathLike, np.ndarray, Tensor, Tuple[Union[np.ndarray, Tensor], int]]
"""One input of :meth:`Recognizer.transcribe`: a path, a waveform, or a ``(waveform, sample_rate)`` pair."""

MAX_CHANNELS = 16
"""The most channels a 2-D waveform may have (its shorter axis)."""


@dataclass
class AudioItem:
    """One input, validated: either a mono waveform in memory or a long file to stream.

    Attributes:
        description: how errors and warnings name the input (the path, or ``input N (numpy.ndarray of shape ...)``).
        sample_rate: Hz of ``waveform``, or of the file at ``path``.
        num_samples: samples of the whole input at ``sample_rate``.
        waveform: (N,) float32 mono samples, or ``None`` for a file to stream.
        path: the file to stream, or ``None`` for a waveform in memory.
    """

    description: str
    sample_rate: int
    num_samples: int
    waveform: Optional[np.ndarray] = None
    path: Optional[Path] = None

    @property
    def seconds(self) -> float:
        """The whole input's duration."""
        return self.num_samples / self.sample_rate


def _describe(audio: Any, index: Optional[int], name: Optional[str] = None) -> str:
    if isinstance(audio, (str, os.PathLike)):
        return str(audio)
    if name is not None:
        return name
    where = "input" if index is None else f"input {index}"
    shape = tuple(getattr(audio, "shape", ()))
    return f"{where} ({type(audio).__module__.split('.')[0]}.{type(audio).__name__} of shape {shape})"


def _as_mono(waveform: Union[np.ndarray, Tensor], description: str) -> np.ndarray:
    """A float32 (N,) waveform from a 1-D or 2-D float/int16 array (channels averaged)."""
    if isinstance(waveform, Tensor):
        waveform = waveform.detach().cpu()
        if waveform.dtype == torch.bfloat16 or waveform.dtype == torch.float16:
            waveform = waveform.float()
        waveform = waveform.numpy()
    data = pcm_to_float(np.asarray(waveform), description)
    if data.ndim in (1, 2) and data.size == 0:  # before the channels are averaged, which would make NaNs of nothing
        raise AudioError(f"{description}: the waveform has no samples")
    if data.ndim == 2:
        channel_axis = 0 if data.shape[0] <= data.shape[1] else 1
        if data.shape[channel_axis] > MAX_CHANNELS:
            raise InputError(
                f"{description}: a 2-D waveform must be (channels, samples) or (samples, channels) with at most "
                f"{MAX_CHANNELS} channels, got shape {data.shape}"
            )
        data = data.mean(axis=channel_axis, dtype=np.float64)
    elif data.ndim != 1:
        raise InputError(
            f"{description}: waveform must be 1-D (samples) or 2-D (with channels), got shape {data.shape}"
        )
    if not np.isfinite(data).all():
        bad = int(data.size - np.isfinite(data).sum())
        raise AudioError(f"{description}: the waveform holds {bad} NaN/Inf samples")
    return np.ascontiguousarray(data, dtype=np.float32)


def prepare_input(
    audio: AudioInput,
    index: Optional[int],
    sample_rate: Optional[int],
    *,
    target_rate: int,
    max_in_memory_seconds: float,
    name: Optional[str] = None,
) -> AudioItem:
    """Validate one input; short files are read now, long files are only measured (their header read, or the file
    counted by decoding where the header leaves the length out).

    Args:
        audio: a path, a waveform (numpy array / torch tensor, 1-D or 2-D), or a ``(waveform, sample_rate)`` pair.
        index: the input's position in a list (named in messages), ``None`` for a single input.
        sample_rate: Hz of a waveform given without its own rate (ignored for files and pairs).
        target_rate: waveforms and the files read now are resampled to this rate (the checkpoint's feature sample
            rate), so speech is detected on what the model hears, whatever the input's kind.
        max_in_memory_seconds: files longer than this are not read but streamed later (the recognizer's
            ``chunk_seconds``).
        name: how messages name a waveform input (e.g. the file an upload came from); by default its position,
            type and shape. A path is always named by itself.

    Returns:
        The checked input: waveforms and short files at ``target_rate``, long files as a path (at their own rate).

    Raises:
        FileNotFoundError: a missing file.
        AudioError: an unreadable, corrupt or truncated file, no samples, NaN/Inf samples.
        ValueError: an unsupported type, dtype, shape or sample rate, or a waveform without its sample rate.
    """
    description = _describe(audio, index, name)
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        try:  # one read: a file whose header leaves its length out is not counted first and decoded after
            waveform = load_audio(path, sample_rate=target_rate, max_duration_s=max_in_memory_seconds)
        except AudioTooLongError:
            info = audio_info(path)
            return AudioItem(str(path), info.sample_rate, info.num_frames, path=path)
        return AudioItem(str(path), target_rate, waveform.shape[0], waveform=waveform)
    if isinstance(audio, tuple):
        if len(audio) != 2 or not isinstance(audio[0], (np.ndarray, Tensor)):
            raise InputError(
                f"{description}: a tuple input must be (waveform, sample_rate); pass several inputs as a list"
            )
        audio, sample_rate = audio
        description = _describe(audio, index, name)
    if not isinstance(audio, (np.ndarray, Tensor)):
        raise InputError(
            f"{description}: expected a path, a numpy array, a torch tensor or a (waveform, sample_rate) pair"
        )
    if sample_rate is None:
        raise InputError(f"{description}: a waveform needs its sample rate: pass sample_rate=... or (waveform, rate)")
    rate = check_sample_rate(sample_rate, description)
    waveform = resample(_as_mono(audio, description), rate, target_rate)
    return AudioItem(description, target_rate, waveform.shape[0], waveform=waveform)
