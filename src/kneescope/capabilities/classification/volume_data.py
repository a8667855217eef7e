"""3D volumes for classification: what a volume classifier sees, and labelled volume sets.

:func:`prepare_volume` is the one preprocessing of training and inference: reorient to the
model's axis code (permutation and flips, no resampling), mirror a left knee onto right-knee
anatomy, resample the whole field of view to the model's grid and normalise intensities by
the volume's own statistics. :class:`VolumeClassificationData` holds prepared volumes with
their classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from kneescope.errors import InputError
from kneescope.transforms.intensity import NormalisationConfig, intensity_stats
from kneescope.transforms.orientation import mirror_to_right, plan_reorientation
from kneescope.types import Affine


def resample_volume(array: npt.NDArray[Any], size_vox: tuple[int, ...]) -> npt.NDArray[np.float32]:
    """``array`` (3D) resampled to ``size_vox`` covering the same field of view: area averaging
    along axes that shrink, then trilinear interpolation (corners as voxel edges) where the
    size still differs. float32."""
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    shape = tuple(int(n) for n in array.shape)
    if shape == tuple(size_vox):
        return np.asarray(tensor[0, 0].numpy(), dtype=np.float32)
    a, b, c = (min(n, m) for n, m in zip(shape, size_vox, strict=True))
    shrunk = (a, b, c)
    if shrunk != shape:
        tensor = torch.nn.functional.adaptive_avg_pool3d(tensor, shrunk)
    if shrunk != tuple(size_vox):
        tensor = torch.nn.functional.interpolate(
            tensor, size=tuple(size_vox), mode="trilinear", align_corners=False
        )
    return np.asarray(tensor[0, 0].numpy(), dtype=np.float32)


def prepare_volume(
    array: npt.NDArray[Any],
    affine_ras: Affine,
    side: str | None,
    size_vox: tuple[int, ...],
    *,
    orientation: str,
    normalisation: NormalisationConfig,
) -> npt.NDArray[np.float32]:
    """A whole volume as a volume classifier sees it: ``(D, H, W)`` float32 on ``size_vox``.

    Args:
        array: the 3D image, any real dtype.
        affine_ras: its 4x4 voxel-to-RAS affine (mm).
        side: ``"left"`` mirrors the knee onto right-knee anatomy; anything else: as is.
        size_vox: the model's grid (3 sizes) in axis code ``orientation``.
        orientation: the model grid's axis code, e.g. ``"RIA"``.
        normalisation: intensity normalisation (statistics of this volume).

    Raises:
        InputError: not 3D, not real numbers, or non-finite values.
    """
    data = np.asarray(array)
    if data.ndim != 3:
        raise InputError(f"a volume classifier needs a 3D image, found shape {data.shape}")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise InputError(f"the image must hold real numbers, found dtype {data.dtype}")
    shape = (int(data.shape[0]), int(data.shape[1]), int(data.shape[2]))
    oriented = plan_reorientation(affine_ras, shape, orientation).apply(data)
    oriented = mirror_to_right(oriented, orientation, side)
    resampled = resample_volume(oriented, size_vox)
    if not np.isfinite(resampled).all():
        raise InputError("the image holds NaN or infinite values; fix or drop it")
    stats = intensity_stats(resampled, normalisation)
    return np.asarray(stats.apply_numpy(resampled), dtype=np.float32)


@dataclass(frozen=True)
class VolumeClassificationData:
    """Prepared volumes (:func:`prepare_volume`) with their classes.

    Attributes:
        volumes: ``(N, D, H, W)`` float32, each normalised.
        labels: ``(N,)`` int64 class indices in ``0 .. len(classes) - 1``.
        classes: class names, index = label.
        names: one name per volume (e.g. ``subject_visit_side``), or empty.
    """

    volumes: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]
    classes: tuple[str, ...]
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.volumes.ndim != 4 or self.labels.shape != (self.volumes.shape[0],):
            raise ValueError(
                f"volumes must be (N, D, H, W) with N labels, found {self.volumes.shape} and "
                f"{self.labels.shape}"
            )
        if self.names and len(self.names) != self.volumes.shape[0]:
            raise ValueError(f"{len(self.names)} names for {self.volumes.shape[0]} volumes")
