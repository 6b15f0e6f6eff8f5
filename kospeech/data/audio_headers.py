"""What an audio file's container declares, checked against what the file holds, before libsndfile decodes it.

libsndfile trusts the bytes that are present: a WAV, RF64, W64, AIFF, AU or CAF file cut short decodes as the audio
that remains, with no error, and a WAV header whose block alignment disagrees with its channels and bit depth is read
with whatever layout the alignment implies. :func:`check_container` reads the header of every container that
declares the length of its audio data and refuses, naming the file, one that declares more than it holds or whose
format fields contradict each other. Ogg declares no length, but a complete Ogg stream ends with a whole page
flagged end-of-stream; a file cut anywhere loses it. :func:`container_name` recognizes containers by their magic
bytes, so a RIFF file named ``.pcm`` is not decoded as header-less PCM.

Streams whose writer did not know the length (RIFF/AU data size ``0xFFFFFFFF`` or ``0``, CAF data size ``-1``) are
not truncations and pass, except a WAV ``data`` chunk declaring 0 bytes with audio after it (libsndfile reads none of
it), which is refused as an incomplete header. A data size smaller than the audio after it is not detected: what
may follow a data chunk (chunks without their pad byte, ID3 tags, stray bytes) is too varied to tell audio from it.

MP3 has no container header: its length is exact only where the first frame is a Xing/Info or VBRI frame counting
the frames (:func:`mp3_counts_frames`); without one, decoders estimate it from the first frame's bit rate, which for a
variable bit rate stream (what FFmpeg writes to a pipe, where it cannot go back for that frame) can be several times
off.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, Optional, Tuple

from kospeech.errors import AudioError

__all__ = ["check_container", "container_name", "mp3_counts_frames"]

_W64_RIFF = b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00"
_W64_DATA = b"data\xf3\xac\xd3\x11\x8c\xd1\x00\xc0\x4f\x8e\xdb\x8a"
_MAGICS: Tuple[Tuple[bytes, int, str], ...] = (
    (b"RIFF", 0, "WAV"),
    (b"RF64", 0, "RF64"),
    (b"BW64", 0, "RF64"),
    (_W64_RIFF, 0, "W64"),
    (b"FORM", 0, "AIFF"),
    (b".snd", 0, "AU"),
    (b"caff", 0, "CAF"),
    (b"OggS", 0, "OGG"),
    (b"fLaC", 0, "FLAC"),
    (b"ID3", 0, "MP3"),
)
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)
_OGG_SCAN_BYTES = 1 << 16  # the last page of an Ogg stream is at most 65,307 bytes long
_MP3_SYNC_SCAN_BYTES = 1 << 12  # where, after the ID3 tags, the first MPEG frame must start
_MP3_FRAMES_FLAG = 0x1  # a Xing/Info frame's flag for "the frame count follows"


def container_name(path: Path) -> Optional[str]:
    """The container ``path``'s first bytes announce (``"WAV"``, ``"RF64"``, ``"AIFF"``, ``"OGG"``, ...), or None."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    for magic, offset, name in _MAGICS:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None


def check_container(path: Path) -> None:
    """Refuse a file whose container declares more audio data than it holds, or inconsistent format fields.

    Raises:
        AudioError: naming the file, the container, the declared and the present sizes.
    """
    name = container_name(path)
    checks = {
        "WAV": _check_riff,
        "RF64": _check_riff,
        "W64": _check_w64,
        "AIFF": _check_aiff,
        "AU": _check_au,
        "CAF": _check_caf,
        "OGG": _check_ogg,
    }
    if name in checks:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            checks[name](handle, size, path)


