"""The demo's closing summary never shows a number without its QC verdict."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from kneescope.cli.cmd_demo import _cell, _preview, _qc_summary


def _results(path: Path) -> Path:
    pd.DataFrame(
        {
            "subject": ["1", "1", "2"],
            "visit": ["V00"] * 3,
            "side": ["right", "left", "right"],
            "femoral_cartilage_thickness_mean_mm": [2.4, 2.5, 2.2],
            "medial_meniscus_extrusion_mm": [math.nan, 1.5, math.nan],
            "qc_extrusion_grid_too_coarse": [True, False, True],
            "qc_side_unverified": [True, True, True],
            "qc_unmeasured_values": [1, 0, 1],
            "qc_ok": [False, True, False],
            "qc_reasons": ["grid", "", "grid"],
        }
    ).to_parquet(path)
    return path


def test_preview_rows_carry_their_qc_verdict(tmp_path: Path) -> None:
    rows = _preview(_results(tmp_path / "results.parquet"))
    assert [r["qc"] for r in rows] == ["failed", "ok", "failed"]
    assert _cell(rows[0]["medial_meniscus_extrusion_mm"]) == "-"
    assert _cell(rows[1]["medial_meniscus_extrusion_mm"]) == "1.50"


def test_qc_summary_counts_knees_per_flag(tmp_path: Path) -> None:
    summary = _qc_summary(_results(tmp_path / "results.parquet"))
    assert summary["knees"] == 3 and summary["qc_failed"] == 2
    # qc_side_unverified is informational (does not fail QC): not listed
    assert summary["qc_flags"] == {"extrusion_grid_too_coarse": 2, "unmeasured_values": 2}
