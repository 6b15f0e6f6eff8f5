"""Building blocks of the DeepSpeech2 trunk: the masked convolutional extractor and a BatchNorm-ReLU-RNN layer.

Shapes use B batch, T input frames, T' frames after the conv stride, D feature bins, H RNN hidden units.
Tensors are batch-major. Length tensors hold the number of valid frames per row; they may come in any order
and on any device (they are moved to the CPU where ``pack_padded_sequence`` needs them).
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from kospeech.models.utils import lengths_to_mask

__all__ = ["ACTIVATIONS", "RNN_TYPES", "MaskConv2d", "BNReluRNN", "conv_output_length", "reverse_within_lengths"]

ACTIVATIONS: Dict[str, Callable[[], nn.Module]] = {
    "hardtanh": lambda: nn.Hardtanh(0.0, 20.0),
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "swish": nn.SiLU,
}

RNN_TYPES: Dict[str, type] = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}


def conv_output_length(length: Tensor, kernel_size: int, stride: int, padding: int, dilation: int = 1) -> Tensor:
    """Number of output frames of a convolution along one axis (the formula of ``nn.Conv2d``).

    ``L_out = floor((L_in + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1``

    Args:
        length: integer tensor of input lengths (any shape).
        kernel_size, stride, padding, dilation: the convolution's values along that axis.

    Returns:
        Integer tensor of output lengths, same shape and device as ``length``.
    """
    span = dilation * (kernel_size - 1) + 1
    return torch.div(length + 2 * padding - span, stride, rounding_mode="floor") + 1


class MaskConv2d(nn.Module):
    """KoSpeech's DeepSpeech2 extractor: two masked Conv2d blocks over (frequency, time).

    Each block is ``Conv2d -> BatchNorm2d -> activation`` (``hardtanh`` clamps to [0, 20]). The kernels,
    strides and paddings, as (frequency, time), are ``(41, 11) / (2, 2) / (20, 5)`` for the first block and
    ``(21, 11) / (2, 1) / (10, 5)`` for the second, with 32 channels. Only the first block strides in time,
    so with the convolution length formula (see :func:`conv_output_length`)

        ``T' = floor((T - 1) / 2) + 1 = ceil(T / 2)``

    and the valid length ``L`` of each row maps the same way to ``L' = ceil(L / 2)``. The input's padded
    frames and, after each block, every frame at or beyond the row's valid length are set to zero. A valid
    output frame therefore sees exactly the zeros it would see from the convolution's own padding if the
    utterance were alone: in eval mode an utterance gives the same output alone as inside a padded batch.
    In training mode BatchNorm2d's batch statistics include the zeroed padding (as in KoSpeech).

    Args:
        input_dim: D, feature bins per frame.
        activation: one of ``ACTIVATIONS`` (default ``"hardtanh"``).
        channels: output channels of both convolutions (32 in KoSpeech).
    """

    _specs = (
        ((41, 11), (2, 2), (20, 5)),
        ((21, 11), (2, 1), (10, 5)),
    )

    def __init__(self, input_dim: int, activation: str = "hardtanh", channels: int = 32) -> None:
        super().__init__()
        if input_dim < 1:
            raise ValueError(f"input_dim must be a positive number of feature bins, got {input_dim}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        blocks = []
        in_channels = 1
        freq_dim = input_dim
        for kernel, stride, padding in self._specs:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(in_channels, channels, kernel_size=kernel, stride=stride, padding=padding, bias=False),
                    nn.BatchNorm2d(channels),
                    ACTIVATIONS[activation](),
                )
            )
            in_channels = channels
            freq_dim = (freq_dim + 2 * padding[0] - kernel[0]) // stride[0] + 1
        self.blocks = nn.ModuleList(blocks)
        self.input_dim = input_dim
        self.output_dim = channels * freq_dim

    def output_lengths(self, input_lengths: Tensor) -> Tensor:
        """Valid output frames per row: ``ceil(L / 2)`` for each valid input length ``L``.

        Args:
            input_lengths: (B,) integer tensor.

        Returns:
            (B,) int64 tensor on the same device.
        """
        lengths = input_lengths.long()
        for block in self.blocks:
            lengths = self._block_lengths(block, lengths)
        return lengths

    @staticmethod
    def _block_lengths(block: nn.Sequential, lengths: Tensor) -> Tensor:
        conv = block[0]
        return conv_output_length(lengths, conv.kernel_size[1], conv.stride[1], conv.padding[1], conv.dilation[1])

    def forward(self, inputs: Tensor, input_lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """Run both conv blocks with masking.

        Inputs:
            inputs: (B, T, D) float, padded features.
            input_lengths: (B,) int64, valid frames per row, any order, 1 <= L <= T.

        Returns:
            outputs: (B, T', 32 * D'') float with ``T' = ceil(T / 2)`` and ``D''`` the frequency bins left after
                both strides (``output_dim = 32 * D''``); frames at or beyond a row's output length are zero.
            output_lengths: (B,) int64 on ``input_lengths.device``, ``ceil(L / 2)``.
        """
        lengths = input_lengths.to(device=inputs.device, dtype=torch.long)
        outputs = inputs.transpose(1, 2).unsqueeze(1)  # (B, 1, D, T)
        outputs = outputs.masked_fill(~lengths_to_mask(lengths, outputs.size(3))[:, None, None, :], 0.0)
        for block in self.blocks:
            outputs = block(outputs)  # (B, C, D_i, T_i)
            lengths = self._block_lengths(block, lengths)
            outputs = outputs.masked_fill(~lengths_to_mask(lengths, outputs.size(3))[:, None, None, :], 0.0)
        batch, channels, freq, frames = outputs.size()
        outputs = outputs.permute(0, 3, 1, 2).reshape(batch, frames, channels * freq)  # (B, T', C * D'')
        return outputs, lengths.to(input_lengths.device)


_DIRECTION_PARAMETERS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


def reverse_within_lengths(lengths: Tensor, total_length: int) -> Tensor:
    """Time indices that reverse each row's valid frames and leave its padding in place.

    Gathering a (B, T, F) tensor along time with these indices (and gathering the result again) is an involution:
    ``row[t] <- row[L - 1 - t]`` for ``t < L``, ``row[t] <- row[t]`` beyond.

    Inputs:
        lengths: (B,) int64 valid frames per row, on the device of the tensor to gather.
        total_length: T.

    Returns:
        (B, T) int64 indices.
    """
    steps = torch.arange(total_length, device=lengths.device).unsqueeze(0)  # (1, T)
    ends = lengths.unsqueeze(1)  # (B, 1)
    return torch.where(steps < ends, ends - 1 - steps, steps)


class BNReluRNN(nn.Module):
    """BatchNorm1d over features -> ReLU -> one (bi)directional GRU/LSTM/RNN layer -> dropout.

    BatchNorm runs on the valid frames only, so padded frames never enter the batch statistics, and padding never
    reaches a valid frame's RNN state. Padded output frames are zero.

    Two equivalent ways to keep padding out of the RNN (outputs and gradients agree within float rounding):

    - packed (``pack_padded_sequence``): used on GPUs (cuDNN) and whenever no gradient is needed;
    - padded, per direction, on the CPU when a gradient flows through the layer: the forward direction reads the
      padded batch as it is (padding comes after every valid frame, so it only changes outputs that are masked), the
      backward direction reads each row reversed within its length. The CPU backward pass of a packed RNN zero-fills
      a (sum of lengths, gates * H) buffer for every time step, which made it most of a base training step; this
      path avoids it (``benchmarks/profile_train_step.py``). Each direction runs a unidirectional RNN through
      ``torch.func.functional_call`` with this layer's own parameters, so the state dict is the plain ``nn.GRU``
      one either way.

    Args:
        input_size: F, features per input frame.
        hidden_state_dim: H, hidden units per direction.
        rnn_type: ``"gru"``, ``"lstm"`` or ``"rnn"``.
        bidirectional: run a backward direction too; the output then has ``2 * H`` features.
        dropout_p: dropout probability applied to the layer's output.
    """

    padded_cpu_training: bool = True
    """Use the padded path on the CPU when a gradient is needed (``False`` always packs; benchmarks compare both)."""

    def __init__(
        self,
        input_size: int,
        hidden_state_dim: int = 512,
        rnn_type: str = "gru",
        bidirectional: bool = True,
        dropout_p: float = 0.1,
    ) -> None:
        super().__init__()
        if rnn_type not in RNN_TYPES:
            raise ValueError(f"unknown rnn_type {rnn_type!r}; choose one of {sorted(RNN_TYPES)}")
        self.batch_norm = nn.BatchNorm1d(input_size)
        self.rnn = RNN_TYPES[rnn_type](
            input_size=input_size,
            hidden_size=hidden_state_dim,
            num_layers=1,
            bias=True,
            batch_first=True,
            bidirectional=bidirectional,
        )
        self.dropout = nn.Dropout(p=dropout_p)
        self.output_dim = hidden_state_dim * (2 if bidirectional else 1)
        # a parameterless (meta) unidirectional twin that runs one direction with this layer's weights; kept in a
        # tuple so that it is not a submodule (no state-dict keys, nothing to move between devices)
        self._direction_runner = (
            RNN_TYPES[rnn_type](input_size, hidden_state_dim, num_layers=1, bias=True, batch_first=True, device="meta"),
        )

    def forward(self, inputs: Tensor, input_lengths: Tensor) -> Tensor:
        """Run the layer.

        Inputs:
            inputs: (B, T', F) float, padded.
            input_lengths: (B,) int64, valid frames per row, any order, any device, 1 <= L <= T'.

        Returns:
            (B, T', H * num_directions) float; frames at or beyond a row's length are zero.
        """
        if self._use_padded_path(inputs):
            return self.dropout(self._padded_forward(inputs, input_lengths.to(inputs.device)))
        packed = pack_padded_sequence(inputs, input_lengths.cpu(), batch_first=True, enforce_sorted=False)
        normed = torch.relu(self.batch_norm(packed.data))
        packed = PackedSequence(normed, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        outputs, _ = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=inputs.size(1))
        return self.dropout(outputs)

    def _use_padded_path(self, inputs: Tensor) -> bool:
        if not (self.padded_cpu_training and inputs.device.type == "cpu" and torch.is_grad_enabled()):
            return False
        return inputs.requires_grad or any(parameter.requires_grad for parameter in self.parameters())

    def _padded_forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        batch, frames, features = inputs.shape
        valid = lengths_to_mask(lengths, frames)  # (B, T')
        normed = inputs.new_zeros(batch, frames, features)
        normed[valid] = torch.relu(self.batch_norm(inputs[valid]))  # statistics over the valid frames only
        outputs = [self._run_direction(normed, "")]
        if self.rnn.bidirectional:
            order = reverse_within_lengths(lengths, frames).unsqueeze(-1)  # (B, T', 1)
            reversed_inputs = normed.gather(1, order.expand(-1, -1, features))
            backward = self._run_direction(reversed_inputs, "_reverse")
            outputs.append(backward.gather(1, order.expand(-1, -1, backward.size(-1))))
        return torch.cat(outputs, dim=-1).masked_fill(~valid.unsqueeze(-1), 0.0)  # (B, T', H * directions)

    def _run_direction(self, inputs: Tensor, suffix: str) -> Tensor:
        weights = {name: getattr(self.rnn, name + suffix) for name in _DIRECTION_PARAMETERS}
        outputs, _ = functional_call(self._direction_runner[0], weights, (inputs,))
        return outputs
