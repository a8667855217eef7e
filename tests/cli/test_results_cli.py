"""``kneescope run`` stores every run's values in the catalog; ``kneescope results`` exports
them across runs. Real runs of a small pipeline over .npy files, checked
against each run's own results table; SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from kneescope.cli.app import main
from kneescope.cohort.step_registry import step_class

STEPS = ("load_array", "array_stats", "test_item_fields")
NOT_VALUES = ("item_id", "subject", "visit", "side", "series", "kneescope_version",
              "model_hash", "config_hash", "input_checksum", "input_path", "attempts",
              "worker", "slurm_job_id")  # fmt: skip


def _cohort(folder: Path, values: list[float | None]) -> Path:
    """One 3x4x5 .npy volume per value (None: a file that is not an array) and items.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["item_id,subject,visit,side,series,path"]
    for i, value in enumerate(values):
        path = folder / f"vol{i}.npy"
        if value is None:
            path.write_bytes(b"not an array")
        else:
            volume = np.full((3, 4, 5), value, dtype=np.float32)
            volume[0, 0, :i] = 0.0  # a different number of nonzero voxels per item
            np.save(path, volume)
        lines.append(f"S{i}-V00,S{i},V00,{'right' if i % 2 else 'left'},uid.{i},{path.name}")
    (folder / "items.csv").write_text("\n".join(lines) + "\n")
    return folder / "items.csv"


def _config(path: Path, name: str, items: Path) -> Path:
    steps = "".join(f'[[steps]]\nname = "{s}"\n' for s in STEPS)
    path.write_text(
        f'name = "{name}"\n[items]\nlist = "{items}"\n{steps}[executor]\nkind = "local"\n'
    )
    return path


def _run(ws: Path, config: Path, *extra: str) -> dict[str, Any]:
    return _json(["run", "-c", str(config), "-w", str(ws), *extra], expect=None)


def _json(argv: list[str], expect: int | None = 0) -> Any:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main([*argv, "--json"])
    if expect is not None:
        assert code == expect, (argv, code)
    return json.loads(buffer.getvalue())


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and np.isnan(value))


def _own_values(results: Path) -> dict[tuple[str, str], Any]:
    """(item_id, column) -> value of every value column of a run's own results table
    (missing and empty values left out: a CSV cannot tell them apart)."""
    frame = pd.read_parquet(results)
    out = {}
    for row in frame.to_dict("records"):
        for column, value in row.items():
            if column in NOT_VALUES or column.startswith(("time_", "file_")):
                continue
            if not _missing(value):
                out[(row["item_id"], column)] = value
    return out


def _declared(name: str) -> tuple[str, str]:
    """(capability, unit) of value ``name`` from the steps' declarations; a value of a step
    that declares none: its step's name when it is the only such step, else their names
    joined with '+', and no unit."""
    undeclared = []
    for step in STEPS:
        cls = step_class(step)
        capability = getattr(cls, "capability", "") or step
        columns = getattr(cls, "results", None)
        if not columns:
            undeclared.append(capability)
            continue
        for column in columns:
            if column.name == name:
                return capability, column.unit
    return "+".join(undeclared) or "unknown", ""


def _check_against_own(tidy: pd.DataFrame, own: dict[tuple[str, str], Any], run: str) -> None:
    """The exported values of ``run`` are the run's own, with the declared capability and
    unit."""
    rows = tidy[(tidy["run"] == run) & ~tidy["name"].str.startswith("file_")]
    got = {}
    for row in rows.to_dict("records"):
        unit = "" if _missing(row["unit"]) else row["unit"]  # CSV: an empty cell
        assert (row["capability"], unit) == _declared(row["name"]), row
        value = row["value_text"] if row["kind"] in ("str", "file") else row["value"]
        if not _missing(value):
            got[(row["item_id"], row["name"])] = bool(value) if row["kind"] == "bool" else value
    assert got == own


