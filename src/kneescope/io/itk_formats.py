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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kneescope.core.geometry import lps_to_ras
from kneescope.core.volume import Volume, check_voxel_count
from kneescope.errors import GeometryError, InputError, UnsupportedFormatError
from kneescope.io.atomic import atomic_write_path
from kneescope.io.guards import check_image_bytes, check_stream_holds, require_regular_file

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


def read_itk(path: Path, *, allow_outside_data: bool | None = None) -> Volume:
    """Read a ``.mha``/``.mhd``/``.nrrd``/``.nhdr`` image as a 2D or 3D Volume.

    A detached header (``.mhd``, ``.nhdr``) names its data file(s); they must lie in the
    header's folder or below it, unless ``allow_outside_data`` is true (default: the
    environment variable ``KNEESCOPE_ALLOW_OUTSIDE_DATA_FILES=1``), so that a header cannot
    make kneescope read any file on the machine. Only regular files are read, and the size
    the header claims is checked in bytes against the data file(s) (uncompressed) or the
    decoded-image budget (compressed; :mod:`kneescope.io.guards`) before voxels are read.

    Returns:
        Volume with the stored dtype (label maps stay integer). Metadata: ``source_path``.

    Raises:
        InputError: missing/unreadable/non-regular file, a data file outside the header's
            folder, a size the file cannot hold, not 2D/3D or multi-component, NaN values.
        UnsupportedFormatError: SimpleITK cannot read it.
    """
    path = Path(path)
    reader = checked_itk_reader(path, allow_outside_data=allow_outside_data)
    sitk = _sitk()
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


def checked_itk_reader(path: Path, *, allow_outside_data: bool | None = None) -> Any:
    """A SimpleITK reader of ``path`` whose header passed every check of :func:`read_itk`
    (regular files, data files confined, claimed bytes against the files or the budget,
    compressed streams counted); nothing is decoded.

    Raises:
        InputError: see :func:`read_itk`.
        UnsupportedFormatError: not an ITK suffix, or SimpleITK cannot read the header.
    """
    if _suffix(path) not in ITK_SUFFIXES:
        raise UnsupportedFormatError(
            f"{path}: expected one of {', '.join(ITK_SUFFIXES)}, got {path.suffix or 'no suffix'!r}"
        )
    require_regular_file(path)
    layout = _data_files(path, allow_outside_data)
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
    itemsize = _itemsizes().get(int(reader.GetPixelID()), 8)
    needed = check_image_bytes(
        size,
        itemsize,
        what=str(path),
        file_bytes=sum(require_regular_file(f, what="data file").st_size for f in layout.files),
        compressed=layout.compressed,
    )
    if layout.codec is not None and layout.offset is not None:
        check_stream_holds(layout.files, layout.codec, needed, what=str(path), offset=layout.offset)
    return reader


ALLOW_OUTSIDE_DATA_ENV = "KNEESCOPE_ALLOW_OUTSIDE_DATA_FILES"
"""Set to ``1`` to let ``.mhd``/``.nhdr`` headers name data files outside their folder."""

_HEADER_READ_BYTES = 1 << 16
_TEXT_ENCODINGS = ("ascii", "text", "txt", "hex")
_COMPRESSED_ENCODINGS = ("gzip", "gz", "bzip2", "bz2")


def _itemsizes() -> dict[int, int]:
    sitk = _sitk()
    names = {
        "sitkUInt8": 1, "sitkInt8": 1, "sitkUInt16": 2, "sitkInt16": 2, "sitkUInt32": 4,
        "sitkInt32": 4, "sitkUInt64": 8, "sitkInt64": 8, "sitkFloat32": 4, "sitkFloat64": 8,
    }  # fmt: skip
    return {int(getattr(sitk, n)): size for n, size in names.items() if hasattr(sitk, n)}


