"""Read or write any supported volume format by looking at the path.

This module is the one place that picks a reader for a path: the cohort steps
(:func:`read_array`), the catalog (``catalog.volumes``) and the commands all come here.

Reading: a folder is a DICOM series, or, with a ``zarr.json`` inside, a Zarr array written by
kneescope (standalone or inside a :class:`~kneescope.io.zarr_store.VolumeStore`). A file is
dispatched by suffix (``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``,
``.dcm``) or, without a known suffix (OAI slice files are named ``001``), by the DICOM magic
``DICM`` at byte 128; a lone DICOM file is read as a radiograph/single image.
Writing: by suffix (``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``, ``.nrrd``, ``.zarr``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kneescope.core.volume import Volume
from kneescope.errors import InputError, UnsupportedFormatError
from kneescope.io._dicom_header import has_dicom_magic
from kneescope.io.guards import check_image_bytes, require_regular_file

_NIFTI = (".nii", ".nii.gz")
_ITK = (".mha", ".mhd", ".nrrd", ".nhdr")
_READABLE = (*_NIFTI, *_ITK, ".zarr", ".dcm", "(DICOM without suffix)", "(DICOM series folder)")
_WRITABLE = (*_NIFTI, ".mha", ".mhd", ".nrrd", ".zarr")


def _lower_name(path: Path) -> str:
    return path.name.lower()


def _check_accessible(path: Path) -> None:
    if not os.path.lexists(path):
        raise InputError(f"{path}: no such file or folder; check the path")
    if not path.exists():
        raise InputError(f"{path}: broken symbolic link")
    if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
        raise InputError(f"{path}: permission denied; check its permissions")


def read_volume(path: Path) -> Volume:
    """Read a volume from any supported path (see the module docstring).

    Raises:
        InputError: the path is missing or unreadable (one line), or its content is bad.
        UnsupportedFormatError: a file in no format kneescope reads.
        DicomError: DICOM problems (see :func:`~kneescope.io.dicom_series.scan_dicom_series`).
    """
    path = Path(path)
    _check_accessible(path)
    name = _lower_name(path)
    if path.is_dir():
        if (path / "zarr.json").is_file():
            from kneescope.io.zarr_store import read_zarr_volume

            return read_zarr_volume(path)
        from kneescope.io.dicom_series import read_dicom_series

        return read_dicom_series(path)
    require_regular_file(path)  # never open a FIFO, socket or device
    if name.endswith(_NIFTI):
        from kneescope.io.nifti import read_nifti

        return read_nifti(path)
    if name.endswith(_ITK):
        from kneescope.io.itk_formats import read_itk

        return read_itk(path)
    if name.endswith(".dcm") or has_dicom_magic(path):
        from kneescope.io.dicom_radiograph import read_dicom_radiograph

        return read_dicom_radiograph(path)
    raise UnsupportedFormatError(
        f"{path}: unknown format (suffix {path.suffix or 'none'!r}, no DICOM marker); "
        f"kneescope reads {', '.join(_READABLE)}"
    )


def read_array(path: Path) -> npt.NDArray[Any]:
    """The voxel values of an image file, or of a ``.npy`` array, without geometry.

    Every format :func:`read_volume` reads gives its ``Volume.array`` (indexed ``[i, j, k]``,
    the same for NIfTI, MHA and DICOM: one file in two formats gives one array); a ``.npy``
    file is loaded as stored (``allow_pickle=False``), after its header was checked like the
    image headers (:func:`check_image_file`).

    Raises:
        InputError: as :func:`read_volume`; a ``.npy`` file numpy cannot read.
    """
    path = Path(path)
    _check_accessible(path)
    if not path.is_dir() and _lower_name(path).endswith(".npy"):
        size = require_regular_file(path).st_size
        _check_npy(path, size)
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"{path}: not a readable .npy file ({exc})") from None
    return read_volume(path).array


def check_image_file(path: Path) -> None:
    """The checks :func:`read_volume` makes before decoding a file, for code that decodes it
    by other means (cohort steps reading arrays): a regular file, sane header values, and the
    claimed voxel bytes against the file (uncompressed) or the decoded-image budget
    (:mod:`kneescope.io.guards`). ``.npy`` headers are checked the same way. Folders are not
    checked here (their files are, when read). Nothing is decoded.

    Raises:
        InputError: see :func:`read_volume`.
    """
    path = Path(path)
    _check_accessible(path)
    if path.is_dir():
        return
    size = require_regular_file(path).st_size
    name = _lower_name(path)
    if name.endswith(_NIFTI):
        from kneescope.io.nifti import check_nifti_file

        check_nifti_file(path)
    elif name.endswith(_ITK):
        from kneescope.io.itk_formats import checked_itk_reader

        checked_itk_reader(path)
    elif name.endswith(".npy"):
        _check_npy(path, size)
    elif name.endswith(".dcm") or has_dicom_magic(path):
        from kneescope.io._dicom_header import read_header

        read_header(path)


def _check_npy(path: Path, size: int) -> None:
    from numpy.lib import format as npy

    try:
        with open(path, "rb") as fh:
            version = npy.read_magic(fh)
            read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _, dtype = read(fh)
            offset = fh.tell()
    except Exception as exc:  # numpy raises assorted errors on corrupt headers
        raise InputError(f"{path}: not a readable .npy file ({exc})") from None
    check_image_bytes(shape or (1,), dtype.itemsize, what=str(path), file_bytes=size - offset)


def read_film(path: Path, what: str = "radiograph") -> Volume:
    """A radiograph (a 2D image) from a file, or from a folder holding exactly one file (a
    catalog's radiograph series: one DICOM file per series).

    Args:
        path: the file or the series folder.
        what: what the film is, for the messages (``"knee film"``, ``"full-leg film"``).

    Raises:
        InputError: no such file, a folder without exactly one file, or not a 2D image.
    """
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if len(files) != 1:
            raise InputError(
                f"{path}: a {what}'s folder must hold one DICOM file, found {len(files)}; "
                "give the film's file"
            )
        path = files[0]
    film = read_volume(path)
    if film.ndim != 2:
        raise InputError(f"{path}: a {what} is a 2D image, found shape {film.shape}")
    return film


def write_volume(volume: Volume, path: Path) -> Path:
    """Write ``volume`` in the format its suffix names, atomically; returns ``path``.

    ``.zarr`` writes a standalone Zarr v3 array folder (readable with :func:`read_volume`).
    DICOM needs series metadata: use :func:`~kneescope.io.dicom_write.write_dicom_series`.

    Raises:
        UnsupportedFormatError: an unknown suffix.
        InputError: the folder does not exist.
    """
    path = Path(path)
    name = _lower_name(path)
    if not path.parent.is_dir():
        raise InputError(f"{path}: folder {path.parent} does not exist; create it first")
    if name.endswith(_NIFTI):
        from kneescope.io.nifti import write_nifti

        return write_nifti(volume, path)
    if name.endswith((".mha", ".mhd", ".nrrd")):
        from kneescope.io.itk_formats import write_itk

        return write_itk(volume, path)
    if name.endswith(".zarr"):
        from kneescope.io.zarr_store import write_zarr_volume

        return write_zarr_volume(volume, path)
    raise UnsupportedFormatError(
        f"{path}: cannot write suffix {path.suffix or 'none'!r}; use one of {', '.join(_WRITABLE)}"
    )
