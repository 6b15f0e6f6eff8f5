"""Audio I/O, features, manifests, datasets and batching.

KsponSpeech preprocessing lives in :mod:`kospeech.data.ksponspeech`, the built-in corpus in
:mod:`kospeech.data.synthetic`, text normalization in :mod:`kospeech.data.text_normalization`.
"""

from kospeech.data.audio import (
    AudioError,
    AudioInfo,
    audio_duration,
    audio_info,
    iter_audio_chunks,
    load_audio,
    save_audio,
)
from kospeech.data.collate import PAD_ID, SpeechBatch, collate_speech_batch
from kospeech.data.dataset import SpeechDataset, build_dataloader
from kospeech.data.features import FEATURE_TYPES, FeatureConfig, FeatureExtractor, SpecAugment
from kospeech.data.manifest import ManifestEntry, ManifestError, read_manifest, write_manifest
from kospeech.data.sampler import BucketBatchSampler, SampleKey

__all__ = [
    "AudioError",
    "AudioInfo",
    "audio_duration",
    "audio_info",
    "iter_audio_chunks",
    "load_audio",
    "save_audio",
    "PAD_ID",
    "SpeechBatch",
    "collate_speech_batch",
    "SpeechDataset",
    "build_dataloader",
    "FEATURE_TYPES",
    "FeatureConfig",
    "FeatureExtractor",
    "SpecAugment",
    "ManifestEntry",
    "ManifestError",
    "read_manifest",
    "write_manifest",
    "BucketBatchSampler",
    "SampleKey",
]
