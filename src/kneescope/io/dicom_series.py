"""DICOM image series (one file per slice, e.g. an OAI DESS folder) to and from a Volume.

Array convention for a series read by kneescope: ``array[i, j, k]`` with

* ``i`` = column index within a slice (along the first ImageOrientationPatient vector, the
  direction of increasing column), spacing ``PixelSpacing[1]``;
* ``j`` = row index within a slice (along the second ImageOrientationPatient vector),
  spacing ``PixelSpacing[0]``;
* ``k`` = slice index, slices sorted by their position along the slice normal
  ``row_dir x col_dir`` (never by file name), spacing the distance between slice positions.

This is ITK's ``GetArrayFromImage`` transposed (ITK arrays are ``[k, j, i]``), so kneescope,
SimpleITK and nibabel agree voxel for voxel. The affine maps ``(i, j, k, 1)`` to RAS+ mm:
voxel (0,0,0) is the first pixel of the first slice (its ImagePositionPatient, converted
from LPS). Series read this way always have ``k`` along ``+normal``; a volume written with a
left-handed affine (e.g. a mirrored knee) therefore reads back with ``k`` reversed and the
equivalent affine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from kneescope.core.geometry import lps_to_ras, orientation_code
from kneescope.core.volume import Volume, check_voxel_count
from kneescope.errors import DicomError, InputError
from kneescope.io._dicom_header import (
    apply_rescale,
    int_tag,
    laterality_of,
    read_header,
    read_pixels,
    rescale_of,
    side_metadata,
    stored_dtype,
    text_of,
)
from kneescope.io.dicom_write import DicomWriteMeta, write_dicom_series
from kneescope.io.guards import require_regular_file
from kneescope.types import Affine

logger = logging.getLogger(__name__)

__all__ = [
    "DicomSeriesInfo",
    "DicomWriteMeta",
    "read_dicom_series",
    "scan_dicom_series",
    "write_dicom_series",
]

_ORIENTATION_ATOL = 1e-4
"""Largest difference between ImageOrientationPatient cosines of one series."""
_SPACING_RTOL = 0.01
"""Slice gaps may differ from the median by 1 % (plus 1 micrometre) before a series is refused."""


@dataclass(frozen=True)
class DicomSeriesInfo:
    """Header-only description of a DICOM series, as :func:`read_dicom_series` will read it.

    Attributes:
        folder: the series folder.
        files: slice files ordered by position along the slice normal (k = 0 first).
        shape: (i, j, k) = (Columns, Rows, number of slices).
        spacing_mm: (column spacing, row spacing, slice spacing) in mm.
        affine_ras: float64 (4, 4) voxel -> RAS+ mm.
        orientation: axis code of the affine, e.g. ``"PIR"``.
        modality, series_description, series_uid, study_uid, patient_id, study_date: header
            values ('' when absent); study_date is ``YYYYMMDD``.
        laterality: ``"right"``/``"left"`` from (0020,0060)/(0020,0062) or the
            SeriesDescription, else None.
        bits_allocated, bits_stored: from the header.
        stored_dtype: numpy dtype name of the stored pixels (``"uint16"``, ``"int16"``...).
        n_slices: number of slice files.
        rescale_slope, rescale_intercept: of the first slice (1, 0 when absent).
        rescale_varies: True when slices have different slope/intercept.
    """

    folder: Path
    files: tuple[Path, ...]
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    affine_ras: Affine
    orientation: str
    modality: str
    series_description: str
    series_uid: str
    study_uid: str
    patient_id: str
    study_date: str
    laterality: str | None
    bits_allocated: int
    bits_stored: int
    stored_dtype: str
    n_slices: int
    rescale_slope: float
    rescale_intercept: float
    rescale_varies: bool = False


def _list_slice_files(folder: Path) -> list[Path]:
    if not folder.exists():
        raise InputError(f"{folder}: no such folder; check the path")
    if not folder.is_dir():
        raise InputError(f"{folder}: expected a DICOM series folder, found a file")
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except PermissionError:
        raise InputError(f"{folder}: permission denied; check the folder's permissions") from None
    except OSError as exc:
        raise InputError(f"{folder}: cannot list folder ({exc.strerror})") from None
    files = []
    for entry in entries:
        if entry.name.startswith("."):
            continue  # hidden files (including kneescope's own temporaries)
        if entry.is_dir(follow_symlinks=True):
            continue  # OAI quirk: stray sub-folders inside series folders
        # never open a FIFO, socket or device: a reader would block or stream for ever
        require_regular_file(Path(entry.path), what="DICOM file")
        files.append(Path(entry.path))
    if not files:
        raise DicomError(f"{folder}: no DICOM files found; expected one file per slice")
    return files


def _float_list(ds: Dataset, tag: str, n: int, path: Path) -> npt.NDArray[np.float64]:
    value = ds.get(tag, None)
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise DicomError(
            f"{path}: missing or malformed {tag} (expected {n} numbers, got {value!r})"
        )
    return arr


def _slice_geometry(
    ds: Dataset, path: Path
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(unit row direction, unit column direction, position) in LPS of one slice header."""
    iop = _float_list(ds, "ImageOrientationPatient", 6, path)
    ipp = _float_list(ds, "ImagePositionPatient", 3, path)
    row_dir, col_dir = iop[:3], iop[3:]
    nr, nc = np.linalg.norm(row_dir), np.linalg.norm(col_dir)
    if nr < 0.5 or nc < 0.5 or abs(float(np.dot(row_dir, col_dir))) / (nr * nc) > 1e-3:
        raise DicomError(
            f"{path}: ImageOrientationPatient {iop.tolist()} is not two orthogonal unit vectors"
        )
    return row_dir / nr, col_dir / nc, ipp


