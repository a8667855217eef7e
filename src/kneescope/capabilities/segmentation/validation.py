"""Validation: whole-case prediction and per-structure Dice and surface distance (MONAI metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

from kneescope.capabilities.segmentation.training_data import Case


def predict_case(
    network: torch.nn.Module,
    image: npt.NDArray[np.float32],
    *,
    mode: Literal["2d", "3d"],
    roi_size_vox: tuple[int, int, int],
    autocast_dtype: torch.dtype | None,
    device: torch.device,
) -> npt.NDArray[np.uint8]:
    """Label map (I, J, K) uint8 of one normalised case (MONAI sliding window, 2D: per slice)."""
    from monai.inferers.utils import sliding_window_inference

    network.eval()
    ctx = (
        torch.autocast(device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else torch.autocast(device.type, enabled=False)
    )
    out = np.zeros(image.shape, dtype=np.uint8)
    with torch.inference_mode(), ctx:
        if mode == "3d":
            x = torch.from_numpy(image)[None, None].to(device)
            logits = sliding_window_inference(
                x, roi_size_vox, 2, network, overlap=0.25, mode="gaussian"
            )
            assert isinstance(logits, torch.Tensor)
            out[:] = torch.argmax(logits[0], dim=0).to(torch.uint8).cpu().numpy()
        else:
            roi2 = roi_size_vox[1:]
            for s in range(image.shape[0]):
                x = torch.from_numpy(image[s])[None, None].to(device)
                logits = sliding_window_inference(x, roi2, 4, network, overlap=0.25)
                assert isinstance(logits, torch.Tensor)
                out[s] = torch.argmax(logits[0], dim=0).to(torch.uint8).cpu().numpy()
    return out


def dice_per_class(
    pred: npt.NDArray[np.integer], truth: npt.NDArray[np.integer], classes: int
) -> list[float]:
    """Dice of classes 1..classes-1 (NaN where a class is absent from both)."""
    from monai.metrics.meandice import compute_dice

    p = _one_hot(pred, classes)
    t = _one_hot(truth, classes)
    d = compute_dice(p, t, include_background=False, ignore_empty=True)
    return [float(v) for v in d[0].tolist()]


def surface_distance_per_class(
    pred: npt.NDArray[np.integer],
    truth: npt.NDArray[np.integer],
    classes: int,
    spacing_mm: Sequence[float],
) -> list[float]:
    """Symmetric average surface distance in mm of classes 1..classes-1 (NaN where absent)."""
    from monai.metrics.surface_distance import compute_average_surface_distance

    out: list[float] = []
    for c in range(1, classes):
        p = torch.from_numpy(np.ascontiguousarray(pred == c))[None, None]
        t = torch.from_numpy(np.ascontiguousarray(truth == c))[None, None]
        if not bool(p.any()) or not bool(t.any()):
            out.append(float("nan"))
            continue
        d = compute_average_surface_distance(
            p, t, include_background=True, symmetric=True, spacing=list(spacing_mm)
        )
        out.append(float(d.reshape(-1)[0]))
    return out


def _one_hot(labels: npt.NDArray[np.integer], classes: int) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64))
    oh = torch.nn.functional.one_hot(t, classes)
    return oh.movedim(-1, 0)[None].to(torch.uint8)


def validate(
    network: torch.nn.Module,
    cases: Sequence[Case],
    *,
    classes: int,
    mode: Literal["2d", "3d"],
    roi_size_vox: tuple[int, int, int],
    autocast_dtype: torch.dtype | None,
    device: torch.device,
    spacing_mm: Sequence[float] | None = None,
) -> dict[str, list[float]]:
    """Mean Dice (and surface distance when ``spacing_mm`` is given) per class over ``cases``."""
    dices, dists = [], []
    for case in cases:
        pred = predict_case(
            network,
            case.image,
            mode=mode,
            roi_size_vox=roi_size_vox,
            autocast_dtype=autocast_dtype,
            device=device,
        )
        dices.append(dice_per_class(pred, case.labels, classes))
        if spacing_mm is not None:
            dists.append(surface_distance_per_class(pred, case.labels, classes, spacing_mm))
    out = {"dice": [_mean(col) for col in zip(*dices, strict=True)]}
    if dists:
        out["surface_distance_mm"] = [_mean(col) for col in zip(*dists, strict=True)]
    return out


def _mean(values: Sequence[float]) -> float:
    """Mean of the finite values; NaN when there are none (no warning)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")
