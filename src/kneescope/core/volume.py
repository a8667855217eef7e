"""The :class:`Volume`: a voxel array with its geometry and metadata.

Convention: ``array`` is indexed ``[i, j, k]`` (3D) or ``[i, j]`` (2D, e.g. a radiograph with
``i`` = row, ``j`` = column). ``affine_ras`` is always 4x4 and maps ``(i, j, k, 1)`` to RAS+
millimetres (see :mod:`kneescope.core.geometry`); a 2D volume uses it with ``k = 0``.
Label maps keep their integer dtype: nothing in kneescope converts them to float silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from kneescope.core.geometry import (
    flip_lr_affine,
    orientation_code,
    ras_to_lps,
    spacing_from_affine,
    validate_affine,
)
from kneescope.core.labels import KNEE_LABELS, OAI_ZIB_LABELS
from kneescope.errors import GeometryError, InputError
from kneescope.types import Affine

MAX_LABEL_VALUE = max(max(KNEE_LABELS.labels), max(OAI_ZIB_LABELS.labels))
"""Largest label value of the schemes kneescope knows (9: kneescope's own)."""

MAX_VOXELS = 2_000_000_000
"""Largest voxel count kneescope accepts for one volume (refused before any allocation)."""


@dataclass(frozen=True, eq=False)
class Volume:
    """A 2D or 3D image or label map with an exact voxel->RAS affine.

    Attributes:
        array: voxel values, shape (I, J, K) or (I, J); any numeric dtype. Integer arrays that
            hold labels stay integer.
        affine_ras: float64 (4, 4), voxel index -> RAS+ mm.
        metadata: free-form provenance (source path, series UID, side, ...), read-only.
    """

    array: npt.NDArray[Any]
    affine_ras: Affine
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim not in (2, 3):
            raise InputError(f"a Volume is 2D or 3D, got an array of shape {arr.shape}")
        if arr.dtype.kind not in "biuf":
            raise InputError(f"a Volume holds numbers, got dtype {arr.dtype}")
        if arr.size == 0:
            raise InputError(f"a Volume cannot be empty, got shape {arr.shape}")
        object.__setattr__(self, "array", arr)
        object.__setattr__(self, "affine_ras", validate_affine(self.affine_ras))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    # geometry -----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.array.shape)

    @property
    def ndim(self) -> int:
        return int(self.array.ndim)

    @property
    def spacing_mm(self) -> tuple[float, ...]:
        """Voxel spacing in mm along each array axis (length ``ndim``)."""
        return spacing_from_affine(self.affine_ras)[: self.ndim]

    @property
    def orientation(self) -> str:
        """Axis code such as ``"PIR"`` (direction of increasing i, j, k in RAS letters)."""
        return orientation_code(self.affine_ras)

    @property
    def affine_lps(self) -> Affine:
        """The same geometry as voxel -> LPS+ mm (DICOM/ITK convention)."""
        return ras_to_lps(self.affine_ras)

    @property
    def is_label(self) -> bool:
        """True for a label map of a scheme kneescope knows (see :func:`label_map_problem`)."""
        return label_map_problem(self.array) is None

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(spacing_from_affine(self.affine_ras)[: self.ndim]))

    # derived volumes ------------------------------------------------------------------------
    def with_array(self, array: npt.NDArray[Any], **metadata: Any) -> Volume:
        """A new Volume on the same grid with another array (shape must match)."""
        if tuple(array.shape) != self.shape:
            raise GeometryError(
                f"array shape {tuple(array.shape)} does not match the grid {self.shape}"
            )
        return Volume(array, self.affine_ras.copy(), {**self.metadata, **metadata})

    def mirrored_lr(self) -> Volume:
        """The same voxels with the world mirrored left<->right (a left knee seen as a right)."""
        return Volume(self.array, flip_lr_affine(self.affine_ras), dict(self.metadata))

    def same_grid(self, other: Volume, *, atol_mm: float = 1e-4) -> bool:
        """True if ``other`` has the same shape and the same affine within ``atol_mm``."""
        return self.shape == other.shape and bool(
            np.allclose(self.affine_ras, other.affine_ras, atol=atol_mm)
        )

    def __repr__(self) -> str:
        spacing = "x".join(f"{s:.4g}" for s in self.spacing_mm)
        return (
            f"Volume(shape={self.shape}, dtype={self.array.dtype}, spacing_mm={spacing}, "
            f"orientation={self.orientation})"
        )


def label_map_problem(array: npt.NDArray[Any]) -> str | None:
    """Why ``array`` is not a label map of a scheme kneescope knows, or None when it is one.

    A label map is boolean, or integer with every value a label of
    :data:`~kneescope.core.labels.KNEE_LABELS` or
    :data:`~kneescope.core.labels.OAI_ZIB_LABELS` (0 = background up to
    :data:`MAX_LABEL_VALUE`), so at most ``MAX_LABEL_VALUE + 1`` distinct values. An MR image
    stored as integers fails this: its intensities reach far beyond the label values.
    """
    kind = array.dtype.kind
    if kind == "b":
        return None
    if kind not in "iu":
        return f"holds {array.dtype} values, not integer labels"
    if array.size == 0:
        return None
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > MAX_LABEL_VALUE:
        return (
            f"holds values {low}..{high}; a label map holds only the labels "
            f"0..{MAX_LABEL_VALUE} ({KNEE_LABELS.name} or {OAI_ZIB_LABELS.name} scheme)"
        )
    return None


def check_voxel_count(shape: tuple[int, ...], *, what: str) -> None:
    """Refuse absurd sizes before any allocation.

    Raises:
        InputError: any dimension is non-positive or the total exceeds :data:`MAX_VOXELS`.
    """
    if any(int(n) <= 0 for n in shape):
        raise InputError(f"{what}: image dimensions must be positive, got {shape}")
    total = int(np.prod([int(n) for n in shape], dtype=np.float64))
    if total > MAX_VOXELS:
        raise InputError(
            f"{what}: header claims {total:,} voxels ({shape}); more than the "
            f"{MAX_VOXELS:,} kneescope accepts, so the header is likely corrupt"
        )
