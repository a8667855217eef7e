"""``kneescope export [SERIES]``: a cataloged series or its label map for a viewer, a PACS
(DICOM SEG) or nnU-Net; one handler per format (cli/export_request.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, workspace


def export(
    series: Annotated[
        str | None,
        typer.Argument(
            help="Catalog id or SeriesInstanceUID (see `kneescope catalog`); not for nnunet.",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        Literal["nifti", "nrrd", "dicom-seg", "dicom-sr", "slicer", "nnunet"],
        typer.Option(
            "--format",
            help="nifti (.nii/.nii.gz) or nrrd (.nrrd): one volume; dicom-seg: a DICOM "
            "Segmentation of the label map; dicom-sr: a DICOM SR measurement report of the "
            "biomarkers --run NAME measured; slicer: image + .seg.nrrd for 3D Slicer/ITK-SNAP; "
            "nnunet: an nnU-Net v2 dataset of the catalog's image/label pairs.",
            case_sensitive=False,
        ),
    ] = "nifti",
    out: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            "--out",
            help="Output file; for slicer the folder to create, for nnunet the nnU-Net raw "
            "folder (default: under WORKSPACE/exports/).",
            show_default=False,
        ),
    ] = None,
    labels: Annotated[
        bool, typer.Option("--labels", help="Export the series' label map instead.")
    ] = False,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            help="Export the label map that this run's segmentation wrote for SERIES.",
            show_default=False,
        ),
    ] = None,
    dataset_id: Annotated[
        int | None,
        typer.Option(
            "--dataset-id", help="nnU-Net dataset id (1-999), for --format nnunet.", min=1, max=999
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the output file if it exists.")
    ] = False,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write SERIES (or its label map) as NIfTI or NRRD with exact geometry, as a DICOM
    Segmentation, or for 3D Slicer / ITK-SNAP; or the catalog's image/label pairs as an
    nnU-Net v2 dataset."""
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.export import export_series
    from kneescope.cli.export_request import ExportRequest
    from kneescope.errors import InputError

    ws = workspace(workspace_dir, catalog)
    request = ExportRequest(
        series=series,
        fmt=fmt,
        out=out,
        labels=labels,
        run=run,
        dataset_id=dataset_id,
        overwrite=overwrite,
        as_json=as_json,
        workspace=ws,
    )
    if fmt == "nnunet":
        from kneescope.cli.export_nnunet import export_nnunet

        export_nnunet(request)
        return
    if series is None:
        raise InputError(f"--format {fmt} needs SERIES (a catalog id; see `kneescope catalog`)")
    if fmt == "dicom-seg":
        from kneescope.cli.export_dicom_seg import export_dicom_seg

        export_dicom_seg(request)
        return
    if fmt == "dicom-sr":
        from kneescope.cli.export_dicom_sr import export_dicom_sr

        export_dicom_sr(request)
        return
    if fmt == "slicer":
        from kneescope.cli.export_slicer import export_slicer

        export_slicer(request)
        return
    if run is not None:
        raise InputError("--run applies to --format dicom-seg or slicer")
    if dataset_id is not None:
        raise InputError("--dataset-id applies to --format nnunet")
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
