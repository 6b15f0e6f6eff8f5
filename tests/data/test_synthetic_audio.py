"""Tests for espeak-ng synthesis, speaker/channel profiles and the channel chain of the synthetic corpus."""

import random
from pathlib import Path

import numpy as np
import pytest

from kospeech.data.synthetic.channel import apply_channel, make_noise, normalize_level, room_impulse_response
from kospeech.data.synthetic.espeak import EspeakVoice, available_variants, synthesize, validate_variant
from kospeech.data.synthetic.profiles import (
    CHALLENGE_VOICES,
    NOISE_TYPES,
    SEALED_CHANNEL_KINDS,
    SEALED_VOICES,
    SPEAKER_VARIANTS,
    USER_CHANNEL_KINDS,
    ChannelProfile,
    SpeakerProfile,
    assign_variants,
    sample_base_channel,
    sample_sealed_channel,
    sample_speaker_profile,
    sample_user_channel,
)
from kospeech.errors import EspeakError

TEXT = "안녕하세요 오늘 날씨가 좋네요"


def test_every_curated_variant_exists():
    variants = set(available_variants())
    assert set(SPEAKER_VARIANTS) | set(CHALLENGE_VOICES) | set(SEALED_VOICES) <= variants


@pytest.mark.parametrize("bad", ["M3", "nonexistent", "m3 ", ""])
def test_unknown_variants_are_rejected(bad):
    with pytest.raises(ValueError, match="unknown espeak-ng voice variant"):
        validate_variant(bad)
    with pytest.raises(ValueError, match="unknown espeak-ng voice variant"):
        synthesize(TEXT, EspeakVoice(bad))


def test_voice_settings_are_range_checked():
    with pytest.raises(ValueError, match="rate"):
        EspeakVoice("m3", rate=20).validate()
    with pytest.raises(ValueError, match="pitch"):
        EspeakVoice("m3", pitch=150).validate()


def test_synthesis_is_deterministic_per_seed():
    voice = EspeakVoice("f2", rate=160, pitch=60)  # f2 breathes: its noise source depends on the seed
    first, rate = synthesize(TEXT, voice, seed=1)
    second, _ = synthesize(TEXT, voice, seed=1)
    third, _ = synthesize(TEXT, voice, seed=2)
    assert rate == 22050
    assert first.dtype == np.int16 and len(first) > rate  # more than a second of speech
    assert np.array_equal(first, second)
    assert not np.array_equal(first, third)


def test_variants_and_parameters_change_the_voice():
    plain, _ = synthesize(TEXT, EspeakVoice("m3"))
    other_variant, _ = synthesize(TEXT, EspeakVoice("f4"))
    faster, _ = synthesize(TEXT, EspeakVoice("m3", rate=300))
    assert not np.array_equal(plain, other_variant)
    assert len(faster) < 0.8 * len(plain)


def test_synthesis_rejects_empty_text():
    with pytest.raises(ValueError, match="empty"):
        synthesize("  ", EspeakVoice("m3"))


def _children() -> set:
    """This process' child processes, zombies included (every thread's ``/proc`` children list)."""
    files = list(Path("/proc/self/task").glob("*/children"))
    assert files, "this kernel does not list children in /proc: the test could not see a process left behind"
    listed = (path.read_text().split() for path in files)
    return {int(pid) for pids in listed for pid in pids}


def test_a_synthesis_past_its_timeout_is_stopped_and_leaves_no_process():
    before = _children()
    with pytest.raises(EspeakError, match=r"took longer than 1e-05 s .*stopped it"):
        synthesize(TEXT * 20, EspeakVoice("m3"), timeout=1e-5)  # far too short for espeak to start, let alone speak
    assert _children() == before  # killed and reaped, not left running or as a zombie
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds, got 0"):
        synthesize(TEXT, EspeakVoice("m3"), timeout=0)
    samples, _ = synthesize(TEXT, EspeakVoice("m3"), timeout=30)  # an ordinary call after a stopped one
    assert len(samples) > 0 and _children() == before


def test_profiles_round_trip_and_validate():
    speaker = sample_speaker_profile(random.Random(0), "spk01", "m3")
    assert SpeakerProfile.from_dict(speaker.to_dict()) == speaker
    channel = sample_user_channel(random.Random(0), "user01-telephone", "telephone")
    assert ChannelProfile.from_dict(channel.to_dict()) == channel
    with pytest.raises(ValueError, match="unknown SpeakerProfile keys"):
        SpeakerProfile.from_dict({**speaker.to_dict(), "accent": "busan"})
    with pytest.raises(ValueError, match="unknown espeak-ng voice variant"):
        SpeakerProfile("spk01", "Nope")
    with pytest.raises(ValueError, match="noise_type"):
        ChannelProfile("c", noise_type="rain")
    with pytest.raises(ValueError, match="highpass_hz"):
        ChannelProfile("c", highpass_hz=3000.0, lowpass_hz=1000.0)


