"""DeepSpeech2: shapes, padding invariance, adapters at init, freezing, state_dict loading, fingerprints."""

import math

import pytest
import torch
import torch.nn.functional as F

from kospeech.fileio import atomic_torch_save, safe_torch_load
from kospeech.models import (
    AdapterCompatibilityError,
    DeepSpeech2,
    EncoderAdapter,
    MLPAdapter,
    ResidualHeadAdapter,
    count_parameters,
)

ADAPTER_TYPES = ["head", "residual_head", "encoder"]


@pytest.mark.parametrize("rnn_type", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_shapes_and_lengths(make_model, padded_batch, rnn_type, bidirectional):
    model = make_model(rnn_type=rnn_type, bidirectional=bidirectional)
    inputs, lengths = padded_batch
    log_probs, output_lengths = model(inputs, lengths)
    assert log_probs.shape == (3, math.ceil(23 / 2), 12)
    assert output_lengths.tolist() == [12, 5, 8]
    assert output_lengths.dtype == torch.int64
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3, 12), atol=1e-5)
    features, encode_lengths = model.encode(inputs, lengths)
    assert features.shape == (3, 12, 16 * (2 if bidirectional else 1))
    assert torch.equal(encode_lengths, output_lengths)
    assert torch.allclose(model.head(features), log_probs)
    assert torch.equal(model.output_lengths(lengths), output_lengths)


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
@pytest.mark.parametrize("adapter_type", [None, "head", "encoder"])
def test_eval_output_alone_equals_output_in_padded_batch(make_model, perturb, padded_batch, rnn_type, adapter_type):
    if adapter_type is None:
        model = make_model(rnn_type=rnn_type)
    else:
        model = make_model(rnn_type=rnn_type, use_adapter=True, adapter_type=adapter_type)
        perturb(model)
    inputs, lengths = padded_batch
    batch_outputs = model(inputs, lengths)
    for row, length in enumerate(lengths.tolist()):
        alone = model(inputs[row : row + 1, :length], lengths[row : row + 1])
        frames = math.ceil(length / 2)
        for batched, single in zip(batch_outputs, alone):
            if batched.dim() == 3:
                assert (batched[row, :frames] - single[0]).abs().max() <= 1e-5
            else:
                assert batched[row] == single[0]


@pytest.mark.parametrize("adapter_type", ["residual_head", "encoder"])
def test_residual_adapters_are_exact_no_ops_at_init(make_model, padded_batch, adapter_type):
    base = make_model(seed=3)
    model = make_model(seed=4, use_adapter=True, adapter_type=adapter_type)
    model.load_base_state_dict(base.state_dict())
    inputs, lengths = padded_batch
    base_log_probs, _, adapter_log_probs = model(inputs, lengths)
    assert (adapter_log_probs - base_log_probs).abs().max() <= 1e-6
    assert (base(inputs, lengths)[0] - base_log_probs).abs().max() <= 1e-6


def test_head_adapter_replaces_the_base_output(make_model, padded_batch):
    model = make_model(use_adapter=True, adapter_type="head")
    inputs, lengths = padded_batch
    base_log_probs, _, adapter_log_probs = model(inputs, lengths)
    features, _ = model.encode(inputs, lengths)
    assert torch.allclose(adapter_log_probs, model.adapter(features))
    assert (adapter_log_probs - base_log_probs).abs().max() > 1e-2


