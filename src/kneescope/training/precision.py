"""Numeric precision of training: bf16 autocast where the device runs it natively."""

from __future__ import annotations

from typing import Literal

import torch


def autocast_dtype(
    precision: Literal["auto", "bf16", "fp32"], device: torch.device
) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (``None``: plain fp32).

    ``"auto"`` picks bf16 only where it is native: a CUDA device that supports it, or a CPU
    with oneDNN bf16 kernels (elsewhere bf16 is emulated through fp32 copies: slower, larger).
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    try:
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    except (AttributeError, RuntimeError):
        return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """``torch.autocast`` with ``dtype``, or a disabled one for plain fp32."""
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)
