"""`kneescope ingest` and `kneescope catalog` end to end, in process (real files, real SQL)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kneescope.cli.app import main
from kneescope.core import Volume
from kneescope.core.geometry import affine_from_axes
from kneescope.io.dicom_radiograph import write_dicom_radiograph
from kneescope.io.dicom_series import write_dicom_series
from kneescope.io.dicom_write import DicomWriteMeta


def _mr(seed: int) -> Volume:
    rng = np.random.default_rng(seed)
    c, s = np.cos(0.3), np.sin(0.3)
    rotation = np.array([[0.0, c, -s], [0.0, s, c], [1.0, 0.0, 0.0]])
    affine = affine_from_axes([-20.0, 5.0, 30.0 + seed], rotation, (0.4, 0.4, 0.7))
    return Volume(rng.integers(0, 3000, size=(24, 20, 6)).astype(np.int16), affine)


def build_tree(root: Path) -> dict[str, Path]:
    """A release with 2 MR series and a radiograph for one subject, plus one broken series."""
    base = root / "0.C.2" / "9000001" / "20040101"
    base.mkdir(parents=True)
    paths = {}
    for number, (desc, side, seed) in enumerate(
        [("SAG_3D_DESS_RIGHT", "right", 1), ("SAG_3D_DESS_LEFT", "left", 2)], start=1
    ):
        folder = base / f"1000000{number}"
        meta = DicomWriteMeta(
            patient_id="9000001",
            study_date="20040101",
            series_description=desc,
            laterality=side,  # type: ignore[arg-type]
            uid_seed=desc,
        )
        write_dicom_series(_mr(seed), folder, meta=meta)
        paths[desc] = folder
    xr_folder = base / "10000009"
    xr_folder.mkdir()
    xr = Volume(np.arange(30 * 40, dtype=np.uint16).reshape(30, 40), np.diag([0.2, 0.2, 1, 1]))
    xr_meta = DicomWriteMeta(
        patient_id="9000001",
        study_date="20040101",
        series_description="Bilateral PA Fixed Flexion Knee",
        modality="CR",
        uid_seed="xr",
    )
    write_dicom_radiograph(xr, xr_folder / "001", meta=xr_meta)
    paths["xr"] = xr_folder
    broken = base / "10000005"
    broken.mkdir()
    (broken / "001").write_bytes(b"\x00" * 200)
    paths["broken"] = broken
    return paths


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, object]:
    code = main([*args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_ingest_then_catalog(
    tmp_path: Path, workspace_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = build_tree(tmp_path / "OAI")
    ws = ["-w", str(workspace_dir)]
    code, report = run_json(capsys, "ingest", str(tmp_path / "OAI"), *ws, "-j", "1")
    assert code == 0
    assert isinstance(report, dict)
    assert (report["added"], report["unchanged"], report["failed"]) == (4, 0, 1)
    assert report["failures"][0]["path"] == str(tree["broken"])
    assert (workspace_dir / "catalog.sqlite").is_file()

    code, again = run_json(capsys, "ingest", str(tmp_path / "OAI"), *ws)
    assert code == 0
    assert isinstance(again, dict)
    assert (again["added"], again["updated"], again["unchanged"]) == (0, 0, 4)

    code, rows = run_json(capsys, "catalog", *ws, "--side", "left", "--sequence", "DESS")
    assert code == 0
    assert isinstance(rows, list)
    assert [(r["path"], r["visit"], r["shape"]) for r in rows] == [
        (str(tree["SAG_3D_DESS_LEFT"]), "V00", [24, 20, 6])
    ]
    code, failed = run_json(capsys, "catalog", *ws, "--status", "failed")
    assert isinstance(failed, list)
    assert [r["path"] for r in failed] == [str(tree["broken"])]
    code, summary = run_json(capsys, "catalog", *ws, "--summary")
    assert isinstance(summary, dict)
    assert summary["series_by_sequence"] == {"-": 1, "DESS": 2, "XR_PA": 1}
    assert summary["series_by_kind"]["radiograph"] == 1

    assert main(["catalog", *ws]) == 0  # the rich table renders
    table = capsys.readouterr().out
    assert "9000001" in table
    assert "4 series" in table
    assert main(["ingest", str(tmp_path / "OAI"), *ws]) == 0
    assert "0 added, 0 updated, 4 unchanged, 0 failed" in capsys.readouterr().out


def test_clinical_ingest_cli(
    tmp_path: Path, workspace_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "kxr_sq_bu00.txt"
    table.write_text("ID|SIDE|V00XRKL\n9000001|1|3: moderate\n9000001|2|0: none\n")
    code, report = run_json(capsys, "ingest", str(table), "-w", str(workspace_dir))
    assert code == 0
    assert isinstance(report, dict)
    assert (report["kind"], report["clinical_values"]) == ("clinical", 2)


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["ingest", "{tmp}/does-not-exist"], 2, "no such file or folder"),
        (["ingest", "{tmp}", "--kind", "dicom"], 2, "--kind 'dicom' is not one of"),
        (["ingest", "{tmp}"], 2, "neither an OAI-style tree"),
        (["ingest", "{tmp}/bad.csv"], 2, "line 2: 3 fields, expected 2"),
        (["catalog"], 3, "no catalog in workspace"),
        (["catalog", "--catalog", "nonsense://x"], 1, "cannot open catalog"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path,
    workspace_dir: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    exit_code: int,
    message: str,
) -> None:
    (tmp_path / "bad.csv").write_text("ID,V00XRKL\n9000001,2,3\n", encoding="utf-8")
    argv = [a.format(tmp=tmp_path) for a in args]
    assert main([*argv, "-w", str(workspace_dir)]) == exit_code
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert not (workspace_dir / "catalog.sqlite").exists()


@pytest.fixture
def pg_catalog_url(pg_url: str) -> Iterator[str]:
    """A fresh, randomly named database on the test PostgreSQL server (dropped afterwards)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"ks_cli_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_ingest_and_catalog_on_postgresql(
    tmp_path: Path,
    workspace_dir: Path,
    pg_catalog_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    build_tree(tmp_path / "OAI")
    opts = ["-w", str(workspace_dir), "--catalog", pg_catalog_url]
    code, report = run_json(capsys, "ingest", str(tmp_path / "OAI"), *opts, "-j", "1")
    assert code == 0
    assert isinstance(report, dict)
    assert (report["added"], report["failed"]) == (4, 1)
    code, summary = run_json(capsys, "catalog", *opts, "--summary")
    assert isinstance(summary, dict)
    assert (summary["series"], summary["subjects"]) == (4, 1)
    assert not (workspace_dir / "catalog.sqlite").exists()


def test_clinical_folder_ingest_is_all_or_nothing(
    tmp_path: Path, workspace_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "clinical"
    folder.mkdir()
    (folder / "kxr.txt").write_text("ID|SIDE|V00XRKL\n9000001|1|3: moderate\n", encoding="utf-8")
    (folder / "most.csv").write_text("MOSTID,V0XLKL\nMB00001,2\n", encoding="utf-8")
    (folder / "zz_bad.csv").write_text("ID,V00XRKL\n9000001,2,3\n", encoding="utf-8")
    args = ["ingest", str(folder), "--kind", "clinical", "-w", str(workspace_dir)]
    assert main(args) == 2
    assert "zz_bad.csv, line 2" in capsys.readouterr().err
    assert not (workspace_dir / "catalog.sqlite").exists()  # checked before it is created
    (folder / "zz_bad.csv").unlink()
    code, report = run_json(capsys, *args)
    assert code == 0
    assert isinstance(report, dict)
    assert report["clinical_values"] == 2
