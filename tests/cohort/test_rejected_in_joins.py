"""Knees a reviewer rejected stay out of what cohort steps and ``kneescope trial`` join from
other runs: by the run's own review columns and by the catalog's current decisions (a
decision imported after that run counts too)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from kneescope.catalog.database import Catalog
from kneescope.catalog.qc_reviews import FORMAT, import_decisions
from kneescope.catalog.results_store import RunRecord, ValueRecord, store_run_results
from kneescope.catalog.view import CatalogView, reads_digest, replay_digest
from kneescope.cohort.results_table import drop_rejected_knees, read_reviewed_run

T0 = datetime(2026, 12, 1, 14, 0, 0, tzinfo=UTC)
ITEMS = [  # item_id, subject, visit, side, series
    ("series-1", "9000001", "V00", "right", "1.2.3.1"),
    ("series-2", "9000001", "V00", "left", "1.2.3.2"),
    ("series-3", "9000002", "V01", "right", "1.2.3.3"),
    ("knee-9000003-left", "9000003", "", "left", ""),
]


def _decisions(path: Path, picks: list[tuple[int, str, str]]) -> Path:
    rows = []
    for n, decision, at in picks:
        item_id, subject, visit, side, series = ITEMS[n]
        rows.append(
            {
                "item_id": item_id,
                "subject": subject,
                "visit": visit,
                "side": side,
                "series": series,
                "decision": decision,
                "note": "",
                "decided_at": at,
            }
        )
    payload = {
        "format": FORMAT,
        "version": 1,
        "run": "demo",
        "kneescope_version": "0.1.0",
        "reviewer": "A. Reader",
        "exported_at": "2026-12-01T15:00:00Z",
        "decisions": rows,
    }
    path.write_text(json.dumps(payload))
    return path


def test_rejected_knees_are_left_out_of_a_joined_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    run_dir = tmp_path / "runs" / "demo"
    run_dir.mkdir(parents=True)
    cat = Catalog.open(url)
    try:
        record = RunRecord("demo", run_dir, T0, T0, "cfg", "", "0.1.0")
        values = [
            ValueRecord(i, s, v, side, ser, "biomarkers", "measure", "thickness_mm", "float", 2.0)
            for i, s, v, side, ser in ITEMS
        ]
        store_run_results(cat, record, values)
        # the run's table predates the review: no review columns
        table = pd.DataFrame(
            [
                dict(zip(("item_id", "subject", "visit", "side", "series"), i, strict=True))
                for i in ITEMS
            ]
        )
        table["thickness_mm"] = [2.0, 2.1, 2.2, 2.3]
        table.to_parquet(run_dir / "results.parquet")
        view = CatalogView(url, tmp_path)
        assert view.rejected_knees() == []
        assert len(read_reviewed_run(run_dir, view)) == 4
        recording = view.recording()
        recording.rejected_knees()
        before = replay_digest(view, recording.reads)
        assert before == reads_digest(recording.reads)

        # knee 1 rejected then accepted (superseded), knee 2 and the file-list knee rejected
        import_decisions(
            cat,
            _decisions(
                tmp_path / "d.json",
                [
                    (1, "reject", "2026-12-01T14:01:00Z"),
                    (1, "accept", "2026-12-01T14:05:00Z"),
                    (2, "reject", "2026-12-01T14:02:00Z"),
                    (3, "reject", "2026-12-01T14:03:00Z"),
                    (0, "resegment", "2026-12-01T14:04:00Z"),
                ],
            ),
        )
    finally:
        cat.close()

    assert view.rejected_knees() == [
        ["item", "knee-9000003-left"],
        ["series", "9000002", "V01", "right", "1.2.3.3"],
    ]
    # a cohort step that asked is re-run: the catalog's answer changed
    assert replay_digest(view, recording.reads) != before
    joined = read_reviewed_run(run_dir, view)
    assert joined["item_id"].tolist() == ["series-1", "series-2"]
    assert joined["thickness_mm"].tolist() == [2.0, 2.1]
    # without the catalog only the table's own review columns count: none here
    assert len(read_reviewed_run(run_dir, None)) == 4


def test_the_tables_own_review_column_counts_without_a_catalog() -> None:
    table = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "subject": ["1", "1", "2"],
            "visit": ["V00", "V00", "V00"],
            "side": ["right", "left", "right"],
            "series": ["1.2.9.1", "1.2.9.2", "Sag DESS"],
            "qc_review": ["accept", "reject", None],
        }
    )
    assert drop_rejected_knees(table)["item_id"].tolist() == ["a", "c"]
    # a DICOM series is one knee whatever the item; a series known only by its description
    # (not stable, not unique) is its item
    by_uid = drop_rejected_knees(table, [["series", "1", "V00", "right", "1.2.9.1"]])
    assert by_uid["item_id"].tolist() == ["c"]
    assert drop_rejected_knees(table, [["item", "c"]])["item_id"].tolist() == ["a"]
    assert len(drop_rejected_knees(table, [["series", "2", "V00", "right", "Sag DESS"]])) == 2
