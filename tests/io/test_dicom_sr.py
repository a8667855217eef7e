"""DICOM SR measurement reports (TID 1500) of a knee's biomarkers (kneescope.io.dicom_sr):
values read back exactly, groups per structure with their finding sites and the knee's
side, the source study referenced, bad input refused, and ``dciodvfy`` 0 errors on every SR
written here."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from test_dicom_seg import _series

from kneescope.errors import InputError
from kneescope.io.dicom_seg import SegAlgorithm
from kneescope.io.dicom_series import scan_dicom_series
from kneescope.io.dicom_sr import (
    COMPREHENSIVE_3D_SR,
    SCHEME,
    Biomarker,
    read_measurement_report,
    write_measurement_report,
)

MODEL = SegAlgorithm(
    kind="AUTOMATIC", name="knee-seg-2d", version="0.1.0", parameters={"model_hash": "ab12"}
)
BIOMARKERS = [
    Biomarker("femur_bone_volume_mm3", 172488.8924153606, "mm3", "femur volume", "femur"),
    Biomarker(
        "femoral_cartilage_thickness_mean_mm",
        2.0123456789012345,
        "mm",
        "area-weighted mean femoral cartilage thickness",
        "femoral_cartilage",
    ),
    Biomarker(
        "medial_tibial_cartilage_volume_mm3", 1834.25, "mm3", "MT volume", "medial_tibial_cartilage"
    ),
    Biomarker("medial_meniscus_extrusion_mm", -0.75, "mm", "extrusion", "medial_meniscus"),
    Biomarker("medial_tibial_coverage_pct", 61.5, "%", "coverage", "medial_tibial_cartilage"),
    Biomarker("we2008_cMF_ThCtAB_mm", 1.9, "mm", "ThCtAB, Wirth-Eckstein cMF", None),
    Biomarker("we2008_MFTC_ratio", 0.42, "1", "a ratio \\ with a backslash", None),
]


# every DICOM SEG and SR a test leaves is checked by dciodvfy (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("dicom_objects_pass_dciodvfy")


@pytest.mark.parametrize("side", ["right", "left"])
def test_report_round_trip_groups_and_sites(tmp_path: Path, side: str) -> None:
    folder, _image = _series(tmp_path, side)
    written = write_measurement_report(
        BIOMARKERS, folder, tmp_path / "sr.dcm", algorithm=MODEL, side=side
    )
    assert written.n_measurements == len(BIOMARKERS)
    assert written.groups == {
        "femur": 1,
        "femoral_cartilage": 1,
        "medial_tibial_cartilage": 2,
        "medial_meniscus": 1,
        "knee": 2,
    }
    back = read_measurement_report(written.path)
    assert back == {
        b.name: (b.value, b.unit, b.structure or "knee") for b in BIOMARKERS
    }  # exact: FloatingPointValue

    source = pydicom.dcmread(scan_dicom_series(folder).files[0], stop_before_pixels=True)
    ds = pydicom.dcmread(written.path)
    assert ds.SOPClassUID == COMPREHENSIVE_3D_SR
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.PatientID == source.PatientID
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == SCHEME
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == source.SeriesInstanceUID
    sr = hd.sr.srread(written.path)
    groups = {g.tracking_identifier: g for g in sr.content.get_image_measurement_groups()}  # type: ignore[attr-defined]
    meniscus = groups["medial_meniscus"].finding_sites[0]
    assert meniscus.value.value == "74135004"  # meniscus
    assert meniscus.topographical_modifier.value == "255561001"  # medial
    assert meniscus.laterality.meaning == side.capitalize()
    assert groups["femoral_cartilage"].finding_type.value == "309312004"  # cartilage
    assert groups["knee"].finding_sites[0].value.value == "49076000"  # knee joint
    items = {i.name.value: i for i in groups["femur"][0].ContentSequence}
    assert items["111001"].TextValue == "knee-seg-2d"  # Algorithm Name
    assert items["111003"].TextValue == "0.1.0"  # Algorithm Version


def test_bad_input_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    folder, _image = _series(tmp_path, "right")
    out = tmp_path / "bad.dcm"
    nan = Biomarker("femur_bone_volume_mm3", float("nan"), "mm3", "", "femur")
    cases = [
        ([], "no biomarkers"),
        ([nan], "report finite values only"),
        ([Biomarker("x_s", 1.0, "s", "", None)], "has unit 's'"),
        ([Biomarker("x_mm", 1.0, "mm", "", "fibula")], "unknown structure 'fibula'"),
    ]
    for biomarkers, message in cases:
        with pytest.raises(InputError, match=message):
            write_measurement_report(biomarkers, folder, out, algorithm=MODEL)
    assert not out.exists()
    out.write_bytes(b"keep")
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        write_measurement_report(BIOMARKERS, folder, out, algorithm=MODEL)
    assert out.read_bytes() == b"keep"
    with pytest.raises(InputError, match="not a readable DICOM SR"):
        read_measurement_report(out)
