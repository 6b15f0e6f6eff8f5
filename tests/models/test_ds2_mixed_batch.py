"""DeepSpeech2.forward_mixed: one trunk pass, per-row adapters, base rows bitwise equal to the base model."""

import math

import pytest
import torch

from kospeech.models import AdapterCompatibilityError, DeepSpeech2, build_adapter
from kospeech.models.adapter import apply_encoder_adapter, apply_head_adapter

ADAPTER_TYPES = ["head", "residual_head", "encoder"]


def make_adapter(model: DeepSpeech2, adapter_type: str, seed: int, scale: float = 0.4):
    """A fitting adapter with non-trivial random weights (not the zero-initialized no-op), in eval mode."""
    torch.manual_seed(seed)
    if adapter_type == "encoder":
        adapter = build_adapter("encoder", model.rnn_output_dim, [4], model.rnn_output_dim, 0.1, model.num_rnn_layers)
    else:
        adapter = build_adapter(adapter_type, model.rnn_output_dim, [8], model.num_classes, 0.1)
    with torch.no_grad():
        for parameter in adapter.parameters():
            parameter.add_(torch.randn_like(parameter) * scale)
    return adapter.eval()


def alone_with(model: DeepSpeech2, adapter, inputs: torch.Tensor, lengths: torch.Tensor, row: int) -> torch.Tensor:
    """Row ``row`` run alone (unpadded) through ``model`` with ``adapter`` attached: the oracle."""
    length = int(lengths[row])
    model.attach_adapter(adapter, replace=True)
    try:
        _, _, adapted = model(inputs[row : row + 1, :length], lengths[row : row + 1])
    finally:
        model.remove_adapter()
    return adapted[0]


@pytest.fixture
def batch():
    """Six rows of different lengths, with large garbage in the padding."""
    generator = torch.Generator().manual_seed(11)
    lengths = torch.tensor([23, 9, 16, 20, 5, 12])
    inputs = torch.randn(6, 23, 16, generator=generator)
    for row, length in enumerate(lengths.tolist()):
        inputs[row, length:] = torch.randn(23 - length, 16, generator=generator) * 50.0
    return inputs, lengths


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("adapter_type", ADAPTER_TYPES)
def test_mixed_batch_equals_each_row_alone_and_base_rows_are_bitwise_base(make_model, batch, adapter_type, device):
    model = make_model().to(device)
    inputs, lengths = batch
    inputs = inputs.to(device)
    first = make_adapter(model, adapter_type, seed=1).to(device)
    second = make_adapter(model, adapter_type, seed=2).to(device)
    groups = [(torch.tensor([0, 3]), first), ([4, 1], second)]  # rows 2 and 5: base
    # cuDNN convolutions run in TF32 by default: a row's output then moves ~1e-4 with the batch it is in
    tolerance = 1e-5 if device == "cpu" else 1e-3
    with torch.inference_mode():
        mixed, output_lengths = model.forward_mixed(inputs, lengths, groups)
        base, base_lengths = model(inputs, lengths)
        assert torch.equal(output_lengths, base_lengths)
        for row in (2, 5):
            assert torch.equal(mixed[row], base[row])
        for rows, adapter in ((groups[0][0].tolist(), first), (groups[1][0], second)):
            for row in rows:
                frames = math.ceil(int(lengths[row]) / 2)
                oracle = alone_with(model, adapter, inputs, lengths, row)
                assert (mixed[row, :frames] - oracle).abs().max() <= tolerance
                assert (mixed[row, :frames] - base[row, :frames]).abs().max() > 1e-2  # the adapter matters
    assert model.adapter is None


def test_all_adapter_types_in_one_batch(make_model, batch):
    model = make_model(seed=5)
    inputs, lengths = batch
    adapters = {kind: make_adapter(model, kind, seed=index + 10) for index, kind in enumerate(ADAPTER_TYPES)}
    groups = [([1], adapters["encoder"]), ([0, 5], adapters["head"]), ([3], adapters["residual_head"])]
    with torch.inference_mode():
        mixed, _ = model.forward_mixed(inputs, lengths, groups)
        base, _ = model(inputs, lengths)
        for row in (2, 4):
            assert torch.equal(mixed[row], base[row])
        for rows, adapter in groups:
            for row in rows:
                frames = math.ceil(int(lengths[row]) / 2)
                oracle = alone_with(model, adapter, inputs, lengths, row)
                assert (mixed[row, :frames] - oracle).abs().max() <= 1e-5


def test_mixed_batch_from_the_extractor_output_of_each_row_alone_equals_the_full_pass(make_model, batch):
    """What a server does: every row's extractor run alone (no user changes it), then one mixed pass from there."""
    model = make_model(seed=6)
    inputs, lengths = batch
    adapters = {kind: make_adapter(model, kind, seed=index + 20) for index, kind in enumerate(ADAPTER_TYPES)}
    groups = [([1, 4], adapters["encoder"]), ([0], adapters["head"]), ([3], adapters["residual_head"])]
    with torch.inference_mode():
        full, full_lengths = model.forward_mixed(inputs, lengths, groups)
        rows = [
            model.run(inputs[row : row + 1, : int(length)], lengths[row : row + 1], to_layer=0)[0][0]
            for row, length in enumerate(lengths)
        ]
        extracted = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)  # (B, T', F_conv)
        extracted_lengths = torch.tensor([row.shape[0] for row in rows])
        resumed, resumed_lengths = model.forward_mixed(extracted, extracted_lengths, groups, from_layer=0)
    assert torch.equal(resumed_lengths, full_lengths)
    for row, frames in enumerate(full_lengths.tolist()):
        assert (resumed[row, :frames] - full[row, :frames]).abs().max() <= 1e-5


