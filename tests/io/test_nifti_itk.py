"""NIfTI and ITK formats: dtypes kept (label maps stay integer), bad inputs, atomic writes."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from kneescope.core import Volume
from kneescope.errors import InputError, UnsupportedFormatError
from kneescope.io.itk_formats import read_itk, write_itk
from kneescope.io.nifti import read_nifti, write_nifti

AFFINE = np.array(
    [[0.0, 0.0, -0.7, 40.0], [-0.36, 0.0, 0.0, 60.0], [0.0, -0.36, 0.0, 70.0], [0, 0, 0, 1.0]]
)


@pytest.mark.parametrize(
    ("dtype", "stored"),
    [
        (np.uint8, np.uint8),
        (np.int16, np.int16),
        (np.uint16, np.uint16),
        (np.int32, np.int32),
        (np.int64, np.uint8),
        (np.bool_, np.uint8),
        (np.float64, np.float32),
        (np.float32, np.float32),
    ],
)
def test_nifti_dtypes(tmp_path: Path, dtype: type, stored: type) -> None:
    array = (np.arange(60).reshape(3, 4, 5) % 10).astype(dtype)
    path = tmp_path / "v.nii.gz"
    write_nifti(Volume(array, AFFINE), path)
    back = read_nifti(path)
    assert back.array.dtype == np.dtype(stored)
    np.testing.assert_array_equal(back.array, array.astype(stored))
    header = nib.load(path).header
    assert int(header["sform_code"]) == 1
    assert int(header["qform_code"]) == 1
    assert header.get_xyzt_units()[0] == "mm"


def test_nifti_scaled_data_reads_as_float32(tmp_path: Path) -> None:
    path = tmp_path / "scaled.nii"
    nib.save(nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), AFFINE), path)
    raw = bytearray(path.read_bytes())
    raw[112:120] = np.array([0.5, 10.0], dtype="<f4").tobytes()  # scl_slope, scl_inter
    path.write_bytes(bytes(raw))
    back = read_nifti(path)
    assert back.array.dtype == np.float32
    np.testing.assert_allclose(back.array, np.arange(24).reshape(2, 3, 4) * 0.5 + 10)


def test_nifti_nan_refused(tmp_path: Path) -> None:
    data = np.zeros((2, 2, 2), np.float32)
    data[1, 1, 1] = np.nan
    path = tmp_path / "nan.nii"
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    with pytest.raises(InputError, match="NaN"):
        read_nifti(path)


def test_nifti_4d_refused_singleton_dropped(tmp_path: Path) -> None:
    path = tmp_path / "t.nii"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 3), np.int16), AFFINE), path)
    with pytest.raises(InputError, match="2D or 3D"):
        read_nifti(path)
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 1), np.int16), AFFINE), path)
    assert read_nifti(path).shape == (2, 2, 2)


def test_nifti_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_nifti(tmp_path / "missing.nii")
    junk = tmp_path / "junk.nii"
    junk.write_bytes(b"\0" * 10)
    with pytest.raises(UnsupportedFormatError, match="not a readable NIfTI"):
        read_nifti(junk)
    good = tmp_path / "good.nii"
    write_nifti(Volume(np.ones((20, 20, 20), np.int16), AFFINE), good)
    truncated = tmp_path / "truncated.nii"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(InputError, match="truncated"):
        read_nifti(truncated)
    with pytest.raises(InputError, match=r"\.nii or \.nii\.gz"):
        write_nifti(Volume(np.ones((2, 2, 2), np.int16), AFFINE), tmp_path / "x.img")


def test_nifti_failed_write_leaves_nothing(tmp_path: Path) -> None:
    huge = np.array([[[0, 2**40]]], dtype=np.int64)
    with pytest.raises(InputError, match="do not fit"):
        write_nifti(Volume(huge, AFFINE), tmp_path / "x.nii.gz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".mha", ".mhd", ".nrrd"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.float32, np.bool_])
def test_itk_dtypes(tmp_path: Path, suffix: str, dtype: type) -> None:
    array = (np.arange(60).reshape(3, 4, 5) % 7).astype(dtype)
    path = tmp_path / f"v{suffix}"
    write_itk(Volume(array, AFFINE), path)
    back = read_itk(path)
    expected = array.astype(np.uint8) if dtype is np.bool_ else array
    assert back.array.dtype == expected.dtype
    np.testing.assert_array_equal(back.array, expected)
    np.testing.assert_allclose(back.affine_ras, AFFINE, atol=1e-12)
    visible = sorted(p.name for p in tmp_path.iterdir())
    assert visible == (["v.mhd", "v.zraw"] if suffix == ".mhd" else [f"v{suffix}"])


def test_itk_2d_written_as_single_slice(tmp_path: Path) -> None:
    affine = np.array([[0, -0.14, 0, 0], [0, 0, 1, 0], [-0.15, 0, 0, 0], [0, 0, 0, 1.0]])
    array = np.arange(12, dtype=np.uint16).reshape(3, 4)
    write_itk(Volume(array, affine), tmp_path / "xr.mha")
    back = read_itk(tmp_path / "xr.mha")
    assert back.shape == (3, 4, 1)
    np.testing.assert_array_equal(back.array[:, :, 0], array)
    np.testing.assert_allclose(back.affine_ras, affine, atol=1e-12)


def test_itk_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_itk(tmp_path / "missing.mha")
    junk = tmp_path / "junk.mha"
    junk.write_text("hello")
    with pytest.raises(UnsupportedFormatError, match="SimpleITK cannot read"):
        read_itk(junk)
    with pytest.raises(UnsupportedFormatError, match="expected one of"):
        read_itk(tmp_path / "x.png")
    with pytest.raises(InputError, match=r"writes \.mha"):
        write_itk(Volume(np.ones((2, 2, 2), np.int16), AFFINE), tmp_path / "x.png")
    good = tmp_path / "good.mha"
    write_itk(Volume(np.ones((30, 30, 30), np.int16), AFFINE), good, compress=False)
    truncated = tmp_path / "truncated.mha"
    truncated.write_bytes(good.read_bytes()[:-500])
    with pytest.raises(InputError, match="truncated"):
        read_itk(truncated)


def test_absurd_sizes_refused_before_allocation(tmp_path: Path) -> None:
    good = tmp_path / "good.nii"
    write_nifti(Volume(np.ones((2, 2, 2), np.int16), AFFINE), good)
    raw = bytearray(good.read_bytes())
    raw[40:56] = np.array([3, 30000, 30000, 30000, 1, 1, 1, 1], dtype="<i2").tobytes()  # dim[]
    absurd = tmp_path / "absurd.nii"
    absurd.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="voxels"):
        read_nifti(absurd)
    mha = tmp_path / "absurd.mha"
    mha.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 60000 60000 60000\n"
        "ElementType = MET_USHORT\nElementDataFile = LOCAL\n"
    )
    with pytest.raises(InputError, match="voxels"):
        read_itk(mha)


def test_itk_nan_refused(tmp_path: Path) -> None:
    import SimpleITK as sitk  # noqa: N813

    data = np.zeros((2, 3, 4), np.float32)
    data[0, 1, 2] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(data), str(tmp_path / "nan.nrrd"))
    with pytest.raises(InputError, match="NaN"):
        read_itk(tmp_path / "nan.nrrd")
