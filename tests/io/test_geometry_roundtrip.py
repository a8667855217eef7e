"""Geometry is exact across formats: DICOM series -> kneescope -> NIfTI/MHA/NRRD, checked
against nibabel and SimpleITK (their LPS converted to RAS here), over random oblique
orientations and both sides (mirrored = left-handed affines)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from io_test_helpers import (
    canonical_series,
    oblique_volume,
    origins,
    quaternions,
    sitk_to_ras,
    spacings,
)

from kneescope.io.dicom_series import read_dicom_series
from kneescope.io.dicom_write import DicomWriteMeta, write_dicom_series
from kneescope.io.itk_formats import read_itk, write_itk
from kneescope.io.nifti import read_nifti, write_nifti

META = DicomWriteMeta(patient_id="9000002", study_date="20060101", uid_seed="geometry")
NIFTI_ATOL_MM = 1e-4
"""NIfTI-1 stores the sform in float32: ~1e-7 relative, i.e. < 1e-4 mm within 300 mm."""
QFORM_ATOL = 1e-3
"""The qform is a float32 quaternion; near 180-degree rotations its recomputed real part loses
precision (~1.2e-4 per mm of spacing). Readers here (nibabel, ITK) use the exact sform."""


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(q=quaternions, spacing=spacings, origin=origins, mirrored=st.booleans())
def test_dicom_to_nifti_agrees_with_nibabel_and_simpleitk(
    q: tuple[float, ...],
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    mirrored: bool,
) -> None:
    import nibabel as nib
    import SimpleITK as sitk  # noqa: N813

    written = oblique_volume(q, spacing, origin, mirrored=mirrored, shape=(6, 5, 4))
    expected_array, expected_affine = canonical_series(written)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "series"
        write_dicom_series(written, folder, meta=META)
        volume = read_dicom_series(folder)
        np.testing.assert_allclose(volume.affine_ras, expected_affine, atol=1e-6)

        nii = Path(tmp) / "v.nii.gz"
        write_nifti(volume, nii)
        img = nib.load(nii)
        np.testing.assert_allclose(img.affine, volume.affine_ras, atol=NIFTI_ATOL_MM)
        np.testing.assert_allclose(img.get_qform(), volume.affine_ras, atol=QFORM_ATOL)
        np.testing.assert_array_equal(np.asarray(img.dataobj), expected_array)
        back = read_nifti(nii)
        np.testing.assert_allclose(back.affine_ras, volume.affine_ras, atol=NIFTI_ATOL_MM)
        assert back.array.dtype == np.uint16

        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        dicom_itk_array, dicom_itk_affine = sitk_to_ras(reader.Execute())
        nifti_itk_array, nifti_itk_affine = sitk_to_ras(sitk.ReadImage(str(nii)))
        np.testing.assert_allclose(dicom_itk_affine, volume.affine_ras, atol=1e-5)
        np.testing.assert_allclose(nifti_itk_affine, volume.affine_ras, atol=NIFTI_ATOL_MM)
        np.testing.assert_array_equal(dicom_itk_array, expected_array)
        np.testing.assert_array_equal(nifti_itk_array, expected_array)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    q=quaternions,
    spacing=spacings,
    origin=origins,
    mirrored=st.booleans(),
    suffix=st.sampled_from([".mha", ".mhd", ".nrrd"]),
)
def test_itk_formats_round_trip_exactly(
    q: tuple[float, ...],
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    mirrored: bool,
    suffix: str,
) -> None:
    import SimpleITK as sitk  # noqa: N813

    volume = oblique_volume(q, spacing, origin, mirrored=mirrored, shape=(5, 4, 3))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"v{suffix}"
        write_itk(volume, path)
        back = read_itk(path)
        np.testing.assert_array_equal(back.array, volume.array)
        np.testing.assert_allclose(back.affine_ras, volume.affine_ras, atol=1e-9)
        itk_array, itk_affine = sitk_to_ras(sitk.ReadImage(str(path)))
        np.testing.assert_allclose(itk_affine, volume.affine_ras, atol=1e-9)
        np.testing.assert_array_equal(itk_array, volume.array)


def test_nifti_written_by_simpleitk_reads_with_same_geometry(tmp_path: Path) -> None:
    """The reverse direction: a NIfTI made by ITK from an LPS image reads as ITK says."""
    import SimpleITK as sitk  # noqa: N813

    volume = oblique_volume((0.3, 0.8, -0.2, 0.4), (0.5, 0.6, 1.2), (-50.0, 20.0, 10.0))
    mha = tmp_path / "v.mha"
    write_itk(volume, mha)
    nii = tmp_path / "v.nii"
    sitk.WriteImage(sitk.ReadImage(str(mha)), str(nii))
    back = read_nifti(nii)
    np.testing.assert_allclose(back.affine_ras, volume.affine_ras, atol=NIFTI_ATOL_MM)
    np.testing.assert_array_equal(back.array, volume.array)