def _header_lines(path: Path) -> tuple[list[str], int | None]:
    """The text lines of an ITK header (up to the data of an attached file; a detached
    header's file lists after ``LIST`` included), and the byte offset where attached data
    starts (None when not found in the first 64 KiB)."""
    with open(path, "rb") as fh:
        block = fh.read(_HEADER_READ_BYTES)
    text = block.decode("latin-1")  # one character per byte: offsets are byte offsets
    suffix = path.suffix.lower()
    offset: int | None = None
    if suffix == ".nrrd":  # attached data follows the first blank line
        ends = [(i, len(sep)) for sep in ("\n\n", "\r\n\r\n") if (i := text.find(sep)) >= 0]
        if ends:
            end, width = min(ends)
            text, offset = text[:end], end + width
    elif suffix == ".mha":  # attached data follows the ElementDataFile line
        end = text.find("ElementDataFile")
        stop = text.find("\n", end) if end >= 0 else -1
        if stop >= 0:
            text, offset = text[:stop], stop + 1
    return text.splitlines(), offset


@dataclass(frozen=True)
class _DataLayout:
    """Where an ITK image's voxel data lies: the files, whether compressed (so that their
    size bounds nothing), the codec when a stream can be checked (``"zlib"``, ``"bz2"``),
    and the byte offset of attached data in the header file (None when unknown)."""

    files: list[Path]
    compressed: bool
    codec: str | None
    offset: int | None


def _data_files(path: Path, allow_outside: bool | None) -> _DataLayout:
    """The files holding the voxel data of ``path`` and how they are encoded.

    Raises:
        InputError: a data file outside the header's folder (not allowed), or not a regular
            file.
    """
    if allow_outside is None:
        allow_outside = os.environ.get(ALLOW_OUTSIDE_DATA_ENV, "").strip() in ("1", "true", "yes")
    lines, offset = _header_lines(path)
    names: list[str] = []
    compressed = False
    codec: str | None = None
    if path.suffix.lower() in (".nrrd", ".nhdr"):
        for n, line in enumerate(lines):
            key, sep, value = line.partition(":")
            if not sep or line.startswith("#"):
                continue
            key, value = key.strip().lower(), value.strip()
            if key == "encoding":
                compressed = value.lower() in _COMPRESSED_ENCODINGS + _TEXT_ENCODINGS
                codec = {"gzip": "zlib", "gz": "zlib", "bzip2": "bz2", "bz2": "bz2"}.get(
                    value.lower()
                )
            elif key in ("data file", "datafile"):
                names = _listed_names(value, lines[n + 1 :])
    else:
        text = False
        for n, line in enumerate(lines):
            key, sep, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if key == "CompressedData":
                compressed = compressed or value.lower() == "true"
                codec = "zlib" if value.lower() == "true" else None
            elif key == "BinaryData" and value.lower() == "false":
                compressed = text = True  # ASCII voxels: the file size bounds nothing useful
            elif key == "ElementDataFile" and value.upper() != "LOCAL":
                names = _listed_names(value, lines[n + 1 :])
        codec = None if text else codec
    if not names:
        return _DataLayout([path], compressed, codec, offset)
    folder = path.parent.resolve()
    files = []
    for name in names:
        target = (path.parent / name).resolve()
        if not allow_outside and not target.is_relative_to(folder):
            raise InputError(
                f"{path}: its data file {name!r} lies outside the header's folder; move the "
                f"data next to the header, or set {ALLOW_OUTSIDE_DATA_ENV}=1 if you trust it"
            )
        files.append(target)
    return _DataLayout(files, compressed, codec, 0)


def _listed_names(value: str, rest: list[str]) -> list[str]:
    """Data file names of a header's data-file field (one name, ``LIST``, or a pattern)."""
    words = value.split()
    if not words:
        return []
    if words[0].upper() == "LIST":
        return [ln.strip() for ln in rest if ln.strip()]
    if "%" in words[0] and len(words) >= 4:
        try:
            lo, hi, step = int(words[1]), int(words[2]), int(words[3])
            return [words[0] % i for i in range(lo, hi + (1 if step > 0 else -1), step or 1)]
        except (ValueError, TypeError):
            return [words[0]]
    return [value]


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def write_itk(
    volume: Volume,
    path: Path,
    *,
    compress: bool = True,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``volume`` as MetaImage or NRRD (by suffix), atomically; geometry exact.

    ``metadata`` adds text fields to the header (NRRD writes them as ``key:=value``, e.g. the
    segment fields of a 3D Slicer ``.seg.nrrd``: :mod:`kneescope.io.seg_nrrd`).

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
    for key, value in (metadata or {}).items():
        image.SetMetaData(str(key), str(value))
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