def test_speaker_voice_jitter_stays_near_the_profile():
    speaker = SpeakerProfile("spk01", "m3", rate=180, pitch=50, rate_jitter=0.05, pitch_jitter=3)
    voices = [speaker.voice(random.Random(seed)) for seed in range(50)]
    assert all(171 <= v.rate <= 189 and 47 <= v.pitch <= 53 for v in voices)
    assert len({(v.rate, v.pitch) for v in voices}) > 5


def test_user_variants_are_never_base_variants_and_base_is_stable():
    base, users = assign_variants(random.Random(0), num_base=12, num_users=4)
    assert not set(base) & set(users)
    assert len(set(users)) == 4
    base_more_users, _ = assign_variants(random.Random(0), num_base=12, num_users=6)
    assert base_more_users == base
    with pytest.raises(ValueError, match="variants"):
        assign_variants(random.Random(0), num_base=1, num_users=len(SPEAKER_VARIANTS))


def test_user_channels_are_harsher_than_base_channels():
    base = [sample_base_channel(random.Random(i), f"ch{i}") for i in range(50)]
    for kind in USER_CHANNEL_KINDS:
        user = sample_user_channel(random.Random(1), f"u-{kind}", kind)
        assert user.kind == kind
        harsh = (
            user.telephone
            or user.reverb_rt60 > max(c.reverb_rt60 for c in base)
            or user.snr_db < min(c.snr_db for c in base)
            or abs(user.eq_tilt_db) > max(abs(c.eq_tilt_db) for c in base)
            or user.clip_level < 1.0
        )
        assert harsh, user
    assert not any(c.telephone or c.clip_level < 1.0 for c in base)
    with pytest.raises(ValueError, match="unknown user channel kind"):
        sample_user_channel(random.Random(0), "u", "underwater")


def _tone(seconds=1.0, sample_rate=16000):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    envelope = (np.sin(2 * np.pi * 3 * t) > 0).astype(float)
    partials = np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 2500 * t) + 0.3 * np.sin(2 * np.pi * 5500 * t)
    return 0.3 * envelope * partials


def _band_energy(x, low, high, sample_rate=16000):
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / sample_rate)
    return spectrum[(freqs >= low) & (freqs < high)].sum()


def test_channel_is_deterministic_and_bounded():
    profile = sample_user_channel(random.Random(2), "u-noisy", "noisy")
    x = _tone()
    a = apply_channel(x, 16000, profile, np.random.default_rng(5))
    b = apply_channel(x, 16000, profile, np.random.default_rng(5))
    c = apply_channel(x, 16000, profile, np.random.default_rng(6))
    assert a.dtype == np.float32 and np.abs(a).max() <= 1.0
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_telephone_channel_removes_the_high_band():
    x = _tone()
    clean = apply_channel(x, 16000, ChannelProfile("c"), np.random.default_rng(0))
    phone = apply_channel(x, 16000, ChannelProfile("p", telephone=True), np.random.default_rng(0))
    assert _band_energy(phone, 4500, 8000) < 1e-3 * _band_energy(clean, 4500, 8000)
    assert _band_energy(phone, 2000, 3000) > 0.3 * _band_energy(clean, 2000, 3000)


def test_noise_at_the_requested_snr():
    x = _tone(2.0)
    profile = ChannelProfile("n", noise_type="white", snr_db=10.0, snr_jitter_db=0.0)
    noisy = apply_channel(x, 16000, profile, np.random.default_rng(0)).astype(np.float64)
    clean = apply_channel(x, 16000, ChannelProfile("c"), np.random.default_rng(0)).astype(np.float64)
    noise = noisy - clean
    active = np.abs(clean) > 0
    snr = 10 * np.log10(np.mean(clean[active] ** 2) / np.mean(noise**2))
    assert 8.0 < snr < 12.0


def test_reverb_and_clipping():
    x = _tone()
    room = ChannelProfile("r", reverb_rt60=0.8, reverb_wet=0.7)
    reverberant = apply_channel(x, 16000, room, np.random.default_rng(0))
    assert len(reverberant) == len(x) + int(0.25 * 0.8 * 16000)
    response = room_impulse_response(0.8, 0.7, 16000, seed=3)
    assert np.array_equal(response, room_impulse_response(0.8, 0.7, 16000, seed=3))
    assert response[0] == 1.0 and np.abs(response[1:]).sum() > 0
    clipped = apply_channel(x, 16000, ChannelProfile("k", gain_db=20.0, clip_level=0.3), np.random.default_rng(0))
    assert np.isclose(np.abs(clipped).max(), 0.3)


