"""Audio files as encoders leave them on a pipe, where they cannot go back to fill in a header's length (tests of the
library's and the service's readers both use them)."""

from pathlib import Path

import av
import numpy as np
import soundfile as sf


class _Pipe:
    """A write-only output, as a pipe is to an encoder: it cannot go back to fill in a header's length."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk) -> int:
        self.data += bytes(chunk)
        return len(chunk)


def flac_written_to_a_pipe(path: Path, waveform: np.ndarray, rate: int) -> None:
    """``waveform`` as FLAC whose STREAMINFO total sample count is 0 (unknown), as FFmpeg leaves it on a pipe."""
    sf.write(str(path), waveform, rate, format="FLAC", subtype="PCM_16")
    data = bytearray(path.read_bytes())
    fields = int.from_bytes(data[18:26], "big")  # rate, channels, bits per sample and the 36-bit total
    data[18:26] = (fields & ~((1 << 36) - 1)).to_bytes(8, "big")
    path.write_bytes(bytes(data))


def vbr_mp3_written_to_a_pipe(waveform: np.ndarray, rate: int) -> bytes:
    """Variable bit rate MP3 from FFmpeg's LAME on a pipe: no Xing frame, so readers estimate the length from the
    first frame's bit rate (the waveform starts with silence: a low rate, a long estimate)."""
    pipe = _Pipe()
    with av.open(pipe, mode="w", format="mp3") as output:
        stream = output.add_stream("libmp3lame", rate=rate)
        stream.codec_context.qscale = 0
        stream.codec_context.flags |= av.codec.context.Flags.qscale
        frame = av.AudioFrame.from_ndarray(waveform[None, :], format="flt", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format="s16p", layout="mono", rate=rate)
        for piece in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(piece):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return bytes(pipe.data)
