"""Wrap a network as a window predictor: device, precision, 2D slice batching, flip TTA."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Literal

import torch

from kneescope.errors import InputError
from kneescope.inference.streaming import Predictor

log = logging.getLogger(__name__)

Precision = Literal["auto", "bf16", "fp32"]


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> the first CUDA device if there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device} asked for but no CUDA GPU is visible; use --device cpu")
    return dev


def bf16_supported(device: torch.device) -> bool:
    """True where bf16 convolutions run natively (CUDA sm80+, CPUs with AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_precision(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (``None`` = plain fp32)."""
    if precision == "fp32":
        return None
    if precision == "bf16" or bf16_supported(device):
        return torch.bfloat16
    return None


def make_predictor(
    network: torch.nn.Module,
    *,
    mode: Literal["2d", "3d"],
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    tta_flip_axes: Sequence[int] = (),
    channels_last: bool = False,
    cast_weights: bool = True,
) -> Predictor:
    """A :data:`~kneescope.inference.streaming.Predictor` for ``network``.

    Args:
        network: a 2D or 3D segmentation network in eval mode on ``device``.
        mode: ``"2d"``: windows (B, C, d, h, w) run as a batch of B*d slices.
        device: where the network runs.
        autocast_dtype: e.g. ``torch.bfloat16`` for mixed precision, ``None`` for fp32.
        tta_flip_axes: spatial window axes (0=i, 1=j, 2=k) to flip one at a time for test-time
            augmentation; outputs are flipped back and averaged with the plain pass.
        channels_last: run in channels-last memory format (faster for some networks on some
            CPUs; slower for MONAI's UNet with instance norm on AVX-512, so off by default).
        cast_weights: with a reduced ``autocast_dtype``, convert the weights and inputs to it
            and run without autocast (on CPUs ~1.4x faster than autocast, whose
            normalisation layers convert back and forth; accumulation stays fp32 in the
            stitcher). ``False``: plain autocast.
    """
    if autocast_dtype is not None and cast_weights:
        network = network.to(autocast_dtype)
        input_dtype: torch.dtype = autocast_dtype
        autocast_dtype = None
    else:
        input_dtype = torch.float32
    use_channels_last = channels_last
    if use_channels_last:
        fmt = torch.channels_last if mode == "2d" else torch.channels_last_3d
        network = network.to(memory_format=fmt)  # type: ignore[call-overload]
    if mode == "2d" and any(a == 0 for a in tta_flip_axes):
        raise InputError("2D models cannot flip along the slice axis i; use in-plane axes 1, 2")

    def run(batch: torch.Tensor) -> torch.Tensor:
        if mode == "2d":
            b, c, d, h, w = batch.shape
            flat = batch.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w)
            out = _forward(network, flat.to(input_dtype), device, autocast_dtype, use_channels_last)
            return out.reshape(b, d, -1, h, w).permute(0, 2, 1, 3, 4)
        return _forward(network, batch.to(input_dtype), device, autocast_dtype, use_channels_last)

    def predict(batch: torch.Tensor) -> torch.Tensor:
        if not tta_flip_axes:
            return run(batch)  # bf16 under autocast: the stitcher accumulates it in fp32
        out = run(batch).float()
        for axis in tta_flip_axes:
            dim = 2 + int(axis)
            out += run(torch.flip(batch, (dim,))).float().flip((dim,))
        if tta_flip_axes:
            out /= 1 + len(tta_flip_axes)
        return out

    return predict


def _forward(
    network: torch.nn.Module,
    x: torch.Tensor,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    channels_last: bool,
) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(
            memory_format=torch.channels_last if x.ndim == 4 else torch.channels_last_3d
        )
    ctx = (
        torch.autocast(device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    with torch.inference_mode(), ctx:
        out = network(x)
    if isinstance(out, list | tuple):
        out = out[0]
    return out
