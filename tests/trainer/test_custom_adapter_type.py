"""A new adapter type registered here alone trains, saves, loads and serves in a mixed batch like a built-in one.

Nothing in the library names these types: placement, merge rule and cache point come from their registry entries.
"""

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from kospeech.checkpoint import save_checkpoint
from kospeech.data.features import FeatureExtractor
from kospeech.data.manifest import read_manifest
from kospeech.inference import Recognizer
from kospeech.models import (
    AdapterManager,
    DeepSpeech2,
    MergeStrategy,
    Placement,
    TrunkDims,
    register_adapter,
    unregister_adapter,
)
from kospeech.trainer import AdapterTrainConfig, AdapterTrainer


@dataclass
class GainConfig:
    dropout_p: float = 0.0


class LayerGain(nn.Module):
    """Replaces each RNN layer's output by ``hidden * (1 + gain_i)``: a per-layer, per-feature learned gain."""

    adapter_type = "test_layer_gain"

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.gains = nn.Parameter(torch.zeros(num_layers, dim))
        self.dim, self.num_layers = dim, num_layers

    def forward(self, hidden: Tensor, layer_index: int) -> Tensor:
        return hidden * (1.0 + self.gains[layer_index])

    def adapter_config(self):
        return {
            "adapter_type": self.adapter_type,
            "input_dim": self.dim,
            "hidden_dims": [],
            "output_dim": self.dim,
            "dropout_p": 0.0,
            "num_layers": self.num_layers,
        }


class LogitBias(nn.Module):
    """Adds a learned bias per class to the base logits."""

    adapter_type = "test_logit_bias"

    def __init__(self, input_dim: int, num_classes: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.input_dim, self.num_classes = input_dim, num_classes

    def forward(self, features: Tensor) -> Tensor:
        return self.bias.expand(*features.shape[:-1], self.num_classes)

    def adapter_config(self):
        return {
            "adapter_type": self.adapter_type,
            "input_dim": self.input_dim,
            "hidden_dims": [],
            "output_dim": self.num_classes,
            "dropout_p": 0.0,
            "num_layers": None,
        }


def _layer_gain_from_fields(input_dim, hidden_dims, output_dim, dropout_p, num_layers):
    if hidden_dims or input_dim != output_dim or num_layers is None:
        raise ValueError("a layer gain has no hidden dims, input_dim == output_dim and num_layers")
    return LayerGain(input_dim, num_layers)


def _logit_bias_from_fields(input_dim, hidden_dims, output_dim, dropout_p, num_layers):
    if hidden_dims or num_layers is not None:
        raise ValueError("a logit bias has no hidden dims and no num_layers")
    return LogitBias(input_dim, output_dim)


TOY_TYPES = {
    "test_layer_gain": dict(
        module_class=LayerGain,
        config_class=GainConfig,
        placement=Placement.RNN_LAYERS,
        merge=MergeStrategy.REPLACE,
        create=lambda config, dims: LayerGain(dims.rnn_output_dim, dims.num_rnn_layers),
        from_fields=_layer_gain_from_fields,
    ),
    "test_logit_bias": dict(
        module_class=LogitBias,
        config_class=GainConfig,
        placement=Placement.HEAD,
        merge=MergeStrategy.RESIDUAL,
        create=lambda config, dims: LogitBias(dims.rnn_output_dim, dims.num_classes),
        from_fields=_logit_bias_from_fields,
    ),
}


@pytest.fixture(params=sorted(TOY_TYPES))
def toy_type(request):
    entry = register_adapter(request.param, **TOY_TYPES[request.param])
    try:
        yield entry
    finally:
        unregister_adapter(request.param)


def test_registry_refuses_duplicates_and_reports_unknown_types(toy_type):
    with pytest.raises(ValueError, match="already registered"):
        register_adapter(toy_type.name, **TOY_TYPES[toy_type.name])
    model = DeepSpeech2(8, 6, num_rnn_layers=2, rnn_hidden_dim=4)
    with pytest.raises(ValueError, match=r"unknown adapter_type 'no_such_type'.*" + toy_type.name):
        model.add_adapter("no_such_type")
    assert model.add_adapter(toy_type.name).adapter_type == toy_type.name
    assert model.trunk_dims == TrunkDims(8, 6, 2, model.conv.output_dim)


def test_a_registered_type_trains_saves_loads_and_serves_a_mixed_batch(
    toy_type, tmp_path, tiny_corpus, corpus_vocab, feature_config
):
    user = sorted(path.name for path in (tiny_corpus / "users").iterdir())[0]
    entries = read_manifest(tiny_corpus / "users" / user / "enroll.tsv", corpus_vocab)
    torch.manual_seed(0)
    model = DeepSpeech2(feature_config.feature_dim, len(corpus_vocab), num_rnn_layers=2, rnn_hidden_dim=16)
    base_path = save_checkpoint(
        tmp_path / "base.pt",
        model,
        vocab=corpus_vocab,
        feature_config=feature_config,
        model_config={
            "input_dim": feature_config.feature_dim,
            "num_classes": len(corpus_vocab),
            "num_rnn_layers": 2,
            "rnn_hidden_dim": 16,
        },
    )
    base_state = {key: value.clone() for key, value in model.base_state_dict().items()}
    config = AdapterTrainConfig(
        base_model_path=str(base_path),
        output_dir=str(tmp_path / "run"),
        adapter_save_dir=str(tmp_path / "adapters"),
        adapter_type=toy_type.name,
        batch_size=8,
        num_epochs=2,
        num_workers=0,
        warmup_steps=1,
        init_lr=5e-2,
        peak_lr=5e-2,
        final_lr=5e-2,
        num_threads=1,
        log_every=1000,
        seed=0,
        device="cpu",
        early_stopping_patience=5,
    )
    trainer = AdapterTrainer(config, corpus_vocab, feature_config, entries)
    trainer.train(model, adapter_name="toy_user")

    # trained through the cache point of its own entry, and the base did not move
    assert trainer.cache_info["point"] == toy_type.cache_point.value
    assert all(torch.equal(value, model.base_state_dict()[key]) for key, value in base_state.items())
    trained = model.adapter.state_dict()
    assert any(value.abs().sum() > 0 for value in trained.values())

    adapter, info = AdapterManager.read_adapter(tmp_path / "adapters" / "toy_user_adapter.pt")
    assert info["adapter_type"] == toy_type.name and isinstance(adapter, toy_type.module_class)
    assert all(torch.equal(adapter.state_dict()[key], value) for key, value in trained.items())

    # a random tiny base gives CER ~1 with or without the toy adapter, which training therefore rejects: serve it anyway
    recognizer = Recognizer.from_checkpoint(base_path, adapter_dir=tmp_path / "adapters", allow_rejected=True)
    wavs = [entry.audio_path for entry in entries[:3]]
    mixed = recognizer.transcribe(wavs, user=["toy_user", None, "toy_user"])
    base = recognizer.transcribe(wavs)
    assert [item.adapter for item in mixed] == ["toy_user", None, "toy_user"]
    assert mixed[1].text == base[1].text and mixed[1].score == pytest.approx(base[1].score, abs=1e-5)

    # each adapted row equals that utterance through the model with the adapter attached
    model.eval()
    extractor = FeatureExtractor(feature_config)
    for row in (0, 2):
        features = extractor.from_file(entries[row].audio_path)
        with torch.no_grad():
            _, _, alone = model(features[None], torch.tensor([features.shape[0]]))
        assert mixed[row].score == pytest.approx(float(alone[0].max(dim=-1).values.sum()), abs=1e-3)
