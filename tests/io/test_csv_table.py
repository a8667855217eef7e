"""The spreadsheet-safe CSV writer: formula cells prefixed, NaN empty, LF endings."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from kneescope.io.csv_table import safe_cell, write_csv_table


def test_formula_cells_are_prefixed_and_numbers_are_not(tmp_path: Path) -> None:
    rows = [
        {"name": '=HYPERLINK("http://x","y")', "v": -1.5, "s": "-2.5", "t": "@SUM(A1)"},
        {"name": "+cmd", "v": math.nan, "s": "plain", "t": "-"},
    ]
    path = write_csv_table(tmp_path / "t.csv", rows)
    raw = path.read_bytes()
    assert b"\r\n" not in raw
    with path.open(newline="", encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    assert got[0]["name"] == '\'=HYPERLINK("http://x","y")'
    assert got[0]["v"] == "-1.5"
    assert got[0]["s"] == "-2.5"
    assert got[0]["t"] == "'@SUM(A1)"
    assert got[1]["name"] == "'+cmd"
    assert got[1]["v"] == ""
    assert got[1]["t"] == "'-"
    frame = pd.read_csv(path)
    assert frame["v"].isna().tolist() == [False, True]


def test_safe_cell_passes_plain_values() -> None:
    assert safe_cell(None) == ""
    assert safe_cell(math.inf) == ""
    assert safe_cell(3) == 3
    assert safe_cell("femur") == "femur"
