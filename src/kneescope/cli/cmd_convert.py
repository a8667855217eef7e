"""``kneescope convert``: write cataloged volumes into the workspace's Zarr store."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from kneescope.cli.common import (
    CatalogOpt,
    JsonOpt,
    WorkspaceOpt,
    counting_progress,
    emit,
    workspace,
)


def convert(
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            help="Worker processes; 0 = CPU count, at most 8.",
            show_default=False,
            min=0,
        ),
    ] = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Convert again even what is already converted.")
    ] = False,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Convert every ok series to the chunked, lossless Zarr store (WORKSPACE/store), in
    parallel, skipping what is already converted; report bytes in/out, ratio and MB/s."""
    from kneescope.catalog.convert import convert_catalog
    from kneescope.catalog.database import Catalog

    ws = workspace(workspace_dir, catalog)
    n_jobs = jobs or min(8, os.cpu_count() or 1)
    cat = Catalog.for_workspace(ws, create=False)
    try:
        with counting_progress("convert", show=sys.stderr.isatty() and not as_json) as progress:
            report = convert_catalog(cat, ws.store_dir, jobs=n_jobs, force=force, progress=progress)
    finally:
        cat.close()
    emit(report.to_json(), as_json, lambda console: render_convert(console, report))
    if report.failed:
        from kneescope.errors import KneescopeError

        path, reason = report.failures[0]
        raise KneescopeError(
            f"{report.failed} of {report.failed + report.converted} series failed to convert, "
            f"the first {path}: {reason}; fix it and rerun `kneescope convert` (what was "
            "converted is kept)"
        )


def render_convert(console: Any, r: Any) -> None:
    console.print(
        f"converted {r.converted}, skipped {r.skipped} (already in the store), failed "
        f"{r.failed} -> {r.store} with {r.jobs} jobs",
        markup=False,
    )
    console.print(
        f"{r.bytes_in / 1e6:,.1f} MB in, {r.bytes_out / 1e6:,.1f} MB out, ratio "
        f"{r.ratio:.2f}x, {r.mb_per_s:,.1f} MB/s ({r.seconds:.2f} s)",
        markup=False,
    )
    for path, reason in r.failures:
        console.print(f"failed {path}: {reason}", markup=False)
