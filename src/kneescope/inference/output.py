"""Write segmentation results: NIfTI label maps and (on request) probability maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kneescope.core import Volume
from kneescope.errors import InputError
from kneescope.io import atomic_write_path, write_nifti


def output_stem(path: Path) -> str:
    """File name without .nii.gz/.nii/.mha/... (a folder keeps its name)."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def write_labels(labels: Volume, path: Path, *, description: str = "") -> Path:
    """Write a uint8 label map with its exact affine (sform and qform)."""
    if not labels.is_label:
        raise InputError(f"a label map must be integer, got {labels.array.dtype}")
    return write_nifti(labels, path, description=description)


def write_probabilities(probabilities: npt.NDArray[np.uint8], like: Volume, path: Path) -> Path:
    """Write class probabilities (I, J, K, C) uint8 (x 255) as a 4D NIfTI.

    The header's ``scl_slope`` is 1/255, so viewers and nibabel read probabilities in [0, 1]
    while the file stays one byte per voxel and class.
    """
    import importlib

    nib: Any = importlib.import_module("nibabel")

    if probabilities.shape[:3] != like.shape:
        raise InputError(
            f"probabilities {probabilities.shape[:3]} are not on the image grid {like.shape}"
        )
    img = nib.Nifti1Image(np.asarray(probabilities, dtype=np.uint8), like.affine_ras)
    img.set_data_dtype(np.uint8)
    img.header.set_xyzt_units(xyz="mm")
    img.set_sform(like.affine_ras, code=1)
    img.set_qform(like.affine_ras, code=1)
    img.header.set_slope_inter(1.0 / 255.0, 0.0)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    with atomic_write_path(path, suffix=suffix) as tmp:
        nib.save(img, tmp)
    return path
