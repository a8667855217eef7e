"""Read a cataloged series (or an image/label file) as a :class:`~kneescope.core.Volume`.

Dispatches on what the catalog knows: DICOM series folders, single-file radiograph folders,
and NIfTI/MHA/MHD/NRRD files. Readers come from :mod:`kneescope.io`.
"""

from __future__ import annotations

import os
from pathlib import Path

from kneescope.catalog.schema import KIND_RADIOGRAPH
from kneescope.core.volume import Volume
from kneescope.errors import InputError, UnsupportedFormatError

ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def read_image_file(path: Path) -> Volume:
    """Read a NIfTI (``.nii``/``.nii.gz``) or ITK (``.mha``/``.mhd``/``.nrrd``) file.

    Raises:
        InputError: the file is missing or unreadable.
        UnsupportedFormatError: the suffix names no format kneescope reads.
    """
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        from kneescope.io.nifti import read_nifti

        return read_nifti(path)
    if name.endswith(ITK_SUFFIXES):
        from kneescope.io.itk_formats import read_itk

        return read_itk(path)
    raise UnsupportedFormatError(
        f"{path}: unknown image format; expected .nii, .nii.gz, .mha, .mhd or .nrrd"
    )


def radiograph_file(folder: Path) -> Path:
    """The one image file of a radiograph series folder.

    Raises:
        InputError: the folder is missing or does not hold exactly one file.
    """
    try:
        files = sorted(
            Path(e.path)
            for e in os.scandir(folder)
            if not e.name.startswith(".") and not e.is_dir(follow_symlinks=True)
        )
    except OSError as exc:
        raise InputError(f"cannot read series folder {folder}: {exc.strerror or exc}") from None
    if len(files) != 1:
        raise InputError(
            f"{folder}: a radiograph series holds one file, found {len(files)}; "
            "re-run `kneescope ingest` to refresh the catalog"
        )
    return files[0]


def read_series(path: str, kind: str) -> Volume:
    """Read the series at catalog ``path`` (folder or file) of catalog ``kind``.

    Raises:
        InputError: missing or unreadable data (also DicomError and friends).
    """
    where = Path(path)
    if not where.exists():
        raise InputError(
            f"series data {where} is gone; restore it or re-run `kneescope ingest` to refresh"
        )
    if where.is_file():
        if kind == KIND_RADIOGRAPH and not where.name.lower().endswith(
            NIFTI_SUFFIXES + ITK_SUFFIXES
        ):
            from kneescope.io.dicom_radiograph import read_dicom_radiograph

            return read_dicom_radiograph(where)
        return read_image_file(where)
    if kind == KIND_RADIOGRAPH or _single_file(where):
        from kneescope.io.dicom_radiograph import read_dicom_radiograph

        return read_dicom_radiograph(radiograph_file(where))
    from kneescope.io.dicom_series import read_dicom_series

    return read_dicom_series(where)


def _single_file(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            names = [
                e.name
                for e in entries
                if not e.name.startswith(".") and not e.is_dir(follow_symlinks=True)
            ]
    except OSError:
        return False
    return len(names) == 1
