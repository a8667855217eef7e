"""Cohort-level steps: run once after every item, on the whole results table and the catalog.

A cohort-level step is a class registered under a short name in the
``kneescope.cohort_steps`` entry-point group (a group of its own: a cohort-level step takes the
whole table, an item step one item, so one name never means two things)::

    [project.entry-points."kneescope.cohort_steps"]
    visit_means = "mypackage.stats:VisitMeans"

and named in the pipeline config::

    [[cohort_steps]]
    name = "visit_means"
    options = { column = "klg" }

Its ``run(results, context)`` gets the run's results table as a pandas DataFrame (one row per
done item, the columns of ``RUN/results.parquet``) and a :class:`CohortContext`: the catalog
view (clinical variables, visits, series), the values of the cohort steps before it, and
``write_output`` for files (written atomically under ``RUN/cohort/<step>/``). It returns a
:class:`CohortStepResult`: JSON values (numbers, text, lists, dicts) and the files it wrote.
Everything lands in ``RUN/cohort_results.json`` (written atomically).

Resumable like item steps: each step's key is a hash of what it saw - the results table
(timing and worker columns left out), its name, version and options, and the values of the
cohort steps before it - and the catalog questions it asked are recorded with a digest of each
answer. A re-run skips a step whose key is unchanged, whose catalog answers are still the same
(the questions are asked again) and whose output files are intact; a changed item, option,
version or clinical value re-runs it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from kneescope import __version__
from kneescope.catalog.view import CatalogView, reads_digest, replay_digest
from kneescope.cohort.pipeline_config import StepConfig
from kneescope.errors import ConfigError, KneescopeError, RunError
from kneescope.plugins import registered

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

COHORT_STEP_GROUP = "kneescope.cohort_steps"
"""The entry-point group cohort-level steps are registered under."""

RESULTS_FILE = "cohort_results.json"
"""The cohort-level values of a run: ``RUN/cohort_results.json``."""

FORMAT = "kneescope-cohort-results"
FORMAT_VERSION = 1

_VOLATILE_PREFIXES = ("time_",)
_VOLATILE_COLUMNS = frozenset({"worker", "slurm_job_id", "attempts"})
"""Results-table columns that do not change what a cohort step sees (timings, where an item
ran, how many tries it took): left out of the results digest."""


@dataclass
class CohortStepResult:
    """What a cohort-level step returns.

    Attributes:
        values: JSON values (numbers, text, booleans, None, lists and dicts of them).
        files: output files written through ``context.write_output`` (name -> absolute path).
    """

    values: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


class CohortContext:
    """What a cohort-level step gets besides the results table.

    Attributes:
        run_dir: the run's folder.
        output_dir: this step's folder for files, ``RUN/cohort/<step name>/``.
        catalog: read access to the run's catalog (None when the run has none). Every
            question asked through it is recorded (see the module docstring).
        earlier: values of the cohort steps that ran before this one, by step name.
    """

    def __init__(
        self,
        run_dir: Path,
        output_dir: Path,
        catalog: CatalogView | None,
        earlier: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self.run_dir = run_dir
        self.output_dir = output_dir
        self.catalog = catalog
        self.earlier = {k: dict(v) for k, v in earlier.items()}

    def write_output(self, filename: str, content: str | bytes | Callable[[Path], object]) -> str:
        """Write one output file atomically (text, bytes, or ``write(tmp_path)``); returns its
        absolute path. A reader never sees half a file; a failed write leaves the old one."""
        from kneescope.io.folder_writer import write_into

        if Path(filename).name != filename or filename.startswith("."):
            raise ConfigError(f"output name {filename!r} must be a plain file name")
        return write_into(self.output_dir, filename, content)


@runtime_checkable
class CohortStep(Protocol):
    """A cohort-level step, built from its config options.

    Class attributes:
        name: short name used in configs and in ``cohort_results.json``.
        version: bump it when the step's values change; a new version re-runs it.
    """

    name: ClassVar[str]
    version: ClassVar[str]

    def setup(self) -> None:
        """Prepare once before running (load a model, read a reference table)."""
        ...

    def run(self, results: pd.DataFrame, context: CohortContext) -> CohortStepResult:
        """Compute on the whole results table; raise a KneescopeError for bad input."""
        ...


@dataclass(frozen=True)
class CohortOutcome:
    """What the cohort stage of a run did."""

    path: Path
    ran: tuple[str, ...]
    skipped: tuple[str, ...]


# -- registry ----------------------------------------------------------------------------------
def registered_cohort_steps() -> dict[str, EntryPoint]:
    """Registered cohort-level step names -> entry points (nothing imported).

    Raises:
        ConfigError: two installed distributions register one name for different classes.
    """
    return registered(COHORT_STEP_GROUP, "cohort step")


def _unknown(name: str, known: Mapping[str, EntryPoint]) -> ConfigError:
    return ConfigError(
        f"unknown cohort step {name!r}; registered cohort steps: "
        f"{', '.join(sorted(known)) or 'none'}; a cohort step is registered under the "
        f'"{COHORT_STEP_GROUP}" entry-point group of an installed package (item steps, '
        "under kneescope.steps, go in [[steps]])"
    )


def check_cohort_step_names(configs: Sequence[StepConfig]) -> None:
    """Refuse a cohort step name that no installed distribution registers (imports nothing:
    what a dry run checks).

    Raises:
        ConfigError: an unregistered name.
    """
    known = registered_cohort_steps()
    for config in configs:
        if config.name not in known:
            raise _unknown(config.name, known)


def cohort_step_class(name: str) -> type[Any]:
    """The class registered as cohort-level step ``name`` (its module imported now).

    Raises:
        ConfigError: no such step, or its entry point does not load a step class.
    """
    known = registered_cohort_steps()
    ep = known.get(name)
    if ep is None:
        raise _unknown(name, known)
    try:
        cls = ep.load()
    except Exception as exc:
        raise ConfigError(
            f"cohort step {name!r}: cannot load {ep.value} ({type(exc).__name__}: {exc}); "
            "reinstall the package that registers it"
        ) from None
    if not isinstance(cls, type) or not all(hasattr(cls, a) for a in ("name", "version", "run")):
        raise ConfigError(f"cohort step {name!r}: {ep.value} is not a cohort step class")
    return cls


def build_cohort_steps(configs: Sequence[StepConfig]) -> list[CohortStep]:
    """Instantiate every cohort-level step with its options (before any item runs, so that a
    bad name or option fails at once).

    Raises:
        ConfigError: an unregistered step or bad options.
    """
    steps: list[CohortStep] = []
    for config in configs:
        cls = cohort_step_class(config.name)
        try:
            step = cls(**config.options)
        except TypeError as exc:
            raise ConfigError(
                f"cohort step {config.name!r}: bad options {config.options}: {exc}"
            ) from None
        if not isinstance(step, CohortStep):
            raise ConfigError(f"cohort step {config.name!r}: {cls} lacks setup() or run()")
        steps.append(step)
    return steps


# -- keys ----------------------------------------------------------------------------------------
def results_digest(rows: Sequence[Mapping[str, Any]]) -> str:
    """Digest of the results table as a cohort step sees it: every row (by item id) and
    column except timings, worker and attempts (32 hex)."""
    kept = [
        {
            k: v
            for k, v in row.items()
            if k not in _VOLATILE_COLUMNS and not k.startswith(_VOLATILE_PREFIXES)
        }
        for row in rows
    ]
    kept.sort(key=lambda r: str(r.get("item_id", "")))
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def step_key(
    config: StepConfig, version: str, table_digest: str, earlier: Mapping[str, Any]
) -> str:
    """Key of one cohort step's values: what it saw apart from the catalog (16 hex)."""
    spec = {
        "name": config.name,
        "version": version,
        "options": config.options,
        "results": table_digest,
        "earlier": earlier,
    }
    text = json.dumps(spec, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- running -------------------------------------------------------------------------------------
def run_cohort_steps(
    configs: Sequence[StepConfig],
    rows: list[dict[str, Any]],
    run_dir: Path,
    catalog: CatalogView | None,
) -> CohortOutcome:
    """Run (or skip, when nothing they saw changed) the cohort-level steps in order, and
    write ``RUN/cohort_results.json``.

    Args:
        configs: the pipeline's ``cohort_steps``.
        rows: the results table rows (:func:`kneescope.cohort.results_table.table_rows`).
        run_dir: the run's folder.
        catalog: the run's catalog view, None when it has none.

    Raises:
        ConfigError: a step that is not registered or has bad options.
        RunError: a step failed on its input (its error is in ``cohort_results.json``), or
            returned values that are not JSON.
    """
    import pandas as pd

    path = run_dir / RESULTS_FILE
    previous = _previous_entries(path)
    steps = build_cohort_steps(configs)
    table = pd.DataFrame(rows)
    digest = results_digest(rows)
    entries: list[dict[str, Any]] = []
    earlier: dict[str, dict[str, Any]] = {}
    ran: list[str] = []
    skipped: list[str] = []
    try:
        for config, step in zip(configs, steps, strict=True):
            key = step_key(config, str(step.version), digest, earlier)
            entry = _reusable(previous.get(key), run_dir, catalog)
            if entry is not None:
                entries.append(entry)
                skipped.append(config.name)
                log.info("cohort step %s: unchanged, skipped", config.name)
            else:
                entry = {"name": config.name, "version": str(step.version), "key": key}
                entries.append(entry)  # recorded also when the step fails
                _run_one(entry, config, step, table, run_dir, catalog, earlier)
                ran.append(config.name)
            earlier[config.name] = entry["values"]
    finally:
        _write_results_file(path, digest, entries)
    return CohortOutcome(path=path, ran=tuple(ran), skipped=tuple(skipped))


def _run_one(
    entry: dict[str, Any],
    config: StepConfig,
    step: CohortStep,
    table: pd.DataFrame,
    run_dir: Path,
    catalog: CatalogView | None,
    earlier: Mapping[str, Mapping[str, Any]],
) -> None:
    """Run one step, filling ``entry`` (its record in cohort_results.json)."""
    view = catalog.recording() if catalog is not None else None
    context = CohortContext(run_dir, run_dir / "cohort" / _safe(config.name), view, earlier)
    entry.update(options=config.options, started_at=time.time())
    try:
        step.setup()
        result = step.run(table.copy(), context)
    except (KneescopeError, OSError) as exc:
        reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        entry.update(ok=False, reason=reason, values={}, files={})
        raise RunError(
            f"cohort step {config.name!r} failed: {reason}; fix the input and run again "
            "(finished items are kept)"
        ) from None
    except BaseException as exc:
        entry.update(ok=False, reason=f"{type(exc).__name__}: {exc}", values={}, files={})
        raise
    finally:
        entry["finished_at"] = time.time()
        entry["seconds"] = round(entry["finished_at"] - entry["started_at"], 3)
        if view is not None:
            entry["catalog_reads"] = view.reads
            entry["catalog_digest"] = reads_digest(view.reads)
    try:
        json.dumps(result.values, allow_nan=True)
    except (TypeError, ValueError) as exc:
        entry.update(ok=False, reason=f"values are not JSON: {exc}", values={}, files={})
        raise RunError(
            f"cohort step {config.name!r} returned values that are not JSON ({exc}); "
            "return numbers, text, lists and dicts"
        ) from None
    entry.update(
        ok=True,
        values=result.values,
        files={name: _file_record(Path(p), run_dir) for name, p in result.files.items()},
    )


def _reusable(
    entry: dict[str, Any] | None, run_dir: Path, catalog: CatalogView | None
) -> dict[str, Any] | None:
    """The previous entry when it is still valid: ok, outputs intact, catalog answers same."""
    if entry is None or not entry.get("ok"):
        return None
    for name, record in entry.get("files", {}).items():
        if _file_record(run_dir / record.get("path", ""), run_dir, missing_ok=True) != record:
            log.info("cohort step %s: output %s missing or changed", entry.get("name"), name)
            return None
    reads = entry.get("catalog_reads", [])
    if reads and (catalog is None or replay_digest(catalog, reads) != entry.get("catalog_digest")):
        log.info("cohort step %s: catalog values it read changed", entry.get("name"))
        return None
    return entry


def _file_record(path: Path, run_dir: Path, *, missing_ok: bool = False) -> dict[str, Any]:
    from kneescope.io.digest import file_sha256

    try:
        rel = path.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        rel = str(path)
    try:
        return {"path": rel, "sha256": file_sha256(path)}
    except OSError:
        if missing_ok:
            return {"path": rel, "sha256": None}
        raise


def _previous_entries(path: Path) -> dict[str, dict[str, Any]]:
    """Entries of an earlier cohort_results.json by key ({} when absent or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}
    steps = data.get("steps", [])
    return {
        str(e["key"]): e for e in steps if isinstance(e, dict) and isinstance(e.get("key"), str)
    }


def _write_results_file(path: Path, digest: str, entries: list[dict[str, Any]]) -> None:
    from kneescope.io.atomic import atomic_write_text

    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kneescope_version": __version__,
        "results_digest": digest,
        "written_at": time.time(),
        "steps": entries,
    }
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "step"
