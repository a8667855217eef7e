"""``kneescope export SERIES``: write a cataloged series or its label map for a viewer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, workspace


def export(
    series: Annotated[
        str,
        typer.Argument(
            help="Catalog id or SeriesInstanceUID (see `kneescope catalog`).", show_default=False
        ),
    ],
    fmt: Annotated[
        Literal["nifti", "nrrd"],
        typer.Option(
            "--format",
            help="File format: nifti (.nii/.nii.gz) or nrrd (.nrrd).",
            case_sensitive=False,
        ),
    ] = "nifti",
    out: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            "--out",
            help="Output file (default: WORKSPACE/exports/).",
            show_default=False,
        ),
    ] = None,
    labels: Annotated[
        bool, typer.Option("--labels", help="Export the series' label map instead.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the output file if it exists.")
    ] = False,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write SERIES (or its label map) as NIfTI or NRRD with exact geometry, e.g. for
    3D Slicer or ITK-SNAP."""
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.export import export_series

    ws = workspace(workspace_dir, catalog)
    cat = Catalog.for_workspace(ws, create=False)
    try:
        result = export_series(
            cat,
            series,
            fmt,  # --format is parsed case-insensitively to "nifti" or "nrrd"
            out,
            labels=labels,
            default_dir=ws.exports_dir,
            overwrite=overwrite,
        )
    finally:
        cat.close()
    emit(result.to_json(), as_json, lambda console: render_export(console, result))


def render_export(console: Any, result: Any) -> None:
    what = "label map of series" if result.labels else "series"
    shape = "x".join(str(n) for n in result.shape)
    spacing = "x".join(f"{s:.4g}" for s in result.spacing_mm)
    console.print(
        f"wrote {what} {result.series_id} to {result.path} ({shape} {result.dtype}, "
        f"{spacing} mm, {result.orientation})",
        markup=False,
    )