@pytest.mark.parametrize("noise_type", NOISE_TYPES)
def test_noise_types_have_unit_power(noise_type):
    noise = make_noise(noise_type, 16000, 16000, np.random.default_rng(0))
    expected = 0.0 if noise_type == "none" else 1.0
    assert np.isclose(np.mean(noise**2), expected)


def test_normalize_level_hits_the_target():
    x = normalize_level(_tone(), 16000, target_dbfs=-20.0)
    active = x[np.abs(x) > 0]
    assert abs(10 * np.log10(np.mean(active.astype(np.float64) ** 2)) + 20.0) < 1.5


def test_sealed_channels_round_trip_and_optional_settings_are_validated():
    for kind in SEALED_CHANNEL_KINDS:
        channel = sample_sealed_channel(random.Random(3), f"sealed-{kind}", kind)
        assert channel.kind == kind and ChannelProfile.from_dict(channel.to_dict()) == channel
    with pytest.raises(ValueError, match="unknown sealed channel kind"):
        sample_sealed_channel(random.Random(0), "s", "underwater")
    assert set(ChannelProfile("c").to_dict()).isdisjoint(
        {"echo_delay_s", "echo_gain_db", "suppression_db", "packet_loss"}
    )
    with pytest.raises(ValueError, match="packet_loss"):
        ChannelProfile("c", packet_loss=0.5)
    with pytest.raises(ValueError, match="suppression_db"):
        ChannelProfile("c", suppression_db=2.0)
    with pytest.raises(ValueError, match="set together"):
        ChannelProfile("c", echo_delay_s=0.2)
    with pytest.raises(ValueError, match="echo_gain_db"):
        ChannelProfile("c", echo_delay_s=0.2, echo_gain_db=0.0)


def test_car_noise_is_low_frequency():
    noise = make_noise("car", 32000, 16000, np.random.default_rng(0))
    assert _band_energy(noise, 0, 300) > 0.95 * _band_energy(noise, 0, 8000)


def test_packet_loss_silences_bursts_of_20_to_60_ms():
    t = np.arange(16000 * 10) / 16000
    x = 0.3 * np.sin(2 * np.pi * 220 * t + 0.1)
    profile = ChannelProfile("l", packet_loss=0.1)
    lossy = apply_channel(x, 16000, profile, np.random.default_rng(0))
    assert np.array_equal(lossy, apply_channel(x, 16000, profile, np.random.default_rng(0)))
    lost = np.all(lossy.reshape(-1, 320) == 0.0, axis=1)  # 20 ms packets
    assert 0.07 < lost.mean() < 0.13
    clean = apply_channel(x, 16000, ChannelProfile("c"), np.random.default_rng(0))
    assert np.array_equal(lossy.reshape(-1, 320)[~lost], clean.reshape(-1, 320)[~lost])  # the rest untouched
    starts = np.flatnonzero(np.diff(np.concatenate([[0], lost.astype(int)])) == 1)
    assert len(starts) > 10


def test_echo_repeats_the_signal_after_the_delay():
    x = np.zeros(16000)
    x[:800] = 0.3 * np.sin(2 * np.pi * 440 * np.arange(800) / 16000)  # a 50 ms burst, then silence
    echoed = apply_channel(x, 16000, ChannelProfile("e", echo_delay_s=0.2, echo_gain_db=-6.0), np.random.default_rng(0))

    def energy(start, stop):
        return float(np.sum(echoed[int(start * 16000) : int(stop * 16000)].astype(np.float64) ** 2))

    assert np.isclose(energy(0.2, 0.25) / energy(0.0, 0.05), 10 ** (-6 / 10), rtol=0.01)
    assert np.isclose(energy(0.4, 0.45) / energy(0.0, 0.05), 10 ** (-12 / 10), rtol=0.01)
    assert energy(0.06, 0.19) == 0.0


def test_noise_suppression_removes_noise_in_pauses_and_keeps_speech():
    x = _tone(2.0)
    pause = np.abs(x) == 0.0
    noisy = ChannelProfile("n", noise_type="white", snr_db=10.0, snr_jitter_db=0.0)
    suppressed = ChannelProfile("s", noise_type="white", snr_db=10.0, snr_jitter_db=0.0, suppression_db=30.0)
    before = apply_channel(x, 16000, noisy, np.random.default_rng(0)).astype(np.float64)
    after = apply_channel(x, 16000, suppressed, np.random.default_rng(0)).astype(np.float64)
    assert 10 * np.log10(np.mean(before[pause] ** 2) / np.mean(after[pause] ** 2)) > 10.0  # edges smeared by the STFT
    assert np.mean(after[~pause] ** 2) > 0.5 * np.mean(before[~pause] ** 2)
