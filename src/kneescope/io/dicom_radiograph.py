"""Single-frame DICOM radiographs (e.g. bilateral PA fixed-flexion knee X-rays) as 2D Volumes.

Array convention (as :mod:`kneescope.core.volume` for 2D): ``array[i, j]`` with ``i`` = row
(top to bottom of the displayed image) and ``j`` = column (left to right), i.e. the pixel
array exactly as displayed. Values are such that bone is bright: ``MONOCHROME1`` images are
inverted on read (``(2**BitsStored - 1) - value``; the writer stores them inverted back).

A projection radiograph has no true 3D position. The affine is nominal: origin 0, in-plane
directions from PatientOrientation (default ``L\\F`` for a PA view: columns run towards the
patient's left, rows towards the feet), spacing ``PixelSpacing`` (the spacing at the
patient, when the device calibrated it; else ``ImagerPixelSpacing``, at the detector; else
1 mm), and a unit third axis completing a right-handed frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from kneescope.core.volume import Volume
from kneescope.errors import DicomError, GeometryError, InputError
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
from kneescope.io.atomic import atomic_write_path
from kneescope.io.dicom_write import (
    DicomWriteMeta,
    as_dicom_integers,
    base_dataset,
    ds_values,
    make_uid,
    set_pixels,
)
from kneescope.io.guards import require_regular_file
from kneescope.types import Affine

logger = logging.getLogger(__name__)

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
"""SOP Class UID of Computed Radiography Image Storage."""

_LETTER_RAS = {
    "R": (1.0, 0.0, 0.0),
    "L": (-1.0, 0.0, 0.0),
    "A": (0.0, 1.0, 0.0),
    "P": (0.0, -1.0, 0.0),
    "H": (0.0, 0.0, 1.0),
    "F": (0.0, 0.0, -1.0),
}


@dataclass(frozen=True)
class DicomFileInfo:
    """Header-only description of a single-file DICOM image (e.g. a radiograph).

    Attributes:
        path: the file.
        shape: (Rows, Columns) as read (array[i, j]).
        spacing_mm: (row spacing, column spacing) in mm (PixelSpacing, else
            ImagerPixelSpacing, else (1, 1)).
        spacing_source: ``"PixelSpacing"``, ``"ImagerPixelSpacing"`` or ``"none"``.
        modality, sop_class_uid, series_description, study_description: header values
            ('' when absent).
        series_uid, study_uid, patient_id, study_date, photometric: header values ('' when
            absent).
        laterality: ``"right"``/``"left"``/None.
        n_frames: NumberOfFrames (1 when absent).
        bits_stored, stored_dtype: stored pixel format.
    """

    path: Path
    shape: tuple[int, int]
    spacing_mm: tuple[float, float]
    spacing_source: str
    modality: str
    sop_class_uid: str
    series_description: str
    study_description: str
    series_uid: str
    study_uid: str
    patient_id: str
    study_date: str
    photometric: str
    laterality: str | None
    n_frames: int
    bits_stored: int
    stored_dtype: str


def _spacing(ds: Any, path: Path) -> tuple[tuple[float, float], str]:
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(tag, None)
        if value is None or value == "":
            continue
        try:
            row_mm, col_mm = (float(v) for v in value)
        except (TypeError, ValueError):
            raise DicomError(f"{path}: malformed {tag} {value!r}; expected two numbers") from None
        if not (row_mm > 0 and col_mm > 0 and np.isfinite(row_mm) and np.isfinite(col_mm)):
            raise DicomError(f"{path}: {tag} must be positive, got {value!r}")
        return (row_mm, col_mm), tag
    return (1.0, 1.0), "none"


def scan_dicom_file(path: Path) -> DicomFileInfo:
    """Read one DICOM file's header (no pixel data), e.g. to catalog a radiograph quickly.

    Raises:
        InputError: the path is missing or unreadable.
        DicomError: not a DICOM image, truncated, or absurd size.
    """
    path = Path(path)
    _check_file(path)
    ds, _ = read_header(path)
    spacing, source = _spacing(ds, path)
    return DicomFileInfo(
        path=path,
        shape=(int(ds.Rows), int(ds.Columns)),
        spacing_mm=spacing,
        spacing_source=source,
        modality=text_of(ds, "Modality"),
        sop_class_uid=text_of(ds, "SOPClassUID"),
        series_description=text_of(ds, "SeriesDescription"),
        study_description=text_of(ds, "StudyDescription"),
        series_uid=text_of(ds, "SeriesInstanceUID"),
        study_uid=text_of(ds, "StudyInstanceUID"),
        patient_id=text_of(ds, "PatientID"),
        study_date=text_of(ds, "StudyDate"),
        photometric=text_of(ds, "PhotometricInterpretation"),
        laterality=laterality_of(ds),
        n_frames=int_tag(ds, "NumberOfFrames", path, default=1),
        bits_stored=int_tag(ds, "BitsStored", path, default=int_tag(ds, "BitsAllocated", path)),
        stored_dtype=stored_dtype(ds, path).name,
    )


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InputError(f"{path}: expected a DICOM file, found a folder (a series?)")
    require_regular_file(path, what="DICOM file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from None


def _direction(letters: str) -> npt.NDArray[np.float64] | None:
    letters = letters.strip().upper()
    if not letters or any(ch not in _LETTER_RAS for ch in letters):
        return None
    v = np.sum([_LETTER_RAS[ch] for ch in letters], axis=0)
    return v / np.linalg.norm(v)


def _nominal_affine(orientation: tuple[str, str] | None, spacing_mm: tuple[float, float]) -> Affine:
    """Affine of a 2D image from PatientOrientation (row dir, column dir letters)."""
    row_dir, col_dir = (
        (_direction(orientation[0]), _direction(orientation[1])) if orientation else (None, None)
    )
    if row_dir is None or col_dir is None or abs(float(np.dot(row_dir, col_dir))) > 1e-6:
        row_dir, col_dir = _direction("L"), _direction("F")
    assert row_dir is not None and col_dir is not None
    affine = np.eye(4)
    affine[:3, 0] = col_dir * spacing_mm[0]  # i = row index: moves down the columns
    affine[:3, 1] = row_dir * spacing_mm[1]  # j = column index: moves along a row
    affine[:3, 2] = np.cross(affine[:3, 0], affine[:3, 1]) / (spacing_mm[0] * spacing_mm[1])
    return affine


def _orientation_of(ds: Any) -> tuple[str, str] | None:
    value = ds.get("PatientOrientation", None)
    if value is None or isinstance(value, str) or len(value) != 2:
        return None
    return (str(value[0]), str(value[1]))


def read_dicom_radiograph(path: Path) -> Volume:
    """Read a single-frame DICOM radiograph as a 2D Volume (bone bright).

    Returns:
        Volume with array of shape (Rows, Columns): the stored integer dtype when there is no
        fractional rescale, else float32. Metadata: ``source_path``, ``photometric`` (as
        stored), ``inverted`` (True for MONOCHROME1), ``side`` and ``side_source`` (the DICOM
        Laterality, when recorded), ``role`` (``"image"``), ``series_description``,
        ``study_description``, ``patient_id``, ``study_date``, ``series_uid``, ``modality``,
        ``spacing_source`` (``PixelSpacing``, ``ImagerPixelSpacing`` or ``none``: which tag
        gave the spacing), ``patient_orientation`` (e.g. ``L\\F``; '' when not recorded),
        ``image_laterality`` (ImageLaterality as stored: ``R``, ``L``, ``B`` both, ``U``, or
        ''), ``view_position`` (ViewPosition as stored, e.g. ``PA``, ``AP``, ``LL``; '').

    Raises:
        InputError: missing or unreadable path.
        DicomError: not a single-frame grayscale DICOM image, truncated, NaNs.
    """
    info = scan_dicom_file(path)
    if info.n_frames != 1:
        raise DicomError(f"{path}: {info.n_frames} frames; expected a single-frame radiograph")
    if info.photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomError(
            f"{path}: PhotometricInterpretation {info.photometric!r}; expected MONOCHROME1/2"
        )
    raw, ds = read_pixels(path)
    if raw.shape != info.shape:
        raise DicomError(f"{path}: pixel array is {raw.shape}, header says {info.shape}")
    inverted = info.photometric == "MONOCHROME1"
    if inverted:
        raw = _invert(raw, info.bits_stored)
    array = apply_rescale(raw, *rescale_of(ds))
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise DicomError(f"{path}: pixel values hold NaN or infinity after rescale")
    orientation = _orientation_of(ds)
    metadata = {
        "source_path": str(path),
        "photometric": info.photometric,
        "inverted": inverted,
        **side_metadata(info.laterality),
        "role": "image",
        "series_description": info.series_description,
        "study_description": info.study_description,
        "patient_id": info.patient_id,
        "study_date": info.study_date,
        "series_uid": info.series_uid,
        "modality": info.modality,
        "spacing_source": info.spacing_source,
        "patient_orientation": "\\".join(orientation) if orientation else "",
        "image_laterality": text_of(ds, "ImageLaterality").upper(),
        "view_position": text_of(ds, "ViewPosition").upper(),
    }
    return Volume(array, _nominal_affine(orientation, info.spacing_mm), metadata)


def _invert(raw: npt.NDArray[Any], bits_stored: int) -> npt.NDArray[Any]:
    """Mirror stored values within the BitsStored range (MONOCHROME1 <-> MONOCHROME2)."""
    if raw.dtype.kind == "u":
        top = (1 << bits_stored) - 1
        return (top - raw.astype(np.int64)).clip(0, None).astype(raw.dtype)
    lo, hi = -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    return (lo + hi - raw.astype(np.int64)).astype(raw.dtype)


def _letters(direction: npt.NDArray[np.float64], what: str, path: Path) -> str:
    d = direction / np.linalg.norm(direction)
    for letter, vec in _LETTER_RAS.items():
        if np.allclose(d, vec, atol=1e-6):
            return letter
    raise GeometryError(
        f"{path}: radiograph axis {what} points {d.round(4).tolist()} (RAS); expected an "
        "axis-aligned 2D affine (PatientOrientation letters)"
    )


def write_dicom_radiograph(
    volume2d: Volume,
    path: Path,
    *,
    meta: DicomWriteMeta,
    photometric: Literal["MONOCHROME1", "MONOCHROME2"] = "MONOCHROME2",
    pixel_spacing: bool = True,
    image_laterality: Literal["R", "L", "B", "U"] | None = None,
    view_position: str = "PA",
) -> Path:
    """Write a 2D Volume (array[i=row, j=column], bone bright) as a CR DICOM file, atomically.

    The spacing goes to ImagerPixelSpacing (and to PixelSpacing unless ``pixel_spacing`` is
    False, as a film whose spacing at the patient was never calibrated); the in-plane
    directions of the affine (which must be axis-aligned) to PatientOrientation;
    ``image_laterality`` (R, L, B for both knees, U unknown) to ImageLaterality;
    ``view_position`` to ViewPosition. With ``MONOCHROME1`` the stored values are inverted so
    that :func:`read_dicom_radiograph` gives back ``volume2d.array``.

    Raises:
        InputError: not 2D, non-integer or out-of-range values (uint16/int16 needed).
        GeometryError: an oblique in-plane affine.
    """
    path = Path(path)
    if volume2d.ndim != 2:
        raise InputError(f"{path}: a radiograph needs a 2D volume, got shape {volume2d.shape}")
    data = as_dicom_integers(volume2d.array, str(path))
    row_mm, col_mm = volume2d.spacing_mm[0], volume2d.spacing_mm[1]
    down = _letters(volume2d.affine_ras[:3, 0], "i (rows)", path)
    across = _letters(volume2d.affine_ras[:3, 1], "j (columns)", path)
    if photometric == "MONOCHROME1":
        if data.dtype != np.uint16:
            raise InputError(f"{path}: MONOCHROME1 output needs non-negative (uint16) values")
        data = _invert(data, 16)
    elif photometric != "MONOCHROME2":
        raise InputError(f"{path}: photometric must be MONOCHROME1 or MONOCHROME2")
    sop_uid = make_uid("instance", meta.uid_seed, str(meta.series_number), "0")
    modality = meta.modality if meta.modality in ("CR", "DX") else "CR"
    ds = base_dataset(meta.model_copy(update={"modality": modality}), CR_IMAGE_STORAGE, sop_uid)
    ds.InstanceNumber = 1
    ds.PatientOrientation = [across, down]
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.ViewPosition = view_position
    if image_laterality is not None:
        ds.ImageLaterality = image_laterality
        if not ds.get("Laterality"):
            del ds.Laterality  # Type 2C: only when ImageLaterality is not sent
    ds.ImagerPixelSpacing = ds_values([row_mm, col_mm])
    if pixel_spacing:
        ds.PixelSpacing = ds_values([row_mm, col_mm])
    set_pixels(ds, np.ascontiguousarray(data), photometric)
    lo, hi = int(data.min()), int(data.max())
    ds.WindowCenter = ds_values([(lo + hi) / 2.0])[0]
    ds.WindowWidth = ds_values([max(hi - lo, 1)])[0]
    with atomic_write_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    logger.debug("wrote radiograph %s (%s)", path, photometric)
    return path