def _check_same(values: Sequence[Any], what: str, folder: Path, files: Sequence[Path]) -> None:
    first = values[0]
    for value, path in zip(values, files, strict=True):
        if value != first:
            raise DicomError(
                f"{folder}: mixed series: {what} is {first!r} in {files[0].name} but {value!r} in "
                f"{path.name}; put each series in its own folder"
            )


def _slice_spacing(positions_mm: npt.NDArray[np.float64], folder: Path) -> float:
    """Validate sorted slice positions along the normal; return the slice spacing in mm."""
    steps = np.diff(positions_mm)
    scale = float(max(np.abs(steps).max(initial=0.0), 1e-3))
    dup = np.flatnonzero(steps < max(1e-3, 1e-3 * scale))
    if dup.size:
        raise DicomError(
            f"{folder}: duplicate slices: {dup.size} slice(s) repeat a position along the "
            f"normal (first at {positions_mm[dup[0]]:.4f} mm); remove the "
            "duplicate files"
        )
    spacing = float(np.median(steps))
    tol = _SPACING_RTOL * spacing + 1e-3
    bad = np.flatnonzero(np.abs(steps - spacing) > tol)
    if bad.size:
        step = float(steps[bad[0]])
        ratio = step / spacing
        if ratio > 1.5 and abs(ratio - round(ratio)) * spacing <= tol:
            raise DicomError(
                f"{folder}: missing slice(s): a gap of {step:.4f} mm after slice {bad[0]} where "
                f"the spacing is {spacing:.4f} mm ({round(ratio) - 1} slice(s) absent); the "
                "series is incomplete"
            )
        raise DicomError(
            f"{folder}: inconsistent slice spacing: {steps.min():.4f}..{steps.max():.4f} mm "
            f"(median {spacing:.4f} mm); kneescope reads only evenly spaced series"
        )
    return float(np.mean(steps))


