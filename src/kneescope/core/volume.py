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
from typing import Any, Literal, TypedDict

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

Side = Literal["right", "left"]
Role = Literal["image", "label_map"]


class VolumeMetadata(TypedDict, total=False):
    """The metadata keys kneescope's readers and writers use (others may be present).

    Attributes:
        source_path: the file or folder the volume was read from.
        description: free text stored with the image (NIfTI ``descrip``).
        side: the knee's side, ``"right"`` or ``"left"`` (the one key for it; a DICOM
            reader's Laterality, a NIfTI description or sidecar all land here).
        side_source: where ``side`` came from, in words (``"its DICOM Laterality"``).
        role: ``"image"`` when the reader knows the voxels are intensities (a DICOM MR or
            radiograph), ``"label_map"`` when it knows they are labels; absent if unknown.
        orientation_unknown: True when the file recorded no orientation.
    """

    source_path: str
    description: str
    side: Side
    side_source: str
    role: Role
    orientation_unknown: bool


DICOM_SIDE_SOURCE = "its DICOM Laterality"
"""``side_source`` of a side read from a DICOM file's Laterality."""

LEGACY_SIDE_KEY = "laterality"
"""Older name of ``side`` (DICOM readers used it): still read, normalised into ``side``."""


def side_of_text(value: object) -> Side | None:
    """``"right"``/``"left"`` from ``right``, ``R``, ``left``, ``L`` (any case); else None."""
    text = str(value).strip().lower() if value is not None else ""
    if text in ("right", "r"):
        return "right"
    if text in ("left", "l"):
        return "left"
    return None


def _normalised_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    meta = dict(metadata)
    if "side" in meta:
        side = side_of_text(meta["side"])
        if side is None and meta["side"] not in (None, ""):
            raise InputError(f"a Volume's side is 'right' or 'left', got {meta['side']!r}")
        meta["side"] = side
        if side is None:
            del meta["side"]
    if "side" not in meta and meta.get(LEGACY_SIDE_KEY) is not None:
        side = side_of_text(meta[LEGACY_SIDE_KEY])
        if side is not None:
            meta["side"] = side
            meta.setdefault("side_source", DICOM_SIDE_SOURCE)
    if meta.get("role") not in (None, "image", "label_map"):
        raise InputError(f"a Volume's role is 'image' or 'label_map', got {meta['role']!r}")
    return meta


@dataclass(frozen=True, eq=False)
class Volume:
    """A 2D or 3D image or label map with an exact voxel->RAS affine.

    Attributes:
        array: voxel values, shape (I, J, K) or (I, J); any numeric dtype. Integer arrays that
            hold labels stay integer.
        affine_ras: float64 (4, 4), voxel index -> RAS+ mm.
        metadata: provenance, read-only; the keys kneescope uses are typed in
            :class:`VolumeMetadata` and read through :attr:`side`, :attr:`side_source`,
            :attr:`source_path`, :attr:`role`. A ``laterality`` key (older readers) is read
            as ``side``.
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
        object.__setattr__(self, "metadata", MappingProxyType(_normalised_metadata(self.metadata)))

    # typed metadata -------------------------------------------------------------------------
    @property
    def side(self) -> Side | None:
        """The knee's side as recorded with the image, or None when unknown."""
        side = self.metadata.get("side")
        return side if side in ("right", "left") else None

    @property
    def side_source(self) -> str | None:
        """Where :attr:`side` came from, in words; None when the side is unknown."""
        if self.side is None:
            return None
        return str(self.metadata.get("side_source", "the file"))

    @property
    def source_path(self) -> str | None:
        """The file or folder this volume was read from, if known."""
        path = self.metadata.get("source_path")
        return None if path is None else str(path)

    @property
    def role(self) -> Role | None:
        """``"image"`` or ``"label_map"`` when the reader knew it, else None."""
        role = self.metadata.get("role")
        return role if role in ("image", "label_map") else None

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
        """True for a label map of a scheme kneescope knows: never for a volume its reader
        knew to be an image (:attr:`role`, e.g. a DICOM MR series), else by its values and
        structure (see :func:`label_map_problem`)."""
        return self.role != "image" and label_map_problem(self.array) is None

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(spacing_from_affine(self.affine_ras)[: self.ndim]))

    # derived volumes ------------------------------------------------------------------------
    def with_array(self, array: npt.NDArray[Any], **metadata: Any) -> Volume:
        """A new Volume on the same grid with another array (shape must match).

        Another array is other content: the reader's ``role`` is not carried over (a label
        map made on an MR image's grid is no image).
        """
        if tuple(array.shape) != self.shape:
            raise GeometryError(
                f"array shape {tuple(array.shape)} does not match the grid {self.shape}"
            )
        kept = dict(self.metadata)
        if array is not self.array:
            kept.pop("role", None)
        return Volume(array, self.affine_ras.copy(), {**kept, **metadata})

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

    Wider integer arrays (16 bits and more, the dtypes of MR images; kneescope writes label
    maps as uint8) must also look like one: regions, not noise. A label map changes value
    between few neighbouring voxels (a knee's label map at 0.36-1.1 mm: 1-2 %), an MR image
    even squeezed into 0..9 between many (15 % and more); above
    :data:`MAX_LABEL_CHANGE_FRACTION` the array is refused. Arrays under 4,096 voxels are
    too small to tell and judged by their values only.
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
    if array.dtype.itemsize > 1 and array.size >= 4096:
        changes = label_change_fraction(array)
        if changes > MAX_LABEL_CHANGE_FRACTION:
            return (
                f"holds {array.dtype} values 0..{high} that change between {changes:.0%} of "
                "neighbouring voxels: an image's intensities, not a label map's regions"
            )
    return None


MAX_LABEL_CHANGE_FRACTION = 0.08
"""Largest share of neighbouring voxel pairs with different values in a 16-bit or wider label
map (see :func:`label_map_problem`)."""


def label_change_fraction(array: npt.NDArray[Any]) -> float:
    """Share of neighbouring voxel pairs (along every axis) whose values differ, 0..1."""
    pairs = 0
    changes = 0
    for axis in range(array.ndim):
        if array.shape[axis] < 2:
            continue
        head = array[(slice(None),) * axis + (slice(1, None),)]
        tail = array[(slice(None),) * axis + (slice(None, -1),)]
        changes += int(np.count_nonzero(head != tail))
        pairs += head.size
    return changes / pairs if pairs else 0.0


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
