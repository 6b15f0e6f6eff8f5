"""MaskConv2d and BNReluRNN: length formula, masking, padding kept out of BatchNorm."""

import copy
import math

import pytest
import torch

from kospeech.models.modules import BNReluRNN, MaskConv2d, conv_output_length, reverse_within_lengths


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 7, 10, 11, 16])
def test_extractor_length_formula_matches_conv_output(frames):
    extractor = MaskConv2d(input_dim=16).eval()
    lengths = torch.arange(1, frames + 1)
    inputs = torch.randn(frames, frames, 16)
    outputs, output_lengths = extractor(inputs, lengths)
    assert outputs.shape == (frames, math.ceil(frames / 2), extractor.output_dim)
    assert output_lengths.tolist() == [math.ceil(length / 2) for length in range(1, frames + 1)]
    assert output_lengths.dtype == torch.int64
    assert torch.equal(extractor.output_lengths(lengths), output_lengths)


def test_extractor_output_dim_follows_frequency_strides():
    # 80 bins -> ceil(80 / 2) = 40 -> ceil(40 / 2) = 20 bins, times 32 channels
    assert MaskConv2d(input_dim=80).output_dim == 640
    assert MaskConv2d(input_dim=81).output_dim == 32 * 21


def test_conv_output_length_is_torch_formula():
    conv = torch.nn.Conv1d(1, 1, kernel_size=5, stride=3, padding=1, dilation=2)
    for length in range(8, 30):
        expected = conv(torch.zeros(1, 1, length)).size(-1)
        assert conv_output_length(torch.tensor(length), 5, 3, 1, 2).item() == expected


def test_extractor_zeroes_padded_frames_and_ignores_padding_content():
    extractor = MaskConv2d(input_dim=16, activation="hardtanh")
    with torch.no_grad():
        for block in extractor.blocks:
            block[1].running_mean.uniform_(-1.0, 1.0)
            block[1].bias.uniform_(0.5, 1.0)  # padded frames would be non-zero without the mask
    extractor.eval()
    inputs = torch.randn(2, 12, 16)
    lengths = torch.tensor([12, 5])
    noisy = inputs.clone()
    noisy[1, 5:] = 100.0
    clean, out_lengths = extractor(inputs, lengths)
    dirty, _ = extractor(noisy, lengths)
    assert out_lengths.tolist() == [6, 3]
    assert torch.equal(clean[1, 3:], torch.zeros_like(clean[1, 3:]))
    assert torch.allclose(clean, dirty, atol=1e-6)
    alone, _ = extractor(inputs[1:, :5], lengths[1:])
    assert torch.allclose(alone[0], clean[1, :3], atol=1e-6)


def test_extractor_relu_activation_and_bad_values():
    extractor = MaskConv2d(input_dim=8, activation="relu")
    assert isinstance(extractor.blocks[0][2], torch.nn.ReLU)
    assert isinstance(MaskConv2d(input_dim=8).blocks[0][2], torch.nn.Hardtanh)
    with pytest.raises(ValueError, match="activation"):
        MaskConv2d(input_dim=8, activation="tanhh")
    with pytest.raises(ValueError, match="input_dim"):
        MaskConv2d(input_dim=0)


@pytest.mark.parametrize("rnn_type", ["gru", "lstm", "rnn"])
def test_bn_relu_rnn_padding_never_reaches_batch_statistics(rnn_type):
    layer = BNReluRNN(input_size=6, hidden_state_dim=5, rnn_type=rnn_type, bidirectional=True, dropout_p=0.0)
    inputs = torch.randn(3, 7, 6)
    lengths = torch.tensor([4, 7, 2])  # unsorted
    for row, length in enumerate(lengths.tolist()):
        inputs[row, length:] = 1000.0
    layer.train()
    outputs = layer(inputs, lengths)
    valid = torch.cat([inputs[row, :length] for row, length in enumerate(lengths.tolist())])
    momentum = layer.batch_norm.momentum
    assert torch.allclose(layer.batch_norm.running_mean, momentum * valid.mean(dim=0), atol=1e-5)
    assert outputs.shape == (3, 7, 10)
    for row, length in enumerate(lengths.tolist()):
        assert torch.equal(outputs[row, length:], torch.zeros_like(outputs[row, length:]))


