"""Later runs honour reviewers' QC decisions (``kneescope qc import``).

Real runs of small cohorts whose truth is known (``write_cohort``: item i's mean intensity is
10 i + 0.5): a rejected knee is flagged in the results table with the reviewer, time and note
and never reaches cohort steps (their sum is the truth's sum without it), or with
``items.qc_rejected = "exclude"`` leaves the run; a ``resegment`` decision re-runs exactly
that item, once; the dry run counts the same. Decisions are about knees, so a run of another
name over the same catalog series honours them too.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from cohort_helpers import pipeline, write_cohort
from synth_catalog import SynthCatalog, copy_synth_catalog

from kneescope.catalog.database import Catalog
from kneescope.catalog.qc_reviews import FORMAT, import_decisions
from kneescope.cohort.pipeline_config import ExecutorConfig, PipelineConfig
from kneescope.cohort.results_table import read_run_results
from kneescope.cohort.run_plan import plan_run
from kneescope.cohort.run_status import read_status
from kneescope.cohort.runner import RunResult, run_pipeline
from kneescope.workspace import Workspace

T0 = datetime(2026, 12, 1, 14, 0, 0, tzinfo=UTC)
LOCAL = ExecutorConfig(kind="local")
SUM = [{"name": "test_column_sum", "options": {"column": "mean"}}]


def _decisions(
    path: Path, run: str, marks: dict[str, str], reviewer: str = "A. Reader", minutes: int = 0
) -> Path:
    """A decisions file as the report exports it: item id -> decision."""
    stamp = (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    decisions = [
        {"item_id": item, "decision": decision, "note": f"{decision} note", "decided_at": stamp}
        for item, decision in marks.items()
    ]
    payload = {"format": FORMAT, "version": 1, "run": run, "reviewer": reviewer}
    path.write_text(json.dumps({**payload, "decisions": decisions}))
    return path


def _import(ws: Path, path: Path) -> None:
    with Catalog.for_workspace(Workspace.resolve(ws), create=False) as catalog:
        import_decisions(catalog, path)


def _table(result: RunResult) -> pd.DataFrame:
    return pd.read_parquet(result.results_path).set_index("item_id")


def _cohort_values(result: RunResult) -> dict[str, Any]:
    data = json.loads((result.run_dir / "cohort_results.json").read_text())
    return dict(data["steps"][0]["values"])


def test_reject_flagged_resegment_redone_once_cohort_steps_without_rejected(
    tmp_path: Path,
) -> None:
    truth = write_cohort(tmp_path / "cohort", 4)
    ids = sorted(truth)
    ws = Workspace.resolve(tmp_path / "ws")
    config = pipeline("r", tmp_path / "cohort", LOCAL, cohort_steps=SUM)
    first = run_pipeline(config, ws)
    assert first.ran == 4
    assert "qc_review" not in _table(first).columns  # no review: the table is unchanged
    assert _cohort_values(first) == {"sum": pytest.approx(sum(truth.values())), "rows": 4}

    marks = {ids[1]: "reject", ids[2]: "resegment", ids[3]: "accept"}
    _import(ws.root, _decisions(tmp_path / "qc-decisions-r.json", "r", marks))
    plan = plan_run(config, ws)
    assert (plan.changed, plan.done, plan.to_run, plan.qc_excluded) == (1, 3, 1, 0)

    second = run_pipeline(config, ws)
    assert second.ran == 1  # the resegment decision re-ran exactly its item
    table = _table(second)
    assert list(table.columns[:8]) == [
        "subject", "visit", "side", "series",
        "qc_review", "qc_reviewer", "qc_reviewed_at", "qc_review_note",
    ]  # fmt: skip
    assert table["qc_review"].to_dict() == {
        ids[0]: "",
        ids[1]: "reject",
        ids[2]: "resegmented",
        ids[3]: "accept",
    }
    rejected = table.loc[ids[1]]
    assert (rejected["qc_reviewer"], rejected["qc_reviewed_at"], rejected["qc_review_note"]) == (
        "A. Reader",
        "2026-12-01T14:00:00Z",
        "reject note",
    )
    assert table["mean"].to_dict() == pytest.approx(truth)  # flagged, values kept
    dropped = read_run_results(second.run_dir, drop_rejected=True)
    assert sorted(dropped["item_id"]) == [ids[0], ids[2], ids[3]]
    assert len(read_run_results(second.run_dir)) == 4
    kept = sum(v for k, v in truth.items() if k != ids[1])
    assert _cohort_values(second) == {"sum": pytest.approx(kept), "rows": 3}
    status = read_status(ws, "r")
    assert status.qc_review == {"accept": 1, "reject": 1, "resegmented": 1}
    assert [r["item_id"] for r in status.qc_rejected] == [ids[1]]
    assert status.qc_rejected[0]["reviewer"] == "A. Reader"

    assert run_pipeline(config, ws).ran == 0  # once: the decision does not re-run it again
    # a later accept of the re-segmented knee does not redo it either
    _import(ws.root, _decisions(tmp_path / "later.json", "r", {ids[2]: "accept"}, minutes=5))
    third = run_pipeline(config, ws)
    assert third.ran == 0
    assert _table(third).loc[ids[2], "qc_review"] == "accept"

    # exclude: the rejected knee leaves the run (and its results), the rest stays done
    exclude = config.model_copy(
        update={"items": config.items.model_copy(update={"qc_rejected": "exclude"})}
    )
    plan = plan_run(exclude, ws)
    assert (plan.total, plan.qc_excluded, plan.to_run) == (3, 1, 0)
    fourth = run_pipeline(exclude, ws)
    assert fourth.ran == 0
    assert sorted(_table(fourth).index) == [ids[0], ids[2], ids[3]]
    assert _cohort_values(fourth) == {"sum": pytest.approx(kept), "rows": 3}
    status = read_status(ws, "r")
    assert (status.qc_excluded, status.qc_excluded_count) == ([ids[1]], 1)


def test_decisions_follow_the_knee_into_a_run_of_another_name(
    synth_catalog_template: SynthCatalog, tmp_path: Path
) -> None:
    """Catalog items (one knee of each bilateral film): a knee rejected on run ``a``'s report
    is flagged in run ``b`` over the same films, and left out of it with ``exclude``."""
    cat = copy_synth_catalog(synth_catalog_template, tmp_path)
    ws = Workspace.resolve(cat.workspace)

    def config(name: str, **items: Any) -> PipelineConfig:
        return PipelineConfig.model_validate(
            {
                "name": name,
                "items": {"catalog": {"subject": cat.subject}, "unit": "radiograph_knee", **items},
                "steps": [{"name": "test_item_fields"}],
            }
        )

    first = _table(run_pipeline(config("a"), ws))
    assert len(first) == 4  # two films (V00, V01), two knees each
    knee = first.index[0]
    _import(cat.workspace, _decisions(tmp_path / "d.json", "a", {knee: "reject"}))
    other = _table(run_pipeline(config("b"), ws))
    assert other["qc_review"].to_dict() == {i: ("reject" if i == knee else "") for i in first.index}
    assert other.loc[knee, ["subject", "visit", "side", "series"]].tolist() == (
        first.loc[knee, ["subject", "visit", "side", "series"]].tolist()
    )
    left = _table(run_pipeline(config("c", qc_rejected="exclude"), ws))
    assert sorted(left.index) == sorted(set(first.index) - {knee})
