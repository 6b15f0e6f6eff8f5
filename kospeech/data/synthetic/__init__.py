"""The built-in synthetic multi-speaker Korean speech corpus (SPEC section 2).

Sentences from a deterministic grammar (:mod:`.grammar`), spoken offline by espeak-ng (:mod:`.espeak`) with
sampled speaker and channel profiles (:mod:`.profiles`, :mod:`.channel`), split into base speakers and held-out
users, written as KoSpeech manifests with a vocabulary and a JSON card (:mod:`.corpus`).
"""

from kospeech.data.synthetic.config import CorpusConfig
from kospeech.data.synthetic.corpus import (
    PRESETS,
    SAMPLE_RATE,
    CorpusCard,
    CorpusPlan,
    CorpusSizes,
    PlannedUser,
    PlannedUtterance,
    build_corpus,
    build_user_sets,
    ensure_corpus,
    plan_challenge,
    plan_corpus,
    plan_sealed,
    render_utterance,
)
from kospeech.data.synthetic.espeak import EspeakError, EspeakVoice, available_variants, synthesize, validate_variant
from kospeech.data.synthetic.grammar import Sentence, SentenceGenerator
from kospeech.data.synthetic.profiles import ChannelProfile, SpeakerProfile

__all__ = [
    "CorpusConfig",
    "PRESETS",
    "SAMPLE_RATE",
    "CorpusCard",
    "CorpusPlan",
    "CorpusSizes",
    "PlannedUser",
    "PlannedUtterance",
    "build_corpus",
    "build_user_sets",
    "ensure_corpus",
    "plan_challenge",
    "plan_corpus",
    "plan_sealed",
    "render_utterance",
    "EspeakError",
    "EspeakVoice",
    "available_variants",
    "synthesize",
    "validate_variant",
    "Sentence",
    "SentenceGenerator",
    "ChannelProfile",
    "SpeakerProfile",
]
