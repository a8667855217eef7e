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
from kneescope.cohort.executors import Executor, make_executor
from kneescope.cohort.item import Item
from kneescope.cohort.item_sources import iter_items, with_checksum
from kneescope.cohort.item_task import TaskPayload
from kneescope.cohort.manifest import Manifest
from kneescope.cohort.pipeline_config import PipelineConfig
from kneescope.cohort.results_table import write_results
from kneescope.cohort.run_lock import RunLock
from kneescope.cohort.step_registry import build_steps, steps_fingerprint
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


def item_key(item: Item, config_hash: str, model_hash: str) -> str:
    """Key hash of one item's result: input checksum + step config + model (16 hex)."""
    text = f"{item.input_checksum}|{config_hash}|{model_hash}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_dir_for(workspace: Workspace, config: PipelineConfig) -> Path:
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
        RunError: another driver holds the run, or the executor cannot start.
        ConfigError: a step cannot be built.
        KeyboardInterrupt: after stopping cleanly (in-flight items back to pending).
    """
    workspace.ensure()
    run_dir = run_dir_for(workspace, config)
    steps = build_steps(config.steps)
    hashes = steps_fingerprint(config.steps, steps)
    provenance = {"kneescope_version": __version__, **hashes}
    prefetch = config.prefetch if any(s.prefetchable for s in steps) else 0
    del steps
    started = time.time()
    with RunLock(run_dir), Manifest(run_dir / "manifest.sqlite") as manifest:
        source: Iterator[Item] = (
            iter(items)
            if items is not None
            else iter_items(config.items, base_dir or workspace.root, workspace.catalog_url)
        )
        keyed = (
            (it, item_key(it, hashes["config_hash"], hashes["model_hash"]))
            for it in (with_checksum(i, manifest) for i in source)
        )
        total = manifest.sync(keyed)
        _write_resolved_config(run_dir, config)
        counts = manifest.counts()
        skipped = counts["done"] + manifest.exhausted_failures(config.max_attempts)
        manifest.set_meta(
            state="running",
            session_started_at=started,
            driver_pid=os.getpid(),
            executor=config.executor.kind if executor is None else executor.kind,
            **provenance,
        )
        executor = executor or make_executor(config.executor, prefetch=prefetch)
        loop = _Loop(config, manifest, executor, run_dir, provenance, total, skipped, started)
        try:
            executor.start()
            loop.run(on_progress, progress_interval_s)
        except BaseException:
            executor.cancel_all()
            manifest.release(loop.in_flight)
            manifest.set_meta(state="interrupted")
            raise
        finally:
            executor.close()
        results_path = write_results(manifest, run_dir, config.output_format)
        counts = manifest.counts()
        manifest.set_meta(state="finished", finished_at=time.time(), results_path=str(results_path))
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
    )


def _write_resolved_config(run_dir: Path, config: PipelineConfig) -> None:
    payload = {"kneescope_version": __version__, "config": config.model_dump(mode="json")}
    tmp = run_dir / f".tmp-{os.getpid()}-config.json"
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, run_dir / "config.json")


class _Loop:
    """The submit / collect loop of one driver session."""

    def __init__(
        self,
        config: PipelineConfig,
        manifest: Manifest,
        executor: Executor,
        run_dir: Path,
        provenance: dict[str, str],
        total: int,
        skipped: int,
        started: float,
    ) -> None:
        self.config = config
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
                    TaskPayload(self.run_dir, self.config.steps, q.item) for q in queued
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
            del self.in_flight[item_id]
            if finished.outcome is None:
                log.warning("item %s lost: %s", item_id, finished.lost)
                if self.manifest.record_lost(item_id, finished.lost, self.config.max_attempts):
                    self._submit(finished.payload)
                    continue
                self.failed += 1
            else:
                self.manifest.record(finished.outcome, self.provenance)
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
