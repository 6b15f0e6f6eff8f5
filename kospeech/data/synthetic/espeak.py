"""Offline Korean speech synthesis with espeak-ng, loaded through ctypes from the PyPI package ``espeakng-loader``.

espeak-ng keeps state between utterances inside one process (repeated synthesis of the same text in one process
gives slightly different samples), so :func:`synthesize` runs every utterance in a freshly forked child process
that initializes the library, seeds espeak's random generator and sends the samples back through a pipe. The
parent never initializes espeak itself, so every child starts from the same pristine state and the same inputs
give the same samples.

Voice variants are the files in ``espeak-ng-data/voices/!v``. espeak silently falls back to the plain voice for
an unknown variant name, so :func:`validate_variant` checks names against that directory first.
"""

from __future__ import annotations

import ctypes
import functools
import os
import select
import signal
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from kospeech.errors import EspeakError

__all__ = [
    "EspeakError",
    "EspeakVoice",
    "available_variants",
    "espeak_data_path",
    "espeak_version",
    "synthesize",
    "validate_variant",
    "LANGUAGE",
]

LANGUAGE = "ko"

SYNTHESIS_TIMEOUT_SECONDS = 60.0
"""How long :func:`synthesize` waits for its child (a sentence takes well under a second): a hung espeak would
otherwise stop a corpus build for good."""

# espeak_AUDIO_OUTPUT / options / parameters / flags from speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_INITIALIZE_DONT_EXIT = 0x8000
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_PARAM_WORDGAP = 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0

_LIMITS = {"rate": (80, 450), "pitch": (0, 99), "pitch_range": (0, 99), "word_gap": (0, 50), "volume": (10, 200)}

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_HEADER = struct.Struct("<Bi")  # status (0 ok, 1 error), sample rate


@dataclass(frozen=True)
class EspeakVoice:
    """espeak-ng voice settings for one utterance.

    Args:
        variant: a voice variant file name from ``espeak-ng-data/voices/!v`` (case-sensitive), e.g. ``"m3"``.
        rate: speaking rate in words per minute, 80..450 (espeak's default is 175).
        pitch: base pitch, 0..99 (default 50).
        pitch_range: intonation range, 0..99 (default 50; 0 is monotone).
        word_gap: extra pause between words in units of 10 ms, 0..50.
        volume: amplitude, 10..200 (default 100).
    """

    variant: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50
    word_gap: int = 0
    volume: int = 100

    def validate(self) -> None:
        """Check the variant name and every numeric setting.

        Raises:
            ValueError: an unknown variant or a setting outside its range (the message names both).
        """
        validate_variant(self.variant)
        for name, (low, high) in _LIMITS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"espeak {name} must be an int in [{low}, {high}], got {value!r}")


def espeak_data_path() -> Path:
    """The ``espeak-ng-data`` directory shipped with ``espeakng-loader``."""
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


def _library_path() -> str:
    import espeakng_loader

    return espeakng_loader.get_library_path()


@functools.lru_cache(maxsize=1)
def available_variants() -> Tuple[str, ...]:
    """Names of the voice variants in ``espeak-ng-data/voices/!v``, sorted."""
    directory = espeak_data_path() / "voices" / "!v"
    return tuple(sorted(entry.name for entry in directory.iterdir() if entry.is_file()))


def validate_variant(variant: str) -> str:
    """Return ``variant`` if espeak-ng has it, else raise.

    Args:
        variant: a variant file name, case-sensitive (``"m3"``, ``"f2"``, ``"klatt"``).

    Returns:
        The same name.

    Raises:
        ValueError: the variant does not exist (espeak itself would silently use the plain voice).
    """
    variants = available_variants()
    if variant not in variants:
        raise ValueError(
            f"unknown espeak-ng voice variant {variant!r}; variants are case-sensitive file names in "
            f"{espeak_data_path() / 'voices' / '!v'}: {', '.join(variants)}"
        )
    return variant


@functools.lru_cache(maxsize=1)
def espeak_version() -> str:
    """Version string of the loaded espeak-ng library (e.g. ``"1.52.0"``)."""
    library = ctypes.CDLL(_library_path())
    library.espeak_Info.restype = ctypes.c_char_p
    library.espeak_Info.argtypes = [ctypes.c_void_p]
    return library.espeak_Info(None).decode("utf-8", "replace").split()[0]


