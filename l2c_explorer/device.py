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


def place(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``net`` (in place) on ``device``, in the memory layout its convolutions run fastest in there.

    On a CPU that is channels-last: the shipped models' forward passes and self-training steps ran 1.25-1.8x
    faster in it on 2 cores, with the same outputs to float32 rounding (``benchmarks/conv_layout.py``). On a
    GPU the layout is left as it is (not measured there).
    """
    if device.type == "cpu":
        return net.to(device, memory_format=torch.channels_last)
    return net.to(device)


def describe_device(device: torch.device) -> str:
    """A short human label, e.g. ``"GPU (NVIDIA H100)"`` or ``"CPU (2 threads)"``."""
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    return f"CPU ({torch.get_num_threads()} threads)"


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 autocast is fast here: CUDA GPUs that support it, CPUs with AVX-512 BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            flags = open("/proc/cpuinfo").read()
        except OSError:  # not Linux: do not guess
            return False
        return " avx512_bf16" in flags or " amx_bf16" in flags
    return False
