"""The run manifest: per-item state in one SQLite file (RUN/manifest.sqlite, WAL mode).

States: ``pending`` -> ``running`` -> ``done`` | ``failed`` (with reason). Every item row holds
its key hash (input checksum + step versions/options + model hash): a re-run keeps ``done``
rows whose key is unchanged, re-runs rows whose key changed, and retries ``failed`` rows while
``attempts < max_attempts``. Only the driver writes; readers (``kneescope status``) may open the
file while a run is going on. Results live in the rows themselves, so the results table is
rebuilt from the manifest and a killed driver neither loses nor duplicates a row.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kneescope.cohort.item import Item, ItemPart
from kneescope.cohort.item_task import TaskOutcome, worker_values
from kneescope.errors import RunError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    subject TEXT NOT NULL, visit TEXT NOT NULL, side TEXT NOT NULL, series TEXT NOT NULL,
    path TEXT,
    input_checksum TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    selected INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    result_json TEXT,
    timings_json TEXT,
    worker TEXT,
    slurm_job_id TEXT,
    started_at REAL,
    finished_at REAL,
    labels_path TEXT,
    from_catalog INTEGER NOT NULL DEFAULT 0,
    unit TEXT NOT NULL DEFAULT 'series',
    parts_json TEXT
);
CREATE INDEX IF NOT EXISTS items_seq ON items(seq);
CREATE INDEX IF NOT EXISTS items_state ON items(state);
CREATE TABLE IF NOT EXISTS checksums (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    checksum TEXT NOT NULL
);
"""

_UPSERT = """
INSERT INTO items (item_id, seq, subject, visit, side, series, path, input_checksum, key_hash,
                   labels_path, from_catalog, unit, parts_json)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(item_id) DO UPDATE SET
    seq = excluded.seq, subject = excluded.subject, visit = excluded.visit,
    side = excluded.side, series = excluded.series, path = excluded.path, selected = 1,
    labels_path = excluded.labels_path, from_catalog = excluded.from_catalog,
    unit = excluded.unit, parts_json = excluded.parts_json,
    state = CASE WHEN items.key_hash != excluded.key_hash OR items.state = 'running'
                 THEN 'pending' ELSE items.state END,
    attempts = CASE WHEN items.key_hash != excluded.key_hash THEN 0 ELSE items.attempts END,
    reason = CASE WHEN items.key_hash != excluded.key_hash THEN NULL ELSE items.reason END,
    result_json = CASE WHEN items.key_hash != excluded.key_hash THEN NULL
                       ELSE items.result_json END,
    input_checksum = excluded.input_checksum, key_hash = excluded.key_hash
"""

STATES = ("pending", "running", "done", "failed")

_ADDED_COLUMNS = {
    "labels_path": "TEXT",
    "from_catalog": "INTEGER NOT NULL DEFAULT 0",
    "unit": "TEXT NOT NULL DEFAULT 'series'",
    "parts_json": "TEXT",
}
"""Columns added since the first manifest version (added to older manifests on open)."""


def _unreadable(path: Path, exc: sqlite3.Error) -> RunError:
    return RunError(
        f"cannot open manifest {path} ({exc}): it is damaged or not a kneescope run manifest; "
        "move it aside (the outputs and results next to it are kept) and run the same "
        "command again to rebuild the run"
    )


@contextmanager
def manifest_errors(path: Path) -> Iterator[None]:
    """Turn an SQLite error while using the manifest at ``path`` into one RunError line."""
    try:
        yield
    except sqlite3.Error as exc:
        raise _unreadable(path, exc) from None


def _parts_json(parts: tuple[ItemPart, ...]) -> str | None:
    """The series of a multi-series item as JSON (None for single-series items)."""
    return json.dumps([dataclasses.astuple(p) for p in parts]) if parts else None


def _parts(text: str | None) -> tuple[ItemPart, ...]:
    return tuple(ItemPart(*fields) for fields in json.loads(text)) if text else ()


@dataclass(frozen=True)
class QueuedItem:
    """An item the driver should submit."""

    seq: int
    item: Item
    attempts: int


