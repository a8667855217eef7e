"""Fixtures for io tests: a written oblique DICOM series and its metadata."""

from __future__ import annotations

from pathlib import Path

import pytest
from io_test_helpers import oblique_volume

from kneescope.core import Volume
from kneescope.io.dicom_write import DicomWriteMeta, write_dicom_series


@pytest.fixture
def meta() -> DicomWriteMeta:
    return DicomWriteMeta(
        patient_id="9000099",
        study_date="20040512",
        study_description="OAI^MR^ENROLLMENT^RIGHT",
        series_description="SAG_3D_DESS_RIGHT",
        series_number=3,
        laterality="right",
        uid_seed="test-series",
    )


@pytest.fixture
def series_dir(tmp_path: Path, meta: DicomWriteMeta) -> tuple[Path, Volume]:
    """A written 5-slice oblique series folder and the volume it holds."""
    volume = oblique_volume((0.9, 0.2, -0.3, 0.1), (0.36, 0.4, 0.7), (12.0, -30.0, 45.0))
    folder = tmp_path / "9000099" / "20040512" / "10249006"
    folder.parent.mkdir(parents=True)
    write_dicom_series(volume, folder, meta=meta)
    return folder, volume
