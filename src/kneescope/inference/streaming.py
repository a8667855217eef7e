"""Sliding-window inference that stitches slab by slab with bounded memory.

Windows are grouped by their start along the first array axis ("rows"). The weighted sum of
window outputs is accumulated only for the slab of the volume the current row covers
(``C_out x roi_i x J x K`` float32, never ``C_out x I x J x K``). Once a row is done, every
voxel before the next row's start is final: that slab is divided by its weight sum and handed
on (the largest channel to labels, or softmax to probabilities), and the accumulator shifts
forward.

Where the windows tile the volume (no overlap along any axis), no voxel is blended: outputs
are copied, not weighted; and where one window covers a whole row (a 2D model on whole
slices), the window's output is the slab itself, with no accumulator at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise, product
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional

from kneescope.errors import InputError
from kneescope.inference.windows import check_roi, window_starts, window_weights

Predictor = Callable[[torch.Tensor], torch.Tensor]
"""Maps a float32 batch (B, C_in, ri, rj, rk) to outputs (B, C_out, ri, rj, rk)."""

Prepare = Callable[[npt.NDArray[Any]], torch.Tensor]
"""Turns one raw window (C_in, wi, wj, wk) into a float32 tensor of the same shape."""


@dataclass(frozen=True)
class Slab:
    """Finished outputs for array rows ``start .. start + n_i``.

    The tensors are views into the stitching buffer: use them before asking the generator
    for the next slab.

    Attributes:
        start: first index along axis i.
        weighted_sum: float32 (C_out, n_i, J, K), weighted sum of window outputs;
            where a slab is one window's output, that output (float32 or the network's
            reduced precision, e.g. bf16).
        weight: float32 (n_i, J, K), the sum of the weights (> 0 everywhere), or ``None``
            when the stream was asked not to track it (labels only); ones where a slab is
            one window's output.
    """

    start: int
    weighted_sum: torch.Tensor
    weight: torch.Tensor | None

    @property
    def size(self) -> int:
        return int(self.weighted_sum.shape[1])

    @property
    def values(self) -> torch.Tensor:
        """The weighted mean (C_out, n_i, J, K), a new tensor."""
        if self.weight is None:
            raise InputError("this stream did not track weights; use track_weight=True")
        return self.weighted_sum / self.weight

    def labels(self, chunk: int = 8) -> torch.Tensor:
        """Index of the largest channel, uint8 (n_i, J, K); the weight is positive, so no
        division. Ties go to the lowest channel, as ``torch.argmax``.

        ``torch.max(...).indices`` gives the same labels as ``torch.argmax`` several times
        faster on CPUs; done ``chunk`` slices at a time to keep its int64 output small.
        """
        out = torch.empty(
            self.weighted_sum.shape[1:], dtype=torch.uint8, device=self.weighted_sum.device
        )
        for a in range(0, self.size, chunk):
            out[a : a + chunk] = torch.max(self.weighted_sum[:, a : a + chunk], dim=0).indices
        return out


def _default_prepare(window: npt.NDArray[Any]) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))


def stream_slabs(
    image: npt.NDArray[Any],
    predictor: Predictor,
    *,
    roi_size_vox: Sequence[int],
    out_channels: int,
    overlap: float | Sequence[float] = 0.25,
    sw_batch_size: int = 1,
    prepare: Prepare | None = None,
    device: torch.device | str = "cpu",
    sigma_scale: float = 0.125,
    track_weight: bool = True,
    blend: Literal["gaussian", "constant"] = "gaussian",
    slicewise: bool = False,
) -> Iterator[Slab]:
    """Run ``predictor`` over sliding windows of ``image`` and yield finished slabs in order.

    Args:
        image: array (C_in, I, J, K) of any numeric dtype; windows are cut as views.
        predictor: network wrapper, see :data:`Predictor`.
        roi_size_vox: window size (ri, rj, rk); axes shorter than it are zero-padded after
            ``prepare``.
        out_channels: C_out, channels the predictor returns.
        overlap: fraction of a window shared with its neighbour, in [0, 1); one value for all
            axes or one per axis (i, j, k).
        sw_batch_size: windows per predictor call.
        prepare: raw window -> float32 tensor (e.g. intensity normalisation); default cast.
        device: where windows run and where the slab accumulator lives.
        sigma_scale: Gaussian sigma as a fraction of the window size.
        blend: window weighting, ``"gaussian"`` (centre-weighted) or ``"constant"`` (a plain
            mean, as MONAI's default).
        track_weight: keep the weight sum (needed for :attr:`Slab.values`); labels alone do
            not need it.
        slicewise: the predictor treats axis i slice by slice (2D models): windows along i
            never overlap and the last one runs padded past the end instead of being aligned
            with it (no slice computed twice).

    Yields:
        :class:`Slab` objects covering axis i exactly once, in increasing order.
    """
    if image.ndim != 4:
        raise InputError(f"expected an image of shape (C, I, J, K), got {image.shape}")
    if sw_batch_size < 1:
        raise InputError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
    prep = prepare or _default_prepare
    dev = torch.device(device)
    size = tuple(int(n) for n in image.shape[1:])
    roi = check_roi(roi_size_vox, 3)
    overlaps = (overlap,) * 3 if isinstance(overlap, float | int) else tuple(overlap)
    if len(overlaps) != 3:
        raise InputError(f"give one overlap or three (i, j, k), got {overlap}")
    starts = [window_starts(n, r, float(o)) for n, r, o in zip(size, roi, overlaps, strict=True)]
    if slicewise:
        starts[0] = list(range(0, size[0], roi[0]))
    inner = list(product(starts[1], starts[2]))
    once = all(covered_once(s, r) for s, r in zip(starts, roi, strict=True))
    if once and len(inner) == 1:
        # one window per row covering each voxel once (e.g. whole 2D slices): the window's
        # output is the slab; no accumulator, no weights (they would not change a label)
        yield from _direct_slabs(image, predictor, roi, out_channels, starts[0], prep, dev)
        return
    weights = None
    if not once and slicewise:
        # A 2D model sees each slice alone: every slice of a window counts the same and only
        # the in-plane position is weighted (as MONAI's and nnU-Net's 2D sliding windows). A
        # Gaussian along i as well would be a common factor of the windows covering a voxel,
        # but MONAI's importance map is clamped at 1e-3, which breaks the factoring: it changed
        # 0.45 % of a knee's labels against MONAI's 2D Gaussian windows (docs/inference.md).
        plane = window_weights((1, roi[1], roi[2]), sigma_scale=sigma_scale, device=dev, mode=blend)
        weights = plane.expand(roi[0], roi[1], roi[2])
    elif not once:
        weights = window_weights(roi, sigma_scale=sigma_scale, device=dev, mode=blend)
    depth = min(roi[0], size[0])
    acc = torch.zeros((out_channels, depth, size[1], size[2]), dtype=torch.float32, device=dev)
    wdepth = depth if track_weight else 0
    wsum = torch.zeros((wdepth, size[1], size[2]), dtype=torch.float32, device=dev)
    lo = 0  # array index i of acc[:, 0]
    for row, si in enumerate(starts[0]):
        for b0 in range(0, len(inner), sw_batch_size):
            group = inner[b0 : b0 + sw_batch_size]
            boxes = [
                (slice(si, si + roi[0]), slice(sj, sj + roi[1]), slice(sk, sk + roi[2]))
                for sj, sk in group
            ]
            out = _predict(image, predictor, boxes, roi, out_channels, prep, dev)
            for n, box in enumerate(boxes):
                ext = [min(s.stop, L) - s.start for s, L in zip(box, size, strict=True)]
                a = box[0].start - lo
                target = (slice(a, a + ext[0]), box[1].start, box[2].start)
                rows = slice(target[0].start, target[0].stop)
                js = slice(target[1], target[1] + ext[1])
                ks = slice(target[2], target[2] + ext[2])
                window_out = out[n, :, : ext[0], : ext[1], : ext[2]]
                if weights is None:  # each voxel once: the output itself (bf16 -> fp32 copy)
                    acc[:, rows, js, ks].copy_(window_out)
                    if track_weight:
                        wsum[rows, js, ks] = 1.0
                    continue
                w = weights[: ext[0], : ext[1], : ext[2]]
                acc[:, rows, js, ks].addcmul_(window_out, w)  # bf16 or fp32 into fp32
                if track_weight:
                    wsum[rows, js, ks] += w
        done = starts[0][row + 1] if row + 1 < len(starts[0]) else size[0]
        count = done - lo
        yield Slab(
            start=lo, weighted_sum=acc[:, :count], weight=wsum[:count] if track_weight else None
        )
        keep = depth - count
        for a in range(0, keep, count):  # shift forward in non-overlapping chunks, no copy
            b = min(a + count, keep)
            acc[:, a:b] = acc[:, a + count : b + count]
            if track_weight:
                wsum[a:b] = wsum[a + count : b + count]
        acc[:, keep:] = 0.0
        if track_weight:
            wsum[keep:] = 0.0
        lo = done


def covered_once(starts: Sequence[int], roi_vox: int) -> bool:
    """Whether windows of ``roi_vox`` at ``starts`` cover their axis without overlapping
    (consecutive starts exactly one window apart)."""
    return all(b - a == roi_vox for a, b in pairwise(starts))


def _predict(
    image: npt.NDArray[Any],
    predictor: Predictor,
    boxes: Sequence[tuple[slice, slice, slice]],
    roi: tuple[int, ...],
    out_channels: int,
    prep: Prepare,
    dev: torch.device,
) -> torch.Tensor:
    """The predictor's outputs (B, C_out, *roi) for the windows ``boxes`` of ``image``."""
    batch = torch.stack([_padded(prep(image[(slice(None), *box)]), roi) for box in boxes])
    with torch.inference_mode():
        out = predictor(batch.to(dev))
    if out.shape[1] != out_channels or tuple(out.shape[2:]) != roi:
        raise InputError(
            f"network returned shape {tuple(out.shape)}; expected "
            f"(B, {out_channels}, {roi[0]}, {roi[1]}, {roi[2]})"
        )
    return out.to(device=dev)


def _direct_slabs(
    image: npt.NDArray[Any],
    predictor: Predictor,
    roi: tuple[int, ...],
    out_channels: int,
    starts_i: Sequence[int],
    prep: Prepare,
    dev: torch.device,
) -> Iterator[Slab]:
    """Slabs that are one window's output each (windows tile the volume, one per row)."""
    size = image.shape[1:]
    for si in starts_i:
        box = (slice(si, si + roi[0]), slice(0, roi[1]), slice(0, roi[2]))
        out = _predict(image, predictor, [box], roi, out_channels, prep, dev)
        n = min(si + roi[0], size[0]) - si
        values = out[0, :, :n, : size[1], : size[2]]
        weight = torch.ones((1, 1, 1), dtype=torch.float32, device=dev).expand(values.shape[1:])
        yield Slab(start=si, weighted_sum=values, weight=weight)


def _padded(window: torch.Tensor, roi: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad a (C, wi, wj, wk) window at the far end of each axis up to ``roi``."""
    missing = [r - n for r, n in zip(roi, window.shape[1:], strict=True)]
    if not any(missing):
        return window
    pad: list[int] = []
    for m in reversed(missing):
        pad += [0, m]
    return functional.pad(window, pad)


def labels_from_slabs(slabs: Iterator[Slab], shape: Sequence[int]) -> npt.NDArray[np.uint8]:
    """Argmax each slab over channels into a uint8 label map of ``shape`` (I, J, K)."""
    labels = np.zeros(tuple(shape), dtype=np.uint8)
    for slab in slabs:
        labels[slab.start : slab.start + slab.size] = slab.labels().cpu().numpy()
    return labels


def labels_and_probabilities_from_slabs(
    slabs: Iterator[Slab], shape: Sequence[int], channels: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Labels (I, J, K) uint8 and softmax probabilities (I, J, K, C) uint8 scaled by 255."""
    labels = np.zeros(tuple(shape), dtype=np.uint8)
    probs = np.zeros((*tuple(shape), channels), dtype=np.uint8)
    for slab in slabs:
        n = slab.size
        labels[slab.start : slab.start + n] = slab.labels().cpu().numpy()
        p = torch.softmax(slab.values, dim=0).mul_(255.0).round_().to(torch.uint8)
        probs[slab.start : slab.start + n] = p.permute(1, 2, 3, 0).cpu().numpy()
    return labels, probs


def stitch_dense(slabs: Iterator[Slab], shape: Sequence[int], channels: int) -> torch.Tensor:
    """Assemble all slabs into one float32 (C, I, J, K) tensor (tests and small volumes only)."""
    out = torch.zeros((channels, *tuple(shape)), dtype=torch.float32)
    for slab in slabs:
        out[:, slab.start : slab.start + slab.size] = slab.values.cpu()
    return out
