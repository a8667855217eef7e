"""Private helpers shared by the DICOM series and radiograph readers and writers (pydicom)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from kneescope.core.volume import DICOM_SIDE_SOURCE, check_voxel_count
from kneescope.errors import DicomError, InputError
from kneescope.io.guards import check_image_bytes, require_regular_file

DICOM_MAGIC = b"DICM"
"""Bytes 128..131 of a DICOM Part 10 file."""

_REQUIRED_IMAGE_TAGS = ("Rows", "Columns", "BitsAllocated", "PixelRepresentation")


def has_dicom_magic(path: Path) -> bool:
    """True if ``path`` is a file with ``DICM`` at byte offset 128 (DICOM Part 10)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == DICOM_MAGIC
    except OSError:
        return False


def read_header(path: Path) -> tuple[Dataset, int]:
    """Read a DICOM file's header (no pixel data) and check that its pixel data is complete.

    Returns:
        The dataset (without PixelData) and the byte offset where the pixel data element starts.

    Raises:
        InputError: the file cannot be opened (permissions).
        DicomError: not a DICOM file, unreadable, truncated, absurd size, or not an image.
    """
    require_regular_file(path, what="DICOM file")
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            magic = fh.read(4)
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror}); check the file") from None
    if magic != DICOM_MAGIC:
        raise DicomError(
            f"{path}: not a DICOM file (no 'DICM' marker at byte 128); "
            "remove it from the series folder or check the export"
        )
    try:
        with open(path, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            pixel_offset = fh.tell()
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, struct.error) as exc:
        raise DicomError(
            f"{path}: unreadable DICOM header ({exc}); the file may be truncated"
        ) from None
    missing = [tag for tag in _REQUIRED_IMAGE_TAGS if tag not in ds]
    if missing:
        raise DicomError(
            f"{path}: DICOM header lacks {', '.join(missing)}; the file is truncated or is not "
            "an image"
        )
    rows, cols = int_tag(ds, "Rows", path), int_tag(ds, "Columns", path)
    frames = int_tag(ds, "NumberOfFrames", path, default=1)
    bits = int_tag(ds, "BitsAllocated", path)
    int_tag(ds, "PixelRepresentation", path)
    samples = int_tag(ds, "SamplesPerPixel", path, default=1)
    rescale_of(ds, path)
    if bits not in (1, 8, 16, 32, 64):
        raise DicomError(f"{path}: BitsAllocated {bits} is not 1, 8, 16, 32 or 64; corrupt header")
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        check_voxel_count((rows, cols, frames), what=str(path))
        check_image_bytes(
            (rows, cols, frames * samples),
            max(1, bits // 8),
            what=str(path),
            compressed=ts is not None and ts.is_compressed,
        )
    except DicomError:
        raise
    except InputError as exc:
        raise DicomError(str(exc)) from None
    _check_pixel_bytes(path, ds, pixel_offset)
    return ds, pixel_offset


def int_tag(ds: Dataset, tag: str, path: Path, *, default: int | None = None) -> int:
    """An integer header value; ``default`` when absent or empty.

    Raises:
        DicomError: the value is not an integer (or absent without a default).
    """
    value = ds.get(tag, None)
    if value is None or value == "":
        if default is None:
            raise DicomError(f"{path}: DICOM header lacks {tag}; the file is not an image")
        return default
    try:
        number = float(str(value).strip())
        if not number.is_integer():
            raise ValueError
        return int(number)
    except (TypeError, ValueError):
        raise DicomError(
            f"{path}: DICOM {tag} is {str(value)[:40]!r}, not an integer; the header is corrupt"
        ) from None


def _float_tag(ds: Dataset, tag: str, path: Path | None, default: float) -> float:
    value = ds.get(tag, None)
    if value is None or value == "":
        return default
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number):
        where = f"{path}: " if path is not None else ""
        raise DicomError(
            f"{where}DICOM {tag} is {str(value)[:40]!r}, not a finite number; the header is corrupt"
        )
    return number


