"""The ``longitudinal`` cohort step at the end of a real pipeline run on a rendered synthetic
cohort (synth -> ingest -> load_labels, measure -> longitudinal), then with the faults a
catalog can hold put into that run's results: one subject's follow-up series filed under the
wrong sides, and another subject's knee filed under a knee's name."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kneescope.catalog.view import CatalogView
from kneescope.cli.app import main
from kneescope.cohort.cohort_steps import RESULTS_FILE, run_cohort_steps
from kneescope.cohort.pipeline_config import StepConfig


def _cli(argv: list[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code in (0, 1), (argv, code, err.getvalue())  # 1: items failed measure's QC


@pytest.mark.slow  # renders 3 subjects x 2 visits (~40 s on 2 cores) and measures them
def test_longitudinal_step_on_a_real_run_flags_swapped_sides_and_another_knee(
    tmp_path: Path,
) -> None:
    synth, ws = tmp_path / "synth", tmp_path / "ws"
    _cli(["synth", "-o", str(synth), "-n", "3", "--visits", "V00,V01", "--size", "small"])
    _cli(["ingest", str(synth), "-w", str(ws)])
    config = tmp_path / "run.toml"
    config.write_text(
        'name = "mri"\n[items]\ncatalog = { sequence = "DESS" }\n'
        '[[steps]]\nname = "load_labels"\n[[steps]]\nname = "measure"\n'
        '[[cohort_steps]]\nname = "longitudinal"\n'
    )
    _cli(["run", "-w", str(ws), "--config", str(config)])
    run_dir = ws / "runs" / "mri"
    (entry,) = json.loads((run_dir / RESULTS_FILE).read_text())["steps"]
    assert entry["ok"] is True, entry.get("reason")
    values = entry["values"]
    assert values["knees"] == 6 and values["knee_visits"] == 12
    assert values["visits"] == ["V00", "V01"]
    assert values["klg_source"] == "catalog XRKL at the baseline visit"
    assert values["side_checked"] == 12 and values["bone_checked"] == 6
    assert values["flagged_knee_visits"] == 0, values["flagged"]
    assert values["bone_change_pct_max_abs"] < 5.0  # the same knee: bone stays put
    truth = pd.read_csv(synth / "truth" / "subjects.csv", dtype={"ParticipantID": str})
    folder = run_dir / "cohort" / "longitudinal"
    summary = pd.read_csv(folder / "longitudinal_summary.csv")
    grades = {f"KL{int(g)}" for g in pd.concat([truth["BaselineKLG_R"], truth["BaselineKLG_L"]])}
    assert grades <= set(summary["group"])
    changes = pd.read_parquet(folder / "longitudinal_changes.parquet")
    follow = changes.loc[changes["visit"] == "V01"]
    if hasattr(CatalogView, "visit_dates"):  # the catalog's study dates: 12 months +- 20 days
        assert set(changes["months_source"]) == {"dates"}
        assert follow["months"].between(12 - 0.7, 12 + 0.7).all()
    else:  # the OAI visit code's months
        assert set(changes["months_source"]) == {"visit code"}
        assert set(follow["months"]) == {12.0}

    # the faults, as a catalog would hold them
    results = pd.read_parquet(run_dir / "results.parquet")
    numeric = [c for c in results.columns if results[c].dtype.kind == "f"]
    bone = [c for c in numeric if c.endswith("_subchondral_bone_area_mm2")]
    size = results.loc[results["visit"] == "V00"].groupby("subject")[bone].sum().sum(axis=1)
    subjects = list(size.sort_values().index)  # smallest bones first
    a, b, donor = subjects[1], subjects[0], subjects[2]
    jump = (size[donor] / size[b] - 1) * 100  # the largest bone-size difference of the three
    assert jump > 5.0  # the generator's subjects differ in size (seed 0: fixed)
    faulty = results.copy()
    swap = (faulty["subject"] == a) & (faulty["visit"] == "V01")
    faulty.loc[swap, "side"] = faulty.loc[swap, "side"].map({"right": "left", "left": "right"})
    here = (faulty["subject"] == b) & (faulty["visit"] == "V01") & (faulty["side"] == "right")
    other = results.loc[
        (results["subject"] == donor) & (results["visit"] == "V01") & (results["side"] == "right")
    ]
    faulty.loc[here, numeric] = other[numeric].to_numpy()
    rows: list[dict[str, Any]] = [
        {str(k): v for k, v in r.items()} for r in faulty.to_dict("records")
    ]
    view = CatalogView(f"sqlite:///{ws / 'catalog.sqlite'}", ws)
    run_cohort_steps([StepConfig(name="longitudinal")], rows, run_dir, view)
    (entry,) = json.loads((run_dir / RESULTS_FILE).read_text())["steps"]
    flagged = {(f["subject"], f["side"], f["visit"]): f for f in entry["values"]["flagged"]}
    expected_sides = {(a, "right", "V01"), (a, "left", "V01")}
    assert expected_sides <= set(flagged)
    for key in expected_sides:
        assert flagged[key]["checks"] == ["side"]
    assert flagged[(b, "right", "V01")]["checks"] == ["bone_size"]
    assert "% above baseline V00 (tolerance 5 %)" in flagged[(b, "right", "V01")]["reasons"][0]
    assert set(flagged) == {*expected_sides, (b, "right", "V01")}
    qc = pd.read_csv(folder / "longitudinal_qc.csv", dtype={"subject": str})
    assert {
        (s, d, v) for s, d, v in zip(qc["subject"], qc["side"], qc["visit"], strict=True)
    } == set(flagged)