def scan_dicom_series(folder: Path) -> DicomSeriesInfo:
    """Read the headers of a series folder (no pixel data) and validate it as one 3D volume.

    Files are ordered by position along the slice normal. Hidden files and sub-folders are
    ignored; every other file must be a DICOM slice of the same series.

    Raises:
        InputError: the folder is missing or unreadable.
        DicomError: no DICOM files, a non-DICOM or truncated file, several series, differing
            orientation/size/pixel spacing, duplicate or missing slices, uneven spacing, a
            single slice, or a header that claims an absurd size.
    """
    folder = Path(folder)
    files = _list_slice_files(folder)
    headers = [read_header(path)[0] for path in files]
    first = headers[0]
    _check_same(
        [text_of(ds, "SeriesInstanceUID") for ds in headers], "SeriesInstanceUID", folder, files
    )
    _check_same(
        [(int(ds.Rows), int(ds.Columns)) for ds in headers], "(Rows, Columns)", folder, files
    )
    _check_same([int(ds.BitsAllocated) for ds in headers], "BitsAllocated", folder, files)
    _check_same(
        [int(ds.PixelRepresentation) for ds in headers], "PixelRepresentation", folder, files
    )
    rows, cols = int(first.Rows), int(first.Columns)
    n = len(files)
    try:
        check_voxel_count((cols, rows, n), what=str(folder))
    except DicomError:
        raise
    except InputError as exc:
        raise DicomError(str(exc)) from None
    if n < 2:
        raise DicomError(
            f"{folder}: a single slice is a 2D image where a 3D series is needed; "
            "read it with read_dicom_radiograph, or supply the whole series"
        )

    geoms = [_slice_geometry(ds, path) for ds, path in zip(headers, files, strict=True)]
    row_dir, col_dir = geoms[0][0], geoms[0][1]
    for (r, c, _), path in zip(geoms, files, strict=True):
        if not (
            np.allclose(r, row_dir, atol=_ORIENTATION_ATOL)
            and np.allclose(c, col_dir, atol=_ORIENTATION_ATOL)
        ):
            raise DicomError(
                f"{folder}: mixed series: ImageOrientationPatient differs between "
                f"{files[0].name} and {path.name}; put each series in its own folder"
            )
    pixel_spacing = [
        tuple(_float_list(ds, "PixelSpacing", 2, p)) for ds, p in zip(headers, files, strict=True)
    ]
    _check_same(
        [tuple(round(v, 6) for v in ps) for ps in pixel_spacing], "PixelSpacing", folder, files
    )
    row_spacing, col_spacing = float(pixel_spacing[0][0]), float(pixel_spacing[0][1])
    if row_spacing <= 0 or col_spacing <= 0:
        raise DicomError(f"{files[0]}: PixelSpacing must be positive, got {pixel_spacing[0]}")

    normal = np.cross(row_dir, col_dir)
    positions = np.stack([g[2] for g in geoms])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along_sorted = along[order]
    positions = positions[order]
    slice_spacing = _slice_spacing(along_sorted, folder)
    # in-plane offsets of slice origins must stay put (no shear / gantry tilt)
    inplane = positions - np.outer(along_sorted, normal)
    drift = float(np.abs(inplane - inplane[0]).max())
    if drift > 0.01 * min(row_spacing, col_spacing) + 1e-3:
        raise DicomError(
            f"{folder}: slice origins drift {drift:.4f} mm across the normal (gantry tilt or "
            "sheared stack); kneescope reads only orthogonal stacks"
        )

    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * col_spacing
    affine_lps[:3, 1] = col_dir * row_spacing
    affine_lps[:3, 2] = normal * slice_spacing
    affine_lps[:3, 3] = positions[0]
    affine_ras = lps_to_ras(affine_lps)

    ordered_headers = [headers[int(i)] for i in order]
    rescales = [rescale_of(ds) for ds in ordered_headers]
    slope, intercept = rescales[0]
    return DicomSeriesInfo(
        folder=folder,
        files=tuple(files[int(i)] for i in order),
        shape=(cols, rows, n),
        spacing_mm=(col_spacing, row_spacing, slice_spacing),
        affine_ras=affine_ras,
        orientation=orientation_code(affine_ras),
        modality=text_of(first, "Modality"),
        series_description=text_of(first, "SeriesDescription"),
        series_uid=text_of(first, "SeriesInstanceUID"),
        study_uid=text_of(first, "StudyInstanceUID"),
        patient_id=text_of(first, "PatientID"),
        study_date=text_of(first, "StudyDate"),
        laterality=laterality_of(first),
        bits_allocated=int(first.BitsAllocated),
        bits_stored=int_tag(first, "BitsStored", files[0], default=int(first.BitsAllocated)),
        stored_dtype=stored_dtype(first, files[0]).name,
        n_slices=n,
        rescale_slope=slope,
        rescale_intercept=intercept,
        rescale_varies=any(r != rescales[0] for r in rescales),
    )


def read_dicom_series(folder: Path) -> Volume:
    """Read a DICOM series folder as a 3D Volume (see the module docstring for axes).

    Pixel values are rescaled with RescaleSlope/RescaleIntercept; the integer dtype is kept
    when the slope is 1 and the intercept an integer (for every slice), otherwise float32.

    Returns:
        Volume with array of shape (Columns, Rows, slices) and metadata keys ``source_path``,
        ``series_uid``, ``study_uid``, ``series_description``, ``side`` and ``side_source``
        (from the DICOM Laterality, when recorded), ``role`` (``"image"``), ``patient_id``,
        ``study_date``, ``modality``.

    Raises:
        DicomError: see :func:`scan_dicom_series`; also undecodable pixel data or NaNs.
    """
    info = scan_dicom_series(folder)
    dtype = np.dtype(info.stored_dtype)
    cols, rows, n = info.shape
    raw = np.empty((cols, rows, n), dtype=dtype)
    rescales = []
    for k, path in enumerate(info.files):
        pixels, ds = read_pixels(path)
        if pixels.shape != (rows, cols):
            raise DicomError(
                f"{path}: pixel array is {pixels.shape}, header says {(rows, cols)}; file corrupt"
            )
        raw[:, :, k] = pixels.T
        rescales.append(rescale_of(ds))
    if any(r != rescales[0] for r in rescales):
        array: npt.NDArray[Any] = np.empty(raw.shape, dtype=np.float32)
        for k, (slope, intercept) in enumerate(rescales):
            array[:, :, k] = raw[:, :, k].astype(np.float64) * slope + intercept
    else:
        array = apply_rescale(raw, *rescales[0])
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise DicomError(f"{info.folder}: pixel values hold NaN or infinity after rescale")
    metadata = {
        "source_path": str(info.folder),
        "series_uid": info.series_uid,
        "study_uid": info.study_uid,
        "series_description": info.series_description,
        **side_metadata(info.laterality),
        "role": "image",
        "patient_id": info.patient_id,
        "study_date": info.study_date,
        "modality": info.modality,
    }
    return Volume(array, info.affine_ras, metadata)