def test_a_start_past_an_adapter_s_first_call_point_is_refused(make_model, batch):
    """Review, stop 37: from RNN layer 1's output, an encoder adapter's calls on the extractor's output and after
    layer 0 were skipped without a word (outputs off by up to 0.9); a head adapter may start anywhere."""
    model = make_model(seed=7)
    inputs, lengths = batch
    encoder, head = make_adapter(model, "encoder", seed=30), make_adapter(model, "head", seed=31)
    with torch.inference_mode():
        after_layer_0, point_lengths = model.run(inputs, lengths, to_layer=1)
        with pytest.raises(ValueError, match=r"from_layer=1 is past point 0, where 'encoder' adapters are first"):
            model.forward_mixed(after_layer_0, point_lengths, [([0, 1], encoder)], from_layer=1)
        resumed, _ = model.forward_mixed(after_layer_0, point_lengths, [([0, 1], head)], from_layer=1)
        full, _ = model.forward_mixed(inputs, lengths, [([0, 1], head)])
    assert (resumed - full).abs().max() <= 1e-5


def test_no_groups_is_the_base_model_and_the_attached_adapter_is_ignored(make_model, batch):
    model = make_model(seed=2, use_adapter=True, adapter_type="head")
    inputs, lengths = batch
    with torch.inference_mode():
        base_log_probs, _, adapter_log_probs = model(inputs, lengths)
        mixed, _ = model.forward_mixed(inputs, lengths, [])
    assert torch.equal(mixed, base_log_probs)
    assert not torch.equal(mixed, adapter_log_probs)


def test_call_point_helpers_match_the_model_methods(make_model, batch):
    model = make_model(seed=3)
    inputs, lengths = batch
    head = make_adapter(model, "residual_head", seed=4)
    encoder = make_adapter(model, "encoder", seed=5)
    with torch.no_grad():
        features, _ = model.encode(inputs, lengths)
        logits = model.fc(features)
        model.attach_adapter(head)
        assert torch.equal(apply_head_adapter(head, features, logits), model.head(features))
        mask = torch.ones(features.shape[:2] + (1,), dtype=torch.bool)
        assert torch.equal(apply_encoder_adapter(encoder, 0, features, mask), features + encoder(features, 0))
    with pytest.raises(ValueError, match="'encoder' adapter"):
        apply_head_adapter(encoder, features, logits)
    with pytest.raises(ValueError, match="takes an 'encoder' adapter"):
        apply_encoder_adapter(head, 0, features, mask)


def test_mixed_batch_refuses_bad_groups(make_model, batch):
    model = make_model()
    inputs, lengths = batch
    adapter = make_adapter(model, "head", seed=1)
    with pytest.raises(ValueError, match="repeat a row"):
        model.forward_mixed(inputs, lengths, [([0, 1], adapter), ([1], adapter)])
    with pytest.raises(ValueError, match="repeat a row"):
        model.forward_mixed(inputs, lengths, [([2, 2], adapter)])
    with pytest.raises(ValueError, match=r"lie in \[0, 6\)"):
        model.forward_mixed(inputs, lengths, [([6], adapter)])
    with pytest.raises(ValueError, match="integers"):
        model.forward_mixed(inputs, lengths, [(torch.tensor([0.0]), adapter)])
    with torch.inference_mode():  # an empty group is dropped, as a list or as a tensor
        for empty in ([], (), torch.tensor([], dtype=torch.long)):
            mixed, _ = model.forward_mixed(inputs, lengths, [(empty, adapter), ([1], adapter)])
            assert torch.equal(mixed, model.forward_mixed(inputs, lengths, [([1], adapter)])[0])
    with pytest.raises(TypeError, match="adapter module"):
        model.forward_mixed(inputs, lengths, [([0], "user_a")])
    other = DeepSpeech2(16, 7, num_rnn_layers=2, rnn_hidden_dim=16)
    with pytest.raises(AdapterCompatibilityError, match="num_classes"):
        model.forward_mixed(inputs, lengths, [([0], make_adapter(other, "head", seed=1))])
    adapter.train()
    with pytest.raises(ValueError, match="training mode"):
        model.forward_mixed(inputs, lengths, [([0], adapter)])
    adapter.eval()
    model.train()
    with pytest.raises(ValueError, match="inference only"):
        model.forward_mixed(inputs, lengths, [([0], adapter)])


def test_lengths_at_a_later_trunk_point_are_checked_as_from_the_features(make_model, batch):
    """Review, stop 38: with ``from_layer`` the lengths went unchecked (float lengths came back as float lengths, 0
    or too long gave torch errors deep in packing)."""
    model = make_model(seed=8)
    inputs, lengths = batch
    with torch.inference_mode():
        extracted, point_lengths = model.run(inputs, lengths, to_layer=0)
        frames = extracted.size(1)
        cases = [
            (point_lengths.float(), "must be an integer tensor"),
            (point_lengths.clamp(max=0), r"must lie in \[1, T'="),
            (point_lengths + frames, rf"must lie in \[1, T'={frames}\]"),
            (point_lengths[:2], r"must have shape \(6,\)"),
        ]
        for bad, message in cases:
            with pytest.raises(ValueError, match=message):
                model.forward_mixed(extracted, bad, [], from_layer=0)
            with pytest.raises(ValueError, match=message):
                model.run(extracted, bad, from_layer=0)
