"""MaskConv2d and BNReluRNN: length formula, masking, padding kept out of BatchNorm."""

import math

import pytest
import torch

from kospeech.models.modules import BNReluRNN, MaskConv2d, conv_output_length


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
