"""Worker side of a run: build the steps once per process, run one item, return its outcome.

Workers never touch the manifest: they compute and return a :class:`TaskOutcome`; the
driver is the one writer. Steps are cached per process (keyed by the steps' config), so
``setup()`` - e.g. loading a model - runs once per worker, not once per item.

An item runs in two stages: the *read* stage (the leading ``prefetchable`` steps, pure I/O)
and the *compute* stage (the rest). Executors that prefetch run the read stage of the next
items on a reader thread while the current item computes.

Bad input fails only its item: a step raising one of :data:`ITEM_ERRORS` (a kneescope error,
an OS error, running out of memory). Anything else is a bug in the step: an exception of
another type, a value its ``results`` do not declare (or of the wrong kind), a declared
``writes`` missing, a step that cannot be set up. The outcome then carries the traceback
(``bug``), and the driver stops the run instead of failing every item the same way.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kneescope.catalog.view import CatalogView
from kneescope.cohort.item import Item
from kneescope.cohort.outputs import digest_file
from kneescope.cohort.pipeline_config import StepConfig
from kneescope.cohort.result_schema import ResultColumn
from kneescope.cohort.step import Scalar, Step, StepContext, StepResult, value_problem
from kneescope.cohort.step_registry import build_steps, declared_columns
from kneescope.errors import KneescopeError

log = logging.getLogger(__name__)

_STEP_CACHE: dict[str, list[Step]] = {}
_COLUMN_CACHE: dict[str, list[dict[str, ResultColumn]]] = {}

ITEM_ERRORS: tuple[type[BaseException], ...] = (KneescopeError, OSError, MemoryError)
"""Exceptions that mean an item's input is bad (or too big): they fail only that item."""


SETUP_FAILED = "the steps could not be set up"
"""How the reason of an outcome whose steps could not be built or set up starts."""


def is_item_error(exc: BaseException) -> bool:
    """True for an exception that fails only its item (:data:`ITEM_ERRORS`, or a device out
    of memory such as ``torch.cuda.OutOfMemoryError``); False for a bug in the code."""
    return isinstance(exc, ITEM_ERRORS) or type(exc).__name__ == "OutOfMemoryError"


_STEP_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class TaskPayload:
    """Everything a worker needs for one item (small and picklable; the catalog view
    pickles as its URL)."""

    run_dir: str
    steps: tuple[StepConfig, ...]
    item: Item
    catalog: CatalogView | None = None


@dataclass
class TaskOutcome:
    """What a worker returns for one item.

    Attributes:
        ok: True when every step succeeded.
        reason: "<ExceptionType>: <message>" of the first failing step (ok=False).
        values: results-table columns from all steps.
        files: output files by "<step>_<name>".
        step_s: wall seconds per step.
        phase_s: seconds per phase (read, preprocess, infer, postprocess, measure, write).
        worker: pid, host, SLURM_JOB_ID and CUDA_VISIBLE_DEVICES of the worker process.
        outputs: size, mtime and sha256 of every output file, by the same names as ``files``.
        bug: the traceback (or the broken rule) when the item failed because of a bug in a
            step, not because of its input: the driver stops the run (ok=False).
    """

    item_id: str
    ok: bool
    reason: str = ""
    values: dict[str, Scalar] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    step_s: dict[str, float] = field(default_factory=dict)
    phase_s: dict[str, float] = field(default_factory=dict)
    worker: dict[str, str] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    bug: str = ""


@dataclass
class StagedItem:
    """An item part-way through its steps (after the read stage)."""

    payload: TaskPayload
    outcome: TaskOutcome
    context: StepContext
    next_step: int = 0


def worker_steps(configs: tuple[StepConfig, ...]) -> list[Step]:
    """The steps for ``configs`` in this process, built and set up on first use only."""
    key = repr(configs)
    steps = _STEP_CACHE.get(key)
    if steps is not None:
        return steps
    with _STEP_CACHE_LOCK:
        steps = _STEP_CACHE.get(key)
        if steps is None:
            steps = build_steps(configs)
            for step in steps:
                step.setup()
            _STEP_CACHE[key] = steps
            log.debug("worker %d set up %d steps", os.getpid(), len(steps))
    return steps


