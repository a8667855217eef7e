"""NIfTI-1 (``.nii``, ``.nii.gz``) volumes via nibabel.

NIfTI stores a voxel -> RAS+ affine, kneescope's own convention, so ``affine_ras`` is written
as both sform and qform (code 1, scanner) and read back from the sform (else the qform).
The array axes are NIfTI's ``i, j, k`` directly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kneescope.core.volume import Volume, check_voxel_count
from kneescope.errors import GeometryError, InputError, UnsupportedFormatError
from kneescope.io.atomic import atomic_write_path
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


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InputError(f"{path}: expected a file, found a folder")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from None


def read_nifti(path: Path) -> Volume:
    """Read a 3D (or 2D) NIfTI file.

    Returns:
        Volume whose array keeps the stored dtype when there is no scaling (label maps stay
        integer); scaled data (scl_slope/inter) comes back as float32. A trailing singleton
        4th axis is dropped. Metadata: ``source_path``, ``description``; ``side`` and
        ``side_source`` when kneescope recorded the knee's side (``descrip`` or the JSON
        sidecar, see :mod:`kneescope.io.sidecar`).

    Raises:
        InputError: missing/unreadable file, not 2D/3D, NaN values.
        UnsupportedFormatError: not a NIfTI file.
    """
    path = Path(path)
    _check_readable(path)
    nib = _nibabel()
    try:
        img = nib.load(path)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError) as exc:
        raise UnsupportedFormatError(f"{path}: not a readable NIfTI file ({exc})") from None
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
    except (OSError, EOFError, ValueError) as exc:
        raise InputError(
            f"{path}: cannot read voxel data ({exc}); the file may be truncated"
        ) from None
    array = np.asarray(array).reshape(shape)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise InputError(f"{path}: voxel values hold NaN or infinity")
    affine = img.get_sform() if int(header["sform_code"]) > 0 else img.get_qform()
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        affine = img.affine
    description = header["descrip"].tobytes().rstrip(b"\0").decode("latin-1")
    metadata: dict[str, Any] = {"source_path": str(path), "description": description}
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
