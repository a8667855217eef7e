"""A generated OAI-style tree: layout, tables, DICOM validity and geometry, determinism."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from kneescope.cli.app import main
from kneescope.io import read_dicom_radiograph, read_dicom_series, read_nifti
from kneescope.synth.cohort import CohortSpec
from kneescope.synth.generate import CohortSummary, generate_cohort

SPEC = CohortSpec(subjects=2, visits=("V00", "V01"), size="small", seed=4, treatment_effect=0.5)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> CohortSummary:
    out = tmp_path_factory.mktemp("synth") / "cohort"
    return generate_cohort(SPEC, out, jobs=2)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_layout_and_contents(tree: CohortSummary) -> None:
    out = tree.out
    v00 = _rows(out / "0.E.1" / "contents.csv")
    v01 = _rows(out / "1.E.1" / "contents.csv")
    assert len(v00) == 2 * 4  # two DESS, one PA knee, one full leg per subject
    assert len(v01) == 2 * 3  # no full-leg film at 12 months
    descriptions = {r["SeriesDescription"] for r in v00}
    assert descriptions == {
        "SAG_3D_DESS_RIGHT",
        "SAG_3D_DESS_LEFT",
        "Bilateral PA Fixed Flexion Knee",
        "Full Leg",
    }
    for row in v00 + v01:
        pid, date, series = row["Folder"].split("/")
        assert pid == row["ParticipantID"] and len(pid) == 7 and pid.startswith("9")
        assert date == row["StudyDate"] and len(date) == 8
        assert len(series) == 8 and series.isdigit()
        release = "0.E.1" if row in v00 else "1.E.1"
        files = sorted(p.name for p in (out / release / row["Folder"]).iterdir())
        if row["SeriesDescription"].startswith("SAG_3D_DESS"):
            assert files == [f"{i:03d}" for i in range(1, 49)]
            assert row["StudyDescription"].startswith("OAI^MR^")
        else:
            assert files == ["001"]


def test_mr_series_geometry_matches_labels_and_simpleitk(tree: CohortSummary) -> None:
    import SimpleITK as sitk  # noqa: N813

    out = tree.out
    manifest = _rows(out / "labels" / "manifest.csv")
    assert len(manifest) == 2 * 2 * 2
    row = next(r for r in manifest if r["Side"] == "left" and r["Visit"] == "V01")
    image = read_dicom_series(out / row["Folder"])
    labels = read_nifti(out / row["LabelPath"])
    assert image.shape == labels.shape == (128, 128, 48)
    assert np.allclose(image.affine_ras, labels.affine_ras, atol=1e-3)
    assert np.allclose(sorted(image.spacing_mm), sorted((112 / 48, 140 / 128, 140 / 128)))
    assert set(np.unique(labels.array)) == set(range(10))
    # bright cartilage, dark menisci: the image and the label map are aligned voxel for voxel
    img = image.array.astype(float)
    assert np.median(img[labels.array == 2]) > 1.5 * np.median(img[labels.array == 8])
    files = sorted(str(p) for p in (out / row["Folder"]).iterdir())
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    itk = reader.Execute()
    assert np.allclose(itk.GetSpacing(), image.spacing_mm, atol=1e-4)
    direction = np.array(itk.GetDirection()).reshape(3, 3)
    lps = image.affine_lps
    assert np.allclose(direction, lps[:3, :3] / np.array(image.spacing_mm), atol=1e-4)
    assert np.allclose(itk.GetOrigin(), lps[:3, 3], atol=1e-3)
    assert np.array_equal(sitk.GetArrayFromImage(itk).transpose(2, 1, 0), image.array)
    ds = pydicom.dcmread(files[0])
    assert ds.SeriesDescription == "SAG_3D_DESS_LEFT"
    assert ds.Laterality == "L"
    assert ds.PatientID == row["ParticipantID"]
    assert ds.StudyDescription == "OAI^MR^12 MONTH^LEFT"


def test_radiographs_read_back(tree: CohortSummary) -> None:
    out = tree.out
    rows = _rows(out / "0.E.1" / "contents.csv")
    knee = next(r for r in rows if r["SeriesDescription"].startswith("Bilateral"))
    path = out / "0.E.1" / knee["Folder"] / "001"
    ds = pydicom.dcmread(path)
    # knee films vary MONOCHROME1/2 and PixelSpacing (or only ImagerPixelSpacing), as the
    # truth table says (test_knee_film_dicom.py checks each film)
    assert ds.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2")
    assert [float(v) for v in ds.ImagerPixelSpacing] == [0.2, 0.2]
    vol = read_dicom_radiograph(path)
    assert vol.shape == (700, 1650)
    a = vol.array.astype(float)
    # bone (centre of each knee) brighter than the gap between the legs
    assert a[350, 300:500].mean() > 1.5 * a[350, 800:850].mean()
    leg = next(r for r in rows if r["SeriesDescription"] == "Full Leg")
    assert read_dicom_radiograph(out / "0.E.1" / leg["Folder"] / "001").shape == (3600, 1200)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) absent")
def test_dicom_passes_dciodvfy(tree: CohortSummary) -> None:
    out = tree.out
    for row in _rows(out / "0.E.1" / "contents.csv")[:4]:
        path = out / "0.E.1" / row["Folder"] / "001"
        res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
        errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
        assert not errors, (row["SeriesDescription"], errors)


def test_tables(tree: CohortSummary) -> None:
    out = tree.out
    truth = _rows(out / "truth" / "knee_truth.csv")
    assert len(truth) == 2 * 2 * 2
    for r in truth:
        assert 1.0 < float(r["femoral_ThMean_mm"]) < 3.0
        assert float(r["MedMeniscus_Vol_mm3"]) > 500
        assert (out / r["LabelPath"]).is_file()
    clinical = _rows(out / "clinical" / "AllClinical.csv")
    assert [c for c in clinical[0] if c.startswith("V01")] == ["V01WOMKPR", "V01WOMKPL"]
    assert {r["P02SEX"] for r in clinical} <= {"1", "2"}
    kxr = _rows(out / "clinical" / "kXR.csv")
    assert [r["SIDE"] for r in kxr] == ["1", "2", "1", "2"]
    assert all(r["V00XRKL"][0] in "01234" and r["V00XRKL"][1:3] == ": " for r in kxr)
    xr = _rows(out / "truth" / "xray_truth.csv")
    assert all(0.0 < float(r["mJSW_M_mm"]) < 8.0 for r in xr)
    legs = _rows(out / "truth" / "full_leg_truth.csv")
    assert all(170.0 < float(r["HKA_deg"]) < 190.0 for r in legs)


@pytest.mark.slow  # default suite time; its logic is covered by faster tests
def test_cli_same_seed_same_bytes(tree: CohortSummary, tmp_path: Path) -> None:
    """Subject 0's V00 MRI, rendered alone by the CLI with one job, equals the 2-job tree."""
    out = tmp_path / "again"
    code = main(
        ["synth", "--out", str(out), "--subjects", "1", "--visits", "V00", "--seed", "4",
         "--treatment-effect", "0.5", "--no-xray", "--jobs", "1", "--json"]
    )  # fmt: skip
    assert code == 0
    manifest = _rows(out / "labels" / "manifest.csv")
    assert len(manifest) == 2
    for row in manifest:
        for rel in (row["LabelPath"], *[f"{row['Folder']}/{i:03d}" for i in (1, 24, 48)]):
            assert (out / rel).read_bytes() == (tree.out / rel).read_bytes(), rel


