"""Small helpers shared by the model code: parameter statistics and length masks."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ["count_parameters", "unwrap_model", "lengths_to_mask", "state_dict_problems", "describe_state_dict_problems"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside ``DataParallel`` / ``DistributedDataParallel`` wrappers (or the model itself)."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def count_parameters(model: nn.Module) -> Dict[str, Union[int, float]]:
    """Count the parameters of ``model`` (a parameter shared by several modules counts once).

    Args:
        model: any module, possibly wrapped in ``DataParallel`` / ``DistributedDataParallel``.

    Returns:
        ``{"total": int, "trainable": int, "frozen": int, "trainable_percent": float}`` where
        ``trainable`` counts parameters with ``requires_grad=True`` and ``trainable_percent`` is
        ``100 * trainable / total`` (0.0 for a model without parameters).
    """
    total = 0
    trainable = 0
    for parameter in model.parameters():
        count = parameter.numel()
        total += count
        if parameter.requires_grad:
            trainable += count
    percent = 100.0 * trainable / total if total else 0.0
    return {"total": total, "trainable": trainable, "frozen": total - trainable, "trainable_percent": percent}


def lengths_to_mask(lengths: Tensor, max_length: int) -> Tensor:
    """Boolean mask of valid frames.

    Args:
        lengths: (B,) integer tensor, valid frames per row.
        max_length: number of frames of the padded tensor the mask is for.

    Returns:
        (B, max_length) bool tensor on ``lengths.device``; ``mask[b, t]`` is True for ``t < lengths[b]``.
    """
    steps = torch.arange(max_length, device=lengths.device)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)


def state_dict_problems(
    expected: Mapping[str, Tensor], given: Mapping[str, Any]
) -> Tuple[List[str], List[str], List[str]]:
    """Compare a state_dict with the one a module expects.

    Args:
        expected: the module's own ``state_dict()``.
        given: the state_dict to load.

    Returns:
        ``(missing_keys, unexpected_keys, mismatched)``, each sorted; ``mismatched`` holds one line per key whose
        value is not a tensor or has another shape.
    """
    missing = sorted((key for key in expected if key not in given), key=str)
    unexpected = sorted((key for key in given if key not in expected), key=str)
    mismatched = []
    for key in sorted(set(expected) & set(given), key=str):
        value = given[key]
        if not isinstance(value, Tensor):
            mismatched.append(f"{key}: expected a tensor, found {type(value).__name__}")
        elif value.shape != expected[key].shape:
            mismatched.append(f"{key}: expected shape {tuple(expected[key].shape)}, found {tuple(value.shape)}")
    return missing, unexpected, mismatched


def describe_state_dict_problems(missing: List[str], unexpected: List[str], mismatched: List[str]) -> str:
    """One line naming the missing keys, unexpected keys and mismatched entries that are non-empty."""
    parts = []
    if missing:
        parts.append(f"missing keys {missing}")
    if unexpected:
        parts.append(f"unexpected keys {unexpected}")
    if mismatched:
        parts.append(f"mismatched entries {mismatched}")
    return "; ".join(parts)
