"""Radiograph headers the knee locator needs: which spacing tag was used, PatientOrientation,
ImageLaterality (B = both knees) and ViewPosition, written and read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from kneescope.core import Volume
from kneescope.io.dicom_radiograph import read_dicom_radiograph, write_dicom_radiograph
from kneescope.io.dicom_write import DicomWriteMeta

META = DicomWriteMeta(
    patient_id="9000004",
    study_date="20050301",
    study_description="OAI^XR^ENROLLMENT",
    series_description="Bilateral PA Fixed Flexion Knee",
    modality="CR",
    uid_seed="xr-meta",
)
PA = np.array([[0.0, -0.2, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [-0.2, 0.0, 0.0, 0.0], [0, 0, 0, 1.0]])


def _film() -> Volume:
    array = np.random.default_rng(3).integers(0, 4000, (20, 30)).astype(np.uint16)
    return Volume(array, PA)


def test_pixel_spacing_wins_over_imager_pixel_spacing(tmp_path: Path) -> None:
    path = write_dicom_radiograph(_film(), tmp_path / "a.dcm", meta=META)
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = [0.18, 0.18]  # calibrated at the patient: 0.2 mm at the detector / 1.11
    ds.save_as(path)
    volume = read_dicom_radiograph(path)
    assert volume.metadata["spacing_source"] == "PixelSpacing"
    assert volume.spacing_mm == pytest.approx((0.18, 0.18))


def test_imager_pixel_spacing_only_says_so(tmp_path: Path) -> None:
    path = write_dicom_radiograph(_film(), tmp_path / "b.dcm", meta=META, pixel_spacing=False)
    assert "PixelSpacing" not in pydicom.dcmread(path)
    volume = read_dicom_radiograph(path)
    assert volume.metadata["spacing_source"] == "ImagerPixelSpacing"
    assert volume.spacing_mm == pytest.approx((0.2, 0.2))


def test_laterality_orientation_and_view_are_read(tmp_path: Path) -> None:
    path = write_dicom_radiograph(
        _film(), tmp_path / "c.dcm", meta=META, image_laterality="B", view_position="PA"
    )
    volume = read_dicom_radiograph(path)
    assert volume.metadata["image_laterality"] == "B"
    assert volume.side is None  # both knees: no single side
    assert volume.metadata["patient_orientation"] == "L\\F"
    assert volume.metadata["view_position"] == "PA"
    lateral = write_dicom_radiograph(
        _film(), tmp_path / "d.dcm", meta=META, image_laterality="R", view_position="LL"
    )
    volume = read_dicom_radiograph(lateral)
    assert volume.metadata["view_position"] == "LL"
    assert volume.side == "right"
