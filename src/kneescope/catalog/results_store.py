"""Run results in the catalog: every run's per-item values in one tidy long table.

At the end of each ``kneescope run`` the runner calls :func:`store_run_results` with the run's
provenance (:class:`RunRecord`) and one :class:`ValueRecord` per item and value. The run's
previous rows (an earlier session of the same run) are replaced in the same transaction, so a
re-run or a resumed run never duplicates a value and a reader never sees half a run.

:func:`list_runs` and :func:`select_values` read them back for ``kneescope results``, across
runs: tidy (one row per value, with its unit) or wide (:func:`wide_rows`: one row per run
and item, one column per value name).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select

from kneescope.catalog.database import Catalog
from kneescope.catalog.schema import ResultRun, ResultValue
from kneescope.errors import NotFoundError

VALUE_KINDS = ("float", "int", "bool", "str", "file")
"""Kinds of stored values: numbers and flags go to ``value_num``, text and paths to
``value_text``."""

ITEM_COLUMNS = ("run", "item_id", "subject", "visit", "side", "series")
"""Columns that name one item of one run in an export."""

TIDY_COLUMNS = (
    *ITEM_COLUMNS,
    "capability",
    "step",
    "name",
    "kind",
    "value",
    "value_text",
    "unit",
    "input_checksum",
    "kneescope_version",
    "config_hash",
    "model_hash",
    "computed_at",
)
"""Columns of a tidy export, in order: ``value`` holds numbers (flags as 0/1, NaN when
missing), ``value_text`` text and output file paths (absolute)."""

PROVENANCE_COLUMNS = ("input_checksum", "kneescope_version", "config_hash", "model_hash")
"""Per-item provenance columns (the same for every value of an item)."""

_BATCH = 5000
_VALUES = ResultValue.metadata.tables[ResultValue.__tablename__]
_INSERT = insert(_VALUES)


@dataclass(frozen=True)
class RunRecord:
    """A run's identity and provenance.

    Attributes:
        name: the run name (its folder ``WS/runs/<name>``); one stored run per name.
        run_dir: the run folder.
        started_at: when the driver session that stores the run started (aware UTC).
        finished_at: when it finished (aware UTC).
        config_hash: hash of the steps' names, versions and options (keys every item).
        model_hash: hash of the model files the steps use ("" when none).
        kneescope_version: the version that ran the driver.
        pipeline: the resolved pipeline config (JSON-able dict).
        items_done: items with results.
        items_failed: items that failed (they have no values).
    """

    name: str
    run_dir: Path
    started_at: datetime
    finished_at: datetime
    config_hash: str
    model_hash: str
    kneescope_version: str
    pipeline: dict[str, Any] = field(default_factory=dict)
    items_done: int = 0
    items_failed: int = 0


@dataclass(frozen=True)
class ValueRecord:
    """One value of one item.

    Attributes:
        item_id, subject, visit, side, series: the item ("" when unknown).
        capability: capability of the step that produced the value.
        step: that step's name ("" when not known).
        name: the value's column name in the run's results table.
        kind: one of :data:`VALUE_KINDS`.
        value: the value; for ``kind="file"`` an absolute path. None (or NaN) when missing.
        unit: its unit ("" for text or when undeclared).
        input_checksum, kneescope_version, config_hash, model_hash: the item's provenance.
        computed_at: when the item finished (aware UTC), None when unknown.
    """

    item_id: str
    subject: str
    visit: str
    side: str
    series: str
    capability: str
    step: str
    name: str
    kind: str
    value: float | int | str | bool | None
    unit: str = ""
    input_checksum: str = ""
    kneescope_version: str = ""
    config_hash: str = ""
    model_hash: str = ""
    computed_at: datetime | None = None


@dataclass(frozen=True)
class StoredRun:
    """A run as stored in the catalog (see :class:`RunRecord`), with its counts."""

    name: str
    run_dir: str
    started_at: datetime
    finished_at: datetime
    stored_at: datetime
    config_hash: str
    model_hash: str
    kneescope_version: str
    items_done: int
    items_failed: int
    values: int
    capabilities: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "run_dir": self.run_dir,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "stored_at": self.stored_at.isoformat(),
            "config_hash": self.config_hash,
            "model_hash": self.model_hash,
            "kneescope_version": self.kneescope_version,
            "items_done": self.items_done,
            "items_failed": self.items_failed,
            "values": self.values,
            "capabilities": list(self.capabilities),
        }


def _value_columns(catalog: Catalog, record: ValueRecord) -> tuple[float | None, str | None]:
    """(value_num, value_text) of a record; NaN and None are stored as NULL."""
    value = record.value
    if value is None:
        return None, None
    if record.kind == "file":
        return None, catalog.stored(Path(str(value)))
    if record.kind == "str" or isinstance(value, str):
        return None, str(value)
    if not isinstance(value, int | float):  # a list or mapping from a step: kept as JSON text
        return None, json.dumps(value, default=str)
    number = float(value)
    return (None if math.isnan(number) else number), None


def _value_row(catalog: Catalog, run_id: int, record: ValueRecord) -> dict[str, Any]:
    number, text = _value_columns(catalog, record)
    return {
        "run_id": run_id,
        "item_id": record.item_id,
        "subject": record.subject,
        "visit": record.visit,
        "side": record.side,
        "series": record.series,
        "capability": record.capability,
        "step": record.step,
        "name": record.name,
        "kind": record.kind,
        "value_num": number,
        "value_text": text,
        "unit": record.unit,
        "input_checksum": record.input_checksum,
        "kneescope_version": record.kneescope_version,
        "config_hash": record.config_hash,
        "model_hash": record.model_hash,
        "computed_at": record.computed_at,
    }


def store_run_results(catalog: Catalog, run: RunRecord, values: Iterable[ValueRecord]) -> int:
    """Store one run's values, replacing whatever the catalog held for that run name.

    Everything happens in one transaction: a reader sees the old run or the new one, and a
    failure (database gone, disk full) leaves the old one. Returns the number of values stored.

    Raises:
        CatalogError: the database refused the write.
    """
    stored = 0
    with catalog.session() as session:
        old = session.scalar(select(ResultRun.id).where(ResultRun.name == run.name))
        if old is not None:  # explicit, not left to ON DELETE CASCADE (off in a bare SQLite)
            session.execute(delete(ResultValue).where(ResultValue.run_id == old))
            session.execute(delete(ResultRun).where(ResultRun.id == old))
            session.flush()
        row = ResultRun(
            name=run.name,
            run_dir=catalog.stored(run.run_dir),
            started_at=run.started_at,
            finished_at=run.finished_at,
            config_hash=run.config_hash,
            model_hash=run.model_hash,
            kneescope_version=run.kneescope_version,
            pipeline=run.pipeline,
            items_done=run.items_done,
            items_failed=run.items_failed,
        )
        session.add(row)
        session.flush()
        batch: list[dict[str, Any]] = []
        for record in values:
            batch.append(_value_row(catalog, row.id, record))
            if len(batch) >= _BATCH:
                session.execute(_INSERT, batch)  # Core executemany: no ORM objects
                stored += len(batch)
                batch = []
        if batch:
            session.execute(_INSERT, batch)
            stored += len(batch)
    return stored


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes: they were written as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def list_runs(catalog: Catalog) -> list[StoredRun]:
    """Every stored run, oldest first, with its number of values and its capabilities."""
    with catalog.session() as session:
        runs = session.scalars(select(ResultRun).order_by(ResultRun.finished_at)).all()
        counts = dict(
            session.execute(
                select(ResultValue.run_id, func.count()).group_by(ResultValue.run_id)
            ).all()
        )
        capabilities: dict[int, list[str]] = {}
        for run_id, capability in session.execute(
            select(ResultValue.run_id, ResultValue.capability)
            .distinct()
            .order_by(ResultValue.capability)
        ):
            capabilities.setdefault(run_id, []).append(capability)
        return [
            StoredRun(
                name=r.name,
                run_dir=r.run_dir,
                started_at=_aware(r.started_at),
                finished_at=_aware(r.finished_at),
                stored_at=_aware(r.stored_at),
                config_hash=r.config_hash,
                model_hash=r.model_hash,
                kneescope_version=r.kneescope_version,
                items_done=r.items_done,
                items_failed=r.items_failed,
                values=int(counts.get(r.id, 0)),
                capabilities=tuple(capabilities.get(r.id, ())),
            )
            for r in runs
        ]


def _check_names(wanted: Sequence[str], known: Sequence[str], what: str, hint: str) -> None:
    missing = [name for name in wanted if name not in known]
    if missing:
        shown = ", ".join(known) if known else "none"
        raise NotFoundError(
            f"{what} {', '.join(repr(m) for m in missing)} not in the catalog's results "
            f"(stored: {shown}); {hint}"
        )


def select_values(
    catalog: Catalog, runs: Sequence[str] = (), capabilities: Sequence[str] = ()
) -> Iterator[dict[str, Any]]:
    """Stored values as tidy rows (:data:`TIDY_COLUMNS`), by run (oldest first) then item.

    Args:
        catalog: the catalog.
        runs: run names to export (default: every stored run).
        capabilities: capabilities to export (default: all).

    Raises:
        NotFoundError: the catalog holds no run results, or a named run or capability is not
            among them (the message lists what is stored).
    """
    stored = list_runs(catalog)
    if not stored:
        raise NotFoundError(
            f"no run results in catalog {catalog.url}; run a pipeline first "
            "(kneescope run -c CONFIG -w WORKSPACE)"
        )
    _check_names(runs, [r.name for r in stored], "run", "see `kneescope results --json`")
    chosen = [r for r in stored if not runs or r.name in runs]
    known_caps = sorted({c for r in chosen for c in r.capabilities})
    _check_names(capabilities, known_caps, "capability", "pick one of the stored ones")
    with catalog.session() as session:
        ids: dict[str, int] = {
            name: run_id
            for name, run_id in session.execute(
                select(ResultRun.name, ResultRun.id).where(
                    ResultRun.name.in_([r.name for r in chosen])
                )
            )
        }
    columns = [_VALUES.c[name] for name in _READ_COLUMNS]
    for run in chosen:  # rows, not ORM objects: an export may hold millions
        query = select(*columns).where(_VALUES.c.run_id == ids[run.name])
        if capabilities:
            query = query.where(_VALUES.c.capability.in_(capabilities))
        with catalog.session() as session:
            result = session.execute(query.order_by(_VALUES.c.id)).yield_per(_BATCH)
            for row in result:
                yield _tidy_row(catalog, run.name, dict(zip(_READ_COLUMNS, row, strict=True)))


_READ_COLUMNS = (
    "item_id",
    "subject",
    "visit",
    "side",
    "series",
    "capability",
    "step",
    "name",
    "kind",
    "value_num",
    "value_text",
    "unit",
    *PROVENANCE_COLUMNS,
    "computed_at",
)


def _tidy_row(catalog: Catalog, run: str, row: dict[str, Any]) -> dict[str, Any]:
    kind = row["kind"]
    text = row.pop("value_text")
    if kind == "file" and text is not None:
        text = str(catalog.resolve(text))
    number = row.pop("value_num")
    if number is None and kind in ("float", "int", "bool"):
        number = math.nan
    if row["computed_at"] is not None:
        row["computed_at"] = _aware(row["computed_at"])
    return {"run": run, **row, "value": number, "value_text": text}


@dataclass(frozen=True)
class WideColumn:
    """A value column of a wide export: its name, kind (see :data:`VALUE_KINDS`) and unit."""

    name: str
    kind: str
    unit: str


def wide_rows(tidy: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[WideColumn]]:
    """Tidy rows -> one row per run and item, one column per value name.

    Numbers keep their kind (an ``int`` value becomes an integer, a ``bool`` a flag); a name
    with two kinds across runs (a number in one, text in another) becomes text. A name with
    two units across runs keeps the first and the caller can tell from the tidy export.
    Returns the rows (:data:`ITEM_COLUMNS`, :data:`PROVENANCE_COLUMNS`, then the value
    columns in first-seen order) and the value columns.
    """
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    columns: dict[str, WideColumn] = {}
    for rec in tidy:
        key = (rec["run"], rec["item_id"])
        row = rows.get(key)
        if row is None:
            row = {c: rec[c] for c in (*ITEM_COLUMNS, *PROVENANCE_COLUMNS)}
            rows[key] = row
        kind = rec["kind"]
        value = rec["value_text"] if kind in ("str", "file") else rec["value"]
        if kind == "int" and value is not None and not math.isnan(value):
            value = int(value)
        elif kind == "bool" and value is not None and not math.isnan(value):
            value = bool(value)
        name = rec["name"]
        if name in _RESERVED:  # a value named like an item column keeps a prefix
            name = f"value_{name}"
        previous = columns.get(name)
        if previous is None:
            columns[name] = WideColumn(name, kind, rec["unit"])
        elif previous.kind != kind:
            columns[name] = WideColumn(name, _common_kind(previous.kind, kind), previous.unit)
        row[name] = value
    return list(rows.values()), list(columns.values())


_RESERVED = frozenset((*ITEM_COLUMNS, *PROVENANCE_COLUMNS))


def _common_kind(a: str, b: str) -> str:
    numbers = ("bool", "int", "float")
    if a in numbers and b in numbers:
        return "float" if "float" in (a, b) else "int"
    return "str"
