"""Read a cataloged series (or an image/label file) as a :class:`~kneescope.core.Volume`.

The catalog adds only what it knows (a radiograph series folder holds one file); the format
is picked by :func:`kneescope.io.readers.read_volume`, the one reader dispatch.
"""

from __future__ import annotations

import os
from pathlib import Path

from kneescope.catalog.schema import KIND_RADIOGRAPH
from kneescope.core.volume import Volume
from kneescope.errors import InputError
from kneescope.io.readers import read_volume


def read_image_file(path: Path) -> Volume:
    """Read an image or label-map file in any format kneescope reads (NIfTI, MHA/MHD/NRRD,
    a Zarr array, DICOM: :func:`kneescope.io.readers.read_volume`).

    Raises:
        InputError: the file is missing, unreadable or corrupt.
        UnsupportedFormatError: no format kneescope reads.
    """
    return read_volume(path)


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
    if where.is_dir() and (kind == KIND_RADIOGRAPH or _single_file(where)):
        where = radiograph_file(where)
    return read_volume(where)


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