def test_cli_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["synth", "--out", str(tmp_path / "x"), "--visits", "V00,V02"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown visit") and err.count("\n") == 1
    assert main(["synth", "--out", str(tmp_path / "x"), "--size", "huge"]) == 2


def test_catalog_ingests_the_tree_completely(
    tree: CohortSummary, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    ws = tmp_path / "ws"
    ws.mkdir()
    capsys.readouterr()
    assert main(["ingest", str(tree.out), "-w", str(ws), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["failed"] == 0 and report["failures"] == []
    assert report["added"] == 2 * 4 + 2 * 3  # every DESS series and radiograph
    assert report["labels"] == 2 * 2 * 2  # every label map attached to its series
    # the clinical/ tables come with the tree: every cell but the ID (and SIDE) columns
    allc, kxr = (_rows(tree.out / "clinical" / t) for t in ("AllClinical.csv", "kXR.csv"))
    counts = {
        "AllClinical.csv": len(allc) * (len(allc[0]) - 1),
        "kXR.csv": len(kxr) * (len(kxr[0]) - 2),
    }
    assert (report["clinical_tables"], report["clinical_values"]) == (2, sum(counts.values()))
    for table, cells in counts.items():  # importing them again changes nothing
        assert main(["ingest", str(tree.out / "clinical" / table), "-w", str(ws), "--json"]) == 0
        again = json.loads(capsys.readouterr().out)
        assert (again["clinical_values"], again["unchanged"]) == (0, cells)


@pytest.mark.slow  # default suite time; its logic is covered by faster tests
def test_append_to_an_mri_cohort_merges_label_manifest_and_truth(
    tree: CohortSummary, tmp_path: Path
) -> None:
    """A third subject appended (same spec and seed: subject index 2) to the MRI tree."""
    import json

    from kneescope.synth.cohort import participant_id

    out = tmp_path / "cohort"
    shutil.copytree(tree.out, out)
    spec = SPEC.model_copy(update={"subjects": 1})
    summary = generate_cohort(spec, out, mode="append")
    assert (summary.first_index, summary.cohort_subjects) == (2, 3)
    new_pid = participant_id(SPEC.seed, 2)
    for table in ("labels/manifest.csv", "truth/knee_truth.csv", "truth/regional_thickness.csv"):
        old, merged = _rows(tree.out / table), _rows(out / table)
        assert merged[: len(old)] == old
        assert {r["ParticipantID"] for r in merged[len(old) :]} == {new_pid}
    labels = _rows(out / "labels" / "manifest.csv")[-4:]  # 2 visits x 2 knees
    for row in labels:
        assert read_nifti(out / row["LabelPath"]).array.max() > 0
        assert (out / row["Folder"] / "001").is_file()
    spec_doc = json.loads((out / "synth_spec.json").read_text())
    assert spec_doc == SPEC.model_copy(update={"subjects": 3}).model_dump(mode="json")
