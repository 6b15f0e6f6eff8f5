"""Device names from configs and arguments: the one place that turns ``"auto"``/``"cuda:1"`` into a device."""

from __future__ import annotations

from typing import Union

import torch

__all__ = ["resolve_device"]


def resolve_device(name: Union[str, torch.device]) -> torch.device:
    """``"auto"`` picks CUDA when available; anything else is passed to ``torch.device``.

    Raises:
        ValueError: CUDA was requested but is not available.
    """
    if isinstance(name, str) and name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was requested but CUDA is not available; use 'cpu' or 'auto'")
    return device
