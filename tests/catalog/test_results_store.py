"""Run results in the catalog: stored, replaced on a re-run, read back,
and a catalog of the previous schema (version 2) upgraded in place; SQLite and PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, inspect, select, text

from kneescope.catalog.database import Catalog
from kneescope.catalog.results_store import (
    RunRecord,
    ValueRecord,
    list_runs,
    select_values,
    store_run_results,
    wide_rows,
)
from kneescope.catalog.schema import (
    SCHEMA_VERSION,
    Base,
    CatalogMeta,
    ResultRun,
    ResultValue,
    Subject,
)
from kneescope.errors import CatalogError, NotFoundError

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _run(name: str, root: Path, minutes: int = 0) -> RunRecord:
    return RunRecord(
        name=name,
        run_dir=root / "runs" / name,
        started_at=T0 + timedelta(minutes=minutes),
        finished_at=T0 + timedelta(minutes=minutes + 1),
        config_hash=f"cfg-{name}",
        model_hash="",
        kneescope_version="9.9.9",
        pipeline={"name": name, "steps": [{"name": "measure", "options": {}}]},
        items_done=2,
        items_failed=1,
    )


def _values(root: Path, scale: float, n_items: int = 2) -> list[ValueRecord]:
    """Per item: a thickness in mm, a voxel count, a flag, a text, a missing number, a file."""
    out = []
    for i in range(n_items):
        item = {
            "item_id": f"S{i}-V00-R",
            "subject": f"S{i}",
            "visit": "V00",
            "side": "right",
            "series": f"uid.{i}",
            "input_checksum": f"sum{i}",
            "kneescope_version": "9.9.9",
            "config_hash": "cfg",
            "model_hash": "mh",
            "computed_at": T0,
        }
        out += [
            ValueRecord(**item, capability="biomarkers", step="measure", name="thickness_mm",
                        kind="float", value=scale * (i + 1.25), unit="mm"),
            ValueRecord(**item, capability="biomarkers", step="measure", name="voxels",
                        kind="int", value=1000 + i, unit="1"),
            ValueRecord(**item, capability="qc", step="measure", name="qc_ok", kind="bool",
                        value=i % 2 == 0),
            ValueRecord(**item, capability="qc", step="measure", name="flags", kind="str",
                        value=f"=flag{i}"),
            ValueRecord(**item, capability="biomarkers", step="measure", name="extrusion_mm",
                        kind="float", value=math.nan, unit="mm"),
            ValueRecord(**item, capability="segmentation", step="segment",
                        name="file_segment_labels", kind="file",
                        value=str(root / "runs" / "r" / "outputs" / f"S{i}" / "labels.nii.gz")),
        ]  # fmt: skip
    return out


def _count(catalog: Catalog, model: type[Any]) -> int:
    with catalog.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_values_round_trip_with_units_kinds_and_provenance(
    catalog: Catalog, tmp_path: Path
) -> None:
    catalog.root = tmp_path  # a workspace root: file paths are stored relative to it
    written = _values(tmp_path, 2.0)
    assert store_run_results(catalog, _run("r", tmp_path), written) == len(written) == 12
    rows = list(select_values(catalog))
    assert len(rows) == 12
    by_name = {(r["item_id"], r["name"]): r for r in rows}
    for rec in written:
        row = by_name[(rec.item_id, rec.name)]
        assert (row["capability"], row["step"], row["kind"], row["unit"]) == (
            rec.capability,
            rec.step,
            rec.kind,
            rec.unit,
        )
        assert (row["subject"], row["visit"], row["side"], row["series"]) == (
            rec.subject,
            rec.visit,
            rec.side,
            rec.series,
        )
        assert row["run"] == "r" and row["input_checksum"] == rec.input_checksum
        assert row["computed_at"] == T0 and row["model_hash"] == "mh"
        if rec.kind in ("str", "file"):
            assert row["value_text"] == rec.value and row["value"] is None
        elif isinstance(rec.value, float) and math.isnan(rec.value):
            assert math.isnan(row["value"]) and row["value_text"] is None  # missing: NaN
        else:
            assert row["value"] == float(rec.value) and row["value_text"] is None  # type: ignore[arg-type]
    with catalog.session() as session:  # the file path is stored relative to the workspace
        stored = session.scalars(
            select(ResultValue.value_text).where(ResultValue.kind == "file")
        ).all()
    assert stored and all(not p.startswith("/") for p in stored)

    (run,) = list_runs(catalog)
    assert (run.name, run.values, run.items_done, run.items_failed) == ("r", 12, 2, 1)
    assert run.capabilities == ("biomarkers", "qc", "segmentation")
    assert (run.started_at, run.finished_at) == (T0, T0 + timedelta(minutes=1))
    assert run.run_dir == "runs/r"


def test_storing_a_run_again_replaces_its_values_only(catalog: Catalog, tmp_path: Path) -> None:
    store_run_results(catalog, _run("a", tmp_path), _values(tmp_path, 1.0))
    store_run_results(catalog, _run("b", tmp_path, 5), _values(tmp_path, 3.0, n_items=1))
    store_run_results(catalog, _run("a", tmp_path, 10), _values(tmp_path, 2.0))
    assert _count(catalog, ResultRun) == 2
    assert _count(catalog, ResultValue) == 12 + 6  # no duplicate of run a's values
    thickness = {
        (r["run"], r["item_id"]): r["value"]
        for r in select_values(catalog)
        if r["name"] == "thickness_mm"
    }
    assert thickness == {("b", "S0-V00-R"): 3.75, ("a", "S0-V00-R"): 2.5, ("a", "S1-V00-R"): 4.5}
    assert [r.name for r in list_runs(catalog)] == ["b", "a"]  # by finish time


def test_a_failed_store_keeps_the_previous_values(catalog: Catalog, tmp_path: Path) -> None:
    """One transaction: a run whose values cannot all be written leaves the old ones."""
    store_run_results(catalog, _run("a", tmp_path), _values(tmp_path, 1.0))

    def broken() -> Iterator[ValueRecord]:
        yield from _values(tmp_path, 7.0)[:3]
        yield ValueRecord("x", "", "", "", "", "c", "s", None, "float", 1.0)  # type: ignore[arg-type]

    with pytest.raises(CatalogError):  # a value without a name: the database refuses it
        store_run_results(catalog, _run("a", tmp_path, 10), broken())
    rows = list(select_values(catalog, runs=["a"]))
    assert len(rows) == 12
    assert {r["value"] for r in rows if r["name"] == "thickness_mm"} == {1.25, 2.25}

    def failing() -> Iterator[ValueRecord]:
        yield from _values(tmp_path, 7.0)[:3]
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        store_run_results(catalog, _run("a", tmp_path, 20), failing())
    rows = list(select_values(catalog, runs=["a"]))
    assert len(rows) == 12
    assert {r["value"] for r in rows if r["name"] == "thickness_mm"} == {1.25, 2.25}
    assert list_runs(catalog)[0].started_at == T0


def test_select_by_run_and_capability_and_not_found(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no run results"):
        list(select_values(catalog))
    store_run_results(catalog, _run("a", tmp_path), _values(tmp_path, 1.0))
    store_run_results(catalog, _run("b", tmp_path, 5), _values(tmp_path, 3.0, n_items=1))
    rows = list(select_values(catalog, runs=["b"], capabilities=["qc", "segmentation"]))
    assert {(r["run"], r["capability"]) for r in rows} == {("b", "qc"), ("b", "segmentation")}
    assert len(rows) == 3
    with pytest.raises(NotFoundError, match=r"run 'c' .*stored: a, b"):
        list(select_values(catalog, runs=["c"]))
    with pytest.raises(NotFoundError, match=r"capability 'scores' .*stored: biomarkers, qc"):
        list(select_values(catalog, capabilities=["scores"]))


def test_wide_rows_one_row_per_item_with_typed_columns(tmp_path: Path) -> None:
    tidy = [
        {"run": "a", "item_id": "i1", "subject": "S", "visit": "V00", "side": "right",
         "series": "u", "input_checksum": "c", "kneescope_version": "v", "config_hash": "h",
         "model_hash": "", "capability": "x", "step": "s", "name": name, "kind": kind,
         "value": value, "value_text": text, "unit": unit}
        for name, kind, value, text, unit in [
            ("voxels", "int", 12.0, None, "1"),
            ("ok", "bool", 1.0, None, ""),
            ("note", "str", math.nan, "fine", ""),
            ("subject", "str", math.nan, "named like a key", ""),
            ("mixed", "int", 3.0, None, ""),
        ]
    ]  # fmt: skip
    tidy.append({**tidy[4], "run": "b", "kind": "float", "value": 2.5})
    rows, columns = wide_rows(tidy)
    assert [(r["run"], r["item_id"]) for r in rows] == [("a", "i1"), ("b", "i1")]
    assert rows[0]["voxels"] == 12 and isinstance(rows[0]["voxels"], int)
    assert rows[0]["ok"] is True and rows[0]["note"] == "fine"
    assert rows[0]["subject"] == "S" and rows[0]["value_subject"] == "named like a key"
    assert rows[1]["mixed"] == 2.5 and "voxels" not in rows[1]
    kinds = {c.name: (c.kind, c.unit) for c in columns}
    assert kinds["voxels"] == ("int", "1") and kinds["mixed"] == ("float", "")


def _make_v2_catalog(url: str) -> None:
    """What kneescope wrote before run results (schema version 2): every table but the
    result ones, a schema_version row '2', and a subject."""
    engine = create_engine(url)
    tables = [t for t in Base.metadata.sorted_tables if not t.name.startswith("result_")]
    Base.metadata.create_all(engine, tables=tables)
    with engine.begin() as conn:
        conn.execute(CatalogMeta.__table__.insert().values(key="schema_version", value="2"))
        conn.execute(Subject.__table__.insert().values(code="9000099", cohort="OAI"))
    engine.dispose()


def test_a_version_2_catalog_gains_the_result_tables(catalog_url: str, tmp_path: Path) -> None:
    _make_v2_catalog(catalog_url)
    engine = create_engine(catalog_url)
    assert "result_values" not in inspect(engine).get_table_names()
    with Catalog.open(catalog_url, create=False) as catalog:  # read-only open: accepted
        pass
    with Catalog.open(catalog_url) as catalog:  # how kneescope opens a workspace catalog
        assert {"result_runs", "result_values"} <= set(inspect(catalog.engine).get_table_names())
        with catalog.session() as session:
            assert session.scalars(select(Subject.code)).all() == ["9000099"]
        store_run_results(catalog, _run("a", tmp_path), _values(tmp_path, 1.0))
        assert len(list(select_values(catalog))) == 12
    with engine.connect() as conn:
        version = conn.execute(
            text("SELECT value FROM catalog_meta WHERE key = 'schema_version'")
        ).scalar()
    engine.dispose()
    assert version == str(SCHEMA_VERSION) == "3"
    with Catalog.open(catalog_url) as catalog:  # opens again as it is
        assert [r.name for r in list_runs(catalog)] == ["a"]
