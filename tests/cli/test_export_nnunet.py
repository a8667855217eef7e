"""`kneescope export --format nnunet`: the catalog's pairs as an nnU-Net v2 dataset, accepted
by nnU-Net's own integrity check (nnunetv2 from PyPI, CPU), voxels and geometry as cataloged."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from interop_cohort import Knee, build_cohort, ingested_cohort

from kneescope.cli.app import main
from kneescope.core.labels import KNEE_LABELS
from kneescope.io.nifti import read_nifti, write_nifti

NNUNET_CHECK = (
    "import sys\n"
    "from nnunetv2.experiment_planning.verify_dataset_integrity import "
    "verify_dataset_integrity\n"
    "verify_dataset_integrity(sys.argv[1], 1)\n"
)


def _nnunet_env(tmp: Path, raw: Path) -> dict[str, str]:
    """Environment for nnU-Net with its three folders in ``tmp`` (never the user's)."""
    if importlib.util.find_spec("nnunetv2") is None:
        message = "nnunetv2 is not installed (scripts/test.sh installs it without timm)"
        if os.environ.get("KNEESCOPE_REQUIRE_SERVICES"):
            pytest.fail(message)
        pytest.skip(message)
    env = dict(os.environ)
    env["nnUNet_raw"] = str(raw)
    env["nnUNet_preprocessed"] = str(tmp / "nnUNet_preprocessed")
    env["nnUNet_results"] = str(tmp / "nnUNet_results")
    return env


def _clean_verdict(output: str) -> None:
    """nnU-Net prints its findings instead of failing on geometry: none may appear."""
    assert "verify_dataset_integrity Done" in output, output
    flagged = [ln for ln in output.splitlines() if ln.startswith(("Error", "Warning"))]
    assert flagged == [], output


@pytest.fixture
def cohort_ws(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Knee], list[str]]:
    knees, workspace = ingested_cohort(tmp_path_factory)
    return knees, ["-w", str(workspace)]


def _export(capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    capsys.readouterr()
    assert main(["export", "--format", "nnunet", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_export_matches_catalog_and_passes_nnunet_check(
    tmp_path: Path,
    cohort_ws: tuple[list[Knee], list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    knees, ws = cohort_ws
    raw = tmp_path / "raw"
    raw.mkdir()
    result = _export(capsys, "--dataset-id", "18", "-o", str(raw), *ws)
    folder = raw / "Dataset018_kneescope"
    assert result["folder"] == str(folder)
    assert result["cases"] == 3
    assert result["skipped_without_labels"] == 1
    assert result["case_ids"] == ["S001_V00_left", "S001_V00_right", "S002_V00_right"]

    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["numTraining"] == 3
    assert meta["file_ending"] == ".nii.gz"
    assert meta["channel_names"] == {"0": "DESS"}
    assert meta["labels"] == {"background": 0, **{n: v for v, n in KNEE_LABELS.labels.items()}}
    assert meta["kneescope"]["cases"]["S001_V00_left"]["side"] == "left"

    for knee in knees[:3]:
        assert knee.labels is not None
        case = f"{knee.subject}_{knee.visit}_{knee.side}"
        image = read_nifti(folder / "imagesTr" / f"{case}_0000.nii.gz")
        labels = read_nifti(folder / "labelsTr" / f"{case}.nii.gz")
        assert np.array_equal(image.array, knee.image.array)
        assert np.array_equal(labels.array, knee.labels.array)
        assert np.allclose(image.affine_ras, knee.image.affine_ras, atol=1e-4)
        assert np.array_equal(image.affine_ras, labels.affine_ras)  # nnU-Net compares them

    run = subprocess.run(
        [sys.executable, "-c", NNUNET_CHECK, str(folder)],
        env=_nnunet_env(tmp_path, raw),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    _clean_verdict(run.stdout)

    # the same id again: refused without --overwrite, replaced with it
    assert main(["export", "--format", "nnunet", "--dataset-id", "18", "-o", str(raw), *ws]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    again = _export(capsys, "--dataset-id", "18", "-o", str(raw), "--overwrite", *ws)
    assert again["cases"] == 3
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset018_kneescope"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "nnunet"], "needs --dataset-id"),
        (["1", "--format", "nnunet", "--dataset-id", "3"], "drop SERIES"),
        (["--format", "nnunet", "--dataset-id", "3", "--run", "x"], "--run and --labels"),
        (["--format", "nnunet", "--dataset-id", "3", "-o", "{tmp}/nowhere"], "does not exist"),
    ],
)
def test_bad_input_one_line(
    tmp_path: Path,
    workspace_dir: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["export", *argv, "-w", str(workspace_dir)]) in (2, 3)
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_no_pairs_and_taken_id(
    tmp_path: Path, workspace_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cohort"
    build_cohort(root)
    lines = (root / "manifest.csv").read_text().splitlines()
    (root / "manifest.csv").write_text(
        "\n".join([lines[0], *(ln.rsplit(",", 1)[0] + "," for ln in lines[1:])]) + "\n"
    )
    shutil.rmtree(root / "labels")
    ws = ["-w", str(workspace_dir)]
    assert main(["ingest", str(root), *ws, "--jobs", "1"]) == 0
    capsys.readouterr()
    assert main(["export", "--format", "nnunet", "--dataset-id", "5", *ws]) == 3
    assert "no series with a label map" in capsys.readouterr().err
    assert not (workspace_dir / "exports").exists()  # nothing created for a refused export
    raw = tmp_path / "raw"
    (raw / "Dataset005_other").mkdir(parents=True)
    assert main(["export", "--format", "nnunet", "--dataset-id", "5", "-o", str(raw), *ws]) == 2
    assert "already uses nnU-Net dataset id 5" in capsys.readouterr().err


@pytest.mark.slow
def test_nnunet_plan_and_preprocess_accepts_export_and_refuses_a_bad_label(
    tmp_path: Path,
    cohort_ws: tuple[list[Knee], list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """nnU-Net's own command, as a user runs it; and the same check failing on a label map
    with a value its dataset.json does not name (so the check can fail)."""
    _, ws = cohort_ws
    raw = tmp_path / "raw"
    raw.mkdir()
    _export(capsys, "--dataset-id", "18", "-o", str(raw), *ws)
    env = _nnunet_env(tmp_path, raw)
    command = Path(sys.executable).with_name("nnUNetv2_plan_and_preprocess")
    args = [str(command), "-d", "18", "--verify_dataset_integrity", "--no_pp", "-npfp", "1"]
    run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    _clean_verdict(run.stdout)
    plans = tmp_path / "nnUNet_preprocessed" / "Dataset018_kneescope" / "nnUNetPlans.json"
    assert json.loads(plans.read_text())["dataset_name"] == "Dataset018_kneescope"

    label = raw / "Dataset018_kneescope" / "labelsTr" / "S001_V00_left.nii.gz"
    volume = read_nifti(label)
    data = volume.array.copy()
    data[0, 0, 0] = 12
    write_nifti(volume.with_array(data), label)
    bad = subprocess.run([*args, "--clean"], env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0
    assert "Unexpected labels found" in bad.stdout