def mp3_counts_frames(path: Path) -> bool:
    """Whether an MP3 file's first frame is a Xing/Info frame with a frame count, or a VBRI frame (which always has
    one): then decoders know its length exactly; otherwise they estimate it.

    Args:
        path: the file (any leading ID3v2 tags are skipped).

    Returns:
        ``True`` when the length is counted in the file, ``False`` otherwise (also for a file with no MPEG frame in
        its first bytes after the tags).
    """
    with open(path, "rb") as handle:
        position = 0
        while True:  # ID3v2 tags, each 10 bytes of header, a syncsafe size and an optional 10-byte footer
            tag = _read_at(handle, position, 10)
            if len(tag) < 10 or tag[:3] != b"ID3":
                break
            size = 0
            for byte in tag[6:10]:
                size = (size << 7) | (byte & 0x7F)
            position += 10 + size + (10 if tag[5] & 0x10 else 0)
        head = _read_at(handle, position, _MP3_SYNC_SCAN_BYTES)
    start = next(
        (i for i in range(len(head) - 3) if head[i] == 0xFF and head[i + 1] & 0xE0 == 0xE0 and head[i + 1] & 0x06),
        None,
    )
    if start is None:
        return False
    mpeg1 = (head[start + 1] >> 3) & 0x3 == 0x3
    mono = (head[start + 3] >> 6) & 0x3 == 0x3
    side_info = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    xing = start + 4 + side_info
    if head[xing : xing + 4] in (b"Xing", b"Info"):
        flags = head[xing + 4 : xing + 8]
        return len(flags) == 4 and bool(int.from_bytes(flags, "big") & _MP3_FRAMES_FLAG)
    return head[start + 36 : start + 40] == b"VBRI"


def _truncated(path: Path, container: str, declared: int, present: int) -> AudioError:
    return AudioError(
        f"{path}: truncated {container} file: its header declares {declared} bytes of audio data but only "
        f"{present} are present"
    )


def _read_at(handle: BinaryIO, position: int, count: int) -> bytes:
    handle.seek(position)
    return handle.read(count)


def _check_riff(handle: BinaryIO, size: int, path: Path) -> None:
    """RIFF/WAVE and RF64/BW64: the ``data`` chunk (64-bit size from ``ds64`` when it says 0xFFFFFFFF) and ``fmt ``."""
    header = _read_at(handle, 0, 12)
    if len(header) < 12 or header[8:12] != b"WAVE":
        return
    container = "WAV" if header[:4] == b"RIFF" else "RF64"
    data_size_64: Optional[int] = None
    position = 12
    while position + 8 <= size:
        chunk_id, chunk_size = struct.unpack("<4sI", _read_at(handle, position, 8))
        if chunk_id == b"ds64" and chunk_size >= 16:
            data_size_64 = struct.unpack("<Q", _read_at(handle, position + 16, 8))[0]
        elif chunk_id == b"fmt ":
            _check_wav_format(_read_at(handle, position + 8, min(chunk_size, 40)), path)
        elif chunk_id == b"data":
            available = size - position - 8
            declared = data_size_64 if chunk_size == 0xFFFFFFFF and data_size_64 is not None else chunk_size
            if declared not in _UNKNOWN_SIZES and declared > available:
                raise _truncated(path, container, declared, available)
            if (
                container == "WAV"
                and chunk_size == 0
                and available >= 4
                and not _is_chunk_header(_read_at(handle, position + 8, 8), available)
            ):  # audio after a data chunk of 0 bytes (an empty one followed by a chunk is just empty): none is read
                raise AudioError(
                    f"{path}: incomplete WAV header: its data chunk declares 0 bytes, yet {available} bytes of audio "
                    "follow (a writer that never finished its header); rewrite the file, e.g. "
                    "sox --ignore-length in.wav out.wav"
                )
            return
        position += 8 + chunk_size + (chunk_size & 1)


def _is_chunk_header(header: bytes, room: int) -> bool:
    """Whether 8 bytes read like a RIFF chunk header with ``room`` bytes from its start: an id of printable ASCII
    (``LIST``, ``id3 ``, ``bext``) and a size that fits (audio samples seldom pass both)."""
    return (
        len(header) == 8
        and all(0x20 <= byte <= 0x7E for byte in header[:4])
        and struct.unpack("<I", header[4:])[0] <= room - 8
    )


