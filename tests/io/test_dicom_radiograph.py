"""Single-frame radiographs: MONOCHROME1 inversion, spacing, header scan, validity."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from kneescope.core import Volume
from kneescope.errors import DicomError, GeometryError, InputError
from kneescope.io.dicom_radiograph import (
    CR_IMAGE_STORAGE,
    read_dicom_radiograph,
    scan_dicom_file,
    write_dicom_radiograph,
)
from kneescope.io.dicom_write import DicomWriteMeta

META = DicomWriteMeta(
    patient_id="9000003",
    study_date="20050301",
    study_description="OAI^XR^ENROLLMENT",
    series_description="Bilateral PA Fixed Flexion Knee",
    modality="CR",
    uid_seed="xr",
)
PA_AFFINE = np.array(
    [[0.0, -0.143, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [-0.14, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
"""Rows go to the feet (-S) at 0.14 mm, columns to the patient's left (-R) at 0.143 mm."""


def _raw_radiograph(
    path: Path,
    stored: np.ndarray,
    photometric: str,
    *,
    bits_stored: int = 12,
    imager_spacing: list[str] | None = None,
    pixel_spacing: list[str] | None = None,
) -> None:
    """A minimal CR file written with pydicom directly (known stored values)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.UID(CR_IMAGE_STORAGE)
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["raw"])
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.ImageLaterality = "R"
    ds.SeriesDescription = "PA Right Knee"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if imager_spacing:
        ds.ImagerPixelSpacing = imager_spacing
    if pixel_spacing:
        ds.PixelSpacing = pixel_spacing
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_monochrome1_is_inverted_so_bone_is_bright(tmp_path: Path) -> None:
    stored = np.array([[0, 100, 4095], [4000, 2048, 7]], dtype=np.uint16)  # 12-bit
    path = tmp_path / "001"
    _raw_radiograph(path, stored, "MONOCHROME1", imager_spacing=["0.2", "0.25"])
    volume = read_dicom_radiograph(path)
    np.testing.assert_array_equal(volume.array, 4095 - stored)
    assert volume.array.dtype == np.uint16
    assert volume.metadata["inverted"] is True
    assert volume.metadata["photometric"] == "MONOCHROME1"
    assert volume.side == "right" and volume.side_source == "its DICOM Laterality"
    assert volume.role == "image" and not volume.is_label
    assert volume.spacing_mm == pytest.approx((0.2, 0.25))
    assert volume.metadata["spacing_source"] == "ImagerPixelSpacing"


def test_monochrome2_unchanged_and_pixel_spacing_fallback(tmp_path: Path) -> None:
    stored = np.arange(12, dtype=np.uint16).reshape(3, 4)
    path = tmp_path / "001"
    _raw_radiograph(path, stored, "MONOCHROME2", pixel_spacing=["0.3", "0.3"])
    volume = read_dicom_radiograph(path)
    np.testing.assert_array_equal(volume.array, stored)
    assert volume.metadata["inverted"] is False
    assert volume.spacing_mm == pytest.approx((0.3, 0.3))
    assert volume.metadata["spacing_source"] == "PixelSpacing"
    # default PA orientation: rows toward the feet, columns toward the patient's left
    np.testing.assert_allclose(volume.affine_ras[:3, 0], [0, 0, -0.3])
    np.testing.assert_allclose(volume.affine_ras[:3, 1], [-0.3, 0, 0])


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_write_read_round_trip(tmp_path: Path, photometric: str) -> None:
    array = np.random.default_rng(1).integers(0, 65535, (30, 40)).astype(np.uint16)
    path = tmp_path / "xr.dcm"
    write_dicom_radiograph(Volume(array, PA_AFFINE), path, meta=META, photometric=photometric)  # type: ignore[arg-type]
    stored = pydicom.dcmread(path).pixel_array
    if photometric == "MONOCHROME1":
        np.testing.assert_array_equal(stored, 65535 - array)
    back = read_dicom_radiograph(path)
    np.testing.assert_array_equal(back.array, array)
    np.testing.assert_allclose(back.affine_ras, PA_AFFINE, atol=1e-9)
    assert back.metadata["series_description"] == "Bilateral PA Fixed Flexion Knee"


def test_scan_dicom_file_reads_header_only(tmp_path: Path) -> None:
    array = np.zeros((30, 40), np.uint16)
    path = tmp_path / "001"
    write_dicom_radiograph(Volume(array, PA_AFFINE), path, meta=META, photometric="MONOCHROME1")
    info = scan_dicom_file(path)
    assert info.shape == (30, 40)
    assert info.spacing_mm == pytest.approx((0.14, 0.143))
    assert info.photometric == "MONOCHROME1"
    assert info.modality == "CR"
    assert info.patient_id == "9000003"
    assert info.study_date == "20050301"
    assert info.n_frames == 1
    assert info.laterality is None


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
def test_written_radiograph_passes_dciodvfy(tmp_path: Path) -> None:
    path = tmp_path / "001"
    write_dicom_radiograph(
        Volume(np.ones((8, 9), np.uint16), PA_AFFINE),
        path,
        meta=META.model_copy(update={"laterality": "left"}),
    )
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    report = out.stdout + out.stderr
    assert "CRImage" in report
    assert "Error" not in report, report


def test_write_refuses_3d_float_and_oblique(tmp_path: Path) -> None:
    path = tmp_path / "xr.dcm"
    with pytest.raises(InputError, match="2D"):
        write_dicom_radiograph(Volume(np.zeros((2, 2, 2), np.uint16), np.eye(4)), path, meta=META)
    with pytest.raises(InputError, match="integer"):
        write_dicom_radiograph(Volume(np.zeros((2, 2), np.float32), PA_AFFINE), path, meta=META)
    oblique = PA_AFFINE.copy()
    oblique[:3, 0] = [0.0, 0.1, -0.1]
    with pytest.raises(GeometryError, match="axis-aligned"):
        write_dicom_radiograph(Volume(np.zeros((2, 2), np.uint16), oblique), path, meta=META)
    assert list(tmp_path.iterdir()) == []


def test_bad_radiograph_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_dicom_radiograph(tmp_path / "missing")
    junk = tmp_path / "junk"
    junk.write_bytes(b"not dicom at all" * 20)
    with pytest.raises(DicomError, match="not a DICOM file"):
        read_dicom_radiograph(junk)
    good = tmp_path / "good"
    _raw_radiograph(good, np.zeros((50, 50), np.uint16), "MONOCHROME2")
    truncated = tmp_path / "truncated"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(DicomError, match="truncated"):
        scan_dicom_file(truncated)
