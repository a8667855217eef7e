"""`kneescope export SERIES --format slicer`: image + named, coloured .seg.nrrd + ITK-SNAP
workspace + Slicer loader, voxels and geometry as cataloged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from interop_cohort import ingested_cohort

from kneescope.cli.app import main
from kneescope.core.labels import KNEE_LABELS
from kneescope.io.itk_formats import read_itk
from kneescope.io.readers import read_volume
from kneescope.io.seg_nrrd import read_seg_nrrd


def test_export_slicer_from_catalog(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    knees, workspace_dir = ingested_cohort(tmp_path_factory)
    ws = ["-w", str(workspace_dir)]
    capsys.readouterr()
    assert main(["catalog", *ws, "--side", "left", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    left = knees[1]
    assert (left.side, left.labels is not None) == ("left", True)

    assert main(["export", str(row["id"]), "--format", "slicer", *ws, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    folder = Path(out["folder"])
    assert folder == workspace_dir / "exports" / f"S001_V00_left_DESS_s{row['id']}_slicer"
    assert out["labels_from"] == "catalog"
    assert out["segments"] == {str(v): n for v, n in KNEE_LABELS.labels.items()}
    image = read_itk(Path(out["image"]))
    assert np.array_equal(image.array, left.image.array)
    assert np.allclose(image.affine_ras, left.image.affine_ras, atol=1e-4)
    seg, segments = read_seg_nrrd(Path(out["segmentation"]))
    assert left.labels is not None
    assert np.array_equal(seg.array, left.labels.array)
    assert np.allclose(seg.affine_ras, left.image.affine_ras, atol=1e-4)
    assert {s.label_value: s.name for s in segments} == KNEE_LABELS.labels
    for key in ("itksnap_workspace", "itksnap_labels", "slicer_script"):
        assert Path(out[key]).parent == folder

    # again: refused without --overwrite (one line), replaced with it
    assert main(["export", str(row["id"]), "--format", "slicer", *ws]) == 2
    err = capsys.readouterr().err.strip()
    assert "exists; pass --overwrite" in err
    assert len(err.splitlines()) == 1
    target = tmp_path / "bundle"
    assert main(["export", str(row["id"]), "--format", "slicer", "-o", str(target), *ws]) == 0
    assert "ITK-SNAP: itksnap -w" in capsys.readouterr().out
    assert (target / "load_in_slicer.py").is_file()

    # no label map (S002 V01), an unknown run, a missing output folder: one line each
    assert main(["catalog", *ws, "--visit", "V01", "--json"]) == 0
    (v01,) = json.loads(capsys.readouterr().out)
    cases = [
        ([str(v01["id"]), "--format", "slicer"], 3, "has no label map in the catalog"),
        ([str(row["id"]), "--format", "slicer", "--run", "nope"], 3, "run 'nope' not found"),
        ([str(row["id"]), "--format", "slicer", "-o", str(tmp_path / "a" / "b")], 2, "create it"),
        (["--format", "slicer"], 2, "needs SERIES"),
        ([str(row["id"]), "--format", "slicer", "--run", "../x"], 2, "is not a run name"),
    ]
    for args, code, message in cases:
        assert main(["export", *args, *ws]) == code
        err = capsys.readouterr().err.strip()
        assert message in err
        assert len(err.splitlines()) == 1


@pytest.mark.slow
def test_export_slicer_takes_a_runs_segmentation(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """--run NAME: the label map that run's segment step wrote (the shipped model), voxel for
    voxel, on the image's grid."""
    _, workspace_dir = ingested_cohort(tmp_path_factory)
    ws = ["-w", str(workspace_dir)]
    config = tmp_path / "run.toml"
    config.write_text(
        'name = "seg-e"\n[items]\ncatalog = { visit = "V00" }\n'
        '[[steps]]\nname = "load_volume"\n'
        '[[steps]]\nname = "segment"\noptions = { model = "knee-seg", tta = false }\n'
    )
    assert main(["run", "-c", str(config), *ws]) == 0
    capsys.readouterr()
    assert main(["catalog", *ws, "--side", "left", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    out_dir = tmp_path / "from-run"
    args = [str(row["id"]), "--format", "slicer", "--run", "seg-e", "-o", str(out_dir), *ws]
    assert main(["export", *args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    written = workspace_dir / "runs" / "seg-e" / "outputs" / f"series-{row['id']}" / "labels.nii.gz"
    assert out["labels_from"] == "run seg-e"
    assert Path(out["label_map"]) == written
    seg, segments = read_seg_nrrd(Path(out["segmentation"]))
    truth = read_volume(written)
    assert np.array_equal(seg.array, truth.array)
    assert np.allclose(seg.affine_ras, truth.affine_ras, atol=1e-4)
    assert {s.label_value: s.name for s in segments} == KNEE_LABELS.labels
    assert (
        main(["export", str(row["id"]), "--format", "slicer", "--run", "seg-e", "--labels", *ws])
        == 2
    )
    assert "not both" in capsys.readouterr().err