def _check_pixel_bytes(path: Path, ds: Dataset, pixel_offset: int) -> None:
    size = path.stat().st_size
    if pixel_offset >= size:
        raise DicomError(f"{path}: DICOM file has no pixel data; the file is truncated")
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts is not None and ts.is_compressed:
        return  # encapsulated: the length is not known from the header
    implicit = ts is not None and ts.is_implicit_VR
    element_header = 8 if implicit else 12
    frames = int_tag(ds, "NumberOfFrames", path, default=1)
    samples = int_tag(ds, "SamplesPerPixel", path, default=1)
    rows, cols, bits = (int_tag(ds, t, path) for t in ("Rows", "Columns", "BitsAllocated"))
    expected = rows * cols * frames * samples * bits // 8
    found = size - pixel_offset - element_header
    if found < expected:
        raise DicomError(
            f"{path}: truncated DICOM file: pixel data holds {max(found, 0):,} of the "
            f"{expected:,} bytes that Rows x Columns x BitsAllocated require; re-copy the file"
        )


def read_pixels(path: Path) -> tuple[npt.NDArray[Any], Dataset]:
    """Decode the pixel data of a single-frame DICOM file as stored.

    Returns:
        (pixels of shape (Rows, Columns) in the stored dtype, the full dataset).
    """
    try:
        ds = pydicom.dcmread(path)
        arr = np.asarray(ds.pixel_array)
    except (
        InvalidDicomError,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        struct.error,
        NotImplementedError,
        RuntimeError,
        AttributeError,
    ) as exc:
        raise DicomError(f"{path}: cannot decode pixel data ({exc})") from None
    if arr.ndim != 2:
        raise DicomError(
            f"{path}: expected a single-frame grayscale image, got pixel array shape {arr.shape}"
        )
    return arr, ds


def stored_dtype(ds: Dataset, path: Path) -> np.dtype[Any]:
    """numpy dtype of the stored pixel values (before rescale)."""
    bits = int(ds.BitsAllocated)
    signed = int(ds.PixelRepresentation) == 1
    if bits not in (8, 16, 32):
        raise DicomError(f"{path}: unsupported BitsAllocated={bits}; expected 8, 16 or 32")
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}")


def rescale_of(ds: Dataset, path: Path | None = None) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept), defaulting to (1, 0).

    Raises:
        DicomError: a value that is not a finite number.
    """
    return (
        _float_tag(ds, "RescaleSlope", path, 1.0),
        _float_tag(ds, "RescaleIntercept", path, 0.0),
    )


def side_metadata(laterality: str | None) -> dict[str, str]:
    """Volume metadata for a DICOM Laterality (``side``, ``side_source``); none if empty."""
    if laterality is None:
        return {}
    return {"side": laterality, "side_source": DICOM_SIDE_SOURCE}


def laterality_of(ds: Dataset) -> str | None:
    """ "right"/"left" from (0020,0060) Laterality, (0020,0062) ImageLaterality, or the
    SeriesDescription (``..._RIGHT``/``..._LEFT``); None when none says."""
    for tag in ("Laterality", "ImageLaterality"):
        value = str(ds.get(tag, "") or "").strip().upper()
        if value == "R":
            return "right"
        if value == "L":
            return "left"
    desc = str(ds.get("SeriesDescription", "") or "").upper()
    words = set(desc.replace("^", "_").replace(" ", "_").split("_"))
    if "RIGHT" in words and "LEFT" not in words:
        return "right"
    if "LEFT" in words and "RIGHT" not in words:
        return "left"
    return None


def text_of(ds: Dataset, tag: str) -> str:
    """A header value as a stripped string ('' when absent)."""
    value = ds.get(tag, "")
    return "" if value is None else str(value).strip()


def apply_rescale(raw: npt.NDArray[Any], slope: float, intercept: float) -> npt.NDArray[Any]:
    """Apply ``raw * slope + intercept``; keep an integer dtype when the result is integral.

    Integer input with slope 1 and an integer intercept stays integer (the smallest of the raw
    dtype, int16, uint16, int32 that holds the result); otherwise the result is float32.
    """
    if slope == 1.0 and intercept == 0.0:
        return raw
    if raw.dtype.kind in "iu" and slope == 1.0 and float(intercept).is_integer():
        lo = int(raw.min()) + int(intercept)
        hi = int(raw.max()) + int(intercept)
        for dt in (raw.dtype, np.dtype(np.int16), np.dtype(np.uint16), np.dtype(np.int32)):
            info = np.iinfo(dt)
            if info.min <= lo and hi <= info.max:
                return (raw.astype(np.int64) + int(intercept)).astype(dt)
        return raw.astype(np.int64) + int(intercept)
    return (raw.astype(np.float64) * slope + intercept).astype(np.float32)