@pytest.mark.parametrize("adapter_type", ADAPTER_TYPES)
def test_plain_checkpoint_loads_into_adapter_model_with_same_base_outputs(
    tmp_path, make_model, padded_batch, adapter_type
):
    plain = make_model(seed=1)
    atomic_torch_save({"model": plain.state_dict()}, tmp_path / "base.pt")
    state_dict = safe_torch_load(tmp_path / "base.pt", what="checkpoint")["model"]

    model = DeepSpeech2(16, 12, num_rnn_layers=2, rnn_hidden_dim=16, use_adapter=True, adapter_type=adapter_type)
    missing = model.load_base_state_dict(state_dict)
    assert missing and all(key.startswith("adapter.") for key in missing)
    assert sorted(missing) == sorted(f"adapter.{key}" for key in model.adapter_state_dict())
    model.eval()
    inputs, lengths = padded_batch
    expected, expected_lengths = plain(inputs, lengths)
    base_log_probs, output_lengths, _ = model(inputs, lengths)
    assert torch.equal(base_log_probs, expected)
    assert torch.equal(output_lengths, expected_lengths)

    other = DeepSpeech2(16, 12, num_rnn_layers=2, rnn_hidden_dim=16, use_adapter=True, adapter_type=adapter_type)
    result = other.load_state_dict(state_dict, strict=False)
    assert result.unexpected_keys == [] and all("adapter" in key for key in result.missing_keys)


