"""`kneescope convert` and `kneescope export` end to end, in process."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_ingest_cli import build_tree

from kneescope.cli.app import main
from kneescope.io.dicom_series import read_dicom_series
from kneescope.io.zarr_store import VolumeStore


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_convert_then_export(
    tmp_path: Path, workspace_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = build_tree(tmp_path / "OAI")
    ws = ["-w", str(workspace_dir)]
    _json(capsys, "ingest", str(tmp_path / "OAI"), *ws, "--jobs", "1")

    first = _json(capsys, "convert", *ws, "--jobs", "1")
    assert (first["converted"], first["skipped"], first["failed"]) == (3, 0, 0)
    assert first["ratio"] > 0
    assert first["mb_per_s"] > 0
    assert first["bytes_in"] == 2 * 24 * 20 * 6 * 2 + 30 * 40 * 2
    again = _json(capsys, "convert", *ws)
    assert (again["converted"], again["skipped"]) == (0, 3)

    rows = _json(capsys, "catalog", *ws, "--sequence", "DESS", "--side", "right")
    assert isinstance(rows, list)
    key = rows[0]["store_key"]
    truth = read_dicom_series(tree["SAG_3D_DESS_RIGHT"])
    stored = VolumeStore(workspace_dir / "store").read(key)
    assert np.array_equal(stored.array, truth.array)
    assert np.allclose(stored.affine_ras, truth.affine_ras)

    out = tmp_path / "right.nii.gz"
    result = _json(
        capsys, "export", str(rows[0]["id"]), "--format", "nifti", "--out", str(out), *ws
    )
    assert result["path"] == str(out)
    img = nib.load(out)
    assert np.allclose(img.affine, truth.affine_ras, atol=1e-5)
    assert np.array_equal(np.asarray(img.dataobj), truth.array)

    assert main(["convert", *ws]) == 0
    assert "skipped 3" in capsys.readouterr().out
    uid = rows[0]["series_uid"]
    assert main(["export", uid, "--format", "nrrd", *ws]) == 0
    assert "wrote series" in capsys.readouterr().out
    assert len(list((workspace_dir / "exports").glob("*.nrrd"))) == 1


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["export", "42", "--out", "{tmp}/x.nii.gz"], 3, "no series '42'"),
        (["export", "1", "--format", "png", "--out", "{tmp}/x.png"], 2, "--format 'png'"),
        (["convert"], 3, "no catalog in workspace"),
        (["export", "1", "--out", "{tmp}/x.nii.gz"], 3, "no catalog in workspace"),
    ],
)
def test_bad_input_one_line(
    tmp_path: Path,
    workspace_dir: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    exit_code: int,
    message: str,
) -> None:
    if exit_code == 3 and "42" in args:
        assert main(["ingest", str(_empty_manifest(tmp_path)), "-w", str(workspace_dir)]) == 0
        capsys.readouterr()
    argv = [a.format(tmp=tmp_path) for a in args]
    assert main([*argv, "-w", str(workspace_dir)]) == exit_code
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert not list(tmp_path.glob("x.*"))


def _empty_manifest(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.csv"
    path.write_text("path,subject\n", encoding="utf-8")
    return path
