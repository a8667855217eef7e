"""NIfTI-1 (``.nii``, ``.nii.gz``) volumes via nibabel.

NIfTI stores a voxel -> RAS+ affine, kneescope's own convention, so ``affine_ras`` is written
as both sform and qform (code 1, scanner) and read back from the sform (else the qform).
The array axes are NIfTI's ``i, j, k`` directly.
"""

from __future__ import annotations

import gzip
import logging
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kneescope.core.volume import Volume, check_voxel_count
from kneescope.errors import GeometryError, InputError, UnsupportedFormatError
from kneescope.io.atomic import atomic_write_path
from kneescope.io.guards import check_image_bytes, require_regular_file
from kneescope.io.sidecar import recorded_side

logger = logging.getLogger(__name__)


def _nibabel() -> Any:
    """nibabel, imported on first use (partly typed, so handled as Any)."""
    import nibabel

    return nibabel


NIFTI_SUFFIXES = (".nii", ".nii.gz")

_INT_DTYPES = tuple(
    np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32)
)


def _check_readable(path: Path) -> int:
    """The file's size in bytes; only a readable regular file passes (never a FIFO)."""
    size = require_regular_file(path).st_size
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from None
    return int(size)


_HEADER_BYTES = {348: "Nifti1Header", 540: "Nifti2Header"}
_GZIP_CHUNK = 1 << 24


def _open_raw(path: Path) -> Any:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _raw_header(path: Path) -> Any:
    """The header as stored (nibabel's load-time fixes not applied; see :func:`_check_header`).

    Raises:
        UnsupportedFormatError: no NIfTI-1/NIfTI-2 header.
    """
    nib = _nibabel()
    try:
        with _open_raw(path) as fh:
            block = fh.read(540)
    except (OSError, EOFError, zlib.error) as exc:
        raise UnsupportedFormatError(f"{path}: not a readable NIfTI file ({exc})") from None
    for order in ("<", ">"):
        size = int(np.frombuffer(block[:4], dtype=f"{order}i4")[0]) if len(block) >= 4 else 0
        name = _HEADER_BYTES.get(size)
        if name is not None and len(block) >= size:
            try:
                return getattr(nib, name)(binaryblock=block[:size], check=False)
            except Exception as exc:  # nibabel raises assorted errors on corrupt blocks
                raise UnsupportedFormatError(
                    f"{path}: corrupt NIfTI header ({_one_line(exc)})"
                ) from None
    raise UnsupportedFormatError(f"{path}: not a readable NIfTI file (no NIfTI-1/NIfTI-2 header)")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _check_header(path: Path, header: Any, file_size: int) -> None:
    """Refuse a header that cannot describe a measurable image, before any voxel is read.

    Checks the datatype code, the scaling (scl_slope/scl_inter), the voxel spacing when no
    sform gives it (pixdim must be positive: nibabel would silently make 0 into 1 mm), and
    the claimed data size in bytes against the file (uncompressed) or the decoded-image
    budget (``.nii.gz``; see :mod:`kneescope.io.guards`).
    """
    try:
        dtype = np.dtype(header.get_data_dtype())
    except Exception:  # unknown datatype codes raise KeyError or HeaderDataError
        raise UnsupportedFormatError(
            f"{path}: NIfTI datatype code {int(header['datatype'])} is not a known type; "
            "the header is corrupt"
        ) from None
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise UnsupportedFormatError(
            f"{path}: NIfTI datatype {dtype} is not a scalar number type kneescope reads"
        )
    slope, inter = float(header["scl_slope"]), float(header["scl_inter"])
    if np.isfinite(slope) and slope != 0.0 and not np.isfinite(inter):
        raise InputError(f"{path}: scl_inter is {inter} (scl_slope {slope}); the header is corrupt")
    if np.isinf(slope):
        raise InputError(f"{path}: scl_slope is {slope}; the header is corrupt")
    try:
        shape = tuple(int(n) for n in header.get_data_shape())
    except Exception as exc:
        raise UnsupportedFormatError(
            f"{path}: corrupt NIfTI dimensions ({_one_line(exc)})"
        ) from None
    if not shape:
        raise InputError(f"{path}: the header claims no image dimensions")
    if int(header["sform_code"]) <= 0:
        pixdim = [float(v) for v in header["pixdim"][1 : min(len(shape), 3) + 1]]
        if not all(np.isfinite(v) and v > 0 for v in pixdim):
            raise GeometryError(
                f"{path}: voxel spacing unknown: pixdim {pixdim} is not positive and there is "
                "no sform; fix the header (e.g. in 3D Slicer) before measuring or segmenting"
            )
    offset = int(header.get_data_offset()) if "vox_offset" in header else header.sizeof_hdr
    check_image_bytes(
        shape,
        dtype.itemsize,
        what=str(path),
        file_bytes=file_size - offset,
        compressed=path.name.lower().endswith(".gz"),
    )
    if path.name.lower().endswith(".gz"):
        _check_gzip_holds(path, offset + math.prod(shape) * dtype.itemsize)