def item_output_dir(run_dir: Path, item_id: str) -> Path:
    """Folder of one item's output files: RUN/outputs/<item id, made file-name safe>.

    An id that is not already a safe name (``a/b``, ``..``, a leading dot) gets a short hash
    of the id appended, so two ids never share a folder (``a/b`` and ``a_b`` differ) and no id
    leaves ``RUN/outputs/``.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", item_id)
    if safe != item_id or not safe or safe.startswith("."):
        safe = f"{safe.lstrip('.')}-{hashlib.sha256(item_id.encode()).hexdigest()[:8]}"
    return run_dir / "outputs" / safe


def _worker_info() -> dict[str, str]:
    return {
        "pid": str(os.getpid()),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
        "pbs_job_id": os.environ.get("PBS_JOBID", ""),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    }


def _columns(configs: tuple[StepConfig, ...]) -> list[dict[str, ResultColumn]]:
    """Each step's declared columns by name (cached per process like the steps)."""
    key = repr(configs)
    columns = _COLUMN_CACHE.get(key)
    if columns is None:
        columns = [{c.name: c for c in declared_columns(config)} for config in configs]
        _COLUMN_CACHE[key] = columns
    return columns


def _result_problem(step: Step, result: Any, columns: Mapping[str, ResultColumn]) -> str:
    """What a step's result breaks of its declarations ("" when nothing)."""
    if not isinstance(result, StepResult):
        return f"step {step.name!r} returned {type(result).__name__}, not a StepResult"
    missing = [key for key in step.writes if key not in result.data]
    if missing:
        return f"step {step.name!r} declares writes {missing} but did not return them"
    for key, value in result.values.items():
        problem = value_problem(step.name, columns, key, value)
        if problem:
            return problem
    return ""


def _run_steps(staged: StagedItem, steps: list[Step], stop_before_compute: bool) -> None:
    outcome, context, item = staged.outcome, staged.context, staged.payload.item
    columns = _columns(staged.payload.steps)
    while staged.next_step < len(steps) and outcome.ok:
        step = steps[staged.next_step]
        if stop_before_compute and not step.prefetchable:
            return
        start = time.perf_counter()
        try:
            result = step.run(item, context)
        except Exception as exc:
            outcome.ok = False
            outcome.reason = f"{step.name}: {type(exc).__name__}: {exc}".replace("\n", " ")
            if not is_item_error(exc):
                outcome.bug = traceback.format_exc()
        else:
            problem = _result_problem(step, result, columns[staged.next_step])
            if problem:
                outcome.ok = False
                outcome.reason = problem
                outcome.bug = problem
            else:
                context.data.update(result.data)
                outcome.values.update(result.values)
                outcome.files.update({f"{step.name}_{k}": v for k, v in result.files.items()})
        outcome.step_s[step.name] = outcome.step_s.get(step.name, 0.0) + (
            time.perf_counter() - start
        )
        staged.next_step += 1


def read_stage(payload: TaskPayload) -> StagedItem:
    """Run the leading prefetchable (I/O) steps of one item."""
    outcome = TaskOutcome(item_id=payload.item.item_id, ok=True, started_at=time.time())
    context = StepContext(
        item_output_dir(Path(payload.run_dir), payload.item.item_id), catalog=payload.catalog
    )
    staged = StagedItem(payload=payload, outcome=outcome, context=context)
    steps = _set_up(staged)
    if steps is not None:
        _run_steps(staged, steps, stop_before_compute=True)
    return staged


def _set_up(staged: StagedItem) -> list[Step] | None:
    """The worker's steps, or None with a bug recorded when they cannot be built or set up
    (no item could run: the driver stops the run)."""
    try:
        return worker_steps(staged.payload.steps)
    except Exception as exc:
        outcome = staged.outcome
        outcome.ok = False
        outcome.reason = f"{SETUP_FAILED}: {type(exc).__name__}: {exc}".replace("\n", " ")
        outcome.bug = traceback.format_exc()
        return None


def compute_stage(staged: StagedItem) -> TaskOutcome:
    """Run the remaining steps and finish the outcome (the in-memory data is dropped)."""
    steps = _set_up(staged) if staged.outcome.ok else None
    if steps is not None:
        _run_steps(staged, steps, stop_before_compute=False)
    outcome = staged.outcome
    if outcome.ok:
        try:
            outcome.outputs = {k: digest_file(Path(v)) for k, v in outcome.files.items()}
        except OSError as exc:
            outcome.ok = False
            outcome.reason = f"output file vanished after it was written: {exc}"
    outcome.phase_s = dict(staged.context.phase_s)
    outcome.worker = _worker_info()
    outcome.finished_at = time.time()
    staged.context.data.clear()
    return outcome


def run_item_task(payload: TaskPayload) -> TaskOutcome:
    """Run all steps of one item (the function executors ship to workers)."""
    return compute_stage(read_stage(payload))


def worker_values(outcome: TaskOutcome) -> dict[str, Any]:
    """The worker fields of an outcome as manifest columns."""
    return {
        "worker": f"{outcome.worker.get('host', '')}:{outcome.worker.get('pid', '')}",
        "slurm_job_id": outcome.worker.get("slurm_job_id") or outcome.worker.get("pbs_job_id"),
    }