def test_bn_relu_rnn_accepts_lengths_on_any_order_and_rejects_unknown_type():
    layer = BNReluRNN(input_size=4, hidden_state_dim=3, rnn_type="gru", bidirectional=False).eval()
    inputs = torch.randn(2, 5, 4)
    both = layer(inputs, torch.tensor([3, 5]))
    alone = layer(inputs[:1, :3], torch.tensor([3]))
    assert both.shape == (2, 5, 3)
    assert torch.allclose(both[0, :3], alone[0], atol=1e-6)
    with pytest.raises(ValueError, match="rnn_type"):
        BNReluRNN(4, 3, rnn_type="transformer")


def test_reverse_within_lengths_reverses_valid_frames_and_is_its_own_inverse():
    lengths = torch.tensor([3, 5, 1])
    order = reverse_within_lengths(lengths, 5)
    assert order.tolist() == [[2, 1, 0, 3, 4], [4, 3, 2, 1, 0], [0, 1, 2, 3, 4]]
    values = torch.randn(3, 5, 2)
    index = order.unsqueeze(-1).expand(-1, -1, 2)
    assert torch.equal(values.gather(1, index).gather(1, index), values)


def _run_path(layer, inputs, lengths, padded, upstream):
    """Outputs and gradients (input and every parameter) of one training step on one RNN path."""
    previous = BNReluRNN.padded_cpu_training
    BNReluRNN.padded_cpu_training = padded
    try:
        inputs = inputs.clone().requires_grad_(True)
        outputs = layer(inputs, lengths)
        (outputs * upstream).sum().backward()
    finally:
        BNReluRNN.padded_cpu_training = previous
    grads = {name: parameter.grad.clone() for name, parameter in layer.named_parameters()}
    layer.zero_grad()
    return outputs.detach(), inputs.grad, grads


@pytest.mark.parametrize("rnn_type", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_bn_relu_rnn_padded_cpu_path_matches_packed_path(rnn_type, bidirectional):
    torch.manual_seed(0)
    packed_layer = BNReluRNN(6, 5, rnn_type=rnn_type, bidirectional=bidirectional, dropout_p=0.0).train()
    padded_layer = BNReluRNN(6, 5, rnn_type=rnn_type, bidirectional=bidirectional, dropout_p=0.0).train()
    padded_layer.load_state_dict(packed_layer.state_dict())
    inputs = torch.randn(4, 9, 6)
    lengths = torch.tensor([6, 9, 1, 4])
    for row, length in enumerate(lengths.tolist()):
        inputs[row, length:] = 50.0  # padding content must not matter on either path
    upstream = torch.randn(4, 9, packed_layer.output_dim)
    packed = _run_path(packed_layer, inputs, lengths, False, upstream)
    padded = _run_path(padded_layer, inputs, lengths, True, upstream)
    assert torch.allclose(padded[0], packed[0], atol=1e-5)
    assert torch.allclose(padded[1], packed[1], atol=1e-5)
    for row, length in enumerate(lengths.tolist()):
        assert torch.equal(padded[0][row, length:], torch.zeros_like(padded[0][row, length:]))
        assert torch.equal(padded[1][row, length:], torch.zeros_like(padded[1][row, length:]))
    assert packed[2].keys() == padded[2].keys()
    for name in packed[2]:
        assert torch.allclose(padded[2][name], packed[2][name], atol=1e-4, rtol=1e-4), name
    for name in ("running_mean", "running_var"):
        assert torch.allclose(getattr(padded_layer.batch_norm, name), getattr(packed_layer.batch_norm, name), atol=1e-6)


def test_bn_relu_rnn_direction_runner_adds_no_state_and_survives_copies():
    layer = BNReluRNN(6, 5, rnn_type="gru", bidirectional=True)
    plain = {name for name, _ in layer.rnn.named_parameters()}
    assert {key[len("rnn.") :] for key in layer.state_dict() if key.startswith("rnn.")} == plain
    assert sum(parameter.numel() for parameter in layer.parameters()) == sum(
        parameter.numel() for parameter in [*layer.batch_norm.parameters(), *layer.rnn.parameters()]
    )
    twin = copy.deepcopy(layer)
    inputs, lengths = torch.randn(2, 5, 6, requires_grad=True), torch.tensor([5, 3])
    assert torch.equal(twin.eval()(inputs, lengths), layer.eval()(inputs, lengths))
