"""``kneescope segment INPUT... --model FILE --out DIR``: label maps of images or series."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, stderr, workspace


def segment(
    input_args: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Image files or DICOM series folders.", show_default=False, metavar="[INPUT]..."
        ),
    ] = None,
    input_opt: Annotated[
        list[Path] | None,
        typer.Option(
            "--input",
            "-i",
            help="An image file or DICOM series folder (repeat for several); adds to the "
            "INPUT arguments.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        Path,
        typer.Option(
            "--model",
            "-m",
            help="Trained model: a file written by `kneescope train`, or its name in "
            "WORKSPACE/models/ (with or without .pt).",
        ),
    ] = Path("knee-seg"),
    out: Annotated[
        Path,
        typer.Option("--output", "-o", "--out", help="Output folder for the label maps (created)."),
    ] = Path("segmentations"),
    series: Annotated[
        list[str] | None,
        typer.Option("--series", help="Catalog series id or UID (repeat for several)."),
    ] = None,
    subject: Annotated[
        str | None, typer.Option("--subject", help="Segment the catalog's series of a subject.")
    ] = None,
    visit: Annotated[str | None, typer.Option("--visit", help="... of a visit.")] = None,
    side: Annotated[
        Literal["right", "left"] | None,
        typer.Option(
            "--side",
            help="Knee side of the input files. Models trained side-canonical (left knees "
            "mirrored to look like right knees) need it when the file does not record the "
            "side (DICOM Laterality). Alone or with --subject/--visit it selects the "
            "catalog's knees of that side.",
            case_sensitive=False,
        ),
    ] = None,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta",
            help="Test-time augmentation: also segment the mirrored image and average the "
            "two answers (slower, slightly smoother).",
        ),
    ] = False,
    cascade: Annotated[
        bool,
        typer.Option(
            "--cascade",
            help="Two passes: a coarse pass on a downsampled image finds the knee, then a "
            "full-resolution pass segments only the box around it.",
        ),
    ] = False,
    probabilities: Annotated[
        bool, typer.Option("--probabilities", help="Also write class probabilities (4D NIfTI).")
    ] = False,
    device: Annotated[
        str,
        typer.Option(
            "--device",
            help="Where to compute: auto (a GPU if there is one), cpu, cuda, or cuda:N for "
            "GPU number N.",
        ),
    ] = "auto",
    precision: Annotated[
        Literal["auto", "bf16", "fp32"],
        typer.Option(
            "--precision",
            help="Number format: auto (bf16 where the device runs it natively, else fp32), "
            "bf16 (half the memory) or fp32.",
            case_sensitive=False,
        ),
    ] = "auto",
    overlap: Annotated[
        float,
        typer.Option(
            "--overlap",
            help="The image is segmented in overlapping windows (the model's window size); "
            "the fraction, in [0, 1), by which neighbouring windows overlap.",
        ),
    ] = 0.25,
    blend: Annotated[
        Literal["gaussian", "constant"],
        typer.Option(
            "--blend",
            help="How overlapping windows are averaged: gaussian (centre of each window "
            "counts most) or constant (all equal, MONAI's default).",
            case_sensitive=False,
        ),
    ] = "gaussian",
    no_cleanup: Annotated[
        bool, typer.Option("--no-cleanup", help="Keep every connected component.")
    ] = False,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Segment knee MR images: NIfTI label maps on each input's exact grid, written to --output."""
    inputs = [*(input_args or []), *(input_opt or [])]
    from kneescope.config import validate_config
    from kneescope.errors import InputError
    from kneescope.inference.segmenter import SegmentConfig, Segmenter

    ws = workspace(workspace_dir, catalog)
    items = _inputs(inputs or [], series or [], subject, visit, side, ws)
    if not items:
        raise InputError("nothing to segment: give image files, --series or --subject/--visit")
    model_path = _model_path(model, ws)
    config = validate_config(
        SegmentConfig,
        {
            "tta": tta,
            "cascade": cascade,
            "probabilities": probabilities,
            "device": device,
            "precision": precision,
            "overlap": overlap,
            "blend": blend,
            "cleanup": not no_cleanup,
        },
        "segment options",
    )
    segmenter = Segmenter(model_path, config)
    out = out.expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    console = stderr()
    for n, (name, source, knee_side) in enumerate(items, start=1):
        if not as_json:
            console.print(f"[{n}/{len(items)}] {name}", highlight=False)
        rows.append(_segment_one(segmenter, name, source, knee_side, out))
    payload = {
        "model": str(model_path),
        "precision": segmenter.precision_name,
        "device": str(segmenter.device),
        "outputs": rows,
    }
    emit(payload, as_json, lambda c: _render(c, rows))


def _segment_one(
    segmenter: Any, name: str, source: Path, side: str | None, out: Path
) -> dict[str, Any]:
    from kneescope.inference.output import write_labels, write_probabilities
    from kneescope.io import read_volume

    image = read_volume(source)
    result = segmenter.segment(image, side=side)
    labels_path = write_labels(result.labels, out / f"{name}_seg.nii.gz", description="kneescope")
    row: dict[str, Any] = {
        "input": str(source),
        "labels": str(labels_path),
        "side": result.side,
        "seconds": round(result.seconds["total"], 2),
        "voxels_per_label": {
            int(v): int(c) for v, c in enumerate(_counts(result.labels.array)) if c and v
        },
    }
    if result.probabilities is not None:
        row["probabilities"] = str(
            write_probabilities(result.probabilities, image, out / f"{name}_prob.nii.gz")
        )
    return row


def _counts(array: Any) -> list[int]:
    import numpy as np

    return [int(c) for c in np.bincount(array.reshape(-1))]


def _inputs(
    paths: list[Path],
    series: list[str],
    subject: str | None,
    visit: str | None,
    side: str | None,
    ws: Any,
) -> list[tuple[str, Path, str | None]]:
    """(output name, path, knee side) of every input: files first, then catalog series."""
    from kneescope.errors import InputError
    from kneescope.inference.output import output_stem

    items: list[tuple[str, Path, str | None]] = []
    for p in paths:
        p = p.expanduser().absolute()
        if not p.exists():
            raise InputError(f"{p}: no such file or folder; check the path")
        items.append((output_stem(p), p, side))
    if series or subject or visit or (side and not paths):
        from kneescope.catalog.database import Catalog
        from kneescope.catalog.queries import SeriesFilter, get_series, list_series

        cat = Catalog.for_workspace(ws, create=False)
        try:
            records = [get_series(cat, s) for s in series]
            if subject or visit or side:
                where = SeriesFilter(subject=subject, visit=visit, side=side, status="ok")
                records += [r for r in list_series(cat, where) if r.kind != "radiograph"]
        finally:
            cat.close()
        for r in records:
            parts = [r.subject or "series", r.visit or "", r.side or "", str(r.id)]
            items.append(("_".join(x for x in parts if x), Path(r.path), r.side))
    return items


def _model_path(model: Path, ws: Any) -> Path:
    from kneescope.errors import ModelError

    candidates = [model.expanduser(), ws.models_dir / model, ws.models_dir / f"{model}.pt"]
    for c in candidates:
        if c.is_file():
            return c.absolute()
    raise ModelError(
        f"model {model} not found (looked in the current folder and {ws.models_dir}); "
        "train one with `kneescope train` or give --model FILE"
    )


def _render(console: Any, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("input", "labels", "seconds")
    for r in rows:
        table.add_row(r["input"], r["labels"], f"{r['seconds']:.1f}")
    console.print(table)