def _check_gzip_holds(path: Path, needed: int) -> None:
    """Decompress (streaming, discarding) until ``needed`` bytes; refuse a shorter stream, so
    that a tiny file never makes nibabel allocate what its header claims."""
    got = 0
    try:
        with gzip.open(path, "rb") as fh:
            while got < needed:
                chunk = fh.read(min(_GZIP_CHUNK, needed - got))
                if not chunk:
                    break
                got += len(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: corrupt gzip data ({_one_line(exc)})") from None
    if got < needed:
        raise InputError(
            f"{path}: header claims {needed:,} bytes but the gzip stream holds only {got:,}; "
            "the file is truncated or its header is corrupt"
        )


def check_nifti_file(path: Path) -> None:
    """Every check :func:`read_nifti` makes before reading voxels (regular file, header
    values, claimed bytes against the file or the budget); nothing is decoded.

    Raises:
        InputError, GeometryError, UnsupportedFormatError: see :func:`read_nifti`.
    """
    path = Path(path)
    file_size = _check_readable(path)  # first: never open a missing file or a FIFO
    _check_header(path, _raw_header(path), file_size)


def read_nifti(path: Path) -> Volume:
    """Read a 3D (or 2D) NIfTI file.

    Returns:
        Volume whose array keeps the stored dtype when there is no scaling (label maps stay
        integer); scaled data (scl_slope/inter) comes back as float32. A trailing singleton
        4th axis is dropped. Metadata: ``source_path``, ``description``; ``side`` and
        ``side_source`` when kneescope recorded the knee's side (``descrip`` or the JSON
        sidecar, see :mod:`kneescope.io.sidecar`); ``orientation_unknown`` (True) when the
        header has neither sform nor qform, so the affine is nibabel's guess from pixdim.

    Nothing is allocated before the header's claimed data size has been checked in bytes
    (see :func:`_check_header`); only a regular file is opened (never a FIFO).

    Raises:
        InputError: missing/unreadable/non-regular file, a claimed size the file does not hold
            (or over the decoded-image budget), a NaN scl_inter, not 2D/3D, NaN values.
        GeometryError: the voxel spacing is unknown (pixdim <= 0 or NaN, no sform).
        UnsupportedFormatError: not a NIfTI file, an unknown or non-scalar datatype.
    """
    path = Path(path)
    check_nifti_file(path)
    nib = _nibabel()
    try:
        img = nib.load(path)
    except (
        nib.filebasedimages.ImageFileError,
        nib.spatialimages.HeaderDataError,
        OSError,
        EOFError,
        ValueError,
        KeyError,
    ) as exc:
        raise UnsupportedFormatError(
            f"{path}: not a readable NIfTI file ({_one_line(exc)})"
        ) from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise UnsupportedFormatError(f"{path}: nibabel reads it as {type(img).__name__}, not NIfTI")
    shape = tuple(int(n) for n in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (2, 3):
        raise InputError(f"{path}: expected a 2D or 3D image, found shape {img.shape}")
    check_voxel_count(shape, what=str(path))
    header = img.header
    # nibabel moves scl_slope/scl_inter from the header to the data proxy on load
    slope = float(getattr(img.dataobj, "slope", 1.0))
    inter = float(getattr(img.dataobj, "inter", 0.0))
    try:
        if slope == 1.0 and inter == 0.0:
            array: npt.NDArray[Any] = np.asanyarray(img.dataobj.get_unscaled())
        else:
            array = np.asarray(img.get_fdata(dtype=np.float32))
    except (OSError, EOFError, ValueError, nib.spatialimages.HeaderDataError) as exc:
        raise InputError(
            f"{path}: cannot read voxel data ({_one_line(exc)}); the file may be truncated"
        ) from None
    array = np.asarray(array).reshape(shape)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise InputError(f"{path}: voxel values hold NaN or infinity")
    affine = img.get_sform() if int(header["sform_code"]) > 0 else img.get_qform()
    no_orientation = int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0
    if no_orientation:
        affine = img.affine
    description = header["descrip"].tobytes().rstrip(b"\0").decode("latin-1")
    metadata: dict[str, Any] = {"source_path": str(path), "description": description}
    if no_orientation:
        # pixdim alone: spacing known, orientation not (measure flags it, see biomarkers)
        metadata["orientation_unknown"] = True
    recorded = recorded_side(path, description)
    if recorded is not None:
        metadata["side"], metadata["side_source"] = recorded
    try:
        volume = Volume(array, np.asarray(affine, dtype=np.float64), metadata)
    except GeometryError as exc:
        raise GeometryError(f"{path}: {exc}") from None
    return volume


def _storage_dtype(array: npt.NDArray[Any]) -> np.dtype[Any]:
    if array.dtype == np.bool_:
        return np.dtype(np.uint8)
    if array.dtype.kind in "iu":
        if array.dtype in _INT_DTYPES:
            return array.dtype
        lo, hi = int(array.min()), int(array.max())
        for dt in _INT_DTYPES:
            info = np.iinfo(dt.type)
            if info.min <= lo and hi <= info.max:
                return dt
        raise InputError(f"integer values {lo}..{hi} do not fit a NIfTI integer type")
    return np.dtype(np.float32)


def write_nifti(volume: Volume, path: Path, *, description: str = "") -> Path:
    """Write ``volume`` as NIfTI-1 (gzip when the name ends in ``.nii.gz``), atomically.

    Integer and boolean arrays (label maps) keep an integer dtype (bool -> uint8, 64-bit ints
    -> the smallest NIfTI integer type holding the values); float arrays are written float32.
    The affine goes to sform and qform (code 1); units are mm.

    Raises:
        InputError: the name does not end in ``.nii``/``.nii.gz``; values that do not fit.
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(NIFTI_SUFFIXES):
        raise InputError(f"{path}: a NIfTI file name must end in .nii or .nii.gz")
    nib = _nibabel()
    array = volume.array
    dtype = _storage_dtype(array)
    data = np.asarray(array, dtype=dtype)
    img = nib.Nifti1Image(data, volume.affine_ras)
    img.set_data_dtype(dtype)
    img.header.set_xyzt_units(xyz="mm")
    img.set_sform(volume.affine_ras, code=1)
    img.set_qform(volume.affine_ras, code=1)
    if dtype.kind in "iu":
        img.header.set_slope_inter(1.0, 0.0)
    if description:
        img.header["descrip"] = description.encode("latin-1", "replace")[:79]
    suffix = ".nii.gz" if name.endswith(".nii.gz") else ".nii"
    with atomic_write_path(path, suffix=suffix) as tmp:
        nib.save(img, tmp)
    logger.debug("wrote NIfTI %s %s %s", path, data.shape, dtype)
    return path
