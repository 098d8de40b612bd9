"""Choosing where tensors live."""

from __future__ import annotations

import torch

from .errors import InputError
from .options import DEVICES


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is a clear error."""
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError("--device cuda was asked for, but no CUDA GPU is available here; use --device cpu or auto.")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise InputError(f"Unknown device {device!r}; use one of {', '.join(DEVICES)}.")


def describe_device(device: torch.device) -> str:
    """A short human label, e.g. ``"GPU (NVIDIA H100)"`` or ``"CPU (2 threads)"``."""
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    return f"CPU ({torch.get_num_threads()} threads)"