def _check_wav_format(fmt: bytes, path: Path) -> None:
    """A WAV ``fmt `` chunk's block alignment and byte rate must agree with its channels, rate and bit depth."""
    if len(fmt) < 16:
        return  # a header cut inside its fmt chunk: libsndfile refuses the file as unreadable
    audio_format, channels, sample_rate, byte_rate, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if audio_format not in (1, 3, 0xFFFE) or channels == 0 or bits == 0:
        return  # compressed formats (ADPCM, GSM, ...) have their own layouts; libsndfile checks them
    expected_align = channels * ((bits + 7) // 8)
    if block_align != expected_align or byte_rate != sample_rate * block_align:
        raise AudioError(
            f"{path}: inconsistent WAV header: {channels} channels of {bits}-bit samples need block_align "
            f"{expected_align} and byte_rate {sample_rate * expected_align}, the header says {block_align} and "
            f"{byte_rate}"
        )


def _check_w64(handle: BinaryIO, size: int, path: Path) -> None:
    """Sony Wave64: 16-byte GUID chunk ids, 64-bit sizes that include the 24-byte chunk header."""
    position = 40  # riff GUID (16) + size (8) + wave GUID (16)
    while position + 24 <= size:
        chunk = _read_at(handle, position, 24)
        chunk_id, chunk_size = chunk[:16], struct.unpack("<Q", chunk[16:])[0]
        if chunk_id == _W64_DATA:
            declared, available = chunk_size - 24, size - position - 24
            if declared > available:
                raise _truncated(path, "W64", declared, available)
            return
        if chunk_size < 24:
            return
        position += (chunk_size + 7) & ~7


def _check_aiff(handle: BinaryIO, size: int, path: Path) -> None:
    """AIFF/AIFC: big-endian chunks; ``SSND`` holds an 8-byte offset/block-size prefix before the samples."""
    header = _read_at(handle, 0, 12)
    if len(header) < 12 or header[8:12] not in (b"AIFF", b"AIFC"):
        return
    position = 12
    while position + 8 <= size:
        chunk_id, chunk_size = struct.unpack(">4sI", _read_at(handle, position, 8))
        if chunk_id == b"SSND":
            available = size - position - 8
            if chunk_size > available:
                raise _truncated(path, "AIFF", chunk_size, available)
            return
        position += 8 + chunk_size + (chunk_size & 1)


def _check_au(handle: BinaryIO, size: int, path: Path) -> None:
    """Sun AU: big-endian data offset and data size (0xFFFFFFFF: unknown)."""
    header = _read_at(handle, 0, 12)
    if len(header) < 12:
        return
    offset, data_size = struct.unpack(">II", header[4:12])
    available = max(0, size - offset)
    if data_size not in _UNKNOWN_SIZES and data_size > available:
        raise _truncated(path, "AU", data_size, available)


def _check_caf(handle: BinaryIO, size: int, path: Path) -> None:
    """Apple CAF: 8-byte file header, then chunks of type (4) and signed 64-bit size (``data`` -1: unknown)."""
    position = 8
    while position + 12 <= size:
        chunk_type, chunk_size = struct.unpack(">4sq", _read_at(handle, position, 12))
        if chunk_type == b"data":
            available = size - position - 12
            if chunk_size != -1 and chunk_size > available:
                raise _truncated(path, "CAF", chunk_size, available)
            return
        if chunk_size < 0:
            return
        position += 12 + chunk_size


def _check_ogg(handle: BinaryIO, size: int, path: Path) -> None:
    """The file must end with a whole Ogg page flagged end-of-stream."""
    start = max(0, size - _OGG_SCAN_BYTES)
    tail = _read_at(handle, start, size - start)
    position = tail.rfind(b"OggS")
    while position >= 0:
        page = tail[position:]
        if len(page) >= 27 and page[4] == 0:  # stream structure version 0: a real page header, not payload bytes
            segments = page[26]
            if len(page) >= 27 + segments:
                page_length = 27 + segments + sum(page[27 : 27 + segments])
                if page_length == len(page):
                    if not page[5] & 0x04:
                        raise AudioError(
                            f"{path}: truncated Ogg file: its last page does not end the stream (no end-of-stream "
                            "flag); the file was cut short"
                        )
                    return
                if page_length < len(page):
                    break  # a whole page followed by other bytes: not cut inside a page
        position = tail.rfind(b"OggS", 0, position)
    raise AudioError(f"{path}: truncated Ogg file: it ends inside a page; the file was cut short")
