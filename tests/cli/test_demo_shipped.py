"""``kneescope demo`` with the shipped model: no training stage, and a closing summary that
shows every knee's QC state next to its numbers and its errors against the synthetic truth.

The small grid keeps the test fast; meniscal extrusion is refused on it (QC fails every knee
with ``extrusion_grid_too_coarse``), which is what the QC-failed path of the summary needs.
The slow test runs the default demo grid, on which the issue's targets apply.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from kneescope.cli.app import main
from kneescope.cli.demo_truth import KNEE_TRUTH, TRUTH_COLUMNS


def _demo(ws: Path, *args: str) -> list[str]:
    return ["demo", "-w", str(ws), "-n", "1", "--visits", "V00", "--seed", "5", *args]


def _truth(cohort: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with (Path(cohort) / KNEE_TRUTH).open(newline="") as handle:
        return {(r["ParticipantID"], r["Visit"], r["Side"]): r for r in csv.DictReader(handle)}


@pytest.mark.slow  # default suite time; its logic is covered by faster tests
def test_demo_uses_the_shipped_model_and_reports_qc_and_truth_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    assert main([*_demo(ws, "--size", "small"), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["model_source"].startswith("shipped model")
    assert [s["stage"] for s in payload["stages"]] == [
        "synth",
        "ingest",
        "convert",
        "model",
        "run",
        "check",
    ]
    assert not (ws / "models").exists() or not any((ws / "models").iterdir())  # nothing trained

    truth = payload["truth"]
    results = pd.read_parquet(payload["results"])
    assert truth["knees"] == len(results) == 2
    assert truth["qc_passed"] + truth["qc_failed"] == 2
    assert truth["qc_failed"] == int((~results["qc_ok"].astype(bool)).sum())
    true_rows = _truth(Path(payload["cohort"]))
    for knee in truth["per_knee"]:
        row = results[(results["subject"] == knee["subject"]) & (results["side"] == knee["side"])]
        assert knee["qc"] == ("ok" if bool(row["qc_ok"].iloc[0]) else "failed")
        assert set(knee["dice"]) == {
            "femur",
            "femoral_cartilage",
            "tibia",
            "medial_tibial_cartilage",
            "lateral_tibial_cartilage",
            "patella",
            "patellar_cartilage",
            "medial_meniscus",
            "lateral_meniscus",
        }
        assert all(d is None or 0.0 <= d <= 1.0 for d in knee["dice"].values())
        true = true_rows[(knee["subject"], knee["visit"], knee["side"])]
        for column in TRUTH_COLUMNS:  # error = measured - truth, from the two tables
            measured = float(row[column.result].iloc[0])
            expected = measured - float(true[column.truth])
            if column.unit == "%":
                expected = 100.0 * (measured / float(true[column.truth]) - 1.0)
            got = knee["errors"][column.key]
            if math.isnan(expected):
                assert got is None
            else:
                assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)
    check = pd.read_csv(payload["truth_check"])
    assert set(check["qc"]) <= {"ok", "failed"} and len(check) == 2 * (9 + len(TRUTH_COLUMNS))

    # the summary for people (every stage cached now): each knee's QC state beside its values
    assert main(_demo(ws, "--size", "small")) == 0
    out = capsys.readouterr().out
    assert "results, with each knee's QC verdict" in out
    assert f"{truth['qc_passed']} of 2 knees passed QC" in out
    for knee in truth["per_knee"]:
        line = next(x for x in out.splitlines() if knee["subject"] in x and knee["side"] in x)
        assert knee["qc"] in line
        if knee["qc"] == "failed":
            assert f"QC failed {knee['subject']} V00 {knee['side']} (not in the summary)" in out
    assert "check against the truth" in out


def test_train_and_model_exclude_each_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_demo(tmp_path / "ws"), "--train", "-m", "knee-seg"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --train and --model exclude each other") and err.count("\n") == 1


@pytest.mark.slow
def test_default_demo_meets_the_issue_targets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default grid: every knee passes QC and each plate's mean thickness is within
    0.15 mm of the truth (issue 13's demo targets), with the shipped model."""
    assert main([*_demo(tmp_path / "ws"), "--json"]) == 0
    truth = json.loads(capsys.readouterr().out)["truth"]
    assert truth["qc_failed"] == 0 and truth["qc_passed"] == 2
    for knee in truth["per_knee"]:
        for column, error in knee["errors"].items():
            if column.endswith("thickness_mean_mm"):
                assert abs(error) <= 0.15, (knee["side"], column, error)
