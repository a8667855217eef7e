"""``kneescope export SERIES --format dicom-seg`` (and ``dicom-sr``) end to end, in process:
a tiny cohort (two DICOM knees, right and left, oblique like the OAI's sagittal DESS, with
label maps; one NIfTI knee; one DICOM knee without a label map) ingested by manifest, its
catalog label maps and a real run's segmentations exported as DICOM SEG, read back voxel for
voxel, ``dciodvfy`` 0 errors on every SEG and SR written; bad input one line and exit 2/3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from kneescope.cli.app import main
from kneescope.core import Volume
from kneescope.core.geometry import affine_from_axes
from kneescope.core.labels import KNEE_LABELS
from kneescope.io import read_volume, write_nifti
from kneescope.io.dicom_seg import read_dicom_seg
from kneescope.io.dicom_series import read_dicom_series
from kneescope.io.dicom_write import DicomWriteMeta, write_dicom_series

SHAPE = (16, 14, 8)
VALUES = {name: value for value, name in KNEE_LABELS.labels.items()}
# every DICOM SEG and SR a test leaves is checked by dciodvfy (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("dicom_objects_pass_dciodvfy")


def _knee(n: int) -> tuple[Volume, Volume]:
    """Image and label map (all nine structures in slabs) of knee ``n`` on an oblique,
    sagittal grid: i anterior, j inferior, k (slices) towards the left."""
    c, s = np.cos(0.1 * n), np.sin(0.1 * n)
    axes = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    tilt = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    affine = affine_from_axes([-40.0 + n, -30.0, -35.0], tilt @ axes, (0.4, 0.4, 0.8))
    labels = np.zeros(SHAPE, np.uint8)
    for value in range(1, 10):
        labels[value : value + 2, 2:12, 1 + n % 2 : 7] = value
    rng = np.random.default_rng(n)
    image = (labels.astype(np.int16) * 50 + rng.integers(0, 40, SHAPE)).astype(np.int16)
    return Volume(image, affine), Volume(labels, affine)


def _cohort(root: Path) -> dict[str, Volume]:
    """Write the cohort with its manifest; returns the label-map truth by knee name."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rows = ["path,subject,visit,side,sequence,label_path"]
    truth: dict[str, Volume] = {}
    plan = [
        ("9000001", "right", "dicom", True),
        ("9000001", "left", "dicom", True),
        ("9000002", "right", "nifti", True),
        ("9000003", "left", "dicom", False),
    ]
    for n, (subject, side, kind, with_labels) in enumerate(plan, start=1):
        image, labels = _knee(n)
        name = f"{subject}_{side}"
        if kind == "dicom":
            meta = DicomWriteMeta(
                patient_id=subject,
                study_date="20040512",
                study_description="OAI^MR^ENROLLMENT",
                series_description=f"SAG_3D_DESS_{side.upper()}",
                series_number=n,
                laterality=side,
                uid_seed=f"seg-cli-{n}",
            )
            write_dicom_series(image, root / "images" / name, meta=meta)
            rel = f"images/{name}"
        else:
            write_nifti(image, root / "images" / f"{name}.nii.gz")
            rel = f"images/{name}.nii.gz"
        label_rel = ""
        if with_labels:
            write_nifti(labels, root / "labels" / f"{name}.nii.gz")
            label_rel = f"labels/{name}.nii.gz"
            truth[name] = labels
        rows.append(f"{rel},{subject},V00,{side},DESS,{label_rel}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return truth


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _series_ids(capsys: pytest.CaptureFixture[str], ws: list[str]) -> dict[str, dict]:  # type: ignore[type-arg]
    rows = _json(capsys, "catalog", *ws)
    assert isinstance(rows, list)
    return {f"{r['subject']}_{r['side']}": r for r in rows}


@pytest.fixture
def cohort_ws(
    tmp_path: Path, workspace_dir: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[list[str], dict[str, Volume], dict[str, dict]]:  # type: ignore[type-arg]
    truth = _cohort(tmp_path / "cohort")
    ws = ["-w", str(workspace_dir)]
    _json(capsys, "ingest", str(tmp_path / "cohort"), *ws, "--jobs", "1")
    return ws, truth, _series_ids(capsys, ws)


def test_catalog_label_maps_round_trip_and_bad_input(
    tmp_path: Path,
    workspace_dir: Path,
    cohort_ws: tuple[list[str], dict[str, Volume], dict[str, dict]],  # type: ignore[type-arg]
    capsys: pytest.CaptureFixture[str],
) -> None:
    ws, truth, series = cohort_ws
    for name in ("9000001_right", "9000001_left"):
        record = series[name]
        result = _json(capsys, "export", str(record["id"]), "--format", "dicom-seg", *ws)
        assert isinstance(result, dict)
        path = Path(result["path"])
        assert path.parent == workspace_dir / "exports" and path.name.endswith("_seg.dcm")
        assert result["segments"] == {str(k): v for k, v in KNEE_LABELS.labels.items()}
        assert result["side"] == record["side"] and result["algorithm"] == "MANUAL"
        image = read_dicom_series(Path(record["path"]))
        back = read_dicom_seg(path, label_values=VALUES, reference=image)
        assert np.array_equal(back.array, truth[name].array)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == record["series_uid"]
        assert ds.PatientID == record["subject"]
        region = ds.SegmentSequence[0].AnatomicRegionSequence[0]
        assert region.AnatomicRegionModifierSequence[0].CodeMeaning == record["side"].title()

    right = str(series["9000001_right"]["id"])
    out = tmp_path / "given.dcm"
    assert main(["export", right, "--format", "dicom-seg", "-o", str(out), *ws]) == 0
    assert "wrote DICOM SEG of series" in capsys.readouterr().out
    before = out.read_bytes()
    # bad input: one line, exit 2 (bad input) or 3 (not found), nothing (re)written
    cases = [
        ([right, "-o", str(out)], 2, "exists; pass --overwrite"),
        ([str(series["9000002_right"]["id"])], 2, "was not ingested from DICOM"),
        ([str(series["9000003_left"]["id"])], 3, "has no label map in the catalog"),
        ([right, "-o", str(tmp_path / "x.nii.gz")], 2, "does not end in .dcm"),
        ([right, "-o", str(tmp_path / "no" / "x.dcm")], 2, "does not exist; create it"),
        ([right, "--run", "nosuch", "-o", str(tmp_path / "r.dcm")], 3, "run 'nosuch' not found"),
        ([right, "--labels", "--run", "x"], 2, "not both"),
        (["999"], 3, "no series '999'"),
    ]
    for args, code, message in cases:
        assert main(["export", *args, "--format", "dicom-seg", *ws]) == code, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (args, err)
    assert out.read_bytes() == before
    assert main(["export", right, "--format", "dicom-seg", "-o", str(out), "--overwrite", *ws]) == 0


def _tiny_model_file(path: Path) -> Path:
    """A small 3D U-Net model file (untrained, seeded): its label maps are the truth here."""
    import torch

    from kneescope.inference.segmentation_model import ModelSpec, SegmentationModel, save_model
    from kneescope.models import NetworkConfig, build_network

    config = NetworkConfig(
        name="unet", spatial_dims=3, out_channels=3, features=(4, 8), strides=(2,), num_res_units=0
    )
    torch.manual_seed(3)
    spec = ModelSpec(
        network=config,
        mode="3d",
        labels={1: "femur", 2: "femoral_cartilage"},
        spacing_mm=(0.8, 0.8, 0.8),
        orientation="RAS",
        roi_size_vox=(8, 8, 8),
    )
    return save_model(
        SegmentationModel(spec=spec, state_dict=build_network(config).state_dict()), path
    )


def test_a_runs_segmentation_is_exported_with_its_model(
    tmp_path: Path,
    workspace_dir: Path,
    cohort_ws: tuple[list[str], dict[str, Volume], dict[str, dict]],  # type: ignore[type-arg]
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A real run (load_volume -> segment with a small model file) over the DICOM knees;
    the SEG holds that run's label map voxel for voxel and names the model."""
    import pandas as pd

    from kneescope.cohort.pipeline_config import PipelineConfig
    from kneescope.cohort.runner import run_pipeline
    from kneescope.workspace import Workspace

    ws, _truth, series = cohort_ws
    model = _tiny_model_file(tmp_path / "tiny-knee.pt")
    config = PipelineConfig.model_validate(
        {
            "name": "seg",
            "items": {"catalog": {"sequence": "DESS", "subject": "9000001"}},
            "steps": [
                {"name": "load_volume"},
                {"name": "segment", "options": {"model": str(model), "device": "cpu"}},
            ],
            "executor": {"kind": "local", "workers": 1, "processes": False},
        }
    )
    result = run_pipeline(config, Workspace.resolve(workspace_dir))
    assert (result.done, result.failed) == (2, 0)
    table = pd.read_parquet(result.results_path)
    for name in ("9000001_right", "9000001_left"):
        record = series[name]
        row = table[table["series"] == record["series_uid"]].iloc[0]
        labels = read_volume(Path(row["file_segment_labels"]))
        out = tmp_path / f"{name}.dcm"
        exported = _json(
            capsys,
            "export",
            str(record["id"]),
            "--format",
            "dicom-seg",
            "--run",
            "seg",
            "-o",
            str(out),
            *ws,
        )
        assert isinstance(exported, dict)
        assert exported["label_map"] == str(row["file_segment_labels"])
        assert exported["algorithm"].startswith("tiny-knee ")
        back = read_dicom_seg(
            out, label_values=VALUES, reference=read_dicom_series(Path(record["path"]))
        )
        assert np.array_equal(back.array, labels.array)
        item = pydicom.dcmread(out, stop_before_pixels=True).SegmentSequence[0]
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentAlgorithmName == "tiny-knee"
        params = item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters
        assert row["model_hash"] in params


@pytest.mark.slow
def test_a_runs_biomarkers_as_a_dicom_sr(
    tmp_path: Path, workspace_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real run (load_labels -> measure) over a DICOM toy knee (known anatomy): the SR
    holds every finite biomarker of the run's row exactly; that run wrote no label maps, so
    a SEG of it is refused in one line. Slow: the toy knee has 180 slices."""
    import pandas as pd

    from kneescope.biomarkers.knee_phantom import render_compact_toy_knee
    from kneescope.cohort.pipeline_config import PipelineConfig
    from kneescope.cohort.runner import run_pipeline
    from kneescope.io.dicom_sr import read_measurement_report
    from kneescope.workspace import Workspace

    toy = render_compact_toy_knee().labels
    root = tmp_path / "toy"
    (root / "labels").mkdir(parents=True)
    meta = DicomWriteMeta(
        patient_id="9000009",
        study_date="20040512",
        study_description="OAI^MR^ENROLLMENT",
        series_description="SAG_3D_DESS_RIGHT",
        laterality="right",
        uid_seed="seg-cli-toy",
    )
    image = Volume((toy.array.astype(np.int16) * 40), toy.affine_ras)
    write_dicom_series(image, root / "knee", meta=meta)
    write_nifti(toy, root / "labels" / "knee.nii.gz")
    (root / "manifest.csv").write_text(
        "path,subject,visit,side,sequence,label_path\n"
        "knee,9000009,V00,right,DESS,labels/knee.nii.gz\n",
        encoding="utf-8",
    )
    ws = ["-w", str(workspace_dir)]
    _json(capsys, "ingest", str(root), *ws, "--jobs", "1")
    series = _series_ids(capsys, ws)
    config = PipelineConfig.model_validate(
        {
            "name": "bio",
            "items": {"catalog": {"sequence": "DESS"}},
            "steps": [{"name": "load_labels"}, {"name": "measure"}],
            "executor": {"kind": "local", "workers": 1, "processes": False},
        }
    )
    result = run_pipeline(config, Workspace.resolve(workspace_dir))
    assert (result.done, result.failed) == (1, 0)
    table = pd.read_parquet(result.results_path)
    record = series["9000009_right"]
    row = table[table["series"] == record["series_uid"]].iloc[0]
    out = tmp_path / "bio.dcm"
    exported = _json(
        capsys,
        "export",
        str(record["id"]),
        "--format",
        "dicom-sr",
        "--run",
        "bio",
        "-o",
        str(out),
        *ws,
    )
    assert isinstance(exported, dict) and exported["path"] == str(out)
    back = read_measurement_report(out)
    assert len(back) == exported["measurements"] > 10
    for name, (value, _unit, _group) in back.items():
        assert value == float(row[name]), name
    assert back["medial_meniscus_volume_mm3"][1:] == ("mm3", "medial_meniscus")
    assert back["femur_bone_volume_mm3"][0] > 0
    cases = [
        (["--format", "dicom-sr"], 2, "needs --run NAME"),
        (
            ["--format", "dicom-seg", "--run", "bio", "-o", str(tmp_path / "s.dcm")],
            2,
            "wrote no label map",
        ),
        (["--format", "dicom-sr", "--run", "bio", "-o", str(out)], 2, "exists; pass --overwrite"),
    ]
    for args, code, message in cases:
        assert main(["export", str(record["id"]), *args, *ws]) == code, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (args, err)


def test_sr_biomarkers_of_a_results_row() -> None:
    """Which columns of a results row the SR reports, and the structure of each."""
    import pandas as pd

    from kneescope.capabilities.biomarkers.results import MEASURE_RESULTS
    from kneescope.cli.export_dicom_sr import biomarkers_of, structure_of
    from kneescope.io.dicom_seg import SEGMENT_CODES

    values = {c.name: float(n) + 0.5 for n, c in enumerate(MEASURE_RESULTS)}
    values["femoral_cartilage_thickness_mean_mm"] = float("nan")
    row = pd.Series({**values, "measured_side": "right", "item_id": "series-1"})
    reported = {b.name: b for b in biomarkers_of(row)}
    numeric = {
        c.name
        for c in MEASURE_RESULTS
        if c.unit in ("mm", "mm2", "mm3", "%", "1") and not c.name.startswith("qc_")
    }
    assert set(reported) == numeric - {"femoral_cartilage_thickness_mean_mm"}
    assert len(reported) > 150
    for b in reported.values():
        assert b.value == values[b.name] and b.unit and b.description
        assert b.structure is None or b.structure in SEGMENT_CODES
    assert reported["medial_meniscus_extrusion_mm"].structure == "medial_meniscus"
    assert reported["lateral_tibial_denuded_bone_area_mm2"].structure == (
        "lateral_tibial_cartilage"
    )
    assert reported["patella_bone_volume_mm3"].structure == "patella"
    assert structure_of("we2008_cMF_ThCtAB_mm") is None
