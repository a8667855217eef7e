"""The driver: sync the manifest with the selection, feed an executor, persist outcomes.

The driver is the only writer of the manifest. It submits at most ``in_flight_limit`` items
at a time (memory stays flat whatever the cohort size), records each outcome as it arrives,
retries items whose worker died (up to ``max_attempts``), and on Ctrl-C cancels the in-flight
items and returns them to pending. The results table is rebuilt from the manifest at the end,
so a driver killed at any moment loses nothing that was recorded and duplicates nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kneescope import __version__
from kneescope.catalog.view import CatalogView
from kneescope.cohort.cohort_steps import RESULTS_FILE as COHORT_RESULTS_FILE
from kneescope.cohort.cohort_steps import CohortOutcome, build_cohort_steps, run_cohort_steps
from kneescope.cohort.executors import Executor, make_executor
from kneescope.cohort.item import Item
from kneescope.cohort.item_sources import iter_items, with_checksum
from kneescope.cohort.item_task import SETUP_FAILED, TaskOutcome, TaskPayload
from kneescope.cohort.manifest import Manifest, manifest_errors
from kneescope.cohort.outputs import check_outputs
from kneescope.cohort.pipeline_config import PipelineConfig, StepConfig, is_run_name
from kneescope.cohort.qc_honour import (
    EXCLUDED_COUNT_META,
    EXCLUDED_META,
    RejectedFilter,
    cohort_input,
    redo_token,
    reviewed_rows,
    workspace_reviews,
)
from kneescope.cohort.results_catalog import store_in_catalog
from kneescope.cohort.results_table import done_records, rows_of, write_results
from kneescope.cohort.run_lock import RunLock
from kneescope.cohort.run_log import run_log
from kneescope.cohort.step_registry import PreparedSteps, build_steps, prepare_steps
from kneescope.errors import ConfigError, RunError
from kneescope.io.atomic import atomic_write_text
from kneescope.workspace import Workspace

log = logging.getLogger(__name__)

_PAGE = 512


@dataclass(frozen=True)
class Progress:
    """A snapshot for progress displays. Times in seconds, rate in items per second."""

    total: int
    done: int
    failed: int
    remaining: int
    skipped: int
    elapsed_s: float
    rate_per_s: float
    eta_s: float | None
    last_item: str = ""


@dataclass(frozen=True)
class RunResult:
    """What a finished run reports."""

    name: str
    run_dir: Path
    results_path: Path
    total: int
    done: int
    failed: int
    skipped: int
    ran: int
    elapsed_s: float
    config_hash: str
    model_hash: str
    cohort: CohortOutcome | None = None
    """What the cohort-level steps did (None when the run has none)."""


def item_key(item: Item, config_hash: str, model_hash: str, redo: str = "") -> str:
    """Key hash of one item's result: input checksum + step config + model (16 hex), and
    ``redo``: the key of the knee's latest QC ``resegment`` decision ("" when none), so that
    each such decision re-runs the item once (:mod:`kneescope.cohort.qc_honour`)."""
    text = f"{item.input_checksum}|{config_hash}|{model_hash}"
    if redo:
        text += f"|qc-resegment:{redo}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_dir_for(workspace: Workspace, config: PipelineConfig) -> Path:
    """WS/runs/<name>/ (the name is a safe folder name, checked again here).

    Raises:
        ConfigError: the name is not a safe folder name (``..``, a path, a hidden folder).
    """
    if not is_run_name(config.name):
        raise ConfigError(
            f"run name {config.name!r} is not a folder name; use letters, digits, '.', '_' "
            "and '-', starting with a letter or digit"
        )
    return workspace.runs_dir / config.name


def run_pipeline(
    config: PipelineConfig,
    workspace: Workspace,
    *,
    base_dir: Path | None = None,
    items: Iterable[Item] | None = None,
    executor: Executor | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    progress_interval_s: float = 0.2,
) -> RunResult:
    """Run (or resume) a cohort run; returns when every selected item is done or failed.

    Args:
        config: the pipeline.
        workspace: the run lives in WS/runs/<config.name>/.
        base_dir: folder for relative item paths (default: the workspace root).
        items: items to use instead of ``config.items`` (benchmarks, tests, catalog callers).
        executor: an executor to use instead of the one ``config.executor`` names.
        on_progress: called with a :class:`Progress` at most every ``progress_interval_s``.

    Raises:
        RunError: another driver holds the run, the executor cannot start, or the manifest
            is unreadable.
        ConfigError: a step is not registered or cannot be built; a bad run name.
        ModelError: a step's model names no model file.
        KeyboardInterrupt: after stopping cleanly (in-flight items back to pending).
    """
    workspace.ensure()
    run_dir = run_dir_for(workspace, config)
    # a config error (unknown step, bad options, missing model) fails before the run folder
    # or its log exist
    prepared = prepare_steps(config.steps, workspace, base_dir or workspace.root)
    build_steps(prepared.configs)  # built once here so that bad options fail before any work
    build_cohort_steps(config.cohort_steps)  # and the cohort-level steps' names and options
    # every session's messages, the workers' included, are appended to RUN/run.log
    with run_log(run_dir):
        return _run_pipeline(
            config,
            workspace,
            prepared,
            base_dir=base_dir,
            items=items,
            executor=executor,
            on_progress=on_progress,
            progress_interval_s=progress_interval_s,
        )


def _run_pipeline(
    config: PipelineConfig,
    workspace: Workspace,
    prepared: PreparedSteps,
    *,
    base_dir: Path | None,
    items: Iterable[Item] | None,
    executor: Executor | None,
    on_progress: Callable[[Progress], None] | None,
    progress_interval_s: float,
) -> RunResult:
    run_dir = run_dir_for(workspace, config)
    hashes = prepared.hashes
    provenance = {"kneescope_version": __version__, **hashes}
    prefetch = config.prefetch if prepared.prefetchable else 0
    started = time.time()
    manifest_path = run_dir / "manifest.sqlite"
    reviews = workspace_reviews(workspace)  # reviewers' QC decisions (kneescope qc import)
    rejected = RejectedFilter(reviews, config.items.qc_rejected == "exclude")
    with RunLock(run_dir), manifest_errors(manifest_path), Manifest(manifest_path) as manifest:
        source: Iterator[Item] = rejected(
            iter(items)
            if items is not None
            else iter_items(
                config.items, base_dir or workspace.root, workspace.catalog_url, workspace.root
            )
        )
        keyed = (
            (it, item_key(it, hashes["config_hash"], hashes["model_hash"], redo_token(reviews, it)))
            for it in (with_checksum(i, manifest) for i in source)
        )
        total = manifest.sync(keyed)
        rejected.report(config.name)
        recheck = verify_outputs(manifest, run_dir)
        _write_resolved_config(run_dir, config, prepared.configs)
        counts = manifest.counts()
        skipped = counts["done"] + manifest.exhausted_failures(config.max_attempts)
        manifest.set_meta(
            state="running",
            session_started_at=started,
            driver_pid=os.getpid(),
            executor=config.executor.kind if executor is None else executor.kind,
            **{EXCLUDED_META: rejected.left_out, EXCLUDED_COUNT_META: rejected.count},
            **provenance,
        )
        executor = executor or make_executor(config.executor, prefetch=prefetch)
        loop = _Loop(
            config,
            prepared.configs,
            manifest,
            executor,
            run_dir,
            provenance,
            total,
            skipped,
            started,
            catalog=CatalogView.for_workspace(workspace),
        )
        try:
            executor.start()
            loop.run(on_progress, progress_interval_s)
        except BaseException:
            executor.cancel_all()
            manifest.release(loop.in_flight)
            manifest.set_meta(state="interrupted")
            if loop.finished:
                _record_work(manifest, started, loop)
            raise
        finally:
            executor.close()
        records = done_records(manifest)  # read once: the table, the catalog, cohort steps
        rows = reviewed_rows(rows_of(records, run_dir), records, reviews)
        results_path = write_results(manifest, run_dir, config.output_format, rows)
        counts = manifest.counts()
        if loop.finished:
            _record_work(manifest, started, loop)
        manifest.set_meta(
            state="finished",
            finished_at=time.time(),
            results_path=str(results_path),
            last_session_ran=loop.finished,
        )
        store_in_catalog(
            manifest,
            workspace,
            config,
            prepared.configs,
            run_dir,
            started=started,
            hashes=hashes,
            records=records,
        )
        cohort = None
        if config.cohort_steps or (run_dir / COHORT_RESULTS_FILE).exists():
            cohort = run_cohort_steps(
                config.cohort_steps,
                cohort_input(rows),  # rejected knees never reach cohort statistics
                run_dir,
                CatalogView.for_workspace(workspace),
            )
    if recheck:
        log.warning("run %s: %d done items had missing or changed outputs", config.name, recheck)
    elapsed = time.time() - started
    log.info(
        "run %s: %d done, %d failed in %.1f s",
        config.name,
        counts["done"],
        counts["failed"],
        elapsed,
    )
    return RunResult(
        name=config.name,
        run_dir=run_dir,
        results_path=results_path,
        total=total,
        done=counts["done"],
        failed=counts["failed"],
        skipped=skipped,
        ran=loop.finished,
        elapsed_s=elapsed,
        config_hash=hashes["config_hash"],
        model_hash=hashes["model_hash"],
        cohort=cohort,
    )


def _record_work(manifest: Manifest, started: float, loop: _Loop) -> None:
    """Remember the last driver session that ran items (``kneescope status`` reports its
    throughput; a later session with nothing to do leaves it in place)."""
    manifest.set_meta(
        work_started_at=started,
        work_finished_at=time.time(),
        work_ran=loop.finished,
        work_done=loop.done,
        work_failed=loop.failed,
    )


def verify_outputs(manifest: Manifest, run_dir: Path) -> int:
    """Send done items whose output files were deleted or changed back to pending.

    Returns how many were sent back. Outputs whose mtime changed but whose content did not
    get their stored digest refreshed (so the next resume does not hash them again).
    """
    bad: list[tuple[str, str]] = []
    refreshed: list[tuple[str, dict[str, object]]] = []
    for item_id, result in manifest.done_with_outputs():
        reason, digests = check_outputs(result, run_dir)
        if reason is not None:
            bad.append((item_id, reason))
        elif digests is not None:
            refreshed.append((item_id, digests))
    for item_id, reason in bad:
        log.warning("item %s: %s", item_id, reason)
        manifest.invalidate(item_id, reason)
    for item_id, digests in refreshed:
        manifest.update_outputs(item_id, digests)
    return len(bad)


def _write_resolved_config(
    run_dir: Path, config: PipelineConfig, steps: tuple[StepConfig, ...]
) -> None:
    resolved = config.model_copy(update={"steps": steps})
    payload = {"kneescope_version": __version__, "config": resolved.model_dump(mode="json")}
    atomic_write_text(run_dir / "config.json", json.dumps(payload, indent=2))


def step_bug(run_dir: Path, outcome: TaskOutcome) -> RunError:
    """The error that stops a run on a bug in a step; writes its traceback to the run's log.

    The traceback goes to ``RUN/run.log`` only (through the run log's handler when one is
    attached, else appended to the file), never to the console, which gets the one line.
    """
    path = (run_dir / "run.log").absolute()
    record = log.makeRecord(
        log.name,
        logging.ERROR,
        __file__,
        0,
        "item %s: a bug stopped the run: %s\n%s",
        (outcome.item_id, outcome.reason, outcome.bug.rstrip()),
        None,
    )
    handlers = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path
    ]
    for handler in handlers:
        handler.handle(record)
    if not handlers:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(logging.Formatter("%(asctime)s %(levelname)s %(message)s").format(record))
            handle.write("\n")
    if outcome.reason.startswith(SETUP_FAILED):
        what = f"the run stopped: {outcome.reason}"
        fix = "fix the step's options or model file and run again to resume"
    else:
        what = f"a bug stopped the run at item {outcome.item_id}: {outcome.reason}"
        fix = "fix the step and run again to resume"
    return RunError(
        f"{what} (not the input's fault: no item was marked failed, items in flight are "
        f"pending again); traceback in {path}; {fix}"
    )


class _Loop:
    """The submit / collect loop of one driver session."""

    def __init__(
        self,
        config: PipelineConfig,
        steps: tuple[StepConfig, ...],
        manifest: Manifest,
        executor: Executor,
        run_dir: Path,
        provenance: dict[str, str],
        total: int,
        skipped: int,
        started: float,
        catalog: CatalogView | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.steps = steps
        self.manifest = manifest
        self.executor = executor
        self.run_dir = str(run_dir)
        self.provenance = provenance
        self.total = total
        self.skipped = skipped
        self.started = started
        self.in_flight: dict[str, TaskPayload] = {}
        self.finished = 0
        self.done = 0
        self.failed = 0
        self._page: deque[TaskPayload] = deque()
        self._last_seq = -1
        self._exhausted = False

    def _next_payload(self) -> TaskPayload | None:
        if not self._page and not self._exhausted:
            queued = self.manifest.queued(self._last_seq, _PAGE, self.config.max_attempts)
            if not queued:
                self._exhausted = True
            else:
                self._last_seq = queued[-1].seq
                self._page.extend(
                    TaskPayload(self.run_dir, self.steps, q.item, self.catalog) for q in queued
                )
        return self._page.popleft() if self._page else None

    def _submit(self, payload: TaskPayload) -> None:
        self.manifest.mark_running(payload.item.item_id)
        self.executor.submit(payload)
        self.in_flight[payload.item.item_id] = payload

    def run(self, on_progress: Callable[[Progress], None] | None, interval_s: float) -> None:
        limit = self.config.executor.in_flight_limit()
        last_report = 0.0
        while True:
            while len(self.in_flight) < limit:
                payload = self._next_payload()
                if payload is None:
                    break
                self._submit(payload)
            if not self.in_flight:
                break
            finished = self.executor.next_finished()
            item_id = finished.payload.item.item_id
            if finished.outcome is not None and finished.outcome.bug:
                # a bug, not bad input: stop (the item stays in flight: back to pending)
                raise step_bug(Path(self.run_dir), finished.outcome)
            del self.in_flight[item_id]
            if finished.outcome is None:
                log.warning("item %s lost: %s", item_id, finished.lost)
                if self.manifest.record_lost(item_id, finished.lost, self.config.max_attempts):
                    self._submit(finished.payload)
                    continue
                self.failed += 1
            else:
                self.manifest.record(finished.outcome, self.provenance, Path(self.run_dir))
                if finished.outcome.ok:
                    self.done += 1
                else:
                    self.failed += 1
                    log.warning("item %s failed: %s", item_id, finished.outcome.reason)
            self.finished += 1
            now = time.time()
            if on_progress is not None and (now - last_report >= interval_s):
                last_report = now
                on_progress(self.progress(item_id))
        if on_progress is not None:
            on_progress(self.progress(""))

    def progress(self, last_item: str) -> Progress:
        elapsed = time.time() - self.started
        rate = self.finished / elapsed if elapsed > 0 else 0.0
        remaining = max(self.total - self.skipped - self.finished, 0)
        return Progress(
            total=self.total,
            done=self.done,
            failed=self.failed,
            remaining=remaining,
            skipped=self.skipped,
            elapsed_s=elapsed,
            rate_per_s=rate,
            eta_s=remaining / rate if rate > 0 else None,
            last_item=last_item,
        )
