"""MetaImage (``.mha``, ``.mhd`` + ``.raw``) and NRRD (``.nrrd``, ``.nhdr``) via SimpleITK.

ITK stores geometry as origin, spacing and a direction matrix in LPS+; ITK arrays are
``[k, j, i]``. kneescope converts exactly: ``affine_lps = [direction * spacing | origin]``,
``affine_ras = lps_to_ras(affine_lps)``, ``array = GetArrayFromImage(image).transpose()``.
SimpleITK is imported inside the functions (it is slow to import).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from kneescope.core.geometry import lps_to_ras
from kneescope.core.volume import Volume, check_voxel_count
from kneescope.errors import GeometryError, InputError, UnsupportedFormatError
from kneescope.io.atomic import atomic_write_path

logger = logging.getLogger(__name__)

ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")

_WRITE_DTYPES = tuple(
    np.dtype(t)
    for t in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.float32, np.float64)
)


def _sitk() -> Any:
    import SimpleITK

    return SimpleITK


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def read_itk(path: Path) -> Volume:
    """Read a ``.mha``/``.mhd``/``.nrrd``/``.nhdr`` image as a 2D or 3D Volume.

    Returns:
        Volume with the stored dtype (label maps stay integer). Metadata: ``source_path``.

    Raises:
        InputError: missing/unreadable file, not 2D/3D or multi-component, NaN values.
        UnsupportedFormatError: SimpleITK cannot read it.
    """
    path = Path(path)
    if _suffix(path) not in ITK_SUFFIXES:
        raise UnsupportedFormatError(
            f"{path}: expected one of {', '.join(ITK_SUFFIXES)}, got {path.suffix or 'no suffix'!r}"
        )
    if not path.is_file():
        raise InputError(f"{path}: no such file; check the path")
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise UnsupportedFormatError(
            f"{path}: SimpleITK cannot read it ({_first_line(exc)})"
        ) from None
    size = tuple(int(n) for n in reader.GetSize())
    check_voxel_count(size, what=str(path))
    if reader.GetNumberOfComponents() != 1:
        raise InputError(
            f"{path}: {reader.GetNumberOfComponents()} components per voxel; expected 1"
        )
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(
            f"{path}: cannot read voxel data ({_first_line(exc)}); the file may be truncated"
        ) from None
    dim = image.GetDimension()
    if dim not in (2, 3):
        raise InputError(f"{path}: expected a 2D or 3D image, found {dim}D")
    array = sitk.GetArrayFromImage(image).transpose()
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise InputError(f"{path}: voxel values hold NaN or infinity")
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    affine_lps = np.eye(4)
    affine_lps[:dim, :dim] = direction * spacing[None, :]
    affine_lps[:dim, 3] = origin
    try:
        return Volume(array, lps_to_ras(affine_lps), {"source_path": str(path)})
    except GeometryError as exc:
        raise GeometryError(f"{path}: {exc}") from None


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def write_itk(volume: Volume, path: Path, *, compress: bool = True) -> Path:
    """Write ``volume`` as MetaImage or NRRD (by suffix), atomically; geometry exact.

    ``.mhd`` writes a header plus a ``.raw``/``.zraw`` data file next to it (both renamed into
    place only when complete). A 2D volume is written as a 3D image of one slice (shape
    (I, J, 1)), so that its full affine is kept; it reads back as 3D.

    Raises:
        InputError: unknown suffix; unsupported dtype (int64 values that do not fit int32).
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in (".mha", ".mhd", ".nrrd"):
        raise InputError(f"{path}: write_itk writes .mha, .mhd or .nrrd, got {path.suffix!r}")
    sitk = _sitk()
    array = _writable_array(volume.array, path)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]  # exact geometry needs the 3D frame
    affine_lps = volume.affine_lps
    linear = affine_lps[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    direction = linear / spacing[None, :]
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose()))
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(d) for d in direction.reshape(-1)])
    image.SetOrigin([float(o) for o in affine_lps[:3, 3]])
    if suffix == ".mhd":
        _write_mhd(sitk, image, path, compress)
    else:
        with atomic_write_path(path, suffix=suffix) as tmp:
            sitk.WriteImage(image, str(tmp), compress)
    logger.debug("wrote %s %s %s", path, volume.shape, array.dtype)
    return path


def _writable_array(array: np.ndarray[Any, Any], path: Path) -> np.ndarray[Any, Any]:
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype in _WRITE_DTYPES:
        return array
    if array.dtype.kind in "iu":
        lo, hi = int(array.min()), int(array.max())
        for dt in _WRITE_DTYPES[:6]:
            info = np.iinfo(dt.type)
            if info.min <= lo and hi <= info.max:
                return array.astype(dt)
        raise InputError(f"{path}: integer values {lo}..{hi} do not fit 32 bits")
    return array.astype(np.float32)


def _write_mhd(sitk: Any, image: Any, path: Path, compress: bool) -> None:
    """Write header + data file into a hidden temporary folder, then move them into place:
    the data file first, the header last, so a visible header always has complete data."""
    staging = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        sitk.WriteImage(image, str(staging / path.name), compress)
        for part in sorted(staging.iterdir()):
            if part.name != path.name:
                os.replace(part, path.parent / part.name)
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
