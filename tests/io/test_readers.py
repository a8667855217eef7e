"""read_volume / write_volume dispatch by path, and one-line errors for unreadable paths."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from io_test_helpers import oblique_volume

from kneescope.core import Volume
from kneescope.errors import DicomError, InputError, UnsupportedFormatError
from kneescope.io import read_volume, write_dicom_radiograph, write_dicom_series, write_volume
from kneescope.io.dicom_write import DicomWriteMeta

META = DicomWriteMeta(patient_id="9000004", study_date="20070101", uid_seed="readers")


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz", "v.mha", "v.mhd", "v.nrrd", "v.zarr"])
def test_write_then_read_by_suffix(tmp_path: Path, name: str) -> None:
    volume = oblique_volume((0.2, 0.9, 0.1, -0.3), (0.4, 0.5, 0.9), (5.0, 6.0, 7.0))
    path = write_volume(volume, tmp_path / name)
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.affine_ras, volume.affine_ras, atol=1e-4)


def test_upper_case_suffix(tmp_path: Path) -> None:
    volume = Volume(np.ones((2, 3, 4), np.int16), np.eye(4))
    write_volume(volume, tmp_path / "V.NII.GZ")
    assert read_volume(tmp_path / "V.NII.GZ").shape == (2, 3, 4)


def test_dicom_folder_and_extensionless_file(tmp_path: Path) -> None:
    volume = oblique_volume((1, 0, 0, 0), (0.5, 0.5, 1.0), (0.0, 0.0, 0.0))
    write_dicom_series(volume, tmp_path / "series", meta=META)
    np.testing.assert_array_equal(read_volume(tmp_path / "series").array, volume.array)
    affine = np.array([[0, -0.2, 0, 0], [0, 0, 1, 0], [-0.2, 0, 0, 0], [0, 0, 0, 1.0]])
    write_dicom_radiograph(Volume(np.eye(5, dtype=np.uint16), affine), tmp_path / "001", meta=META)
    xr = read_volume(tmp_path / "001")
    assert xr.ndim == 2
    np.testing.assert_array_equal(xr.array, np.eye(5))


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(UnsupportedFormatError, match="unknown format"):
        read_volume(path)
    with pytest.raises(UnsupportedFormatError, match="cannot write"):
        write_volume(Volume(np.ones((2, 2, 2), np.uint8), np.eye(4)), tmp_path / "x.png")


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        read_volume(tmp_path / "missing.nii.gz")
    with pytest.raises(InputError, match="does not exist"):
        write_volume(Volume(np.ones((2, 2, 2), np.uint8), np.eye(4)), tmp_path / "a" / "x.nii")
    os.symlink(tmp_path / "gone", tmp_path / "link.nii")
    with pytest.raises(InputError, match="broken symbolic link"):
        read_volume(tmp_path / "link.nii")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "v.nii"
    write_volume(Volume(np.ones((2, 2, 2), np.uint8), np.eye(4)), path)
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="permission denied"):
            read_volume(path)
    finally:
        path.chmod(0o644)


def test_empty_folder_is_dicom_error(tmp_path: Path) -> None:
    with pytest.raises(DicomError, match="no DICOM files"):
        read_volume(tmp_path)
