"""The tidy results table, rebuilt from the manifest's stored results.

One row per done item - never two for one item - keyed by subject, visit, side and series
(plus item_id), with every
step's values, output file paths, and provenance on every row: kneescope version, model hash,
config hash, input checksum, attempts, worker, Slurm job id and per-step / per-phase seconds.
Written atomically (temp + rename), so a reader never sees half a table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kneescope.cohort.manifest import Manifest
from kneescope.cohort.outputs import output_path
from kneescope.cohort.step import PHASES
from kneescope.io.atomic import atomic_write

if TYPE_CHECKING:
    import pandas as pd

    from kneescope.catalog.view import CatalogView

KEY_COLUMNS = ("item_id", "subject", "visit", "side", "series")

log = logging.getLogger(__name__)


def row_key(rec: dict[str, Any]) -> tuple[str, ...]:
    """What makes two results the same item: subject, visit, side and series when the item
    names its series (catalog items always do), else the item id."""
    if rec.get("series"):
        return ("series", rec["subject"], rec["visit"], rec["side"], rec["series"])
    return ("item", rec["item_id"])


def table_rows(manifest: Manifest, run_dir: Path | None = None) -> list[dict[str, Any]]:
    """Flat result rows of the done items, in selection order: one row per item.

    Two done records of one item (see :func:`row_key`; e.g. the same series cataloged twice
    after a workspace was copied) give one row: the latest finished attempt's. Output paths
    stored relative to the run are given absolute (under ``run_dir``).
    """
    return rows_of(done_records(manifest), run_dir)


def rows_of(records: list[dict[str, Any]], run_dir: Path | None = None) -> list[dict[str, Any]]:
    """Flat result rows of :func:`done_records` (read once, used by the table, the catalog
    and the cohort steps at the end of a run)."""
    return [_flat_row(rec, run_dir) for rec in records]


def done_records(manifest: Manifest) -> list[dict[str, Any]]:
    """The manifest records (:meth:`Manifest.rows`) of the done items, in selection order,
    one per item (see :func:`table_rows`): what the results table and the catalog hold."""
    latest: dict[tuple[str, ...], dict[str, Any]] = {}
    order: list[tuple[str, ...]] = []
    dropped: list[str] = []
    for rec in manifest.rows(("done",)):
        key = row_key(rec)
        previous = latest.get(key)
        if previous is None:
            order.append(key)
            latest[key] = rec
            continue
        if (rec["finished_at"] or 0.0) >= (previous["finished_at"] or 0.0):
            latest[key] = rec
            rec = previous
        dropped.append(rec["item_id"])
    if dropped:
        log.warning(
            "results: %d older records of items already in the table left out: %s",
            len(dropped),
            ", ".join(dropped[:10]),
        )
    return [latest[key] for key in order]


def _flat_row(rec: dict[str, Any], run_dir: Path | None) -> dict[str, Any]:
    result = rec["result"]
    prov = result.get("provenance", {})
    row: dict[str, Any] = {k: rec[k] for k in KEY_COLUMNS}
    for name, value in result.get("values", {}).items():
        row[f"value_{name}" if name in KEY_COLUMNS else name] = value
    row.update(
        {
            f"file_{k}": v if run_dir is None else str(output_path(v, run_dir))
            for k, v in result.get("files", {}).items()
        }
    )
    row.update(
        {
            "kneescope_version": prov.get("kneescope_version", ""),
            "model_hash": prov.get("model_hash", ""),
            "config_hash": prov.get("config_hash", ""),
            "input_checksum": rec["input_checksum"],
            "input_path": rec["path"],
            "attempts": rec["attempts"],
            "worker": rec["worker"],
            "slurm_job_id": rec["slurm_job_id"] or "",
        }
    )
    timings = rec["timings"]
    for name, seconds in timings.get("steps", {}).items():
        row[f"time_step_{name}_s"] = seconds
    for phase in PHASES:
        row[f"time_{phase}_s"] = timings.get("phases", {}).get(phase, 0.0)
    row["time_total_s"] = sum(timings.get("steps", {}).values())
    return row


def write_results(
    manifest: Manifest,
    run_dir: Path,
    fmt: Literal["parquet", "csv"],
    rows: list[dict[str, Any]] | None = None,
) -> Path:
    """Write RUN/results.parquet (or .csv) from the manifest (or its ``rows`` when the caller
    has read them already); returns its path."""
    if rows is None:
        rows = table_rows(manifest, run_dir)
    final = run_dir / f"results.{fmt}"
    if fmt == "csv":
        from kneescope.io.csv_table import table_columns, write_csv_table

        return write_csv_table(final, rows, table_columns(rows) or list(KEY_COLUMNS))
    import pandas as pd

    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=list(KEY_COLUMNS))
    return atomic_write(final, lambda tmp: frame.to_parquet(tmp, index=False))


def drop_rejected_knees(
    table: pd.DataFrame, rejected: Sequence[Sequence[str]] = ()
) -> pd.DataFrame:
    """``table`` (a run's results) without the rows of knees a reviewer rejected: those whose
    ``qc_review`` column (as of that run) says ``reject``, and those in ``rejected`` (the
    catalog's current decisions: :meth:`CatalogView.rejected_knees`, knee keys as
    :func:`kneescope.catalog.qc_reviews.knee_key` makes them), so a decision imported after
    the run counts too."""
    from kneescope.catalog.qc_reviews import knee_key

    keep = [True] * len(table)
    if "qc_review" in table.columns:
        keep = [r != "reject" for r in table["qc_review"].tolist()]
    if rejected and len(table):
        wanted = {tuple(str(p) for p in key) for key in rejected}

        def text(column: str) -> list[str]:
            if column not in table.columns:
                return [""] * len(table)
            return ["" if v is None or v != v else str(v) for v in table[column].tolist()]

        rows = zip(
            text("item_id"),
            text("subject"),
            text("visit"),
            text("side"),
            text("series"),
            strict=True,
        )
        keep = [k and knee_key(*row) not in wanted for k, row in zip(keep, rows, strict=True)]
    return table[keep].reset_index(drop=True)


def read_reviewed_run(run_dir: Path, view: CatalogView | None) -> pd.DataFrame:
    """Another run's results table as cohort steps and ``kneescope trial`` join it: without
    the knees a reviewer rejected, by that run's review columns and by the catalog's current
    decisions (``view``; None: the columns only)."""
    table = read_run_results(run_dir)
    return drop_rejected_knees(table, view.rejected_knees() if view is not None else ())


def read_run_results(run_dir: Path, *, drop_rejected: bool = False) -> pd.DataFrame:
    """A finished run's results table (``RUN/results.parquet``, else ``RUN/results.csv``, its
    subject, visit and side read as text): what cohort steps and commands join other runs by.
    With ``drop_rejected`` the rows of knees a reviewer rejected (``qc_review == "reject"``,
    see :mod:`kneescope.cohort.qc_honour`) are left out; by default they are there, flagged.

    Raises:
        NotFoundError: no such run, or it has no results table yet.
        InputError: the table cannot be read.
    """
    import pandas as pd

    from kneescope.errors import InputError, NotFoundError

    for name in ("results.parquet", "results.csv"):
        path = run_dir / name
        if path.is_file():
            try:
                if name.endswith(".csv"):
                    table = pd.read_csv(path, dtype={k: str for k in ("subject", "visit", "side")})
                else:
                    table = pd.read_parquet(path)
            except (OSError, ValueError) as exc:
                raise InputError(
                    f"cannot read {path} ({type(exc).__name__}: {exc}); run that pipeline "
                    "again to rewrite it"
                ) from None
            return drop_rejected_knees(table) if drop_rejected else table
    if not run_dir.is_dir():
        raise NotFoundError(
            f"run {run_dir.name!r} not found ({run_dir} does not exist); see `kneescope status`"
        )
    raise NotFoundError(
        f"run {run_dir.name!r} has no results table in {run_dir}; finish it with "
        "`kneescope run` first"
    )
