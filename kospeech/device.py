"""Device names from configs and arguments: the one place that turns ``"auto"``/``"cuda:1"`` into a device."""

from __future__ import annotations

from typing import Union

import torch

__all__ = ["resolve_device", "SUPPORTED_DEVICE_TYPES"]

SUPPORTED_DEVICE_TYPES = ("cpu", "cuda")


def resolve_device(name: Union[str, torch.device]) -> torch.device:
    """``"auto"`` picks CUDA when available; ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` are taken as given.

    Raises:
        ValueError: not a device name torch knows, a device type kospeech does not run on (``meta``, ``mps``, ...),
            or CUDA (or that CUDA device) was requested but is not available.
    """
    if isinstance(name, str) and name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device {name!r} is not a device name ({exc}); use 'cpu', 'cuda', 'cuda:N' or 'auto'"
        ) from exc
    if device.type not in SUPPORTED_DEVICE_TYPES:
        raise ValueError(f"device {name!r}: kospeech runs on {' or '.join(SUPPORTED_DEVICE_TYPES)} devices only")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was requested but CUDA is not available; use 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA devices are visible")
    return device