def synthesize(
    text: str, voice: EspeakVoice, seed: int = 0, timeout: float = SYNTHESIS_TIMEOUT_SECONDS
) -> Tuple[np.ndarray, int]:
    """Speak ``text`` in Korean with espeak-ng in a forked child process.

    Args:
        text: UTF-8 text to speak (Hangul; normalize digits first).
        voice: voice settings; validated before forking.
        seed: seed of espeak's internal random generator (lower 32 bits are used).
        timeout: seconds to wait for the child's result; past them the child is killed.

    Returns:
        ``(samples, sample_rate)``: int16 samples ``(N,)`` at espeak's native rate (22050 Hz).

    Raises:
        ValueError: empty text, invalid voice settings or a timeout that is not positive.
        EspeakError: the child failed to initialize espeak, select the voice or synthesize, or took longer than
            ``timeout``.
        RuntimeError: the platform has no ``os.fork``.
    """
    if not text.strip():
        raise ValueError("cannot synthesize empty text")
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
    voice.validate()
    if not hasattr(os, "fork"):
        raise RuntimeError("espeak synthesis needs os.fork (POSIX) to run each utterance in a fresh process")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child_main(write_fd, text, voice, seed)
    os.close(write_fd)
    payload: Optional[bytes] = None
    try:
        payload = _read_until_closed(read_fd, timeout)
    finally:
        if payload is None:  # timed out, or the caller was interrupted: no child may outlive this call
            os.kill(pid, signal.SIGKILL)
        os.close(read_fd)
        _, wait_status = os.waitpid(pid, 0)
    if payload is None:
        raise EspeakError(f"espeak took longer than {timeout:g} s for {text!r} with voice {voice}; stopped it")
    if len(payload) < _HEADER.size:
        raise EspeakError(f"espeak child process exited (wait status {wait_status}) without sending a result")
    status, sample_rate = _HEADER.unpack_from(payload)
    body = payload[_HEADER.size :]
    if status != 0:
        raise EspeakError(f"espeak failed for {text!r} with voice {voice}: {body.decode('utf-8', 'replace')}")
    return np.frombuffer(body, dtype=np.int16).copy(), sample_rate


def _read_until_closed(fd: int, timeout: float) -> Optional[bytes]:
    """Everything written to the pipe ``fd`` until its writer closes it; ``None`` when that takes over ``timeout`` s."""
    deadline = time.monotonic() + timeout
    chunks: List[bytes] = []
    poller = select.poll()  # not select.select: it fails on descriptors numbered 1024 or more (a busy process)
    poller.register(fd, select.POLLIN)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _child_main(write_fd: int, text: str, voice: EspeakVoice, seed: int) -> None:
    """Body of the forked child: synthesize, write the result to the pipe and ``_exit`` (never returns)."""
    exit_code = 0
    try:
        samples, sample_rate = _synthesize_in_this_process(text, voice, seed)
        message = _HEADER.pack(0, sample_rate) + samples.astype("<i2").tobytes()
    except BaseException as exc:  # the child must report every failure and never return into the parent's code
        message = _HEADER.pack(1, 0) + f"{type(exc).__name__}: {exc}".encode()
        exit_code = 1
    try:
        with os.fdopen(write_fd, "wb") as writer:
            writer.write(message)
    finally:
        os._exit(exit_code)


def _synthesize_in_this_process(text: str, voice: EspeakVoice, seed: int) -> Tuple[np.ndarray, int]:
    library = ctypes.CDLL(_library_path())
    library.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    library.espeak_Initialize.restype = ctypes.c_int
    library.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    library.espeak_SetSynthCallback.restype = None
    library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    library.espeak_SetVoiceByName.restype = ctypes.c_int
    library.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    library.espeak_SetParameter.restype = ctypes.c_int
    library.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    library.espeak_ng_SetRandSeed.restype = None
    library.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    library.espeak_Synth.restype = ctypes.c_int
    library.espeak_Synchronize.restype = ctypes.c_int

    sample_rate = library.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(espeak_data_path()).encode("utf-8"), _INITIALIZE_DONT_EXIT
    )
    if sample_rate <= 0:
        raise EspeakError(f"espeak_Initialize failed (returned {sample_rate}) with data at {espeak_data_path()}")
    chunks: List[np.ndarray] = []

    def collect(samples, count, events) -> int:
        if count > 0:
            chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0

    callback = _SYNTH_CALLBACK(collect)
    library.espeak_SetSynthCallback(callback)
    voice_name = f"{LANGUAGE}+{voice.variant}"
    if library.espeak_SetVoiceByName(voice_name.encode("utf-8")) != _EE_OK:
        raise EspeakError(f"espeak_SetVoiceByName({voice_name!r}) failed")
    for parameter, value in (
        (_PARAM_RATE, voice.rate),
        (_PARAM_PITCH, voice.pitch),
        (_PARAM_RANGE, voice.pitch_range),
        (_PARAM_WORDGAP, voice.word_gap),
        (_PARAM_VOLUME, voice.volume),
    ):
        if library.espeak_SetParameter(parameter, value, 0) != _EE_OK:
            raise EspeakError(f"espeak_SetParameter({parameter}, {value}) failed")
    library.espeak_ng_SetRandSeed(seed & 0xFFFFFFFF)
    encoded = text.encode("utf-8")
    result = library.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    if result != _EE_OK:
        raise EspeakError(f"espeak_Synth returned {result} for {text!r}")
    library.espeak_Synchronize()
    if not chunks:
        raise EspeakError(f"espeak produced no audio for {text!r}")
    return np.concatenate(chunks).astype(np.int16), sample_rate
