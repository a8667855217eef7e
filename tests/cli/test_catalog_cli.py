"""`kneescope catalog`: filters checked against the catalog's vocabulary
and clinical variables from the CLI with --clinical, --json and -o CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import get_args

import pytest
import typer.main
from test_ingest_cli import build_tree

from kneescope.cli.app import app, main

KXR = (
    "ID|SIDE|V00XRKL|V01XRKL|V00XRJSM\n"
    "9000001|1|3: definite JSN|4: large osteophytes|2\n"
    "9000001|2|0: none|1: doubtful|0\n"
)
ALLCLIN = "ID,P02SEX,V00AGE,V00WOMKPR,V01WOMKPR\n9000001,2,61,=HYPERLINK(x),7\n9000002,1,55,3,4\n"


@pytest.fixture
def ws(tmp_path: Path, workspace_dir: Path) -> list[str]:
    """A workspace with the tree of test_ingest_cli and two clinical tables."""
    build_tree(tmp_path / "OAI")
    clinical = tmp_path / "OAI" / "clinical"
    clinical.mkdir()
    (clinical / "kxr.txt").write_text(KXR, encoding="utf-8")
    (clinical / "AllClinical.csv").write_text(ALLCLIN, encoding="utf-8")
    args = ["-w", str(workspace_dir)]
    assert main(["ingest", str(tmp_path / "OAI"), *args, "-j", "1"]) == 0
    return args


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_tree_ingest_imports_its_clinical_folder(
    tmp_path: Path, workspace_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_tree(tmp_path / "OAI")
    (tmp_path / "OAI" / "clinical").mkdir()
    (tmp_path / "OAI" / "clinical" / "kxr.txt").write_text(KXR, encoding="utf-8")
    report = _json(capsys, "ingest", str(tmp_path / "OAI"), "-w", str(workspace_dir), "-j", "1")
    assert isinstance(report, dict)
    assert (report["clinical_tables"], report["clinical_values"]) == (1, 6)
    assert main(["ingest", str(tmp_path / "OAI"), "-w", str(workspace_dir)]) == 0
    assert "clinical: 1 tables, 0 values added or updated, 6 unchanged" in capsys.readouterr().out


def test_clinical_values_from_the_cli(
    ws: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    values = _json(capsys, "catalog", "--clinical", *ws)
    assert isinstance(values, list)
    assert len(values) == 6 + 8  # kXR: 2 knees x 3; AllClinical: 2 subjects x 4
    rows = _json(capsys, "catalog", "--clinical", "--variable", "xrkl", "--side", "left", *ws)
    assert [(r["visit"], r["value_text"], r["value_num"]) for r in rows] == [  # type: ignore[union-attr, index]
        ("V00", "0: none", 0.0),
        ("V01", "1: doubtful", 1.0),
    ]
    pain = _json(capsys, "catalog", "--clinical", "--variable", "WOMKP*", "--visit", "1", *ws)
    assert [(r["subject"], r["value_text"]) for r in pain] == [  # type: ignore[union-attr, index]
        ("9000001", "7"),
        ("9000002", "4"),
    ]
    sex = _json(
        capsys, "catalog", "--clinical", "--subject", "9000002", "--variable", "P0?SEX", *ws
    )
    assert [(r["visit"], r["variable"], r["value_num"]) for r in sex] == [(None, "P02SEX", 1.0)]  # type: ignore[union-attr, index]

    out = tmp_path / "clinical.csv"
    args = ["catalog", "--clinical", "--subject", "9000001", "-o", str(out), *ws]
    assert main(args) == 0
    assert "written to" in capsys.readouterr().out
    raw = out.read_bytes()
    assert b"\r\n" not in raw
    with out.open(newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 6 + 4
    assert list(table[0]) == ["subject", "visit", "side", "variable", "value_text", "value_num"]
    formula = next(r for r in table if r["value_text"].endswith("HYPERLINK(x)"))
    assert formula["value_text"] == "'=HYPERLINK(x)"  # spreadsheet-safe
    assert main(args) == 2  # never replaced without --overwrite
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_series_listing_to_csv(
    ws: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "series.csv"
    assert main(["catalog", "--sequence", "DESS", "-o", str(out), *ws]) == 0
    with out.open(newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert sorted((r["side"], r["sequence"], r["shape"]) for r in table) == [
        ("left", "DESS", "24x20x6"),
        ("right", "DESS", "24x20x6"),
    ]


@pytest.mark.parametrize(
    ("args", "listed"),
    [
        (["--status", "broken"], "ok"),
        (["--kind", "mr"], "radiograph"),
        (["--sequence", "DES"], "it holds DESS, XR_PA (also valid: FLASH"),
        (["--modality", "MRI"], "it holds CR, MR"),
        (["--clinical", "--sequence", "DESS"], "applies to series only"),
        (["--variable", "XRKL"], "add --clinical"),
        (["--clinical", "-o", "x.xlsx"], "give a name ending in .csv"),
    ],
)
def test_unknown_filter_values_are_refused(
    ws: list[str], capsys: pytest.CaptureFixture[str], args: list[str], listed: str
) -> None:
    capsys.readouterr()
    assert main(["catalog", *args, *ws]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert listed in captured.err
    assert "\n" not in captured.err.strip()


def test_cli_choices_are_the_catalog_vocabulary(
    ws: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from kneescope.catalog.queries import KINDS, STATUSES

    command = typer.main.get_command(app).commands["catalog"]  # type: ignore[attr-defined]
    choices = {
        p.name: tuple(get_args(p.type_descriptor.annotation))
        for p in command.params
        if p.type_descriptor.is_choice
    }
    assert choices["status"] == STATUSES
    assert choices["kind"] == KINDS
    summary = _json(capsys, "catalog", "--summary", *ws)
    assert isinstance(summary, dict)
    assert set(summary["series_by_status"]) <= set(STATUSES)
    assert set(summary["series_by_kind"]) <= set(KINDS)
    assert _json(capsys, "catalog", "--sequence", "T2_MAP", *ws) == []  # known, absent: empty