def test_load_base_state_dict_names_what_is_wrong(make_model):
    model = make_model()
    state_dict = model.state_dict()
    broken = dict(state_dict)
    del broken["fc.1.weight"]
    with pytest.raises(ValueError, match=r"missing keys \['fc.1.weight'\]"):
        model.load_base_state_dict(broken)
    with pytest.raises(ValueError, match="unexpected keys.*extra.weight"):
        model.load_base_state_dict({**state_dict, "extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"fc.1.weight: expected shape \(12, 32\), found \(13, 32\)"):
        model.load_base_state_dict({**state_dict, "fc.1.weight": torch.zeros(13, 32)})
    adapted = make_model(use_adapter=True)
    with pytest.raises(ValueError, match="adapter weights"):
        model.load_base_state_dict(adapted.state_dict())
    before = model.fc[1].weight.clone()
    with pytest.raises(ValueError):
        model.load_base_state_dict({**{k: v + 1 for k, v in state_dict.items()}, "extra.weight": torch.zeros(1)})
    assert torch.equal(model.fc[1].weight, before)
    assert model.load_base_state_dict(adapted.base_state_dict()) == []


def test_parameter_names_separate_base_and_adapter(make_model):
    for adapter_type in ADAPTER_TYPES:
        model = make_model(use_adapter=True, adapter_type=adapter_type)
        names = [name for name, _ in model.named_parameters()]
        adapter_names = {f"adapter.{name}" for name, _ in model.adapter.named_parameters()}
        assert adapter_names and {name for name in names if "adapter" in name} == adapter_names
    plain = make_model()
    assert not [name for name in plain.state_dict() if "adapter" in name]


def test_adapter_state_dict_keys(make_model):
    head = make_model(use_adapter=True, adapter_type="head", adapter_hidden_dims=[8, 6])
    assert isinstance(head.adapter, MLPAdapter)
    assert list(head.adapter_state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias"]
    residual = make_model(use_adapter=True, adapter_type="residual_head", adapter_hidden_dims=[8, 6])
    assert isinstance(residual.adapter, ResidualHeadAdapter)
    assert list(residual.adapter_state_dict()) == list(head.adapter_state_dict())
    encoder = make_model(use_adapter=True, adapter_type="encoder")
    assert isinstance(encoder.adapter, EncoderAdapter)
    keys = list(encoder.adapter_state_dict())
    assert keys[:6] == [
        "layers.0.norm.weight",
        "layers.0.norm.bias",
        "layers.0.down.weight",
        "layers.0.down.bias",
        "layers.0.up.weight",
        "layers.0.up.bias",
    ]
    assert keys[12:] == [
        f"extractor.{name}" for name in ("norm.weight", "norm.bias", "down.weight", "down.bias", "up.weight", "up.bias")
    ]
    assert encoder.adapter.extractor.down.in_features == encoder.conv.output_dim
    without = make_model(use_adapter=True, adapter_type="encoder", adapter_extractor_bottleneck_dim=0)
    assert without.adapter.extractor is None and list(without.adapter_state_dict()) == keys[:12]


def _snapshot(model):
    return {key: value.clone() for key, value in model.base_state_dict().items()}


@pytest.mark.parametrize("adapter_type", ADAPTER_TYPES)
def test_frozen_base_stays_bit_identical_while_adapter_trains(make_model, padded_batch, adapter_type):
    model = make_model(use_adapter=True, adapter_type=adapter_type, dropout_p=0.5, adapter_dropout_p=0.2)
    model.freeze_base_model()
    model.train()
    assert model.base_frozen and model.training and model.adapter.training
    assert not model.conv.blocks[0][1].training and not model.rnn_layers[0].batch_norm.training
    assert not model.rnn_layers[0].dropout.training
    before = _snapshot(model)
    adapter_before = {key: value.clone() for key, value in model.adapter_state_dict().items()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    assert len(optimizer.param_groups[0]["params"]) == len(list(model.adapter.parameters()))
    inputs, lengths = padded_batch
    targets = torch.tensor([[4, 5, 6], [7, 8, 0], [9, 10, 11]])
    target_lengths = torch.tensor([3, 2, 3])
    for _ in range(3):
        base_log_probs, output_lengths, adapter_log_probs = model(inputs, lengths)
        loss = F.ctc_loss(adapter_log_probs.transpose(0, 1), targets, output_lengths, target_lengths, blank=3)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.train()  # trainers call this every epoch; it must not unfreeze anything
    after = model.base_state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert all(p.grad is None for name, p in model.named_parameters() if "adapter" not in name)
    changed = [not torch.equal(value, model.adapter_state_dict()[key]) for key, value in adapter_before.items()]
    assert any(changed)
    # dropout of the frozen base is off in train mode: the base output is deterministic
    assert torch.equal(model(inputs, lengths)[0], model(inputs, lengths)[0])


def test_unfreeze_restores_training_of_the_base(make_model):
    model = make_model(use_adapter=True)
    model.freeze_base_model()
    model.eval()
    model.train()
    assert not model.rnn_layers[1].batch_norm.training
    model.unfreeze_base_model()
    assert not model.base_frozen
    assert model.rnn_layers[1].batch_norm.training and model.conv.blocks[1][1].training
    assert all(p.requires_grad for p in model.parameters())
    model.freeze_base_model()
    assert count_parameters(model)["trainable"] == sum(p.numel() for p in model.adapter.parameters())


def test_trainable_fraction_of_the_spec_example():
    model = DeepSpeech2(80, 2000, use_adapter=True, adapter_hidden_dims=[512, 256])
    model.freeze_base_model()
    stats = count_parameters(model)
    adapter = (1024 * 512 + 512) + (512 * 256 + 256) + (256 * 2000 + 2000)
    assert stats["trainable"] == adapter == 1_170_128
    assert stats["total"] == stats["trainable"] + stats["frozen"]
    assert stats["frozen"] == sum(p.numel() for p in model.fc.parameters()) + sum(
        p.numel() for module in (model.conv, model.rnn_layers) for p in module.parameters()
    )
    # ~1.2 M trainable out of ~25.9 M: about 4.5 % with this architecture
    assert 4.0 < stats["trainable_percent"] < 5.0


def test_disable_adapter_and_recognize(make_model, perturb, padded_batch):
    model = make_model(use_adapter=True, adapter_type="residual_head")
    perturb(model)
    inputs, lengths = padded_batch
    base_log_probs, _, adapter_log_probs = model(inputs, lengths)
    assert (base_log_probs - adapter_log_probs).abs().max() > 1e-3
    assert torch.equal(model.recognize(inputs, lengths), adapter_log_probs.argmax(-1))
    with model.disable_adapter():
        assert not model.adapter_active
        base_again, _, third = model(inputs, lengths)
        assert torch.equal(third, base_again) and torch.equal(base_again, base_log_probs)
        assert torch.equal(model.recognize(inputs, lengths), base_log_probs.argmax(-1))
    with pytest.raises(RuntimeError, match="boom"):
        with model.disable_adapter():
            raise RuntimeError("boom")
    assert model.adapter_active
    assert torch.equal(model(inputs, lengths)[2], adapter_log_probs)


def test_base_fingerprint_tracks_base_weights_and_buffers_only(make_model, perturb):
    twin = make_model(seed=5)
    model = make_model(seed=6, use_adapter=True)
    assert model.base_fingerprint() != twin.base_fingerprint()
    model.load_base_state_dict(twin.state_dict())
    fingerprint = model.base_fingerprint()
    assert len(fingerprint) == 64 and fingerprint == twin.base_fingerprint()
    perturb(model)
    assert model.base_fingerprint() == fingerprint
    with torch.no_grad():
        model.rnn_layers[0].batch_norm.running_var[0] += 1e-3
    assert model.base_fingerprint() != fingerprint
    twin.rnn_layers[0].batch_norm.num_batches_tracked += 1
    assert twin.base_fingerprint() != fingerprint


def test_add_attach_and_remove_adapters(make_model, padded_batch):
    model = make_model()
    assert not model.use_adapter
    inputs, lengths = padded_batch
    assert len(model(inputs, lengths)) == 2
    model.add_adapter("encoder", bottleneck_dim=4)
    assert model.use_adapter and model.adapter_type == "encoder" and not model.adapter.training
    assert len(model(inputs, lengths)) == 3
    with pytest.raises(ValueError, match="already has"):
        model.add_adapter("head", [8])
    model.add_adapter("head", [8], replace=True)
    assert model.adapter_type == "head"
    with pytest.raises(AdapterCompatibilityError, match="output_dim 7 != num_classes 12"):
        model.attach_adapter(MLPAdapter(32, [4], 7), replace=True)
    with pytest.raises(AdapterCompatibilityError, match="num_layers 3 != num_rnn_layers 2"):
        model.attach_adapter(EncoderAdapter(32, 4, 3), replace=True)
    assert isinstance(model.remove_adapter(), MLPAdapter)
    assert model.adapter is None and len(model(inputs, lengths)) == 2


def test_invalid_arguments_are_rejected(make_model):
    with pytest.raises(ValueError, match="rnn_type"):
        DeepSpeech2(16, 12, rnn_type="gruu")
    with pytest.raises(ValueError, match="adapter_type"):
        DeepSpeech2(16, 12, adapter_type="lora")
    with pytest.raises(ValueError, match="dropout_p"):
        DeepSpeech2(16, 12, dropout_p=1.5)
    with pytest.raises(ValueError, match="hidden_dims"):
        DeepSpeech2(16, 12, num_rnn_layers=1, rnn_hidden_dim=4, use_adapter=True, adapter_hidden_dims=[0])
    model = make_model()
    with pytest.raises(ValueError, match=r"shape \(B, T, 16\)"):
        model(torch.randn(2, 10, 15), torch.tensor([10, 5]))
    with pytest.raises(ValueError, match=r"\[1, T=10\]"):
        model(torch.randn(2, 10, 16), torch.tensor([11, 5]))
    with pytest.raises(ValueError, match=r"\[1, T=10\]"):
        model(torch.randn(2, 10, 16), torch.tensor([10, 0]))
    with pytest.raises(ValueError, match="integer"):
        model(torch.randn(2, 10, 16), torch.tensor([10.0, 5.0]))
    # review, stop 37: an AttributeError ('list' object has no attribute 'dim') and a RuntimeError from inside conv
    with pytest.raises(TypeError, match="input_lengths must be a torch.Tensor, got list"):
        model(torch.randn(2, 10, 16), [10, 5])
    with pytest.raises(ValueError, match="inputs are torch.float64 but the model's weights are torch.float32"):
        model(torch.randn(2, 10, 16, dtype=torch.float64), torch.tensor([10, 5]))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts what it is given: allowed
        model.eval()(torch.randn(2, 10, 16, dtype=torch.bfloat16), torch.tensor([10, 5]))