class Manifest:
    """One run's manifest. Use as a context manager; ``readonly`` for status readers."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        if readonly and not path.exists():
            raise RunError(f"no manifest at {path}; start the run with `kneescope run`")
        if not readonly:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            else:
                self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise _unreadable(path, exc) from None
        try:
            self._db.execute("PRAGMA busy_timeout=30000")
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
            if tables and not {"meta", "items"} <= tables:
                raise sqlite3.DatabaseError("it holds no kneescope run tables")
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                have = {r[1] for r in self._db.execute("PRAGMA table_info(items)")}
                for column, decl in _ADDED_COLUMNS.items():
                    if column not in have:
                        self._db.execute(f"ALTER TABLE items ADD COLUMN {column} {decl}")
            elif not tables:
                raise sqlite3.DatabaseError("it is empty")
        except sqlite3.Error as exc:
            self._db.close()
            raise _unreadable(path, exc) from None

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The SQLite connection (read-only callers such as dry runs query it directly)."""
        return self._db

    # -- meta -------------------------------------------------------------------------------
    def set_meta(self, **values: Any) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [(k, json.dumps(v)) for k, v in values.items()],
        )

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

    # -- input checksums (cached by size and mtime) ------------------------------------------
    def cached_checksum(self, path: str, size: int, mtime_ns: int) -> str | None:
        row = self._db.execute(
            "SELECT checksum FROM checksums WHERE path = ? AND size = ? AND mtime_ns = ?",
            (path, size, mtime_ns),
        ).fetchone()
        return None if row is None else str(row[0])

    def store_checksum(self, path: str, size: int, mtime_ns: int, checksum: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO checksums VALUES (?, ?, ?, ?)", (path, size, mtime_ns, checksum)
        )

    # -- selection ---------------------------------------------------------------------------
    def sync(self, keyed_items: Iterable[tuple[Item, str]], batch: int = 2000) -> int:
        """Make the manifest's selection equal ``keyed_items`` (item, key hash), in order.

        New items become pending; items whose key changed become pending with attempts reset;
        stale ``running`` rows (a killed driver) become pending; done and failed rows with an
        unchanged key keep their state. Items no longer given are deselected (kept, not
        exported). Returns the number of items selected.
        """
        count = 0
        with self._transaction():
            self._db.execute("UPDATE items SET selected = 0")
            rows: list[tuple[Any, ...]] = []
            for item, key in keyed_items:
                rows.append(
                    (
                        item.item_id,
                        count,
                        item.subject,
                        item.visit,
                        item.side,
                        item.series,
                        item.path,
                        item.input_checksum,
                        key,
                        item.labels_path,
                        int(item.from_catalog),
                        item.unit,
                        _parts_json(item.parts),
                    )
                )
                count += 1
                if len(rows) >= batch:
                    self._db.executemany(_UPSERT, rows)
                    rows.clear()
            if rows:
                self._db.executemany(_UPSERT, rows)
            self._db.execute("UPDATE items SET state = 'pending' WHERE state = 'running'")
        return count

    def queued(self, after_seq: int, limit: int, max_attempts: int) -> list[QueuedItem]:
        """Next selected items to run (pending, or failed with attempts left), by seq."""
        rows = self._db.execute(
            "SELECT seq, item_id, subject, visit, side, series, path, input_checksum, attempts, "
            "labels_path, from_catalog, unit, parts_json "
            "FROM items WHERE selected = 1 AND seq > ? AND "
            "(state = 'pending' OR (state = 'failed' AND attempts < ?)) ORDER BY seq LIMIT ?",
            (after_seq, max_attempts, limit),
        ).fetchall()
        return [
            QueuedItem(
                seq=r[0],
                item=Item(
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    r[6],
                    r[7],
                    r[9],
                    bool(r[10]),
                    r[11],
                    _parts(r[12]),
                ),
                attempts=r[8],
            )
            for r in rows
        ]

    # -- state changes (driver only) ----------------------------------------------------------
    def mark_running(self, item_id: str) -> None:
        self._db.execute(
            "UPDATE items SET state = 'running', started_at = ? WHERE item_id = ?",
            (time.time(), item_id),
        )

    def record(
        self, outcome: TaskOutcome, provenance: dict[str, str], run_dir: Path | None = None
    ) -> None:
        """Store a finished attempt: done with its results, or failed with its reason.

        Output files are stored relative to ``run_dir`` (when inside it) with their size,
        mtime and sha256 (``outputs``), so that a resume can tell a deleted or changed
        output from an intact one and a moved workspace keeps its outputs.
        """
        result = {
            "values": outcome.values,
            "files": {k: relative_to_run(v, run_dir) for k, v in outcome.files.items()},
            "outputs": outcome.outputs,
            "provenance": provenance,
        }
        timings = {"steps": outcome.step_s, "phases": outcome.phase_s}
        extra = worker_values(outcome)
        self._db.execute(
            "UPDATE items SET state = ?, attempts = attempts + 1, reason = ?, result_json = ?, "
            "timings_json = ?, worker = ?, slurm_job_id = ?, started_at = ?, finished_at = ? "
            "WHERE item_id = ?",
            (
                "done" if outcome.ok else "failed",
                None if outcome.ok else outcome.reason,
                json.dumps(result) if outcome.ok else None,
                json.dumps(timings),
                extra["worker"],
                extra["slurm_job_id"],
                outcome.started_at,
                outcome.finished_at,
                outcome.item_id,
            ),
        )

    def record_lost(self, item_id: str, reason: str, max_attempts: int) -> bool:
        """Count an attempt whose worker died; returns True when the item may be retried."""
        attempts = self._db.execute(
            "SELECT attempts FROM items WHERE item_id = ?", (item_id,)
        ).fetchone()[0]
        retry = attempts + 1 < max_attempts
        self._db.execute(
            "UPDATE items SET attempts = attempts + 1, reason = ?, state = ?, finished_at = ? "
            "WHERE item_id = ?",
            (reason, "running" if retry else "failed", time.time(), item_id),
        )
        return retry

    def invalidate(self, item_id: str, reason: str) -> None:
        """Send a done item back to pending (its outputs were deleted or changed)."""
        self._db.execute(
            "UPDATE items SET state = 'pending', result_json = NULL, reason = ? "
            "WHERE item_id = ? AND state = 'done'",
            (reason, item_id),
        )

    def update_outputs(self, item_id: str, outputs: dict[str, Any]) -> None:
        """Store re-verified output digests (same content, a new mtime) of a done item."""
        row = self._db.execute(
            "SELECT result_json FROM items WHERE item_id = ? AND state = 'done'", (item_id,)
        ).fetchone()
        if row is None or row[0] is None:
            return
        result = json.loads(row[0])
        result["outputs"] = outputs
        self._db.execute(
            "UPDATE items SET result_json = ? WHERE item_id = ?", (json.dumps(result), item_id)
        )

    def release(self, item_ids: Iterable[str]) -> None:
        """Return running items to pending (Ctrl-C or a stopped driver)."""
        self._db.executemany(
            "UPDATE items SET state = 'pending' WHERE item_id = ? AND state = 'running'",
            [(i,) for i in item_ids],
        )

    # -- reading -----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Selected items per state (every state present, 0 when none)."""
        counts = dict.fromkeys(STATES, 0)
        for state, n in self._db.execute(
            "SELECT state, COUNT(*) FROM items WHERE selected = 1 GROUP BY state"
        ):
            counts[state] = n
        return counts

    def exhausted_failures(self, max_attempts: int) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM items WHERE selected = 1 AND state = 'failed' AND attempts >= ?",
            (max_attempts,),
        ).fetchone()
        return int(row[0])

    def rows(
        self, states: tuple[str, ...] = ("done",), batch: int = 5000
    ) -> Iterator[dict[str, Any]]:
        """Selected rows in the given states, in seq order, as dicts (JSON fields decoded)."""
        marks = ",".join("?" * len(states))
        cursor = self._db.execute(
            "SELECT item_id, subject, visit, side, series, path, input_checksum, key_hash, "
            "state, attempts, reason, result_json, timings_json, worker, slurm_job_id, "
            f"started_at, finished_at FROM items WHERE selected = 1 AND state IN ({marks}) "
            "ORDER BY seq",
            states,
        )
        names = [d[0] for d in cursor.description]
        while chunk := cursor.fetchmany(batch):
            for values in chunk:
                row = dict(zip(names, values, strict=True))
                row["result"] = json.loads(row.pop("result_json") or "{}")
                row["timings"] = json.loads(row.pop("timings_json") or "{}")
                yield row

    def done_with_outputs(self, batch: int = 5000) -> Iterator[tuple[str, dict[str, Any]]]:
        """(item id, stored result) of every selected done item that has output files."""
        # Filtered in Python, not with SQLite's json_extract: results hold NaN biomarkers,
        # which Python's json writes as `NaN` and SQLite's JSON functions reject.
        cursor = self._db.execute(
            "SELECT item_id, result_json FROM items WHERE selected = 1 AND state = 'done' "
            "AND result_json IS NOT NULL ORDER BY seq"
        )
        while chunk := cursor.fetchmany(batch):
            for item_id, result_json in chunk:
                result = json.loads(result_json)
                if result.get("files"):
                    yield str(item_id), result

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


def relative_to_run(path: str, run_dir: Path | None) -> str:
    """``path`` relative to ``run_dir`` when it lies inside it (else unchanged)."""
    if run_dir is None:
        return path
    try:
        return str(Path(path).relative_to(run_dir))
    except ValueError:
        return path


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
