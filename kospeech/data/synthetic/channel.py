"""Channel simulation: room reverb, additive noise at an SNR, echo, EQ tilt, band limits, telephone line, gain,
clipping, noise suppression, a low-bitrate speech codec (Opus through PyAV, which ships its own FFmpeg libraries)
and lost packets.

Everything is deterministic given the waveform, the :class:`~kospeech.data.synthetic.profiles.ChannelProfile`
and the ``numpy.random.Generator`` passed in (used for the noise of one utterance; the room response comes
from the profile's own ``room_seed``).
"""

from __future__ import annotations

import io

import numpy as np

from kospeech.data.synthetic.profiles import ChannelProfile

__all__ = ["apply_channel", "room_impulse_response", "make_noise", "normalize_level", "TARGET_DBFS", "GATE_RATIO"]

TARGET_DBFS = -23.0
GATE_RATIO = 5.0
"""Noise suppression keeps a time-frequency cell at least this many times its bin's noise floor (~14 dB)."""
_GATE_FLOOR_PERCENTILE = 20.0  # the noise floor of a frequency bin: its magnitude in the quietest fifth of the frames
_FRAME_SECONDS = 0.02
_PACKET_SECONDS = 0.02
_GATE_WINDOW_SECONDS = 0.032
_ECHO_FLOOR = 1e-3  # echoes weaker than this (-60 dB) are left out
_TELEPHONE_BAND = (300.0, 3400.0)
_MU = 255.0


def _active_power(waveform: np.ndarray, sample_rate: int) -> float:
    """Mean power of the frames within 40 dB of the loudest frame (a simple speech-activity measure)."""
    frame = max(1, int(_FRAME_SECONDS * sample_rate))
    usable = len(waveform) - len(waveform) % frame
    if usable == 0:
        return float(np.mean(waveform.astype(np.float64) ** 2)) if len(waveform) else 0.0
    energies = np.mean(waveform[:usable].astype(np.float64).reshape(-1, frame) ** 2, axis=1)
    peak = float(energies.max())
    if peak <= 0.0:
        return 0.0
    return float(energies[energies >= peak * 1e-4].mean())


def normalize_level(waveform: np.ndarray, sample_rate: int, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """Scale ``waveform`` so that its active-speech RMS is ``target_dbfs`` (silence is returned unchanged).

    Args:
        waveform: float samples ``(N,)``.
        sample_rate: samples per second.
        target_dbfs: target level in dB relative to full scale.

    Returns:
        float32 samples ``(N,)``.
    """
    power = _active_power(waveform, sample_rate)
    if power <= 0.0:
        return waveform.astype(np.float32)
    gain = 10.0 ** (target_dbfs / 20.0) / np.sqrt(power)
    return (waveform * gain).astype(np.float32)


def room_impulse_response(rt60: float, wet: float, sample_rate: int, seed: int) -> np.ndarray:
    """A synthetic room response: a direct impulse plus exponentially decaying noise with early reflections.

    Args:
        rt60: time for the reverberant tail to decay by 60 dB, in seconds (> 0).
        wet: share of reverberant energy in the response (0..0.95).
        sample_rate: samples per second.
        seed: seed of the random tail (the same seed gives the same room).

    Returns:
        float64 response ``(L,)`` with ``L = round(1.2 * rt60 * sample_rate) + 1``.
    """
    rng = np.random.default_rng(seed)
    length = int(round(1.2 * rt60 * sample_rate)) + 1
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-6.9078 * t / rt60)
    predelay = int(rng.uniform(0.003, 0.015) * sample_rate)
    tail[: predelay + 1] = 0.0
    for _ in range(6):
        position = int(rng.uniform(0.005, 0.05) * sample_rate)
        if position < length:
            tail[position] += rng.uniform(0.3, 0.8) * rng.choice((-1.0, 1.0)) * np.exp(-6.9078 * t[position] / rt60)
    tail_energy = float(np.sum(tail**2))
    response = np.zeros(length)
    response[0] = 1.0
    if tail_energy > 0.0 and wet > 0.0:
        response += tail * np.sqrt(wet / (1.0 - wet) / tail_energy)
    return response


