"""Speaker and channel profiles of the synthetic corpus, sampled from a seed.

A :class:`SpeakerProfile` fixes how a synthetic person sounds: an espeak-ng voice variant, base pitch, pitch
range, speaking rate, pauses between words and a vocal-tract scale (applied after synthesis by resampling,
which shifts formants and pitch together), plus how much rate and pitch vary from one utterance to the next.

A :class:`ChannelProfile` fixes the recording path: room reverberation, additive noise at a signal-to-noise
ratio, an echo, a spectral tilt (EQ), band limits (telephone band with 8 kHz mu-law coding, or a low-pass), gain and
clipping, noise suppression, a low-bitrate speech codec and lost packets. Base channels are mildly coloured and fairly
clean; user channels are drawn from harder families (telephone, strong reverb, low SNR, strong tilt, clipping) so that
personalization has something to fix. The *challenge* users have voices outside :data:`SPEAKER_VARIANTS`
(:data:`CHALLENGE_VOICES`) and channel families no user or base channel has (:data:`CHALLENGE_CHANNEL_KINDS`: codec,
mains hum, babble, far field, a whispering voice in a quiet room, and all of them at once); the encoder recipe's
variants were compared on challenge01-03, so those three are no longer users nobody tuned a recipe on. The *sealed*
users, the untouched check for a final measurement only, have voices outside both (:data:`SEALED_VOICES`) and channel
families unlike all of the above (:data:`SEALED_CHANNEL_KINDS`: muffled through a door, a car, a speakerphone, VoIP
packet loss, a returning echo, an app's noise suppression).

Profiles are frozen dataclasses with ``to_dict``/``from_dict`` (plain JSON values) for the corpus card.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from kospeech.data.synthetic.espeak import EspeakVoice, validate_variant

__all__ = [
    "SpeakerProfile",
    "ChannelProfile",
    "SPEAKER_VARIANTS",
    "NOISE_TYPES",
    "USER_CHANNEL_KINDS",
    "CHALLENGE_CHANNEL_KINDS",
    "CHALLENGE_VOICES",
    "SEALED_CHANNEL_KINDS",
    "SEALED_VOICES",
    "sample_challenge_channel",
    "sample_sealed_channel",
    "sample_speaker_profile",
    "sample_base_channel",
    "sample_user_channel",
    "assign_variants",
]

# Human-sounding espeak-ng variants (names are files in espeak-ng-data/voices/!v; checked when sampled).
SPEAKER_VARIANTS: Tuple[str, ...] = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "m8",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "Alex",
    "Alicia",
    "Andrea",
    "Andy",
    "Annie",
    "Denis",
    "Gene",
    "Jacky",
    "Lee",
    "Mario",
    "Michael",
    "Mike",
    "adam",
    "anika",
    "aunty",
    "belinda",
    "benjamin",
    "david",
    "edward",
    "grandma",
    "grandpa",
    "gustave",
    "ian",
    "iven",
    "john",
    "linda",
    "marcelo",
    "max",
    "michel",
    "norbert",
    "paul",
    "quincy",
    "rob",
    "robert",
    "shelby",
    "steph",
    "travis",
    "victor",
)

NOISE_TYPES = ("none", "white", "pink", "brown", "hum", "babble", "car")
USER_CHANNEL_KINDS = ("telephone", "reverberant", "noisy", "tilted", "clipped")
CHALLENGE_CHANNEL_KINDS = ("codec", "hum", "babble", "far_field", "whisper", "combined")
# espeak-ng variants outside SPEAKER_VARIANTS (so no base speaker or user has them), one per challenge channel kind
CHALLENGE_VOICES: Tuple[str, ...] = ("croak", "klatt", "Storm", "kaukovalta", "whisperf", "klatt4")
SEALED_CHANNEL_KINDS = ("muffled", "car", "speakerphone", "packet_loss", "echo", "suppressed")
# espeak-ng variants in neither SPEAKER_VARIANTS nor CHALLENGE_VOICES, one per sealed channel kind: a child-like high
# voice (pitch ~360 Hz, formants +45 %), a very low announcer, a rough monotone robot, a growling breathy voice, a
# breathy reed-like Klatt voice and a slow speaker without upper formants
SEALED_VOICES: Tuple[str, ...] = ("zac", "announcer", "robosoft", "Demonic", "Reed", "AnxiousAndy")
# ChannelProfile fields left out of ``to_dict`` when unset: channels without them keep the description (and so the
# audio hashes) they had before the fields existed
_OPTIONAL_FIELDS = ("codec_kbps", "echo_delay_s", "echo_gain_db", "suppression_db", "packet_loss")


def _check_range(owner: str, name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{owner}: {name} must be in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class SpeakerProfile:
    """How one synthetic speaker sounds.

    Args:
        speaker_id: unique id used in manifests (``"s03"``, ``"u01"``).
        variant: espeak-ng voice variant (case-sensitive file name in ``voices/!v``).
        rate: mean speaking rate, words per minute (espeak scale, 80..450).
        pitch: mean base pitch, espeak scale 0..99.
        pitch_range: intonation range, espeak scale 0..99.
        word_gap: pause between words in units of 10 ms.
        tract_scale: vocal-tract factor applied by resampling; > 1 raises formants and pitch and shortens the
            utterance, < 1 lowers them (0.8..1.25).
        rate_jitter: relative per-utterance variation of the rate (0.1 = up to +-10 %).
        pitch_jitter: per-utterance variation of the pitch, in espeak pitch units.
    """

    speaker_id: str
    variant: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50
    word_gap: int = 0
    tract_scale: float = 1.0
    rate_jitter: float = 0.05
    pitch_jitter: int = 3

    def __post_init__(self) -> None:
        if not self.speaker_id or any(ch.isspace() for ch in self.speaker_id):
            raise ValueError(f"speaker_id must be a non-empty string without whitespace, got {self.speaker_id!r}")
        validate_variant(self.variant)
        owner = f"speaker {self.speaker_id}"
        _check_range(owner, "rate", self.rate, 80, 450)
        _check_range(owner, "pitch", self.pitch, 0, 99)
        _check_range(owner, "pitch_range", self.pitch_range, 0, 99)
        _check_range(owner, "word_gap", self.word_gap, 0, 50)
        _check_range(owner, "tract_scale", self.tract_scale, 0.8, 1.25)
        _check_range(owner, "rate_jitter", self.rate_jitter, 0.0, 0.3)
        _check_range(owner, "pitch_jitter", self.pitch_jitter, 0, 20)

    def voice(self, rng: random.Random) -> EspeakVoice:
        """The espeak voice for one utterance, with this speaker's per-utterance rate and pitch variation."""
        rate = round(self.rate * (1.0 + rng.uniform(-self.rate_jitter, self.rate_jitter)))
        pitch = self.pitch + rng.randint(-self.pitch_jitter, self.pitch_jitter)
        return EspeakVoice(
            variant=self.variant,
            rate=min(max(rate, 80), 450),
            pitch=min(max(pitch, 0), 99),
            pitch_range=self.pitch_range,
            word_gap=self.word_gap,
        )

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-compatible values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpeakerProfile:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: unknown keys or invalid values.
        """
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True)
class ChannelProfile:
    """One recording channel (room, microphone, line), applied by :func:`kospeech.data.synthetic.channel.apply_channel`.

    Args:
        channel_id: unique id (``"c02"``, ``"u01-ch"``).
        kind: ``"base"`` or one of :data:`USER_CHANNEL_KINDS`, :data:`CHALLENGE_CHANNEL_KINDS` or
            :data:`SEALED_CHANNEL_KINDS` (what the channel mainly does).
        reverb_rt60: reverberation time in seconds (0 = dry).
        reverb_wet: share of reverberant energy in the room response, 0..0.95.
        noise_type: one of :data:`NOISE_TYPES`.
        snr_db: mean signal-to-noise ratio of the added noise, in dB (ignored for ``noise_type="none"``).
        snr_jitter_db: per-utterance variation of the SNR (+- dB).
        eq_tilt_db: spectral tilt in dB per octave around 1 kHz (negative = duller, positive = brighter).
        lowpass_hz: optional low-pass cut-off in Hz.
        highpass_hz: optional high-pass cut-off in Hz.
        telephone: telephone line: 300..3400 Hz band, resampled through 8 kHz with 8-bit mu-law coding.
        gain_db: gain applied after the line (the speech is first normalized to -23 dBFS).
        clip_level: hard clipping threshold as a fraction of full scale (1.0 = only the final int16 limit).
        room_seed: seed of the room impulse response (the room is a property of the channel).
        codec_kbps: optional low-bitrate speech codec at the end of the line: Opus at this many kbit/s (PyAV).
        echo_delay_s: optional echo (a call whose echo canceller fails): the signal comes back after this many
            seconds, 0.05..0.5, again and again, each time ``echo_gain_db`` weaker; set together with ``echo_gain_db``.
        echo_gain_db: level of each echo relative to the previous one, -20..-3 dB.
        suppression_db: optional noise suppression (a call app's spectral gate): time-frequency cells within
            :data:`~kospeech.data.synthetic.channel.GATE_RATIO` of their bin's noise floor are attenuated by this many
            dB, 6..40, leaving "musical" noise and clipped quiet sounds.
        packet_loss: optional share of 20 ms packets lost on the network, in bursts of 1-3 packets, each replaced by
            silence (0..0.3).

    The optional fields (``codec_kbps`` and after) are left out of :meth:`to_dict` when unset, so the profiles (and
    audio hashes) of channels without them stay what they were before the fields existed.
    """

    channel_id: str
    kind: str = "base"
    reverb_rt60: float = 0.0
    reverb_wet: float = 0.0
    noise_type: str = "none"
    snr_db: float = 40.0
    snr_jitter_db: float = 1.0
    eq_tilt_db: float = 0.0
    lowpass_hz: Optional[float] = None
    highpass_hz: Optional[float] = None
    telephone: bool = False
    gain_db: float = 0.0
    clip_level: float = 1.0
    room_seed: int = 0
    codec_kbps: Optional[float] = None
    echo_delay_s: Optional[float] = None
    echo_gain_db: Optional[float] = None
    suppression_db: Optional[float] = None
    packet_loss: Optional[float] = None

    def __post_init__(self) -> None:
        if not self.channel_id or any(ch.isspace() for ch in self.channel_id):
            raise ValueError(f"channel_id must be a non-empty string without whitespace, got {self.channel_id!r}")
        owner = f"channel {self.channel_id}"
        kinds = ("base",) + USER_CHANNEL_KINDS + CHALLENGE_CHANNEL_KINDS + SEALED_CHANNEL_KINDS
        if self.kind not in kinds:
            raise ValueError(f"{owner}: kind must be one of {kinds}, got {self.kind!r}")
        if self.noise_type not in NOISE_TYPES:
            raise ValueError(f"{owner}: noise_type must be one of {NOISE_TYPES}, got {self.noise_type!r}")
        _check_range(owner, "reverb_rt60", self.reverb_rt60, 0.0, 2.0)
        _check_range(owner, "reverb_wet", self.reverb_wet, 0.0, 0.95)
        _check_range(owner, "snr_db", self.snr_db, -5.0, 80.0)
        _check_range(owner, "snr_jitter_db", self.snr_jitter_db, 0.0, 10.0)
        _check_range(owner, "eq_tilt_db", self.eq_tilt_db, -12.0, 12.0)
        _check_range(owner, "gain_db", self.gain_db, -30.0, 30.0)
        _check_range(owner, "clip_level", self.clip_level, 0.05, 1.0)
        optional_ranges = {
            "codec_kbps": (6.0, 64.0),
            "echo_delay_s": (0.05, 0.5),
            "echo_gain_db": (-20.0, -3.0),
            "suppression_db": (6.0, 40.0),
            "packet_loss": (0.0, 0.3),
        }
        for name, (low, high) in optional_ranges.items():
            value = getattr(self, name)
            if value is not None:
                _check_range(owner, name, value, low, high)
        if (self.echo_delay_s is None) != (self.echo_gain_db is None):
            raise ValueError(f"{owner}: echo_delay_s and echo_gain_db are set together or not at all")
        for name in ("lowpass_hz", "highpass_hz"):
            value = getattr(self, name)
            if value is not None:
                _check_range(owner, name, value, 20.0, 7900.0)
        if self.lowpass_hz is not None and self.highpass_hz is not None and self.highpass_hz >= self.lowpass_hz:
            raise ValueError(f"{owner}: highpass_hz {self.highpass_hz} must be below lowpass_hz {self.lowpass_hz}")

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-compatible values (the optional fields, ``codec_kbps`` and after, only when set)."""
        values = asdict(self)
        for name in _OPTIONAL_FIELDS:
            if values[name] is None:
                del values[name]
        return values

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChannelProfile:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: unknown keys or invalid values.
        """
        return cls(**_known_fields(cls, data))


def _known_fields(cls: type, data: Mapping[str, Any]) -> Dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; allowed: {sorted(names)}")
    return dict(data)


def sample_speaker_profile(rng: random.Random, speaker_id: str, variant: str) -> SpeakerProfile:
    """Draw a speaker around a given voice variant.

    Args:
        rng: the source of randomness.
        speaker_id: the id to give the speaker.
        variant: espeak-ng variant (validated).

    Returns:
        The profile; numeric values are rounded so the card is stable.
    """
    return SpeakerProfile(
        speaker_id=speaker_id,
        variant=validate_variant(variant),
        rate=rng.randint(135, 205),
        pitch=rng.randint(25, 80),
        pitch_range=rng.randint(20, 85),
        word_gap=rng.randint(0, 3),
        tract_scale=round(rng.uniform(0.9, 1.12), 3),
        rate_jitter=round(rng.uniform(0.03, 0.08), 3),
        pitch_jitter=rng.randint(1, 5),
    )


def sample_base_channel(rng: random.Random, channel_id: str) -> ChannelProfile:
    """Draw a clean-ish base channel: small room, high SNR, mild tilt, no band limit."""
    return ChannelProfile(
        channel_id=channel_id,
        kind="base",
        reverb_rt60=round(rng.uniform(0.0, 0.3), 3),
        reverb_wet=round(rng.uniform(0.05, 0.2), 3),
        noise_type=rng.choice(("white", "pink", "none")),
        snr_db=round(rng.uniform(25.0, 40.0), 1),
        snr_jitter_db=1.0,
        eq_tilt_db=round(rng.uniform(-1.5, 1.5), 2),
        highpass_hz=round(rng.uniform(40.0, 90.0), 1),
        gain_db=round(rng.uniform(-4.0, 1.0), 1),
        room_seed=rng.randrange(2**31),
    )


def sample_user_channel(rng: random.Random, channel_id: str, kind: str) -> ChannelProfile:
    """Draw a hard user channel of one family.

    Args:
        rng: the source of randomness.
        channel_id: the id to give the channel.
        kind: one of :data:`USER_CHANNEL_KINDS`.

    Returns:
        A channel that differs clearly from every base channel in its main effect.

    Raises:
        ValueError: unknown ``kind``.
    """
    common: Dict[str, Any] = dict(channel_id=channel_id, kind=kind, room_seed=rng.randrange(2**31))
    if kind == "telephone":
        return ChannelProfile(
            **common,
            telephone=True,
            reverb_rt60=round(rng.uniform(0.1, 0.3), 3),
            reverb_wet=round(rng.uniform(0.1, 0.25), 3),
            noise_type=rng.choice(("white", "hum")),
            snr_db=round(rng.uniform(14.0, 20.0), 1),
            eq_tilt_db=round(rng.uniform(-2.0, 2.0), 2),
            gain_db=round(rng.uniform(2.0, 6.0), 1),
        )
    if kind == "reverberant":
        return ChannelProfile(
            **common,
            reverb_rt60=round(rng.uniform(0.7, 1.2), 3),
            reverb_wet=round(rng.uniform(0.55, 0.75), 3),
            noise_type="pink",
            snr_db=round(rng.uniform(18.0, 24.0), 1),
            eq_tilt_db=round(rng.uniform(-2.5, -1.0), 2),
            gain_db=round(rng.uniform(-3.0, 0.0), 1),
        )
    if kind == "noisy":
        return ChannelProfile(
            **common,
            reverb_rt60=round(rng.uniform(0.2, 0.4), 3),
            reverb_wet=round(rng.uniform(0.15, 0.3), 3),
            noise_type=rng.choice(("babble", "brown")),
            snr_db=round(rng.uniform(4.0, 9.0), 1),
            snr_jitter_db=2.0,
            highpass_hz=round(rng.uniform(60.0, 120.0), 1),
        )
    if kind == "tilted":
        sign = rng.choice((-1.0, 1.0))
        return ChannelProfile(
            **common,
            eq_tilt_db=round(sign * rng.uniform(4.0, 6.0), 2),
            lowpass_hz=round(rng.uniform(3500.0, 5000.0), 1),
            highpass_hz=round(rng.uniform(150.0, 300.0), 1),
            noise_type="hum",
            snr_db=round(rng.uniform(15.0, 22.0), 1),
            gain_db=round(rng.uniform(-6.0, -2.0), 1),
        )
    if kind == "clipped":
        return ChannelProfile(
            **common,
            reverb_rt60=round(rng.uniform(0.2, 0.4), 3),
            reverb_wet=round(rng.uniform(0.2, 0.35), 3),
            noise_type="white",
            snr_db=round(rng.uniform(15.0, 20.0), 1),
            eq_tilt_db=round(rng.uniform(1.0, 3.0), 2),
            gain_db=round(rng.uniform(12.0, 16.0), 1),
            clip_level=round(rng.uniform(0.25, 0.4), 3),
        )
    raise ValueError(f"unknown user channel kind {kind!r}; allowed: {USER_CHANNEL_KINDS}")


def sample_challenge_channel(rng: random.Random, channel_id: str, kind: str) -> ChannelProfile:
    """Draw a challenge channel: a family no base channel and no user channel belongs to.

    Args:
        rng: the source of randomness.
        channel_id: the id to give the channel.
        kind: one of :data:`CHALLENGE_CHANNEL_KINDS`.

    Raises:
        ValueError: unknown ``kind``.
    """
    common: Dict[str, Any] = dict(channel_id=channel_id, kind=kind, room_seed=rng.randrange(2**31))
    if kind == "codec":  # a VoIP call: narrow, low-bitrate Opus
        return ChannelProfile(
            **common,
            reverb_rt60=round(rng.uniform(0.1, 0.3), 3),
            reverb_wet=round(rng.uniform(0.1, 0.2), 3),
            noise_type="white",
            snr_db=round(rng.uniform(22.0, 28.0), 1),
            lowpass_hz=round(rng.uniform(3800.0, 4200.0), 1),
            codec_kbps=round(rng.uniform(6.0, 8.0), 1),
        )
    if kind == "hum":  # a grounding fault: loud mains hum with its harmonics
        return ChannelProfile(
            **common,
            reverb_rt60=round(rng.uniform(0.1, 0.3), 3),
            reverb_wet=round(rng.uniform(0.1, 0.2), 3),
            noise_type="hum",
            snr_db=round(rng.uniform(0.0, 4.0), 1),
            eq_tilt_db=round(rng.uniform(-1.0, 1.0), 2),
        )
    if kind == "babble":  # a crowded room: speech-shaped babble at about the speech level
        return ChannelProfile(
            **common,
            reverb_rt60=round(rng.uniform(0.3, 0.5), 3),
            reverb_wet=round(rng.uniform(0.2, 0.35), 3),
            noise_type="babble",
            snr_db=round(rng.uniform(0.0, 3.0), 1),
            snr_jitter_db=2.0,
        )
    if kind == "far_field":  # a microphone across a large hall
        return ChannelProfile(
            **common,
            reverb_rt60=round(rng.uniform(1.5, 1.9), 3),
            reverb_wet=round(rng.uniform(0.85, 0.93), 3),
            noise_type="pink",
            snr_db=round(rng.uniform(10.0, 14.0), 1),
            highpass_hz=round(rng.uniform(150.0, 250.0), 1),
            gain_db=round(rng.uniform(-8.0, -4.0), 1),
        )
    if kind == "whisper":  # a whispering voice (CHALLENGE_VOICES) in a quiet small room
        return ChannelProfile(
            **common,
            reverb_rt60=round(rng.uniform(0.1, 0.2), 3),
            reverb_wet=round(rng.uniform(0.05, 0.15), 3),
            noise_type="white",
            snr_db=round(rng.uniform(18.0, 24.0), 1),
        )
    if kind == "combined":  # all at once: reverberant, babbling, band-limited, through the codec
        return ChannelProfile(
            **common,
            reverb_rt60=round(rng.uniform(0.8, 1.1), 3),
            reverb_wet=round(rng.uniform(0.5, 0.65), 3),
            noise_type="babble",
            snr_db=round(rng.uniform(6.0, 9.0), 1),
            highpass_hz=round(rng.uniform(200.0, 300.0), 1),
            lowpass_hz=round(rng.uniform(3400.0, 3800.0), 1),
            codec_kbps=round(rng.uniform(8.0, 10.0), 1),
        )
    raise ValueError(f"unknown challenge channel kind {kind!r}; allowed: {CHALLENGE_CHANNEL_KINDS}")


def sample_sealed_channel(rng: random.Random, channel_id: str, kind: str) -> ChannelProfile:
    """Draw a sealed channel: a family unlike every base, user and challenge channel.

    Args:
        rng: the source of randomness.
        channel_id: the id to give the channel.
        kind: one of :data:`SEALED_CHANNEL_KINDS`.

    Raises:
        ValueError: unknown ``kind``.
    """
    common: Dict[str, Any] = dict(channel_id=channel_id, kind=kind, room_seed=rng.randrange(2**31))
    if kind == "muffled":  # a voice through a closed door: a steep low-pass at 1-1.6 kHz, the next room's reverb
        return ChannelProfile(
            **common,
            reverb_rt60=round(rng.uniform(0.3, 0.5), 3),
            reverb_wet=round(rng.uniform(0.3, 0.45), 3),
            noise_type="pink",
            snr_db=round(rng.uniform(16.0, 22.0), 1),
            lowpass_hz=round(rng.uniform(1000.0, 1600.0), 1),
            gain_db=round(rng.uniform(-3.0, 0.0), 1),
        )
    if kind == "car":  # a moving car: road rumble and engine harmonics louder than the voice, a small padded cabin
        return ChannelProfile(
            **common,
            reverb_rt60=round(rng.uniform(0.05, 0.12), 3),
            reverb_wet=round(rng.uniform(0.2, 0.35), 3),
            noise_type="car",
            snr_db=round(rng.uniform(-4.0, 0.0), 1),
            snr_jitter_db=2.0,
            eq_tilt_db=round(rng.uniform(-1.5, -0.5), 2),
            gain_db=round(rng.uniform(-6.0, -3.0), 1),
        )
    if kind == "speakerphone":  # a phone on the table: 300-3000 Hz band, overdriven small speaker, short bright room
        return ChannelProfile(
            **common,
            reverb_rt60=round(rng.uniform(0.25, 0.4), 3),
            reverb_wet=round(rng.uniform(0.3, 0.45), 3),
            noise_type="white",
            snr_db=round(rng.uniform(24.0, 30.0), 1),
            eq_tilt_db=round(rng.uniform(1.5, 3.0), 2),
            highpass_hz=round(rng.uniform(280.0, 350.0), 1),
            lowpass_hz=round(rng.uniform(2800.0, 3200.0), 1),
            gain_db=round(rng.uniform(9.0, 12.0), 1),
            clip_level=round(rng.uniform(0.35, 0.5), 3),
        )
    if kind == "packet_loss":  # a VoIP call on a bad network: wideband Opus, 4-8 % of its 20 ms packets lost
        return ChannelProfile(
            **common,
            reverb_rt60=round(rng.uniform(0.1, 0.25), 3),
            reverb_wet=round(rng.uniform(0.1, 0.2), 3),
            noise_type="white",
            snr_db=round(rng.uniform(26.0, 32.0), 1),
            codec_kbps=round(rng.uniform(16.0, 24.0), 1),
            packet_loss=round(rng.uniform(0.04, 0.08), 3),
        )
    if kind == "echo":  # a conference call whose echo canceller fails: the voice returns after 120-300 ms
        return ChannelProfile(
            **common,
            reverb_rt60=round(rng.uniform(0.15, 0.3), 3),
            reverb_wet=round(rng.uniform(0.1, 0.2), 3),
            noise_type="pink",
            snr_db=round(rng.uniform(22.0, 28.0), 1),
            echo_delay_s=round(rng.uniform(0.12, 0.3), 3),
            echo_gain_db=round(rng.uniform(-8.0, -4.0), 1),
        )
    if kind == "suppressed":  # a call app's noise suppression on a noisy line: musical noise, clipped quiet sounds
        return ChannelProfile(
            **common,
            reverb_rt60=round(rng.uniform(0.1, 0.25), 3),
            reverb_wet=round(rng.uniform(0.1, 0.2), 3),
            noise_type=rng.choice(("white", "pink")),
            snr_db=round(rng.uniform(4.0, 8.0), 1),
            suppression_db=round(rng.uniform(20.0, 30.0), 1),
        )
    raise ValueError(f"unknown sealed channel kind {kind!r}; allowed: {SEALED_CHANNEL_KINDS}")


def assign_variants(
    rng: random.Random, num_base: int, num_users: int, variants: Sequence[str] = SPEAKER_VARIANTS
) -> Tuple[List[str], List[str]]:
    """Split voice variants so that users never share a variant with a base speaker.

    The variants are shuffled once; base speaker ``i`` takes variant ``i`` and user ``j`` takes the ``j``-th from
    the end, so changing the number of users leaves the base speakers' variants alone (until the pools meet).

    Args:
        rng: the source of randomness (shuffles the variants).
        num_base: number of base speakers (variants are reused round-robin when there are more speakers than
            variants left for the base pool).
        num_users: number of users; each gets a variant of its own.
        variants: the variant pool.

    Returns:
        ``(base_variants, user_variants)`` lists of lengths ``num_base`` and ``num_users``.

    Raises:
        ValueError: not enough variants to give every user its own and leave at least one for base speakers.
    """
    pool = list(variants)
    if num_users + 1 > len(pool):
        raise ValueError(
            f"{num_users} users need {num_users + 1} espeak variants (one each plus one for base speakers), "
            f"only {len(pool)} available"
        )
    rng.shuffle(pool)
    user_variants = [pool[len(pool) - 1 - j] for j in range(num_users)]
    base_pool = pool[: len(pool) - num_users]
    base_variants = [base_pool[i % len(base_pool)] for i in range(num_base)]
    return base_variants, user_variants