def test_runs_land_in_the_catalog_and_export_across_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    items = _cohort(tmp_path / "data", [0.5, 10.5, None, 20.5])
    first = _run(ws, _config(tmp_path / "a.toml", "a", items))
    assert (first["done"], first["failed"]) == (3, 1)
    assert (ws / "catalog.sqlite").is_file()  # a file-list run creates the workspace catalog
    own_a = _own_values(Path(first["results"]))
    assert own_a[("S1-V00", "mean")] == pytest.approx(10.5 * 59 / 60)  # 1 of 60 voxels is 0
    assert own_a[("S1-V00", "n_inputs")] == 1

    # tidy Parquet: one row per value, equal to the run's own table, with declared units
    out = tmp_path / "a.parquet"
    summary = _json(["results", "-w", str(ws), "-o", str(out)])
    assert summary["runs"] == ["a"] and summary["layout"] == "tidy"
    tidy = pd.read_parquet(out)
    _check_against_own(tidy, own_a, "a")
    assert len(tidy) == summary["rows"]
    assert len(tidy[tidy["name"] == "mean"]) == 3  # one value per item, no duplicate
    assert set(tidy["subject"]) == {"S0", "S1", "S3"}  # the failed item has no values
    assert (tidy["config_hash"] == first["config_hash"]).all()

    # re-run with one input changed: run a's values are replaced, not added
    np.save(tmp_path / "data" / "vol1.npy", np.full((3, 4, 5), 4.0, dtype=np.float32))
    rerun = _run(ws, _config(tmp_path / "a.toml", "a", items))
    assert rerun["ran"] == 2  # the changed item and the failed one again
    own_a = _own_values(Path(rerun["results"]))
    assert own_a[("S1-V00", "mean")] == 4.0
    # a second run over the same items
    second = _run(ws, _config(tmp_path / "b.toml", "b", items))
    own_b = _own_values(Path(second["results"]))

    csv = tmp_path / "all.csv"
    summary = _json(["results", "-w", str(ws), "-o", str(csv)])
    assert summary["runs"] == ["a", "b"]
    tidy = pd.read_csv(csv, dtype={"value_text": str, "unit": str})
    _check_against_own(tidy, own_a, "a")
    _check_against_own(tidy, own_b, "b")
    assert len(tidy) == summary["rows"] >= len(own_a) + len(own_b)

    # --run and --capability select; --wide gives one row per run and item, units kept
    wide = tmp_path / "wide.parquet"
    argv = ["results", "-w", str(ws), "--run", "b", "--capability", "test", "--wide"]
    summary = _json([*argv, "-o", str(wide)])
    assert (summary["runs"], summary["capabilities"], summary["rows"]) == (["b"], ["test"], 3)
    frame = pd.read_parquet(wide)
    assert list(frame["item_id"]) == ["S0-V00", "S1-V00", "S3-V00"]
    assert list(frame["n_inputs"]) == [1, 1, 1] and frame["n_inputs"].dtype == np.int64
    assert "mean" not in frame.columns  # not a value of the capability "test"
    unit = _declared("n_inputs")[1]
    metadata = pq.read_schema(wide).field("n_inputs").metadata
    assert (metadata or {}).get(b"unit", b"").decode() == unit == "1"

    runs = _json(["results", "-w", str(ws)])
    assert [(r["name"], r["items_done"], r["items_failed"]) for r in runs] == [
        ("a", 3, 1),
        ("b", 3, 1),
    ]
    capsys.readouterr()


def test_results_refuses_to_overwrite_and_names_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    assert main(["results", "-w", str(ws), "-o", str(tmp_path / "x.csv")]) == 3
    assert capsys.readouterr().err.startswith("error: no catalog in workspace")

    items = _cohort(tmp_path / "data", [1.0, 2.0])
    _run(ws, _config(tmp_path / "a.toml", "a", items))
    out = tmp_path / "out.csv"
    out.write_text("keep me\n")
    capsys.readouterr()
    assert main(["results", "-w", str(ws), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists; pass --overwrite" in err
    assert out.read_text() == "keep me\n"
    assert main(["results", "-w", str(ws), "-o", str(out), "--overwrite"]) == 0
    assert pd.read_csv(out)["run"].unique().tolist() == ["a"]

    capsys.readouterr()
    assert main(["results", "-w", str(ws), "-o", str(tmp_path / "y.csv"), "--run", "zz"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run 'zz'" in err and "stored: a" in err
    assert not (tmp_path / "y.csv").exists()
    assert main(["results", "-w", str(ws), "-o", str(tmp_path / "y.txt")]) == 2
    assert "--format" in capsys.readouterr().err
    assert main(["results", "-w", str(ws), "--wide"]) == 2  # --wide without -o
    assert "add -o FILE" in capsys.readouterr().err
    assert main(["results", "-w", str(ws), "--format", "csv", "-o", str(tmp_path / "z")]) == 0
    assert pd.read_csv(tmp_path / "z")["run"].unique().tolist() == ["a"]


@pytest.fixture
def pg_catalog(pg_url: str) -> Iterator[str]:
    """A fresh database on the test PostgreSQL server; dropped afterwards."""
    name = f"ks_results_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_run_results_on_postgresql(tmp_path: Path, pg_catalog: str) -> None:
    from kneescope.catalog.database import Catalog

    Catalog.open(pg_catalog).close()  # a catalog database set up before (e.g. by ingest)
    ws = tmp_path / "ws"
    items = _cohort(tmp_path / "data", [3.0, 5.0])
    ran = _run(ws, _config(tmp_path / "a.toml", "a", items), "--catalog", pg_catalog)
    assert ran["done"] == 2
    assert not (ws / "catalog.sqlite").exists()  # the values went to PostgreSQL
    out = tmp_path / "a.parquet"
    _json(["results", "-w", str(ws), "--catalog", pg_catalog, "-o", str(out)])
    _check_against_own(pd.read_parquet(out), _own_values(Path(ran["results"])), "a")