def make_noise(noise_type: str, length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise of a given colour.

    Args:
        noise_type: ``white``, ``pink`` (1/f), ``brown`` (1/f^2), ``hum`` (mains hum with harmonics plus a
            little hiss), ``babble`` (speech-shaped noise with syllable-rate modulation) or ``car`` (brown road
            rumble plus an engine's 25-45 Hz firing frequency and its harmonics, equally loud); ``none`` gives zeros.
        length: number of samples.
        sample_rate: samples per second.
        rng: the source of randomness.

    Returns:
        float64 noise ``(length,)`` with mean power 1 (zeros for ``none``).

    Raises:
        ValueError: unknown noise type.
    """
    from scipy import signal  # imported here: it adds ~0.6 s to every process that imports kospeech

    if noise_type == "none" or length == 0:
        return np.zeros(length)
    if noise_type == "white":
        noise = rng.standard_normal(length)
    elif noise_type in ("pink", "brown", "car"):
        spectrum = np.fft.rfft(rng.standard_normal(length))
        freqs = np.fft.rfftfreq(length, 1.0 / sample_rate)
        exponent = 0.5 if noise_type == "pink" else 1.0
        spectrum /= np.maximum(freqs, 20.0) ** exponent
        noise = np.fft.irfft(spectrum, n=length)
        if noise_type == "car":
            t = np.arange(length) / sample_rate
            firing = rng.uniform(25.0, 45.0)
            phases = rng.uniform(0.0, 2.0 * np.pi, size=4)
            engine = sum(np.sin(2.0 * np.pi * firing * (k + 1) * t + phases[k]) / (k + 1) for k in range(4))
            noise = noise / np.sqrt(np.mean(noise**2)) + engine / np.sqrt(np.mean(engine**2))
    elif noise_type == "hum":
        t = np.arange(length) / sample_rate
        base = rng.choice((50.0, 60.0))
        phases = rng.uniform(0.0, 2.0 * np.pi, size=5)
        noise = sum(np.sin(2.0 * np.pi * base * (k + 1) * t + phases[k]) / (k + 1) for k in range(5))
        noise = noise + 0.1 * rng.standard_normal(length)
    elif noise_type == "babble":
        t = np.arange(length) / sample_rate
        sos = signal.butter(2, [200.0, 3000.0], btype="bandpass", fs=sample_rate, output="sos")
        noise = np.zeros(length)
        for _ in range(6):
            voice = signal.sosfilt(sos, rng.standard_normal(length))
            rate = rng.uniform(3.0, 6.0)
            envelope = 0.5 * (1.0 + np.sin(2.0 * np.pi * rate * t + rng.uniform(0.0, 2.0 * np.pi)))
            noise += voice * envelope**2
    else:
        raise ValueError(f"unknown noise type {noise_type!r}; allowed: none, white, pink, brown, hum, babble, car")
    power = float(np.mean(noise**2))
    return noise / np.sqrt(power) if power > 0.0 else noise


def _tilt(waveform: np.ndarray, sample_rate: int, tilt_db_per_octave: float) -> np.ndarray:
    spectrum = np.fft.rfft(waveform)
    freqs = np.fft.rfftfreq(len(waveform), 1.0 / sample_rate)
    gain_db = np.clip(tilt_db_per_octave * np.log2(np.maximum(freqs, 60.0) / 1000.0), -24.0, 24.0)
    return np.fft.irfft(spectrum * 10.0 ** (gain_db / 20.0), n=len(waveform))


def _echo(waveform: np.ndarray, sample_rate: int, delay_s: float, gain_db: float) -> np.ndarray:
    """Add the signal back after every multiple of ``delay_s``, each repeat ``gain_db`` below the last (same length)."""
    delay = max(1, int(round(delay_s * sample_rate)))
    gain = 10.0 ** (gain_db / 20.0)
    echoed = waveform.copy()
    repeat = 1
    while gain**repeat >= _ECHO_FLOOR and repeat * delay < len(waveform):
        echoed[repeat * delay :] += gain**repeat * waveform[: len(waveform) - repeat * delay]
        repeat += 1
    return echoed


def _suppress_noise(waveform: np.ndarray, sample_rate: int, suppression_db: float) -> np.ndarray:
    """A spectral gate: attenuate the STFT cells below :data:`GATE_RATIO` times their bin's noise floor (same length).

    The floor is the bin's magnitude in the quietest fifth of the frames (speech leaves some pauses in every bin);
    the noise cells that pass the gate by chance remain as isolated tones ("musical noise"), and quiet speech below
    the gate is cut.
    """
    from scipy import signal

    window = int(_GATE_WINDOW_SECONDS * sample_rate)
    _, _, spectrum = signal.stft(waveform, fs=sample_rate, nperseg=window)
    magnitude = np.abs(spectrum)
    floor = np.percentile(magnitude, _GATE_FLOOR_PERCENTILE, axis=1, keepdims=True)
    gain = np.where(magnitude >= GATE_RATIO * floor, 1.0, 10.0 ** (-suppression_db / 20.0))
    _, gated = signal.istft(spectrum * gain, fs=sample_rate, nperseg=window)
    return np.pad(gated, (0, max(0, len(waveform) - len(gated))))[: len(waveform)]


def _drop_packets(waveform: np.ndarray, sample_rate: int, loss: float, rng: np.random.Generator) -> np.ndarray:
    """Silence lost 20 ms packets: bursts of 1-3 packets (20-60 ms), ``loss`` of the packets on average."""
    packet = max(1, int(_PACKET_SECONDS * sample_rate))
    count = -(-len(waveform) // packet)
    start = loss / (2.0 - loss)  # a burst (2 packets on average) starts at a packet with this chance: share ``loss``
    lost = np.zeros(count, dtype=bool)
    index = 0
    while index < count:
        if rng.random() < start:
            burst = int(rng.integers(1, 4))
            lost[index : index + burst] = True
            index += burst
        else:
            index += 1
    return waveform * np.repeat(~lost, packet)[: len(waveform)]


def _opus_codec(waveform: np.ndarray, sample_rate: int, kbps: float) -> np.ndarray:
    """Encode to Opus at ``kbps`` kbit/s and decode back (same length, float64 in [-1, 1])."""
    import av  # imported here: only challenge and sealed channels use a codec

    buffer = io.BytesIO()
    pcm = np.round(np.clip(waveform, -1.0, 1.0) * 32767.0).astype(np.int16)
    with av.open(buffer, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=sample_rate, layout="mono")
        stream.bit_rate = int(kbps * 1000)
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = sample_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    buffer.seek(0)
    decoded = []
    with av.open(buffer) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        for frame in container.decode(audio=0):
            decoded += [part.to_ndarray()[0] for part in resampler.resample(frame)]
        decoded += [part.to_ndarray()[0] for part in resampler.resample(None)]
    samples = np.concatenate(decoded).astype(np.float64) / 32768.0 if decoded else np.zeros(0)
    return np.pad(samples, (0, max(0, len(waveform) - len(samples))))[: len(waveform)]


def _telephone(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    from scipy import signal

    sos = signal.butter(4, _TELEPHONE_BAND, btype="bandpass", fs=sample_rate, output="sos")
    band = signal.sosfilt(sos, waveform)
    narrow = signal.resample_poly(band, 8000, sample_rate)
    clipped = np.clip(narrow, -1.0, 1.0)
    companded = np.sign(clipped) * np.log1p(_MU * np.abs(clipped)) / np.log1p(_MU)
    quantized = np.round(companded * 127.0) / 127.0
    expanded = np.sign(quantized) * ((1.0 + _MU) ** np.abs(quantized) - 1.0) / _MU
    wide = signal.resample_poly(expanded, sample_rate, 8000)[: len(waveform)]
    return signal.sosfilt(sos, wide)


def apply_channel(
    waveform: np.ndarray,
    sample_rate: int,
    profile: ChannelProfile,
    rng: np.random.Generator,
) -> np.ndarray:
    """Pass clean speech through a channel.

    The chain is: level normalization to -23 dBFS, room reverb, additive noise at the SNR (measured on the
    reverberant speech), echo, EQ tilt, high-/low-pass, telephone line, gain, clipping, noise suppression, codec, lost
    packets, and a final limit to [-1, 1]. Each step a profile leaves unset is skipped.

    Args:
        waveform: clean float speech ``(N,)``.
        sample_rate: samples per second (the telephone line needs >= 8000).
        profile: the channel.
        rng: noise source for this utterance; also draws its SNR jitter and then its lost packets.

    Returns:
        float32 samples ``(N + R,)`` in [-1, 1], where ``R`` is the kept reverb tail (a quarter of the RT60).

    Raises:
        ValueError: empty waveform or a sample rate too low for the profile.
    """
    from scipy import signal

    if waveform.ndim != 1 or len(waveform) == 0:
        raise ValueError(f"apply_channel expects a non-empty 1-D waveform, got shape {waveform.shape}")
    nyquist = sample_rate / 2.0
    for name in ("lowpass_hz", "highpass_hz"):
        value = getattr(profile, name)
        if value is not None and value >= nyquist:
            raise ValueError(f"channel {profile.channel_id}: {name}={value} is not below Nyquist ({nyquist} Hz)")
    if profile.telephone and sample_rate < 8000:
        raise ValueError(f"channel {profile.channel_id}: the telephone line needs sample_rate >= 8000")
    x = normalize_level(waveform.astype(np.float64), sample_rate).astype(np.float64)
    if profile.reverb_rt60 > 0.0 and profile.reverb_wet > 0.0:
        response = room_impulse_response(profile.reverb_rt60, profile.reverb_wet, sample_rate, profile.room_seed)
        kept = len(x) + int(0.25 * profile.reverb_rt60 * sample_rate)
        x = signal.fftconvolve(x, response)[:kept]
    if profile.noise_type != "none":
        snr_db = profile.snr_db + rng.uniform(-profile.snr_jitter_db, profile.snr_jitter_db)
        noise = make_noise(profile.noise_type, len(x), sample_rate, rng)
        speech_power = _active_power(x, sample_rate)
        x = x + noise * np.sqrt(speech_power / 10.0 ** (snr_db / 10.0))
    if profile.echo_delay_s is not None and profile.echo_gain_db is not None:
        x = _echo(x, sample_rate, profile.echo_delay_s, profile.echo_gain_db)
    if profile.eq_tilt_db != 0.0:
        x = _tilt(x, sample_rate, profile.eq_tilt_db)
    if profile.highpass_hz is not None:
        x = signal.sosfilt(signal.butter(2, profile.highpass_hz, btype="highpass", fs=sample_rate, output="sos"), x)
    if profile.lowpass_hz is not None:
        x = signal.sosfilt(signal.butter(4, profile.lowpass_hz, btype="lowpass", fs=sample_rate, output="sos"), x)
    if profile.telephone:
        x = _telephone(x, sample_rate)
    x = x * 10.0 ** (profile.gain_db / 20.0)
    if profile.clip_level < 1.0:
        x = np.clip(x, -profile.clip_level, profile.clip_level)
    if profile.suppression_db is not None:
        x = _suppress_noise(x, sample_rate, profile.suppression_db)
    if profile.codec_kbps is not None:
        x = _opus_codec(x, sample_rate, profile.codec_kbps)
    if profile.packet_loss is not None:
        x = _drop_packets(x, sample_rate, profile.packet_loss, rng)
    return np.clip(x, -1.0, 1.0).astype(np.float32)
