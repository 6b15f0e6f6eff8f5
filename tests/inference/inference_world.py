"""Builders of the inference tests' world: a tiny base checkpoint, adapters with non-trivial weights, WAV files."""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from kospeech.checkpoint import save_checkpoint
from kospeech.data.audio import save_audio
from kospeech.data.features import FeatureConfig
from kospeech.model_builder import build_deepspeech2
from kospeech.models import AdapterManager, DeepSpeech2
from kospeech.vocabs import Vocabulary

SAMPLE_RATE = 16000
FEATURES = FeatureConfig(num_mels=16)
MODEL_CONFIG = {"num_rnn_layers": 2, "rnn_hidden_dim": 16}
TOKENS = ["<pad>", "<sos>", "<eos>", "<blank>", " "] + list("가나다라마바사아자차카타파하")
ADAPTER_SIZES = {"head": {"hidden_dims": [8]}, "residual_head": {"hidden_dims": [8]}, "encoder": {"bottleneck_dim": 4}}


def tone(seconds: float, seed: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A few seeded chirpy tones with pauses and a little noise, float32 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    signal = np.zeros_like(t)
    for _ in range(3):
        frequency = rng.uniform(150, 2500)
        signal += np.sin(2 * np.pi * (frequency * t + rng.uniform(50, 400) * t**2))
    envelope = (np.sin(2 * np.pi * rng.uniform(1.5, 4.0) * t) > -0.3).astype(float)
    signal = 0.15 * signal * envelope + 0.01 * rng.standard_normal(t.shape)
    return signal.astype(np.float32)


def perturb(module: torch.nn.Module, seed: int, scale: float = 0.5) -> None:
    """Move every weight of ``module`` away from its initialization (adapters start as exact no-ops)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)


def build_base(seed: int = 0) -> DeepSpeech2:
    """The tiny base model with warmed-up BatchNorm statistics and a bias towards non-blank labels, eval mode."""
    torch.manual_seed(seed)
    model = build_deepspeech2(FEATURES.feature_dim, len(TOKENS), MODEL_CONFIG)
    generator = torch.Generator().manual_seed(seed + 100)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 60, FEATURES.feature_dim, generator=generator), torch.tensor([60, 50, 40, 30]))
        model.fc[1].weight.mul_(4.0)  # sharper outputs: transcripts are not all blank
    return model.eval()


def save_user_adapter(model: DeepSpeech2, adapter_dir: Path, name: str, adapter_type: str, seed: int) -> Path:
    """Attach a fresh adapter, give it random non-trivial weights, save it as ``name``, detach it."""
    model.add_adapter(adapter_type, **ADAPTER_SIZES[adapter_type])
    perturb(model.adapter, seed)
    vocab = Vocabulary(TOKENS)
    try:
        return AdapterManager.save_adapter(
            model, adapter_dir, name, vocab_fingerprint=vocab.fingerprint(), feature_config=FEATURES.to_dict()
        )
    finally:
        model.remove_adapter()


@dataclass
class Setup:
    """Paths of the fixture world."""

    checkpoint: Path
    adapter_dir: Path
    wavs: List[Path]
    users: Dict[str, str]  # user -> adapter type


def write_world(root: Path, adapter_type: str) -> Setup:
    model = build_base()
    vocab = Vocabulary(TOKENS)
    checkpoint = save_checkpoint(
        root / "base.pt",
        model,
        model_config={"input_dim": FEATURES.feature_dim, "num_classes": len(vocab), **MODEL_CONFIG},
        vocab=vocab,
        feature_config=FEATURES,
    )
    adapter_dir = root / "adapters"
    users = {"alice": adapter_type, "bob": adapter_type}
    for seed, (name, kind) in enumerate(users.items(), start=1):
        save_user_adapter(model, adapter_dir, name, kind, seed)
    wavs = [save_audio(root / "wav" / f"utt{i}.wav", tone(0.4 + 0.25 * i, seed=i), SAMPLE_RATE) for i in range(4)]
    return Setup(checkpoint, adapter_dir, wavs, users)
