"""Wrap a network as a window predictor: device, precision, 2D slice batching, flip TTA.

On the CPU the predictor runs an exact, faster rewrite of the network by default
(:mod:`kneescope.inference.fast_network`: in-place instance norm + activation, merged
residual convolutions, channels-last layout) and, for 2D models, cuts a window's slices into
small groups (:data:`SLICE_PIXELS_PER_CALL`) that run on one thread each, one group per core:
the few-channel full-resolution layers then stay in cache and no core waits at the barrier of
a small operation. Outputs equal the plain network's within float round-off.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import torch

from kneescope.errors import InputError
from kneescope.inference.fast_network import optimise_network, to_layout
from kneescope.inference.streaming import Predictor

SLICE_PIXELS_PER_CALL = 2 * 384 * 384
"""Slices per network call in the optimised 2D path: as many as fit this many pixels (2 whole
384 x 384 OAI slices; measured best of 1, 2, 4, 8 on a 2-core AVX2 CPU, docs/network_speed.md)."""

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
    optimise: bool = True,
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
        optimise: on the CPU, run an exact rewrite of the network
            (:func:`~kneescope.inference.fast_network.optimise_network`, channels-last) and,
            in 2D, groups of slices on one thread per core. Outputs are equal within float
            round-off. Ignored on other devices (the network runs as given).
    """
    optimise = optimise and device.type == "cpu"
    if optimise:
        network = to_layout(optimise_network(network), 2 if mode == "2d" else 3)
        channels_last = True
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

    def forward(x: torch.Tensor) -> torch.Tensor:
        return _forward(network, x, device, autocast_dtype, use_channels_last)

    groups = _SliceGroups(forward) if optimise and mode == "2d" else None

    def run(batch: torch.Tensor) -> torch.Tensor:
        if mode == "2d":
            b, c, d, h, w = batch.shape
            flat = batch.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w).to(input_dtype)
            out = groups(flat) if groups is not None else forward(flat)
            return out.reshape(b, d, -1, h, w).permute(0, 2, 1, 3, 4)
        out = forward(batch.to(input_dtype))  # 3D: one call, intra-op threads (measured
        return out.contiguous() if optimise else out  # faster than a window per thread)

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


class _SliceGroups:
    """Runs a network over a batch (S, C, *spatial) (2D slices) in groups of
    :data:`SLICE_PIXELS_PER_CALL` voxels (at least one item), the groups spread over up to one
    Python thread per intra-op thread, each running its operations on ``threads // groups``
    intra-op threads (one on 2 cores); returns (S, C_out, *spatial), contiguous."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor]):
        self.forward = forward
        self.pool: ThreadPoolExecutor | None = None
        self.pool_size = 0
        self.lock = threading.Lock()

    def __call__(self, flat: torch.Tensor) -> torch.Tensor:
        s = flat.shape[0]
        per_call = max(1, SLICE_PIXELS_PER_CALL // math.prod(flat.shape[2:]))
        groups = [(i, min(i + per_call, s)) for i in range(0, s, per_call)]
        threads = min(torch.get_num_threads(), len(groups))
        if threads <= 1:
            parts = [self.forward(flat[a:b]) for a, b in groups]
            return _gather(parts, groups)
        with self.lock:  # one call at a time uses the pool and the thread setting
            if self.pool is None or self.pool_size < threads:
                if self.pool is not None:
                    self.pool.shutdown()
                self.pool = ThreadPoolExecutor(threads, thread_name_prefix="kneescope-slices")
                self.pool_size = threads
            shares = [groups[t::threads] for t in range(threads)]
            inference = torch.is_inference_mode_enabled()
            before = torch.get_num_threads()
            torch.set_num_threads(max(1, before // threads))  # 1 on 2 cores
            try:
                futures = [
                    self.pool.submit(self._run_share, flat, share, inference) for share in shares
                ]
                results = [f.result() for f in futures]
            finally:
                torch.set_num_threads(before)
        parts_by_group = {
            g: p
            for share, res in zip(shares, results, strict=True)
            for g, p in zip(share, res, strict=True)
        }
        return _gather([parts_by_group[g] for g in groups], groups)

    def _run_share(
        self, flat: torch.Tensor, share: list[tuple[int, int]], inference: bool
    ) -> list[torch.Tensor]:
        ctx = torch.inference_mode() if inference else contextlib.nullcontext()
        with ctx:
            return [self.forward(flat[a:b]) for a, b in share]


def _gather(parts: list[torch.Tensor], groups: list[tuple[int, int]]) -> torch.Tensor:
    first = parts[0]
    if len(parts) == 1:
        return first.contiguous()
    out = torch.empty((groups[-1][1], *first.shape[1:]), dtype=first.dtype, device=first.device)
    for (a, b), part in zip(groups, parts, strict=True):
        out[a:b].copy_(part)
    return out


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
