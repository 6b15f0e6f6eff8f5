"""Build the built-in synthetic Korean corpus: plan, synthesize (in parallel, cached), write manifests and a card.

Layout of a corpus folder ``DIR``::

    DIR/corpus.json                 the card: seed, preset, sizes, speakers, channels, users, counts, hours, build
    DIR/vocab.csv                   character vocabulary of every transcript (base and users)
    DIR/utterances.tsv              one line per utterance: id, split, speaker, channel, domain, frames, sha256,
                                    audio path, written sentence (with digits)
    DIR/base/{train,dev,test}.tsv   KoSpeech manifests of the base speakers (4th column: speaker id)
    DIR/base/wavs/<speaker>/*.wav
    DIR/users/<user>/{enroll,test}.tsv
    DIR/users/<user>/wavs/*.wav

Audio is 16 kHz mono 16-bit PCM. Every file depends only on the seed, the sizes and the code versions (no
timestamps, no absolute paths), so the same seed gives byte-identical folders. A wav file's name carries a hash
of everything that determines its samples; a second build reuses every existing file that matches the checksum
its index (``utterances.tsv``) recorded. :func:`build_user_sets` keeps one such index per user it builds
(``<group>/<user>/utterances.tsv``).

Users are held out: each has a speaker profile with a voice variant no base speaker uses, its own channel from
a hard family (telephone, reverberant, noisy, tilted, clipped) that no base utterance goes through, and
favourite words (names, places) that are rare in the base sentences and frequent in its own.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np
import soundfile as sf

import kospeech
from kospeech.data.manifest import ManifestEntry, read_manifest, write_manifest
from kospeech.data.synthetic.channel import apply_channel
from kospeech.data.synthetic.espeak import espeak_version, synthesize
from kospeech.data.synthetic.grammar import FAVOURITE_KINDS, RARE_PERSONS, RARE_PLACES, SentenceGenerator
from kospeech.data.synthetic.profiles import (
    CHALLENGE_CHANNEL_KINDS,
    CHALLENGE_VOICES,
    SEALED_CHANNEL_KINDS,
    SEALED_VOICES,
    USER_CHANNEL_KINDS,
    ChannelProfile,
    SpeakerProfile,
    assign_variants,
    sample_base_channel,
    sample_challenge_channel,
    sample_sealed_channel,
    sample_speaker_profile,
    sample_user_channel,
)
from kospeech.device import usable_cpu_cores
from kospeech.errors import ConfigError, InputError
from kospeech.fileio import atomic_write, atomic_write_json, atomic_write_text, sha256_file
from kospeech.progress import progress_bar
from kospeech.vocabs import SPECIAL_TOKENS, UnknownCharacterError, Vocabulary

__all__ = [
    "CorpusSizes",
    "CorpusCard",
    "PlannedUtterance",
    "PlannedUser",
    "CorpusPlan",
    "PRESETS",
    "SAMPLE_RATE",
    "plan_corpus",
    "plan_challenge",
    "plan_sealed",
    "USER_GROUPS",
    "render_utterance",
    "build_corpus",
    "ensure_corpus",
    "build_user_sets",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FORMAT_VERSION = 1
USERS_GROUP = "users"
CHALLENGE_GROUP = "challenge"
SEALED_GROUP = "sealed"
USER_GROUPS = (USERS_GROUP, CHALLENGE_GROUP, SEALED_GROUP)
"""Folders of held-out users: the corpus' own users, the challenge users of :func:`plan_challenge` and the sealed users
of :func:`plan_sealed`."""
# Bump when the sentence generator, the synthesis/channel chain or the file layout changes output.
GENERATOR_VERSION = 1
RENDER_VERSION = 1
BASE_SPLITS = ("train", "dev", "test")
USER_SPLITS = ("enroll", "test")
PathLike = Union[str, os.PathLike]
# Users of one group take disjoint slices of the shuffled rare names and places, so a group holds at most this many
# favourites per kind in all.
_FAVOURITE_POOL = min(len(RARE_PERSONS), len(RARE_PLACES))


@dataclass(frozen=True)
class CorpusSizes:
    """How big a corpus is.

    Args:
        num_base_speakers: base speakers (train/dev/test).
        utterances_per_speaker: utterances per base speaker, split into train/dev/test.
        num_base_channels: clean-ish channels the base utterances are spread over.
        num_users: held-out users.
        enroll_per_user: enrollment utterances per user.
        test_per_user: test utterances per user.
        dev_fraction: share of each base speaker's utterances in ``dev`` (at least one).
        test_fraction: share of each base speaker's utterances in ``test`` (at least one).
        favourites_per_kind: favourite names and favourite places per user.
        favourite_prob: share of a user's sentences built around one of its favourite words.
        rare_prob: chance that a name/place slot of a base sentence takes a word from the rare pools.
    """

    num_base_speakers: int
    utterances_per_speaker: int
    num_base_channels: int
    num_users: int
    enroll_per_user: int
    test_per_user: int
    dev_fraction: float = 0.05
    test_fraction: float = 0.05
    favourites_per_kind: int = 3
    favourite_prob: float = 0.5
    rare_prob: float = 0.02

    def validate(self) -> CorpusSizes:
        """Check every size; returns ``self``.

        Raises:
            ConfigError: (a ValueError) a size out of range, naming the field and what is allowed.
        """
        minimums = {
            "num_base_speakers": 1,
            "utterances_per_speaker": 3,
            "num_base_channels": 1,
            "num_users": 0,
            "enroll_per_user": 1,
            "test_per_user": 1,
            "favourites_per_kind": 1,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"corpus size {name} must be an int >= {minimum}, got {value!r}")
        for name in ("dev_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 0.5:
                raise ConfigError(f"corpus size {name} must be in [0, 0.5), got {value!r}")
        for name in ("favourite_prob", "rare_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"corpus size {name} must be in [0, 1], got {value!r}")
        train, dev, test = self.split_counts()
        if train < 1:
            raise ConfigError(
                f"corpus size: {self.utterances_per_speaker} utterances per speaker leave none for training after "
                f"{dev} dev and {test} test (dev_fraction {self.dev_fraction}, test_fraction {self.test_fraction}); "
                "raise utterances_per_speaker or lower the fractions"
            )
        if self.num_users * self.favourites_per_kind > _FAVOURITE_POOL:
            raise ConfigError(
                f"{self.num_users} users x {self.favourites_per_kind} favourites per kind exceed the {_FAVOURITE_POOL} "
                f"rare names/places available; lower num_users or favourites_per_kind"
            )
        return self

    def split_counts(self) -> Tuple[int, int, int]:
        """``(train, dev, test)`` utterances per base speaker."""
        n = self.utterances_per_speaker
        dev = max(1, round(self.dev_fraction * n))
        test = max(1, round(self.test_fraction * n))
        return n - dev - test, dev, test


PRESETS: Dict[str, CorpusSizes] = {
    # Seconds to build: for tests.
    "tiny": CorpusSizes(
        num_base_speakers=3,
        utterances_per_speaker=8,
        num_base_channels=2,
        num_users=2,
        enroll_per_user=4,
        test_per_user=3,
        dev_fraction=0.125,
        test_fraction=0.125,
        favourites_per_kind=2,
    ),
    # A few minutes of CPU: the demo and the default for training examples.
    "demo": CorpusSizes(
        num_base_speakers=10,
        utterances_per_speaker=200,
        num_base_channels=4,
        num_users=4,
        enroll_per_user=100,
        test_per_user=100,
    ),
    # Benchmarks.
    "bench": CorpusSizes(
        num_base_speakers=40,
        utterances_per_speaker=500,
        num_base_channels=8,
        num_users=10,
        enroll_per_user=200,
        test_per_user=200,
    ),
}


def resolve_sizes(preset: str, overrides: Mapping[str, Any]) -> CorpusSizes:
    """A preset's sizes with the non-``None`` overrides applied.

    Raises:
        ConfigError: (a ValueError) unknown preset or override name, or invalid sizes.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown corpus preset {preset!r}; choose one of {sorted(PRESETS)}")
    names = {f.name for f in dataclasses.fields(CorpusSizes)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown corpus size overrides {unknown}; allowed: {sorted(names)}")
    changes = {name: value for name, value in overrides.items() if value is not None}
    return dataclasses.replace(PRESETS[preset], **changes).validate()


def _derive_seed(seed: int, *labels: Any) -> int:
    """A 32-bit seed derived from the corpus seed and labels (independent random streams per purpose)."""
    digest = hashlib.sha256("/".join(str(part) for part in (seed,) + labels).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little")


@dataclass(frozen=True)
class PlannedUtterance:
    """Everything that determines one utterance's audio and manifest line.

    Args:
        utt_id: unique id (``"spk01-0003"``, ``"user01-enroll-0002"``).
        group: ``"base"`` or ``"users/<user>"`` (the folder of its manifests).
        split: ``train``/``dev``/``test`` (base) or ``enroll``/``test`` (users).
        speaker: the speaker profile.
        channel: the channel profile.
        text: normalized transcript (Hangul and spaces).
        written: the sentence as generated, with digits.
        domain: the sentence template's domain.
        favourite: the favourite word the sentence was built around, if any.
        seed: seed of the synthesis, voice jitter, padding and noise.
    """

    utt_id: str
    group: str
    split: str
    speaker: SpeakerProfile
    channel: ChannelProfile
    text: str
    written: str
    domain: str
    favourite: Optional[str]
    seed: int

    def cache_key(self) -> str:
        """Hash of every input of the audio: text, speaker, channel, seed and code versions."""
        payload = json.dumps(
            {
                "text": self.text,
                "speaker": self.speaker.to_dict(),
                "channel": self.channel.to_dict(),
                "seed": self.seed,
                "render_version": RENDER_VERSION,
                "espeak": espeak_version(),
                "sample_rate": SAMPLE_RATE,
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

    @functools.cached_property
    def relative_path(self) -> str:
        """Audio path relative to the corpus folder (POSIX separators)."""
        speaker_dir = f"{self.speaker.speaker_id}/" if self.group == "base" else ""
        return f"{self.group}/wavs/{speaker_dir}{self.utt_id}-{self.cache_key()}.wav"


@dataclass(frozen=True)
class PlannedUser:
    """A held-out user.

    Args:
        user_id: ``"user01"``, ...; also the speaker id in its manifests.
        speaker: its speaker profile (a voice variant no base speaker uses).
        channel: its channel profile (a hard channel no base utterance goes through).
        favourites: favourite words per kind (``"person"``, ``"place"``), taken from the rare pools.
    """

    user_id: str
    speaker: SpeakerProfile
    channel: ChannelProfile
    favourites: Dict[str, Tuple[str, ...]]


@dataclass(frozen=True)
class CorpusPlan:
    """A corpus before synthesis: profiles, users and every utterance."""

    preset: str
    seed: int
    sizes: CorpusSizes
    base_speakers: Tuple[SpeakerProfile, ...]
    base_channels: Tuple[ChannelProfile, ...]
    users: Tuple[PlannedUser, ...]
    utterances: Tuple[PlannedUtterance, ...]


def plan_corpus(preset: str = "tiny", seed: int = 0, **overrides: Any) -> CorpusPlan:
    """Decide every speaker, channel, user and sentence of a corpus (no audio; fast and deterministic).

    Args:
        preset: ``tiny``, ``demo`` or ``bench``.
        seed: the corpus seed.
        **overrides: :class:`CorpusSizes` fields to change (``None`` keeps the preset's value).

    Returns:
        The plan.

    Raises:
        ValueError: unknown preset, bad sizes, or not enough voice variants for the users.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"corpus seed must be a non-negative int, got {seed!r}")
    sizes = resolve_sizes(preset, overrides)
    base_variants, user_variants = assign_variants(
        random.Random(_derive_seed(seed, "variants")), sizes.num_base_speakers, sizes.num_users
    )
    base_width = max(2, len(str(sizes.num_base_speakers)))
    base_speakers = tuple(
        sample_speaker_profile(random.Random(_derive_seed(seed, "speaker", index)), f"spk{index + 1:0{base_width}d}", v)
        for index, v in enumerate(base_variants)
    )
    base_channels = tuple(
        sample_base_channel(random.Random(_derive_seed(seed, "channel", index)), f"ch{index + 1:02d}")
        for index in range(sizes.num_base_channels)
    )
    kinds = list(USER_CHANNEL_KINDS)
    random.Random(_derive_seed(seed, "user-channel-kinds")).shuffle(kinds)
    persons, places = _favourite_pools(seed, "favourites")
    k = sizes.favourites_per_kind
    users = []
    for index, variant in enumerate(user_variants):
        kind = kinds[index % len(kinds)]
        favourites = _favourites(persons, places, index, k)
        users.append(_planned_user(seed, f"user{index + 1:02d}", variant, sample_user_channel, kind, favourites))

    generator = SentenceGenerator(rare_prob=sizes.rare_prob)
    sentence_rng = random.Random(_derive_seed(seed, "base-sentences"))
    assignment_rng = random.Random(_derive_seed(seed, "base-channels"))
    n_train, n_dev, _ = sizes.split_counts()
    utterances: List[PlannedUtterance] = []
    seen: set = set()
    for speaker in base_speakers:
        sentences = generator.sample_unique(sentence_rng, sizes.utterances_per_speaker, exclude=seen)
        seen.update(sentence.text for sentence in sentences)
        for index, sentence in enumerate(sentences):
            split = "train" if index < n_train else "dev" if index < n_train + n_dev else "test"
            utt_id = f"{speaker.speaker_id}-{index:04d}"
            utterances.append(
                PlannedUtterance(
                    utt_id=utt_id,
                    group="base",
                    split=split,
                    speaker=speaker,
                    channel=base_channels[assignment_rng.randrange(len(base_channels))],
                    text=sentence.text,
                    written=sentence.written,
                    domain=sentence.domain,
                    favourite=None,
                    seed=_derive_seed(seed, "utterance", utt_id),
                )
            )
    for user in users:
        utterances += _user_utterances(generator, seed, sizes, user, USERS_GROUP, seen)
    return CorpusPlan(
        preset=preset,
        seed=seed,
        sizes=sizes,
        base_speakers=base_speakers,
        base_channels=base_channels,
        users=tuple(users),
        utterances=tuple(utterances),
    )


def _favourite_pools(seed: int, label: str) -> Tuple[List[str], List[str]]:
    """The rare names and places, shuffled by the seed derived from ``label``: users take consecutive slices."""
    persons, places = list(RARE_PERSONS), list(RARE_PLACES)
    favourite_rng = random.Random(_derive_seed(seed, label))
    favourite_rng.shuffle(persons)
    favourite_rng.shuffle(places)
    return persons, places


def _favourites(persons: List[str], places: List[str], index: int, k: int) -> Dict[str, Tuple[str, ...]]:
    """The ``index``-th user's ``k`` favourite names and places of the shuffled pools (wrapping around at the end)."""
    return {
        "person": tuple(persons[(index * k + offset) % len(persons)] for offset in range(k)),
        "place": tuple(places[(index * k + offset) % len(places)] for offset in range(k)),
    }


def _planned_user(
    seed: int,
    user_id: str,
    variant: str,
    sample_channel: Callable[[random.Random, str, str], ChannelProfile],
    kind: str,
    favourites: Dict[str, Tuple[str, ...]],
) -> PlannedUser:
    """A held-out user: a speaker around ``variant`` and a channel of family ``kind``, each from its own seed."""
    return PlannedUser(
        user_id=user_id,
        speaker=sample_speaker_profile(random.Random(_derive_seed(seed, "user", user_id)), user_id, variant),
        channel=sample_channel(random.Random(_derive_seed(seed, "user-channel", user_id)), f"{user_id}-{kind}", kind),
        favourites=favourites,
    )


def _user_utterances(
    generator: SentenceGenerator, seed: int, sizes: CorpusSizes, user: PlannedUser, group: str, seen: set
) -> List[PlannedUtterance]:
    """A held-out user's enrollment and test utterances: new sentences (added to ``seen``), its voice and channel."""
    user_rng = random.Random(_derive_seed(seed, "user-sentences", user.user_id))
    utterances = []
    for split, count in (("enroll", sizes.enroll_per_user), ("test", sizes.test_per_user)):
        sentences = generator.sample_unique(
            user_rng, count, exclude=seen, favourites=user.favourites, favourite_prob=sizes.favourite_prob
        )
        seen.update(sentence.text for sentence in sentences)
        for index, sentence in enumerate(sentences):
            utt_id = f"{user.user_id}-{split}-{index:04d}"
            utterances.append(
                PlannedUtterance(
                    utt_id=utt_id,
                    group=f"{group}/{user.user_id}",
                    split=split,
                    speaker=user.speaker,
                    channel=user.channel,
                    text=sentence.text,
                    written=sentence.written,
                    domain=sentence.domain,
                    favourite=sentence.favourite,
                    seed=_derive_seed(seed, "utterance", utt_id),
                )
            )
    return utterances


def plan_challenge(plan: CorpusPlan) -> Tuple[Tuple[PlannedUser, ...], Tuple[PlannedUtterance, ...]]:
    """The *challenge* users of a corpus plan: held-out users harder than its own, for the personalization benchmark.

    The encoder recipe's variants were compared on challenge01-03 (ADAPTER_README.md), so those three are no longer
    users nobody tuned a recipe on; the *sealed* users of :func:`plan_sealed` are the untouched check. One user per
    :data:`~kospeech.data.synthetic.profiles.CHALLENGE_CHANNEL_KINDS` family (codec, mains hum, babble, far field,
    whisper, all combined), each with a voice of :data:`~kospeech.data.synthetic.profiles.CHALLENGE_VOICES` (outside
    the variants base speakers and users are drawn from) and the plan's enrollment and test sizes, on sentences the
    plan does not use. They live in their own group (``challenge/<user>/``), apart from the plan: adding them changes
    nothing of the corpus, its base model or its users.

    Returns:
        ``(users, utterances)``.

    Raises:
        ConfigError: (a ValueError) the plan's ``favourites_per_kind`` is too large for six users to get favourite
            words of their own.
    """
    seen = {utterance.text for utterance in plan.utterances}
    return _plan_group(plan, CHALLENGE_GROUP, CHALLENGE_CHANNEL_KINDS, CHALLENGE_VOICES, sample_challenge_channel, seen)


def plan_sealed(plan: CorpusPlan) -> Tuple[Tuple[PlannedUser, ...], Tuple[PlannedUtterance, ...]]:
    """The *sealed* users of a corpus plan: held-out users for a final measurement, never used to choose anything.

    The challenge users stopped being users nobody tuned on once recipes were compared on some of them; the sealed
    users take their place for the last word on a recipe: measured once, after every setting is fixed, and never
    used to choose a setting (a recipe compared on them would need yet another group). One user per
    :data:`~kospeech.data.synthetic.profiles.SEALED_CHANNEL_KINDS` family (muffled through a door, a car, a
    speakerphone, VoIP packet loss, a returning echo, an app's noise suppression), each with a voice of
    :data:`~kospeech.data.synthetic.profiles.SEALED_VOICES` (outside the base, user and challenge voices) and the
    plan's enrollment and test sizes, on sentences neither the plan nor the challenge users use. They live in their
    own group (``sealed/<user>/``): adding them changes nothing of the corpus, its base model, its users or the
    challenge users.

    Returns:
        ``(users, utterances)``.

    Raises:
        ConfigError: (a ValueError) the plan's ``favourites_per_kind`` is too large for six users to get favourite
            words of their own.
    """
    seen = {utterance.text for utterance in plan.utterances}
    seen.update(utterance.text for utterance in plan_challenge(plan)[1])
    return _plan_group(plan, SEALED_GROUP, SEALED_CHANNEL_KINDS, SEALED_VOICES, sample_sealed_channel, seen)


def _plan_group(
    plan: CorpusPlan,
    group: str,
    kinds: Sequence[str],
    voices: Sequence[str],
    sample_channel: Callable[[random.Random, str, str], ChannelProfile],
    seen: set,
) -> Tuple[Tuple[PlannedUser, ...], Tuple[PlannedUtterance, ...]]:
    """Users ``<group>01``, ... of a group apart from the plan: one per channel kind, with the voice of the same index.

    Favourites come from pools shuffled by the label ``<group>-favourites``; sentences are new to ``seen`` (updated).

    Raises:
        ConfigError: the group's users would share favourite words (the pools would wrap around).
    """
    seed, sizes = plan.seed, plan.sizes
    k = sizes.favourites_per_kind
    count = min(len(kinds), len(voices))
    if count * k > _FAVOURITE_POOL:
        raise ConfigError(
            f"favourites_per_kind={k} is too large for the {group} users: {count} users x {k} favourites per kind "
            f"exceed the {_FAVOURITE_POOL} rare names/places available, so users would share favourite words; use "
            f"favourites_per_kind <= {_FAVOURITE_POOL // count}"
        )
    persons, places = _favourite_pools(seed, f"{group}-favourites")
    users = []
    for index, (kind, variant) in enumerate(zip(kinds, voices)):
        favourites = _favourites(persons, places, index, k)
        users.append(_planned_user(seed, f"{group}{index + 1:02d}", variant, sample_channel, kind, favourites))
    generator = SentenceGenerator(rare_prob=sizes.rare_prob)
    utterances: List[PlannedUtterance] = []
    for user in users:
        utterances += _user_utterances(generator, seed, sizes, user, group, seen)
    return tuple(users), tuple(utterances)


def render_utterance(utterance: PlannedUtterance) -> np.ndarray:
    """Synthesize one planned utterance: espeak-ng, vocal-tract scaling, resampling, padding, channel.

    Args:
        utterance: the planned utterance.

    Returns:
        int16 samples ``(N,)`` at 16 kHz.
    """
    from scipy import signal  # imported here: it adds ~0.6 s to every process that imports kospeech

    rng = random.Random(utterance.seed)
    samples, native_rate = synthesize(utterance.text, utterance.speaker.voice(rng), seed=utterance.seed)
    waveform = samples.astype(np.float64) / 32768.0
    # Playing the native samples tract_scale times faster shifts formants and pitch; then resample to 16 kHz.
    target_length = int(round(len(waveform) * SAMPLE_RATE / (native_rate * utterance.speaker.tract_scale)))
    waveform = signal.resample(waveform, target_length)
    lead = np.zeros(int(rng.uniform(0.05, 0.25) * SAMPLE_RATE))
    tail = np.zeros(int(rng.uniform(0.1, 0.3) * SAMPLE_RATE))
    waveform = np.concatenate([lead, waveform, tail])
    noisy = apply_channel(waveform, SAMPLE_RATE, utterance.channel, np.random.default_rng(utterance.seed))
    return np.round(noisy * 32767.0).astype(np.int16)


def _write_wav(path: Path, samples: np.ndarray) -> None:
    atomic_write(path, lambda handle: sf.write(handle, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16"))


def _render_job(job: Tuple[PlannedUtterance, str]) -> Tuple[str, int]:
    """Worker body: render and write one utterance; returns its relative path and frame count."""
    utterance, path = job
    samples = render_utterance(utterance)
    _write_wav(Path(path), samples)
    return utterance.relative_path, len(samples)


def _cached_frames(path: Path, expected_sha: Optional[str]) -> Optional[int]:
    """Frames of a reusable cached wav, or ``None`` when it must be (re)synthesized."""
    if not path.is_file():
        return None
    try:
        info = sf.info(str(path))
    except sf.LibsndfileError as exc:
        logger.warning("cached audio %s is unreadable (%s); synthesizing it again", path, exc)
        return None
    if info.samplerate != SAMPLE_RATE or info.channels != 1 or info.subtype != "PCM_16" or info.frames <= 0:
        logger.warning("cached audio %s has the wrong format (%s); synthesizing it again", path, info)
        return None
    if expected_sha is not None and sha256_file(path) != expected_sha:
        logger.warning("cached audio %s does not match its recorded checksum; synthesizing it again", path)
        return None
    return int(info.frames)


def _read_index(path: Path) -> Dict[str, str]:
    """``relative audio path -> sha256`` from a previous build's ``utterances.tsv`` (empty if none)."""
    if not path.is_file():
        return {}
    index = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t") if lines else []
    if "audio_path" not in header or "sha256" not in header:
        return {}
    path_column, sha_column = header.index("audio_path"), header.index("sha256")
    for line in lines[1:]:
        columns = line.split("\t")
        if len(columns) == len(header):
            index[columns[path_column]] = columns[sha_column]
    return index


def _synthesize_missing(
    root: Path, utterances: Sequence[PlannedUtterance], num_workers: int, previous: Mapping[str, str]
) -> Tuple[Dict[str, int], int]:
    """Render every utterance whose wav is not cached; returns frames per relative path and the render count.

    ``previous`` maps relative audio paths to the checksums an earlier build recorded; a cached wav it lists is reused
    only with that checksum.
    """
    frames: Dict[str, int] = {}
    jobs = []
    for utterance in utterances:
        relative = utterance.relative_path
        cached = _cached_frames(root / relative, previous.get(relative))
        if cached is None:
            jobs.append((utterance, str(root / relative)))
        else:
            frames[relative] = cached
    logger.info("%d of %d utterances cached, synthesizing %d", len(frames), len(utterances), len(jobs))
    progress = progress_bar(disable=None, total=len(jobs), desc="synthesizing", unit="utt")
    # without a terminal the bar is off; a log line every tenth of the work still shows a long build moving
    log_every = max(1, len(jobs) // 10)
    rendered = 0

    def done(relative: str, count: int) -> None:
        nonlocal rendered
        frames[relative] = count
        rendered += 1
        progress.update(1)
        if progress.disable and rendered % log_every == 0:
            logger.info("synthesized %d of %d utterances", rendered, len(jobs))

    try:
        if num_workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                done(*_render_job(job))
        else:
            context = multiprocessing.get_context("fork")
            with context.Pool(processes=min(num_workers, len(jobs))) as pool:
                for relative, count in pool.imap_unordered(_render_job, jobs, chunksize=1):
                    done(relative, count)
    finally:
        progress.close()
    return frames, len(jobs)


def _remove_stale_files(root: Path, plan: CorpusPlan) -> int:
    """Delete the files of earlier builds in ``root`` that the current plan does not use, and nothing else.

    Only files an earlier build recorded as its own are candidates: the wavs of the previous ``utterances.tsv`` and
    the manifests of the previous ``corpus.json``, each still holding the content recorded for it. A file a person put
    in the folder (recordings, a manifest under ``users/``, as ``bin/train_adapters.py`` documents) is never deleted;
    a recorded file that was changed since is left in place with a warning.
    """
    keep = {utterance.relative_path for utterance in plan.utterances}
    keep |= {"utterances.tsv", "vocab.csv"} | {f"{name}.tsv" for name in _split_names(plan)}
    recorded = dict(_read_index(root / "utterances.tsv"))
    try:
        recorded.update(CorpusCard.load(root).data.get("files", {}))
    except (FileNotFoundError, InputError):
        pass
    removed = 0
    for relative, digest in sorted(recorded.items()):
        path = root / relative
        if relative in keep or not path.is_file() or not path.resolve().is_relative_to(root.resolve()):
            continue
        if sha256_file(path) != digest:
            logger.warning("%s was written by an earlier build but has changed since: left in place", path)
            continue
        path.unlink()
        removed += 1
        _remove_empty_parents(path.parent, root)
    if removed:
        logger.info("removed %d stale files of earlier builds from %s", removed, root)
    return removed


def _split_names(plan: CorpusPlan) -> List[str]:
    """``base/<split>`` and ``users/<user>/<split>``: the manifests (``<name>.tsv``) a build of ``plan`` writes."""
    return [f"base/{split}" for split in BASE_SPLITS] + [
        f"users/{user.user_id}/{split}" for user in plan.users for split in USER_SPLITS
    ]


def _remove_empty_parents(directory: Path, root: Path) -> None:
    """Remove ``directory`` and its parents up to (not including) ``root`` while they are empty."""
    while directory != root and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


def _hours(frames: int) -> float:
    return round(frames / SAMPLE_RATE / 3600.0, 4)


def _requested_config(preset: str, seed: int, sizes: CorpusSizes) -> Dict[str, Any]:
    """The card entries that must match for a built corpus to be reused as is."""
    return {
        "preset": preset,
        "seed": seed,
        "sizes": dataclasses.asdict(sizes),
        "format_version": FORMAT_VERSION,
        "generator_version": GENERATOR_VERSION,
        "render_version": RENDER_VERSION,
        "espeak_ng": espeak_version(),
    }


@dataclass(frozen=True)
class CorpusCard:
    """A built corpus: its folder and the content of ``corpus.json``.

    Args:
        root: the corpus folder.
        data: the parsed card.
    """

    root: Path
    data: Dict[str, Any] = field(repr=False)

    @classmethod
    def load(cls, root: PathLike) -> CorpusCard:
        """Read ``root/corpus.json``.

        Raises:
            FileNotFoundError: no card in ``root``.
            InputError: (a ValueError) the card is not UTF-8 JSON holding an object.
        """
        root = Path(root)
        path = root / "corpus.json"
        if not path.is_file():
            raise FileNotFoundError(f"corpus card not found: {path} (build the corpus with bin/make_corpus.py)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not a valid corpus card: {exc}") from exc
        if not isinstance(data, dict):
            raise InputError(f"{path}: not a valid corpus card: expected a JSON object, found {type(data).__name__}")
        return cls(root=root, data=data)

    @property
    def preset(self) -> str:
        """The preset the corpus was built from."""
        return self.data["preset"]

    @property
    def seed(self) -> int:
        """The corpus seed."""
        return self.data["seed"]

    @property
    def sizes(self) -> CorpusSizes:
        """The sizes the corpus was built with.

        Raises:
            InputError: (a ValueError) the card's ``sizes`` are missing or not valid :class:`CorpusSizes`.
        """
        recorded = self.data.get("sizes")
        try:
            return CorpusSizes(**recorded).validate()
        except (TypeError, ConfigError) as exc:
            raise InputError(
                f"{self.root / 'corpus.json'}: not a valid corpus card: sizes {recorded!r}: {exc}"
            ) from exc

    @property
    def users(self) -> List[str]:
        """Held-out user ids."""
        return [user["id"] for user in self.data["users"]]

    @property
    def vocab_path(self) -> Path:
        """The vocabulary CSV."""
        return self.root / "vocab.csv"

    @property
    def hours(self) -> float:
        """Hours of audio in the whole corpus."""
        return self.data["totals"]["hours"]

    def base_manifest(self, split: str) -> Path:
        """Manifest of a base split (``train``, ``dev`` or ``test``).

        Raises:
            ValueError: unknown split.
        """
        if split not in BASE_SPLITS:
            raise ValueError(f"unknown base split {split!r}; choose one of {BASE_SPLITS}")
        return self.root / "base" / f"{split}.tsv"

    def user_manifest(self, user: str, split: str) -> Path:
        """Manifest of a user split (``enroll`` or ``test``).

        Raises:
            ValueError: unknown user or split.
        """
        if user not in self.users:
            raise ValueError(f"unknown user {user!r}; this corpus has {self.users}")
        if split not in USER_SPLITS:
            raise ValueError(f"unknown user split {split!r}; choose one of {USER_SPLITS}")
        return self.root / "users" / user / f"{split}.tsv"

    def summary(self) -> str:
        """One line: preset, seed, utterances, hours, speakers, users."""
        totals = self.data["totals"]
        return (
            f"corpus {self.root}: preset={self.preset} seed={self.seed} utterances={totals['utterances']} "
            f"hours={totals['hours']:.3f} base_speakers={self.data['sizes']['num_base_speakers']} "
            f"users={len(self.users)} vocab={self.data['vocab']['size']}"
        )


def _count_word(word: str, texts: Iterable[str]) -> int:
    pattern = re.compile(re.escape(word))
    return sum(len(pattern.findall(text)) for text in texts)


def _utterance_index(utterances: Sequence[PlannedUtterance], frames: Mapping[str, int], root: Path) -> str:
    header = ["utt_id", "group", "split", "speaker", "channel", "domain", "favourite", "frames", "sha256"]
    header += ["audio_path", "written"]
    lines = ["\t".join(header)]
    for utterance in utterances:
        relative = utterance.relative_path
        columns = [
            utterance.utt_id,
            utterance.group,
            utterance.split,
            utterance.speaker.speaker_id,
            utterance.channel.channel_id,
            utterance.domain,
            utterance.favourite or "",
            str(frames[relative]),
            sha256_file(root / relative),
            relative,
            utterance.written,
        ]
        lines.append("\t".join(columns))
    return "\n".join(lines) + "\n"


def _write_outputs(root: Path, plan: CorpusPlan, frames: Mapping[str, int]) -> Dict[str, Any]:
    """Write utterances.tsv, manifests, vocab.csv and corpus.json; returns the card data."""
    utterances = plan.utterances
    atomic_write_text(root / "utterances.tsv", _utterance_index(utterances, frames, root))
    vocab = Vocabulary.build((utterance.text for utterance in utterances), unit="character")
    vocab.to_csv(root / "vocab.csv")

    groups: Dict[str, List[PlannedUtterance]] = {}
    for utterance in utterances:
        groups.setdefault(f"{utterance.group}/{utterance.split}", []).append(utterance)
    splits: Dict[str, Any] = {}
    for name in _split_names(plan):
        members = sorted(groups.get(name, []), key=lambda u: u.utt_id)
        entries = [
            ManifestEntry(
                audio_path=(root / u.relative_path).resolve(),
                transcript=u.text,
                label_ids=tuple(vocab.encode(u.text, where=u.utt_id)),
                speaker=u.speaker.speaker_id,
            )
            for u in members
        ]
        manifest = f"{name}.tsv"
        write_manifest(root / manifest, entries)
        split_frames = sum(frames[u.relative_path] for u in members)
        splits[name] = {
            "manifest": manifest,
            "utterances": len(members),
            "seconds": round(split_frames / SAMPLE_RATE, 2),
            "hours": _hours(split_frames),
            "speakers": sorted({u.speaker.speaker_id for u in members}),
            "channels": sorted({u.channel.channel_id for u in members}),
        }

    base_train_texts = [u.text for u in groups.get("base/train", [])]
    users = []
    for user in plan.users:
        favourite_words = [word for kind in FAVOURITE_KINDS for word in user.favourites[kind]]
        counts = {"base_train": sum(_count_word(word, base_train_texts) for word in favourite_words)}
        for split in USER_SPLITS:
            texts = [u.text for u in groups.get(f"users/{user.user_id}/{split}", [])]
            counts[split] = sum(_count_word(word, texts) for word in favourite_words)
        users.append(
            {
                "id": user.user_id,
                "speaker": user.speaker.speaker_id,
                "channel": user.channel.channel_id,
                "channel_kind": user.channel.kind,
                "favourite_words": {kind: list(user.favourites[kind]) for kind in FAVOURITE_KINDS},
                "favourite_word_counts": counts,
                "manifests": {split: f"users/{user.user_id}/{split}.tsv" for split in USER_SPLITS},
            }
        )

    domains: Dict[str, int] = {}
    for utterance in utterances:
        domains[utterance.domain] = domains.get(utterance.domain, 0) + 1
    total_frames = sum(frames[u.relative_path] for u in utterances)
    files = {
        name: sha256_file(root / name)
        for name in ["utterances.tsv", "vocab.csv"] + [split["manifest"] for split in splits.values()]
    }
    card = {
        **_requested_config(plan.preset, plan.seed, plan.sizes),
        "name": "kospeech synthetic Korean speech corpus",
        "sample_rate": SAMPLE_RATE,
        "audio": "16 kHz mono 16-bit PCM WAV",
        "build": {
            "kospeech": kospeech.__version__,
            "espeak_ng": espeak_version(),
            "synthesizer": "espeak-ng via espeakng-loader, one forked process per utterance",
        },
        "speakers": [{"role": "base", **s.to_dict()} for s in plan.base_speakers]
        + [{"role": "user", **user.speaker.to_dict()} for user in plan.users],
        "channels": [c.to_dict() for c in plan.base_channels] + [user.channel.to_dict() for user in plan.users],
        "users": users,
        "splits": splits,
        "domains": dict(sorted(domains.items())),
        "vocab": {"path": "vocab.csv", "unit": "character", "size": len(vocab), "fingerprint": vocab.fingerprint()},
        "totals": {
            "utterances": len(utterances),
            "seconds": round(total_frames / SAMPLE_RATE, 2),
            "hours": _hours(total_frames),
        },
        "files": files,
    }
    atomic_write_json(root / "corpus.json", card, sort_keys=True)
    return card


def build_corpus(
    out_dir: PathLike,
    preset: str = "tiny",
    seed: int = 0,
    num_workers: Optional[int] = None,
    **overrides: Any,
) -> CorpusCard:
    """Build (or complete) a synthetic corpus in ``out_dir``, reusing every cached wav.

    Args:
        out_dir: the corpus folder (created if needed).
        preset: ``tiny`` (tests, seconds), ``demo`` (a few CPU minutes) or ``bench`` (large).
        seed: the corpus seed; the same seed gives byte-identical files.
        num_workers: synthesis processes (default: the number of usable CPU cores).
        **overrides: :class:`CorpusSizes` fields to change, e.g. ``num_base_speakers=4``.

    Returns:
        The corpus card.

    Raises:
        ValueError: unknown preset or override, invalid sizes or seed.
    """
    started = time.perf_counter()
    root = Path(out_dir)
    plan = plan_corpus(preset, seed, **overrides)
    workers = usable_cpu_cores() if num_workers is None else num_workers
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"num_workers must be a positive int or None, got {num_workers!r}")
    root.mkdir(parents=True, exist_ok=True)
    frames, rendered = _synthesize_missing(root, plan.utterances, workers, _read_index(root / "utterances.tsv"))
    _remove_stale_files(root, plan)
    _write_outputs(root, plan, frames)
    card = CorpusCard.load(root)
    logger.info(
        "%s (%d synthesized, %d reused) in %.1f s",
        card.summary(),
        rendered,
        len(plan.utterances) - rendered,
        time.perf_counter() - started,
    )
    return card


def ensure_corpus(
    out_dir: PathLike,
    preset: str = "tiny",
    seed: int = 0,
    num_workers: Optional[int] = None,
    **overrides: Any,
) -> CorpusCard:
    """Return the corpus in ``out_dir`` if it is complete and was built with these settings, else build it.

    The quick check reads the card, compares preset, seed, sizes and code versions, checks the recorded
    checksums of the manifests, vocabulary and index, and that every wav listed in the index exists.

    Without size overrides (none passed, or all ``None``, as training jobs call it), the corpus card already in
    ``out_dir`` decides the sizes when it is a corpus of the same preset and seed: a corpus built with overrides
    (``bin/make_corpus.py preset=demo num_base_speakers=12``) is checked and, where files are missing or damaged,
    completed at the sizes it was built with, never rebuilt at the preset's; one INFO line names the sizes kept.
    Explicit overrides that differ from the card's rebuild the corpus at the sizes asked for, which deletes the files
    of the old sizes that the new ones do not use. A corpus of another preset or seed in ``out_dir`` is never rebuilt
    here (that would delete much of it, as a side effect of a training job's default preset): it is refused, and
    ``bin/make_corpus.py`` rebuilds a folder on purpose.

    Args:
        out_dir: the corpus folder.
        preset: see :func:`build_corpus`.
        seed: see :func:`build_corpus`.
        num_workers: see :func:`build_corpus`.
        **overrides: see :func:`build_corpus`; left out, the sizes of the corpus of ``preset`` and ``seed`` already in
            ``out_dir`` (the preset's when there is none).

    Returns:
        The corpus card.

    Raises:
        ValueError: unknown preset or override, invalid sizes or seed.
        ConfigError: ``out_dir`` holds a corpus of another preset or seed.
    """
    root = Path(out_dir)
    sizes = resolve_sizes(preset, overrides)
    recorded = _recorded_sizes(root, preset, seed)  # refuses a corpus of another preset or seed
    if recorded is not None and recorded != sizes and all(value is None for value in overrides.values()):
        kept = ", ".join(
            f"{name}={value} (preset: {getattr(sizes, name)})"
            for name, value in dataclasses.asdict(recorded).items()
            if value != getattr(sizes, name)
        )
        logger.info(
            "keeping the sizes the %s corpus in %s was built with: %s (pass sizes to rebuild it at others)",
            preset,
            root,
            kept,
        )
        sizes = recorded
    if _is_complete(root, _requested_config(preset, seed, sizes)):
        card = CorpusCard.load(root)
        logger.info("using cached %s", card.summary())
        return card
    return build_corpus(root, preset=preset, seed=seed, num_workers=num_workers, **dataclasses.asdict(sizes))


def _recorded_sizes(root: Path, preset: str, seed: int) -> Optional[CorpusSizes]:
    """The sizes the card in ``root`` records, when it is a corpus of ``preset`` and ``seed``.

    No card, or an unreadable one (one without a preset or seed included), gives ``None``: the build that follows
    replaces it, as it did before cards kept sizes.

    Raises:
        ConfigError: the card is of another preset or seed (rebuilding it here would delete much of it).
    """
    try:
        card = CorpusCard.load(root)
    except (FileNotFoundError, InputError):
        return None
    found = (card.data.get("preset"), card.data.get("seed"))
    if None in found:
        return None
    if found != (preset, seed):
        raise ConfigError(
            f"{root} holds the {found[0]!r} corpus of seed {found[1]}, not the {preset!r} corpus of seed {seed} "
            "asked for: ask for that corpus (a training job's data.corpus_preset and data.corpus_seed), use another "
            f"folder, or rebuild this one on purpose with bin/make_corpus.py preset={preset} seed={seed} out_dir={root}"
        )
    try:
        return card.sizes
    except InputError:  # sizes the build replaces (ConfigError is one too, hence not in the first try)
        return None


def _is_complete(root: Path, expected: Mapping[str, Any]) -> bool:
    try:
        card = CorpusCard.load(root)
    except (FileNotFoundError, InputError):
        return False
    if any(card.data.get(key) != value for key, value in expected.items()):
        return False
    files = card.data.get("files", {})
    if not files:
        return False
    for name, digest in files.items():
        path = root / name
        if not path.is_file() or sha256_file(path) != digest:
            return False
    return all((root / relative).is_file() for relative in _read_index(root / "utterances.tsv"))


def build_user_sets(
    out_dir: PathLike,
    vocab: Vocabulary,
    *,
    preset: Optional[str] = None,
    seed: Optional[int] = None,
    users: Optional[Sequence[str]] = None,
    max_enroll: Optional[int] = None,
    max_test: Optional[int] = None,
    num_workers: int = 1,
    group: str = USERS_GROUP,
    corpus: Optional[PathLike] = None,
    **overrides: Any,
) -> Dict[str, Dict[str, Path]]:
    """Synthesize only some held-out users' utterances of a corpus plan, with manifests in ``vocab``'s ids.

    A cheap way to get a user's enrollment and test sets that match a base model trained on the full
    corpus of the same preset, seed and sizes (same sentences, voices and channels), without building the
    base speakers' audio. The files are the ones :func:`build_corpus` would write for these users. With
    ``group="challenge"`` the users are the plan's challenge users (:func:`plan_challenge`), with ``group="sealed"``
    its sealed users (:func:`plan_sealed`, for a final measurement only); only this function builds them.

    The plan is the one of the corpus the base model was trained on: ``corpus`` names a built corpus whose card gives
    preset, seed and sizes; without it, pass the ``preset``, ``seed`` and size ``overrides`` that corpus was built
    with (the users of a corpus built with ``num_base_speakers=12`` are not the preset's users). Before anything is
    synthesized, the chosen sentences are checked against the base set (the corpus' base manifests, or the plan's
    base sentences) and every transcript against ``vocab``. Each user folder gets a checksum index
    (``<group>/<user>/utterances.tsv``), so a later run reuses only the cached wavs that match it.

    Args:
        out_dir: folder that receives ``<group>/<user>/{enroll,test}.tsv``, the index and the wavs.
        vocab: the base model's vocabulary (label ids are encoded with it).
        preset: corpus preset of the plan (default ``"demo"``); not together with ``corpus``.
        seed: corpus seed of the plan (default 0); not together with ``corpus``.
        users: user ids to build (default: every user of the plan).
        max_enroll: keep the first N enrollment utterances of each user (default: all).
        max_test: keep the first N test utterances of each user (default: all).
        num_workers: synthesis processes.
        group: ``"users"`` (the corpus' held-out users), ``"challenge"`` or ``"sealed"``.
        corpus: a built corpus folder: its card gives preset, seed and sizes.
        **overrides: :class:`CorpusSizes` fields the corpus was built with, as for :func:`plan_corpus` (``None``
            keeps the preset's value); not together with ``corpus``.

    Returns:
        ``{user: {"enroll": manifest path, "test": manifest path}}``.

    Raises:
        ValueError: an unknown user id or group.
        ConfigError: (a ValueError) ``corpus`` together with ``preset``, ``seed`` or sizes; unknown or invalid sizes;
            a chosen sentence that is in the base set, naming the utterance ids.
        FileNotFoundError: ``corpus`` holds no corpus card.
        InputError: (a ValueError) the corpus card or a base manifest is unreadable.
        UnknownCharacterError: (an InputError) transcripts outside ``vocab``, raised before any synthesis.
    """
    if group not in USER_GROUPS:
        raise ValueError(f"unknown user group {group!r}; choose one of {USER_GROUPS}")
    root = Path(out_dir)
    plan, base_texts, base_name = _user_sets_plan(corpus, preset, seed, overrides)
    if group == USERS_GROUP:
        planned_users, planned = plan.users, plan.utterances
    else:
        planned_users, planned = (plan_challenge if group == CHALLENGE_GROUP else plan_sealed)(plan)
    known = [user.user_id for user in planned_users]
    wanted = list(known if users is None else users)
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ValueError(f"unknown users {unknown}; the {plan.preset!r} plan with seed {plan.seed} has {known}")
    limits = {"enroll": max_enroll, "test": max_test}
    chosen: Dict[Tuple[str, str], List[PlannedUtterance]] = {}
    for utterance in sorted(planned, key=lambda u: u.utt_id):
        user_id = utterance.group.split("/", 1)[-1]
        if not utterance.group.startswith(f"{group}/") or user_id not in wanted:
            continue
        members = chosen.setdefault((user_id, utterance.split), [])
        limit = limits.get(utterance.split)
        if limit is None or len(members) < limit:
            members.append(utterance)
    selected = [u for members in chosen.values() for u in members]
    in_base = [u.utt_id for u in selected if u.text in base_texts]
    if in_base:
        raise ConfigError(
            f"{len(in_base)} {group} sentences are in the base set of {base_name}: {in_base[:10]}; their scores would "
            "measure sentences the base model was trained on. Build them from the corpus the base model was trained "
            "on (corpus=its folder, or the preset, seed and sizes it was built with)"
        )
    _check_vocabulary(vocab, group, selected)
    root.mkdir(parents=True, exist_ok=True)
    indexes = {user_id: root / group / user_id / "utterances.tsv" for user_id, _ in chosen}
    previous: Dict[str, str] = {}
    for index in indexes.values():
        previous.update(_read_index(index))
    frames, _ = _synthesize_missing(root, selected, num_workers, previous)
    for user_id, index in indexes.items():
        user_utterances = [u for (owner, _), members in sorted(chosen.items()) if owner == user_id for u in members]
        _write_user_index(root, index, user_utterances, frames)
    manifests: Dict[str, Dict[str, Path]] = {}
    for (user_id, split), members in sorted(chosen.items()):
        entries = [
            ManifestEntry(
                audio_path=(root / u.relative_path).resolve(),
                transcript=u.text,
                label_ids=tuple(vocab.encode(u.text, where=u.utt_id)),
                speaker=user_id,
            )
            for u in members
        ]
        manifests.setdefault(user_id, {})[split] = write_manifest(root / group / user_id / f"{split}.tsv", entries)
    return manifests


def _user_sets_plan(
    corpus: Optional[PathLike], preset: Optional[str], seed: Optional[int], overrides: Mapping[str, Any]
) -> Tuple[CorpusPlan, Set[str], str]:
    """The plan :func:`build_user_sets` works from, the sentences of the base set and what that base set is.

    Raises:
        ConfigError: ``corpus`` together with ``preset``, ``seed`` or sizes.
    """
    if corpus is None:
        plan = plan_corpus("demo" if preset is None else preset, 0 if seed is None else seed, **overrides)
        arguments = [repr(plan.preset), str(plan.seed)]
        arguments += [f"{name}={value!r}" for name, value in overrides.items() if value is not None]
        return plan, {u.text for u in plan.utterances if u.group == "base"}, f"plan_corpus({', '.join(arguments)})"
    given = {name: value for name, value in {"preset": preset, "seed": seed, **overrides}.items() if value is not None}
    if given:
        raise ConfigError(
            f"build_user_sets: corpus={str(corpus)!r} takes preset, seed and sizes from its card; leave out "
            + ", ".join(f"{name}={value!r}" for name, value in given.items())
        )
    card = CorpusCard.load(corpus)
    plan = plan_corpus(card.preset, card.seed, **dataclasses.asdict(card.sizes))
    # The manifests, not the plan: they are what a base model trained on this corpus read.
    texts = {
        entry.transcript
        for split in BASE_SPLITS
        for entry in read_manifest(card.base_manifest(split), check_audio_exists=False)
    }
    return plan, texts, f"the corpus in {card.root}"


def _check_vocabulary(vocab: Vocabulary, group: str, utterances: Sequence[PlannedUtterance]) -> None:
    """Refuse transcripts with units outside ``vocab`` before any of them is synthesized.

    Raises:
        UnknownCharacterError: naming the group, how many texts miss units and the first missing ones.
    """
    known = set(vocab.tokens[len(SPECIAL_TOKENS) :])
    missing: Dict[str, None] = {}  # an ordered set: the first missing units in plan order
    short = 0
    for utterance in utterances:
        unknown = [unit for unit in vocab.tokenize(utterance.text) if unit not in known]
        short += bool(unknown)
        missing.update(dict.fromkeys(unknown))
    if not short:
        return
    hint = ""
    if vocab.unit == "character":
        reason = (
            "these groups use syllables outside a character base's vocabulary"
            if group != USERS_GROUP
            else "a character vocabulary holds only the syllables of the texts it was built from"
        )
        hint = f"; {reason}: use a grapheme (jamo) vocabulary like the shipped base's (pretrained/ds2_synthetic.pt)"
    raise UnknownCharacterError(
        f"{short} of {len(utterances)} {group} texts hold characters outside the {vocab.unit} vocabulary "
        f"({len(vocab)} tokens), first missing: {list(missing)[:10]}; nothing was synthesized{hint}"
    )


def _write_user_index(
    root: Path, path: Path, utterances: Sequence[PlannedUtterance], frames: Mapping[str, int]
) -> None:
    """Write a user's checksum index ``path`` (the layout of ``utterances.tsv``, paths relative to ``root``).

    It lists ``utterances`` and keeps the earlier lines of other wavs that still exist: a run with a smaller
    ``max_enroll`` must not drop the checksums of the files a larger run made.
    """
    header, *lines = _utterance_index(utterances, frames, root).splitlines()
    columns = header.split("\t")
    path_column = columns.index("audio_path")
    listed = {line.split("\t")[path_column] for line in lines}
    earlier = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    if earlier and earlier[0] == header:
        for line in earlier[1:]:
            fields = line.split("\t")
            if (
                len(fields) == len(columns)
                and fields[path_column] not in listed
                and (root / fields[path_column]).is_file()
            ):
                lines.append(line)
    atomic_write_text(path, "\n".join([header] + sorted(lines)) + "\n")
