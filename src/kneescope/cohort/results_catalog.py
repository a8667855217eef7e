"""A finished run's values into the workspace catalog (the runner calls :func:`store_in_catalog`).

Each value's capability, unit and kind come from the declarations of the step that returned
it (``capability`` and ``results`` class attributes, :mod:`kneescope.cohort.result_schema`).
A step that declares no (or empty) ``results`` gets its values stored with the step's name as
their capability (its ``capability`` when it declares only that), no unit, and the kind of the
value; with several such steps in one pipeline the run cannot tell which returned a value, so
the capability is their names joined with ``+``.

A run whose workspace has no catalog yet (items from a file list) creates it: results of
every run are in the catalog, so ``kneescope results`` exports them with the others.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kneescope import __version__
from kneescope.catalog.database import Catalog
from kneescope.catalog.results_store import RunRecord, ValueRecord, store_run_results
from kneescope.cohort.manifest import Manifest
from kneescope.cohort.outputs import output_path
from kneescope.cohort.pipeline_config import PipelineConfig, StepConfig
from kneescope.cohort.results_table import KEY_COLUMNS, done_records
from kneescope.cohort.step import declared_results
from kneescope.cohort.step_registry import step_class
from kneescope.errors import CatalogError
from kneescope.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Declared:
    """Where one value column comes from: capability, step, kind and unit."""

    capability: str
    step: str
    kind: str
    unit: str


@dataclass(frozen=True)
class ColumnMap:
    """Value column -> its declaration, for the steps of one pipeline.

    Attributes:
        declared: value name -> declaration, from the steps' ``results``.
        undeclared: (capability, step) of the steps without ``results``, in pipeline order.
        step_capability: step name -> its capability (for output files).
    """

    declared: dict[str, _Declared]
    undeclared: tuple[tuple[str, str], ...]
    step_capability: dict[str, str]

    @classmethod
    def for_steps(cls, steps: Sequence[StepConfig]) -> ColumnMap:
        declared: dict[str, _Declared] = {}
        undeclared: list[tuple[str, str]] = []
        step_capability: dict[str, str] = {}
        for config in steps:
            klass = step_class(config.name)
            capability = str(getattr(klass, "capability", "") or config.name)
            step_capability[config.name] = capability
            columns = declared_results(klass, config.options)  # results_for(options)
            if not columns:  # none, or an empty default: the step may return anything
                undeclared.append((capability, config.name))
                continue
            for column in columns:
                declared[column.name] = _Declared(capability, config.name, column.kind, column.unit)
        return cls(declared, tuple(undeclared), step_capability)

    def of_value(self, name: str, value: Any) -> _Declared:
        """The declaration of value ``name``; for an undeclared one, the step that must have
        returned it (the one step without ``results``; with several, their names joined by
        ``+`` as the capability and no step, since any of them may have)."""
        found = self.declared.get(name)
        if found is not None:
            return found
        kind = _kind_of(value)
        if len(self.undeclared) == 1:
            capability, step = self.undeclared[0]
            return _Declared(capability, step, kind, "")
        capability = "+".join(c for c, _ in self.undeclared) or "unknown"
        return _Declared(capability, "", kind, "")

    def of_file(self, key: str) -> tuple[str, str]:
        """(capability, step) of an output file stored as ``<step>_<name>``."""
        for step in sorted(self.step_capability, key=len, reverse=True):
            if key.startswith(f"{step}_"):
                return self.step_capability[step], step
        return "unknown", ""


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "str"
    return "float"


def _when(seconds: float | None) -> datetime | None:
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def value_records(
    records: Sequence[dict[str, Any]], columns: ColumnMap, run_dir: Path
) -> Iterator[ValueRecord]:
    """One :class:`ValueRecord` per value and output file of each done item's record.

    Value names are those of the run's results table (``value_<name>`` for a value named
    like a key column, ``file_<step>_<name>`` for output files, given absolute).
    """
    for rec in records:
        result = rec["result"]
        prov = result.get("provenance", {})
        common = {
            "item_id": rec["item_id"],
            "subject": rec["subject"] or "",
            "visit": rec["visit"] or "",
            "side": rec["side"] or "",
            "series": rec["series"] or "",
            "input_checksum": rec["input_checksum"] or "",
            "kneescope_version": prov.get("kneescope_version", ""),
            "config_hash": prov.get("config_hash", ""),
            "model_hash": prov.get("model_hash", ""),
            "computed_at": _when(rec["finished_at"]),
        }
        for name, value in result.get("values", {}).items():
            found = columns.of_value(name, value)
            yield ValueRecord(
                **common,
                capability=found.capability,
                step=found.step,
                name=f"value_{name}" if name in KEY_COLUMNS else name,
                kind=found.kind,
                value=value,
                unit=found.unit,
            )
        for key, path in result.get("files", {}).items():
            capability, step = columns.of_file(key)
            yield ValueRecord(
                **common,
                capability=capability,
                step=step,
                name=f"file_{key}",
                kind="file",
                value=str(output_path(path, run_dir)),
            )


def store_in_catalog(
    manifest: Manifest,
    workspace: Workspace,
    config: PipelineConfig,
    steps: Sequence[StepConfig],
    run_dir: Path,
    *,
    started: float,
    hashes: dict[str, str],
    records: list[dict[str, Any]] | None = None,
) -> int:
    """Store a finished run's values in the workspace catalog, replacing the run's old ones.

    The workspace catalog (``--catalog`` URL or ``WS/catalog.sqlite``) is created when it
    does not exist. Returns the number of values stored.

    ``records`` are the manifest's :func:`done_records` when the caller has read them.

    Raises:
        CatalogError: the catalog cannot be opened or written; the message says that the
            run's own results table is complete and that a re-run stores it.
    """
    if records is None:
        records = done_records(manifest)
    counts = manifest.counts()
    run = RunRecord(
        name=config.name,
        run_dir=run_dir,
        started_at=datetime.fromtimestamp(started, UTC),
        finished_at=datetime.now(UTC),
        config_hash=hashes["config_hash"],
        model_hash=hashes["model_hash"],
        kneescope_version=__version__,
        pipeline=config.model_copy(update={"steps": tuple(steps)}).model_dump(mode="json"),
        items_done=len(records),
        items_failed=counts["failed"],
    )
    columns = ColumnMap.for_steps(steps)
    try:
        with Catalog.for_workspace(workspace, create=True) as catalog:
            stored = store_run_results(catalog, run, value_records(records, columns, run_dir))
            log.info("run %s: %d values stored in catalog %s", config.name, stored, catalog.url)
    except CatalogError as exc:
        table = run_dir / f"results.{config.output_format}"
        raise CatalogError(
            f"run {config.name}: results not stored in the catalog ({exc}); the run's own "
            f"table {table} is complete; fix the catalog and run again to store them "
            "(finished items are not recomputed)"
        ) from None
    return stored
