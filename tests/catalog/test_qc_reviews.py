"""Reviewers' QC decisions in the catalog (``kneescope.catalog.qc_reviews``): a decisions file
checked against a stored run and imported all or nothing, re-imports that change nothing,
later decisions that supersede earlier ones with the history kept, and one clear line for
every malformed file; SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select

from kneescope.catalog.database import Catalog
from kneescope.catalog.qc_reviews import (
    FORMAT,
    import_decisions,
    list_reviews,
    load_reviews,
    read_decisions_file,
)
from kneescope.catalog.results_store import RunRecord, ValueRecord, store_run_results
from kneescope.catalog.schema import QcReview
from kneescope.errors import InputError, NotFoundError

T0 = datetime(2026, 12, 1, 14, 0, 0, tzinfo=UTC)
ITEMS = [  # item_id, subject, visit, side, series (the last one a file-list item: no series)
    ("series-1", "9000001", "V00", "right", "1.2.3.1"),
    ("series-2", "9000001", "V00", "left", "1.2.3.2"),
    ("series-3", "9000002", "V01", "right", "1.2.3.3"),
    ("knee-9000003-left", "9000003", "", "left", ""),
]


@pytest.fixture
def catalog(catalog_url: str, tmp_path: Path) -> Any:
    """A catalog holding run ``demo`` with the four ITEMS (one value each); SQLite and
    PostgreSQL (``catalog_url`` of tests/catalog/conftest.py)."""
    cat = Catalog.open(catalog_url)
    run = RunRecord("demo", tmp_path / "runs" / "demo", T0, T0, "cfg", "", "0.1.0")
    values = [
        ValueRecord(i, s, v, side, series, "biomarkers", "measure", "thickness_mm", "float", 2.0)
        for i, s, v, side, series in ITEMS
    ]
    store_run_results(cat, run, values)
    yield cat
    cat.close()


def _decision(n: int, decision: str, minutes: int = 0, note: str = "") -> dict[str, Any]:
    item_id, subject, visit, side, series = ITEMS[n]
    return {
        "item_id": item_id,
        "subject": subject,
        "visit": visit,
        "side": side,
        "series": series,
        "decision": decision,
        "note": note,
        "decided_at": (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z"),
    }


def _file(path: Path, decisions: list[dict[str, Any]], **top: Any) -> Path:
    payload = {
        "format": FORMAT,
        "version": 1,
        "run": "demo",
        "kneescope_version": "0.1.0",
        "reviewer": "A. Reader",
        "exported_at": "2026-12-01T15:00:00Z",
        "decisions": decisions,
        **top,
    }
    path.write_text(json.dumps(payload))
    return path


def _rows(catalog: Catalog) -> int:
    with catalog.session() as session:
        return int(session.scalar(select(func.count()).select_from(QcReview)) or 0)


def test_import_stores_every_decision_with_reviewer_times_and_source(
    catalog: Catalog, tmp_path: Path
) -> None:
    decisions = [_decision(0, "reject", note="cartilage leaks into fluid"), _decision(1, "accept")]
    decisions.append(_decision(3, "resegment"))
    decisions.append(_decision(2, "accept") | {"series": None, "note": None})  # as JS may
    path = _file(tmp_path / "qc-decisions-demo.json", decisions, kneescope_version=None)
    summary = import_decisions(catalog, path)
    assert (summary.imported, summary.unchanged, summary.changed_knees) == (4, 0, 4)
    assert summary.by_decision == {"accept": 2, "reject": 1, "resegment": 1}
    stored = {r.item_id: r for r in list_reviews(catalog)}
    assert set(stored) == {"series-1", "series-2", "series-3", "knee-9000003-left"}
    assert stored["series-3"].series == ITEMS[2][4]  # null in the file: the run's
    reject = stored["series-1"]
    assert (reject.decision, reject.reviewer, reject.note) == (
        "reject",
        "A. Reader",
        "cartilage leaks into fluid",
    )
    assert reject.decided_at == T0
    assert reject.source_name == path.name
    assert reject.source_digest == summary.sha256 == read_decisions_file(path).digest
    # the knee's identity comes from the run's stored results
    assert (reject.subject, reject.visit, reject.side, reject.series) == ITEMS[0][1:]
    reviews = load_reviews(catalog)
    assert reviews.of(*ITEMS[0]) is not None and reviews.of("x", "9", "V00", "left", "9.9") is None
    # the same series under another item id (another run) is the same knee
    assert reviews.of("other-id", *ITEMS[0][1:]).decision == "reject"  # type: ignore[union-attr]
    # a knee without a series is known by its item id
    assert reviews.of(*ITEMS[3]).decision == "resegment"  # type: ignore[union-attr]
    assert reviews.redo_token(*ITEMS[3]) and not reviews.redo_token(*ITEMS[0])


def test_reimport_changes_nothing_and_a_later_decision_supersedes(
    catalog: Catalog, tmp_path: Path
) -> None:
    first = _file(tmp_path / "a.json", [_decision(0, "resegment"), _decision(1, "accept")])
    import_decisions(catalog, first)
    again = import_decisions(catalog, first)
    assert (again.imported, again.unchanged, again.changed_knees) == (0, 2, 0)
    assert _rows(catalog) == 2
    token = load_reviews(catalog).redo_token(*ITEMS[0])
    # a second reviewer, later: knee 0 accepted, knee 1 rejected
    later = _file(
        tmp_path / "b.json",
        [_decision(0, "accept", minutes=5), _decision(1, "reject", minutes=5)],
        reviewer="B. Second",
    )
    summary = import_decisions(catalog, later)
    assert (summary.imported, summary.changed_knees) == (2, 2)
    current = {r.item_id: (r.decision, r.reviewer) for r in list_reviews(catalog)}
    assert current == {"series-1": ("accept", "B. Second"), "series-2": ("reject", "B. Second")}
    history = list_reviews(catalog, history=True)
    assert [(r.item_id, r.decision) for r in history] == [
        ("series-1", "resegment"),
        ("series-2", "accept"),
        ("series-1", "accept"),
        ("series-2", "reject"),
    ]
    # the redo a resegment decision asked for is not undone by a later accept
    assert load_reviews(catalog).redo_token(*ITEMS[0]) == token
    # an older decision imported late does not supersede a newer one
    old = _file(tmp_path / "c.json", [_decision(1, "accept", minutes=-30)], reviewer="C. Late")
    assert import_decisions(catalog, old).changed_knees == 0
    assert load_reviews(catalog).of(*ITEMS[1]).decision == "reject"  # type: ignore[union-attr]
    with pytest.raises(NotFoundError, match="no QC decisions for run 'other'"):
        list_reviews(catalog, run="other")


def test_unknown_item_or_run_or_identity_writes_nothing(catalog: Catalog, tmp_path: Path) -> None:
    unknown = _decision(0, "reject") | {"item_id": "series-99"}
    path = _file(tmp_path / "u.json", [_decision(1, "accept"), unknown])
    with pytest.raises(NotFoundError, match=r"1 decisions name items that run 'demo' does not "):
        import_decisions(catalog, path)
    assert _rows(catalog) == 0
    path = _file(tmp_path / "r.json", [_decision(0, "accept")], run="nope")
    with pytest.raises(NotFoundError, match=r"run 'nope' is not in the catalog's results"):
        import_decisions(catalog, path)
    moved = _decision(0, "reject") | {"subject": "9999999"}
    path = _file(tmp_path / "m.json", [_decision(1, "accept"), moved])
    with pytest.raises(InputError, match=r"decisions\[1\] .* has subject '9999999', but run"):
        import_decisions(catalog, path)
    assert _rows(catalog) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"is not JSON \(Expecting property name"),
        ('{"format": "other", "version": 1}', r"is not a kneescope QC decisions file"),
        ("[1, 2]", r"is not a kneescope QC decisions file \(format 'list'"),
        (f'{{"format": "{FORMAT}", "version": 2}}',
         r"version 2; this kneescope reads version 1; upgr"),
        ({"reviewer": "  "}, r"reviewer: String should have at least 1 character.*reviewer name"),
        ({"decisions": []}, r"decisions: .*at least 1 item"),
        ({"decisions": [{"item_id": "series-1", "decision": "maybe",
                         "decided_at": "2026-12-01T14:00:00Z"}]},
         r"decisions\[0\]\.decision: Input should be 'accept', 'reject' or 'resegment'"),
        ({"decisions": [{"item_id": "series-1", "decision": "accept",
                         "decided_at": "2026-12-01T14:00:00"}]},
         r"decisions\[0\]\.decided_at: decided_at needs a time zone"),
        ({"decisions": [{"decision": "accept", "decided_at": "2026-12-01T14:00:00Z"}]},
         r"decisions\[0\]\.item_id: Field required"),
    ],
)  # fmt: skip
def test_malformed_files_give_one_line(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "bad.json"
    if isinstance(content, str):
        path.write_text(content)
    else:
        _file(path, **{"decisions": [_decision(0, "accept")], **content})
    with pytest.raises(InputError, match=message) as caught:
        read_decisions_file(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_missing_file_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"decisions file .* not found"):
        read_decisions_file(tmp_path / "absent.json")
    (tmp_path / "latin.json").write_bytes(b'{"note": "\xe9"}')
    with pytest.raises(InputError, match="is not UTF-8 text"):
        read_decisions_file(tmp_path / "latin.json")


def test_a_catalog_without_the_table_reads_as_no_reviews_and_stays_unchanged(
    tmp_path: Path,
) -> None:
    """A catalog of an older kneescope (no qc_reviews table), opened as is (a dry run or
    `kneescope status` do so): no reviews, and nothing is created in it."""
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    Catalog.open(url).close()
    old = Catalog.open(url, create=False)
    with old.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE qc_reviews")
    assert not load_reviews(old)
    assert not inspect(old.engine).has_table("qc_reviews")
    old.close()
