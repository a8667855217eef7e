"""``kneescope ingest SOURCE``: catalog an OAI-style tree, a manifest folder or a clinical table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import (
    CatalogOpt,
    JsonOpt,
    WorkspaceOpt,
    counting_progress,
    emit,
    workspace,
)

_KINDS = ("auto", "oai", "manifest", "clinical", "nnunet")


def ingest(
    source: Annotated[
        Path,
        typer.Argument(
            help="OAI-style tree (release folders 0.C.2, ...), a folder with manifest.csv, "
            "a manifest CSV, a clinical table (CSV/TXT), or an nnU-Net v2 dataset folder.",
            show_default=False,
        ),
    ],
    kind: Annotated[
        Literal["auto", "oai", "manifest", "clinical", "nnunet"],
        typer.Option(
            "--kind",
            help="What SOURCE is: an OAI-style tree (oai), a manifest CSV or folder with "
            "manifest.csv (manifest), a clinical table (clinical), an nnU-Net v2 dataset "
            "folder (nnunet), or auto to tell from SOURCE.",
            case_sensitive=False,
        ),
    ] = "auto",
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            help="Processes reading headers of new series; 0 = CPU count, at most 8.",
            min=0,
        ),
    ] = 0,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add SOURCE to the catalog. Incremental: unchanged series are skipped; bad series are
    recorded as failed with a reason and the ingest carries on. The tables in an OAI-style
    tree's clinical/ folder (as `kneescope synth` writes) are imported too; see them with
    `kneescope catalog --clinical`."""
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.ingest import detect_kind, parse_clinical_source
    from kneescope.catalog.ingest import ingest as run_ingest
    from kneescope.catalog.series_scan import default_jobs
    from kneescope.errors import InputError

    if kind not in _KINDS:
        raise InputError(f"--kind {kind!r} is not one of {', '.join(_KINDS)}")
    source = source.expanduser().absolute()
    if not source.exists():
        raise InputError(f"{source}: no such file or folder; check the path")
    if kind == "auto":
        kind = detect_kind(source)  # before the catalog is created: bad input writes nothing
    # clinical tables (SOURCE itself, or a tree's clinical/ folder) are checked before the
    # catalog is created, too
    clinical = parse_clinical_source(source, kind)
    n_jobs = jobs or default_jobs()
    ws = workspace(workspace_dir, catalog)
    cat = Catalog.for_workspace(ws, create=True)
    try:
        with counting_progress("ingest", show=sys.stderr.isatty() and not as_json) as progress:
            report = run_ingest(
                cat,
                source,
                kind,  # type: ignore[arg-type]
                jobs=n_jobs,
                progress=progress,
                clinical=clinical,
            )
    finally:
        cat.close()
    emit(report.to_json(), as_json, lambda console: render_report(console, report))


def render_report(console: Any, report: Any) -> None:
    """Print an IngestReport: one summary line, then failures and warnings."""
    if report.kind == "clinical":
        console.print(
            f"clinical table {report.source}: {report.clinical_values} values added or "
            f"updated, {report.unchanged} unchanged ({report.seconds:.2f} s)",
            markup=False,
        )
        return
    console.print(
        f"ingested {report.source} ({report.kind}): {report.added} added, "
        f"{report.updated} updated, {report.unchanged} unchanged, "
        + (f"{report.moved} moved, " if report.moved else "")
        + f"{report.failed} failed, "
        f"{report.labels} label maps, {report.ignored} ignored, {report.missing} missing "
        f"({report.seconds:.2f} s)",
        markup=False,
    )
    if report.clinical_tables:
        console.print(
            f"clinical: {report.clinical_tables} tables, {report.clinical_values} values added "
            f"or updated, {report.clinical_unchanged} unchanged",
            markup=False,
        )
    for path, reason in report.failures:
        console.print(f"failed {path}: {reason}", markup=False)
    for warning in report.warnings:
        console.print(f"warning: {warning}", markup=False)
