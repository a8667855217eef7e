"""State of a run, read from its manifest: counts, throughput, ETA and timing breakdown.

Works on a finished run and on one still running (the manifest is opened read-only).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kneescope.cohort.manifest import Manifest, manifest_errors
from kneescope.cohort.pipeline_config import is_run_name
from kneescope.cohort.qc_honour import (
    EXCLUDED_COUNT_META,
    EXCLUDED_META,
    workspace_reviews,
)
from kneescope.cohort.run_lock import RunLock
from kneescope.cohort.step import PHASES
from kneescope.errors import InputError, NotFoundError
from kneescope.workspace import Workspace

if TYPE_CHECKING:
    from kneescope.catalog.qc_reviews import Reviews


@dataclass
class RunStatus:
    """Summary of one run. Times in seconds; throughput in items per hour.

    While a driver runs, ``elapsed_s`` and ``throughput_per_h`` describe its session so far
    (throughput None until its first item finishes). Otherwise they describe the last
    session that ran items (a later re-run with nothing to do does not replace it), and are
    None when no session ever ran one. ``last_session_ran`` is how many items the most
    recent session ran (0: it found nothing to do).

    ``qc`` counts the done items whose results carry a ``qc_ok`` verdict (a ``measure``
    step): ``{"passed": n, "failed": m}``, empty when no done item has one.
    ``qc_failures`` lists the first QC-failed items (``item_id``, ``reasons``: the
    ``qc_reasons`` text): a done item's values are results only with its QC verdict.

    ``qc_review`` counts the done items by their knee's current reviewer decision
    (``kneescope qc import``: accept, reject, resegment - not yet redone - and resegmented),
    empty when none was reviewed; ``qc_rejected`` lists the first rejected done items
    (``item_id``, ``reviewer``, ``reviewed_at``, ``note``); ``qc_excluded`` the items the
    last run left out as rejected (``items.qc_rejected = "exclude"``), ``qc_excluded_count``
    how many.
    """

    name: str
    state: str
    driver_running: bool
    counts: dict[str, int]
    total: int
    elapsed_s: float | None
    throughput_per_h: float | None
    eta_s: float | None
    last_session_ran: int | None = None
    mean_step_s: dict[str, float] = field(default_factory=dict)
    mean_phase_s: dict[str, float] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    qc: dict[str, int] = field(default_factory=dict)
    qc_failures: list[dict[str, Any]] = field(default_factory=list)
    qc_review: dict[str, int] = field(default_factory=dict)
    qc_rejected: list[dict[str, Any]] = field(default_factory=list)
    qc_excluded: list[str] = field(default_factory=list)
    qc_excluded_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_names(workspace: Workspace) -> list[str]:
    """Runs in the workspace, newest first."""
    runs = [p for p in workspace.runs_dir.glob("*/manifest.sqlite")]
    return [p.parent.name for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)]


def read_status(workspace: Workspace, name: str | None = None, max_failures: int = 20) -> RunStatus:
    """Status of run ``name`` (default: the most recent run)."""
    if name is not None and not is_run_name(name):
        raise InputError(
            f"{name!r} is not a run name (a folder name under {workspace.runs_dir}); "
            "see the runs with `kneescope status`"
        )
    names = run_names(workspace)
    if name is None:
        if not names:
            raise NotFoundError(f"no runs in {workspace.runs_dir}; start one with `kneescope run`")
        name = names[0]
    run_dir = workspace.runs_dir / name
    if not (run_dir / "manifest.sqlite").exists():
        raise NotFoundError(f"no run named {name!r}; runs here: {', '.join(names) or 'none'}")
    path = run_dir / "manifest.sqlite"
    reviews = workspace_reviews(workspace)
    review_counts: dict[str, int] = {}
    rejected: list[dict[str, Any]] = []
    with manifest_errors(path), Manifest(path, readonly=True) as manifest:
        meta = manifest.meta()
        counts = manifest.counts()
        step_sum: dict[str, float] = {}
        phase_sum = dict.fromkeys(PHASES, 0.0)
        done_since_start = 0
        session_start = float(meta.get("session_started_at", 0.0))
        last_finish = session_start
        qc: dict[str, int] = {}
        qc_failures: list[dict[str, Any]] = []
        for row in manifest.rows(("done",)):
            if reviews:
                _count_review(reviews, row, review_counts, rejected, max_failures)
            verdict = row["result"].get("values", {}).get("qc_ok")
            if verdict is not None:
                key = "passed" if bool(verdict) else "failed"
                qc[key] = qc.get(key, 0) + 1
                if key == "failed" and len(qc_failures) < max_failures:
                    reasons = row["result"]["values"].get("qc_reasons") or "no reason recorded"
                    qc_failures.append({"item_id": row["item_id"], "reasons": str(reasons)})
            for k, v in row["timings"].get("steps", {}).items():
                step_sum[k] = step_sum.get(k, 0.0) + v
            for k, v in row["timings"].get("phases", {}).items():
                phase_sum[k] = phase_sum.get(k, 0.0) + v
            if (row["finished_at"] or 0.0) >= session_start:
                done_since_start += 1
                last_finish = max(last_finish, row["finished_at"] or 0.0)
        failures = [
            {"item_id": r["item_id"], "attempts": r["attempts"], "reason": r["reason"]}
            for r, _ in zip(manifest.rows(("failed",)), range(max_failures), strict=False)
        ]
    running = RunLock.is_held(run_dir)
    elapsed: float | None = None
    rate_per_s: float | None = None
    if running and session_start:
        elapsed = max(time.time() - session_start, 0.0)
        if done_since_start and elapsed > 0:
            rate_per_s = done_since_start / elapsed
    elif "work_started_at" in meta:
        elapsed = float(meta["work_finished_at"]) - float(meta["work_started_at"])
        work_done = int(meta.get("work_done", 0))
        rate_per_s = work_done / elapsed if work_done and elapsed > 0 else None
    elif session_start and done_since_start and last_finish > session_start:
        # A manifest written before sessions recorded their work: this session's items.
        elapsed = last_finish - session_start
        rate_per_s = done_since_start / elapsed
    remaining = counts["pending"] + counts["running"]
    done = max(counts["done"], 1)
    last_ran = meta.get("last_session_ran")
    return RunStatus(
        name=name,
        state="running" if running else str(meta.get("state", "unknown")),
        driver_running=running,
        counts=counts,
        total=sum(counts.values()),
        elapsed_s=elapsed,
        throughput_per_h=None if rate_per_s is None else rate_per_s * 3600.0,
        eta_s=(remaining / rate_per_s) if rate_per_s and remaining else None,
        last_session_ran=None if running or last_ran is None else int(last_ran),
        mean_step_s={k: v / done for k, v in step_sum.items()},
        mean_phase_s={k: v / done for k, v in phase_sum.items()},
        failures=failures,
        qc={"passed": qc.get("passed", 0), "failed": qc.get("failed", 0)} if qc else {},
        qc_failures=qc_failures,
        qc_review=review_counts,
        qc_rejected=rejected,
        qc_excluded=[str(i) for i in meta.get(EXCLUDED_META, [])],
        qc_excluded_count=int(meta.get(EXCLUDED_COUNT_META, 0)),
        meta={
            k: meta[k]
            for k in ("config_hash", "model_hash", "kneescope_version", "executor", "results_path")
            if k in meta
        },
    )


def _count_review(
    reviews: Reviews,
    row: dict[str, Any],
    counts: dict[str, int],
    rejected: list[dict[str, Any]],
    max_rows: int,
) -> None:
    """Count a done item's review state; note a rejected one (up to ``max_rows``)."""
    finished = row.get("finished_at")
    at = datetime.fromtimestamp(finished, UTC) if finished else None
    columns = reviews.columns(row, at)
    state = columns["qc_review"]
    if not state:
        return
    counts[state] = counts.get(state, 0) + 1
    if state == "reject" and len(rejected) < max_rows:
        rejected.append(
            {
                "item_id": row["item_id"],
                "reviewer": columns["qc_reviewer"],
                "reviewed_at": columns["qc_reviewed_at"],
                "note": columns["qc_review_note"],
            }
        )
