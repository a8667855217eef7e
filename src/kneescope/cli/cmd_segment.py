"""``kneescope segment INPUT... --model FILE --out DIR``: label maps of images or series."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, stderr, workspace


def segment(
    input_args: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Image files or DICOM series folders.", show_default=False, metavar="INPUT"
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
            help="Trained model: a file written by `kneescope train`, its name in "
            "WORKSPACE/models/ (with or without .pt), or the name of a model shipped with "
            "kneescope (`kneescope models list`). Default: the shipped knee-seg model.",
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
    visit: Annotated[
        str | None,
        typer.Option(
            "--visit",
            help="Segment the catalog's series of a visit (V00 or 0), alone or with --subject.",
        ),
    ] = None,
    side: Annotated[
        Literal["right", "left"] | None,
        typer.Option(
            "--side",
            help="Knee side of the input files. Models trained side-canonical (left knees "
            "mirrored to look like right knees) need it when neither the catalog nor the "
            "file records the side (DICOM Laterality, or the header/.json of a NIfTI that "
            "kneescope wrote); a side that contradicts them is refused. Alone or with "
            "--subject/--visit it selects the catalog's knees of that side.",
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
        Literal["auto", "gaussian", "constant"],
        typer.Option(
            "--blend",
            help="How overlapping windows are averaged: gaussian (centre of each window "
            "counts most), constant (all equal, MONAI's default) or auto (constant for 2D "
            "models, gaussian for 3D models).",
            case_sensitive=False,
        ),
    ] = "auto",
    no_cleanup: Annotated[
        bool,
        typer.Option(
            "--no-cleanup",
            help="Keep the raw network output. By default each structure keeps only its "
            "largest connected piece (stray specks are removed) and, when the side is known, "
            "medial/lateral pieces are relabelled by their position.",
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace label maps (and their .json, .ctbl, .itksnap.txt files) that an "
            "earlier run left in the output folder; without it such a run stops before "
            "segmenting anything.",
        ),
    ] = False,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Segment knee MR images: NIfTI label maps on each input's exact grid, written to --output."""
    inputs = [*(input_args or []), *(input_opt or [])]
    from kneescope.config import validate_config
    from kneescope.errors import InputError
    from kneescope.inference.output import (
        check_output_plan,
        finished_outputs,
        segment_output_paths,
    )
    from kneescope.inference.pipeline import segment_many
    from kneescope.inference.segmenter import SegmentConfig, Segmenter
    from kneescope.io.digest import file_sha256
    from kneescope.models.pretrained import resolve_model

    ws = workspace(workspace_dir, catalog)
    items = _inputs(inputs or [], series or [], subject, visit, side, ws)
    if not items:
        raise InputError("nothing to segment: give image files, --series or --subject/--visit")
    model_path = resolve_model(model, ws)
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
    out = out.expanduser().absolute()
    options = config.model_dump(mode="json")
    model_sha256 = file_sha256(model_path)
    plan = [
        (str(item.path), segment_output_paths(out, item.name, probabilities=probabilities))
        for item in items
    ]
    # A rerun (e.g. after Ctrl-C) skips inputs already finished with this model and these
    # options; anything else that exists is replaced only with --overwrite.
    done = [
        not overwrite
        and finished_outputs(
            paths, {"source": src, "model_sha256": model_sha256, "options": options}
        )
        for src, paths in plan
    ]
    todo = [entry for entry, finished in zip(plan, done, strict=True) if not finished]
    check_output_plan(out, todo, overwrite=overwrite)  # before any work: nothing replaced
    segmenter = Segmenter(model_path, config)
    out.mkdir(parents=True, exist_ok=True)
    console = stderr()
    fingerprint = {"model_sha256": model_sha256, "options": options}
    entries = list(zip(range(1, len(items) + 1), items, plan, done, strict=True))
    rows_by_n: dict[int, dict[str, Any]] = {}
    for n, item, (_, paths), finished in entries:
        if finished:
            if not as_json:
                console.print(f"[{n}/{len(items)}] {item.name}: done earlier", highlight=False)
            rows_by_n[n] = _skipped_row(item, paths)
    # the rest pipelined: the next input is read and prepared, the previous one cleaned up
    # and written, while the network runs on this one (kneescope.inference.pipeline)
    todo_entries = [(n, item, paths) for n, item, (_, paths), finished in entries if not finished]
    for result in segment_many(
        segmenter,
        todo_entries,
        lambda entry: _load_one(entry[1]),
        after=lambda entry, seg: _write_one(
            segmenter, model_path, entry[1], entry[2], fingerprint, seg
        ),
    ):
        n, item, _ = result.item
        if result.exception is not None:
            raise result.exception  # the first bad input stops the command, as before
        if not as_json:
            console.print(f"[{n}/{len(items)}] {item.name}", highlight=False)
        rows_by_n[n] = result.after
    rows = [rows_by_n[n] for n in sorted(rows_by_n)]
    payload = {
        "model": str(model_path),
        "precision": segmenter.precision_name,
        "device": str(segmenter.device),
        "outputs": rows,
    }
    emit(payload, as_json, lambda c: _render(c, rows))


@dataclass(frozen=True)
class _Input:
    """One thing to segment: its output name, path, the --side given for it, and its
    catalog record when the catalog knows it."""

    name: str
    path: Path
    given_side: str | None
    record: Any = None


def _skipped_row(item: _Input, paths: dict[str, Path]) -> dict[str, Any]:
    """The output row of an input finished by an earlier run (nothing recomputed)."""
    from kneescope.io.sidecar import read_sidecar

    recorded = read_sidecar(paths["labels"]) or {}
    row: dict[str, Any] = {
        "input": str(item.path),
        "name": item.name,
        "labels": str(paths["labels"]),
        "sidecar": str(paths["sidecar"]),
        "colour_tables": [str(paths["colours_slicer"]), str(paths["colours_itksnap"])],
        "side": recorded.get("side"),
        "seconds": 0.0,
        "skipped": True,
    }
    if "probabilities" in paths:
        row["probabilities"] = str(paths["probabilities"])
    return row


def _load_one(item: _Input) -> tuple[Any, str | None]:
    """Read one input and the knee's side (runs on the pipeline's reader thread)."""
    from kneescope.io import read_volume

    image = read_volume(item.path)
    return image, _knee_side(item, image)


def _write_one(
    segmenter: Any,
    model_path: Path,
    item: _Input,
    paths: dict[str, Path],
    fingerprint: dict[str, Any],
    result: Any,
) -> dict[str, Any]:
    """Write one input's outputs; the sidecar goes last (it marks the input as finished for
    a rerun, see :func:`~kneescope.inference.output.finished_outputs`)."""
    from kneescope.inference.output import write_labels, write_probabilities
    from kneescope.io.colour_table import write_colour_tables
    from kneescope.io.sidecar import describe, read_sidecar, write_sidecar

    image = result.labels  # the input's grid: same shape and affine
    spec = segmenter.model.spec
    names = {int(v): str(n) for v, n in spec.labels.items()}
    provenance = _provenance(item, read_sidecar(item.path) if item.path.is_file() else None)
    labels_path = write_labels(result.labels, paths["labels"], description=describe(result.side))
    write_colour_tables(paths["labels"], names)
    if result.probabilities is not None:
        write_probabilities(result.probabilities, image, paths["probabilities"])
    write_sidecar(
        paths["labels"],
        {
            "kind": "labels",
            "side": result.side,
            **provenance,
            "source": str(item.path),
            "model": str(model_path),
            **fingerprint,
            "label_scheme": spec.label_scheme,
            "labels": {str(v): n for v, n in sorted(names.items())},
        },
    )
    row: dict[str, Any] = {
        "input": str(item.path),
        "name": item.name,
        "labels": str(labels_path),
        "sidecar": str(paths["sidecar"]),
        "colour_tables": [str(paths["colours_slicer"]), str(paths["colours_itksnap"])],
        "side": result.side,
        "seconds": round(result.seconds["total"], 2),
        "voxels_per_label": {
            int(v): int(c) for v, c in enumerate(_counts(result.labels.array)) if c and v
        },
    }
    if result.probabilities is not None:
        row["probabilities"] = str(paths["probabilities"])
    return row


def _provenance(item: _Input, sidecar: dict[str, Any] | None) -> dict[str, Any]:
    """Subject, visit and series of the input: from its catalog record, else from the
    sidecar kneescope wrote with it (an exported image), else unknown (null)."""
    keys = ("subject", "visit", "series_id", "series_uid")
    if item.record is not None:
        r = item.record
        return dict(zip(keys, (r.subject, r.visit, r.id, r.series_uid), strict=True))
    found = sidecar or {}
    return {k: found.get(k) for k in keys}


def _knee_side(item: _Input, image: Any) -> str | None:
    """The knee's side from every source that states one; they must agree.

    Sources, in order of precedence: --side, the catalog, what kneescope recorded in the
    file (NIfTI header ``descrip`` or the JSON sidecar), DICOM Laterality. The first one
    present gives the side; two that disagree are an error (a knee segmented as the wrong
    side is mirrored and mislabelled medial/lateral without any sign).
    """
    from kneescope.core.volume import DICOM_SIDE_SOURCE
    from kneescope.errors import InputError
    from kneescope.io.sidecar import SIDES, recorded_side

    claims: list[tuple[str, str]] = []
    if item.given_side is not None:
        claims.append((item.given_side.lower(), "--side"))
    if item.record is not None and item.record.side in SIDES:
        claims.append((item.record.side, f"the catalog (series {item.record.id})"))
    if image.side is not None and image.side_source != DICOM_SIDE_SOURCE:
        claims.append((image.side, image.side_source))  # kneescope's record in the file
    elif item.path.is_file():  # formats whose reader does not look at the sidecar
        recorded = recorded_side(item.path, None)
        if recorded is not None:
            claims.append(recorded)
    if image.side is not None and image.side_source == DICOM_SIDE_SOURCE:
        claims.append((image.side, DICOM_SIDE_SOURCE))
    if not claims:
        return None
    side, where = claims[0]
    for other, other_where in claims[1:]:
        if other != side:
            raise InputError(
                f"{item.path}: {where} says side {side} but {other_where} says {other}; "
                "correct the wrong one (or leave out --side) so the knee's side is certain"
            )
    return side


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
) -> list[_Input]:
    """Every input, files first, then catalog series, each once, with its output name.

    A file or folder the workspace catalog knows is named like a catalog selection of that
    series (:func:`~kneescope.catalog.output_names.series_stem`); other files by their stem,
    with parent folders added where two inputs share a stem (:func:`file_output_names`).
    """
    from kneescope.catalog.output_names import records_by_path, series_stem
    from kneescope.errors import InputError
    from kneescope.inference.output import file_output_names

    files: list[Path] = []
    seen: set[Path] = set()
    for p in paths:
        p = p.expanduser().absolute()
        if not p.exists():
            raise InputError(f"{p}: no such file or folder; check the path")
        if p.resolve() not in seen:
            seen.add(p.resolve())
            files.append(p)
    select = bool(series or subject or visit or (side and not paths))
    has_catalog = ws.catalog_url_override is not None or ws.catalog_path.is_file()
    records: list[Any] = []
    known: dict[Path, Any] = {}
    if select or (files and has_catalog):
        from kneescope.catalog.database import Catalog
        from kneescope.catalog.queries import SeriesFilter, get_series, list_series

        cat = Catalog.for_workspace(ws, create=False)
        try:
            if files:
                known = records_by_path(cat, files)
            if select:
                records = [get_series(cat, s) for s in series]
                if subject or visit or side:
                    where = SeriesFilter(subject=subject, visit=visit, side=side, status="ok")
                    records += [r for r in list_series(cat, where) if r.kind != "radiograph"]
        finally:
            cat.close()
    unknown = [p for p in files if p.resolve() not in known]
    stems = dict(zip(unknown, file_output_names(unknown), strict=True))
    items: list[_Input] = []
    for p in files:
        record = known.get(p.resolve())
        name = series_stem(record) if record is not None else stems[p]
        items.append(_Input(name, p, side, record))
    taken = {r.id for r in known.values()}
    for r in records:
        if r.id not in taken:  # a series given as a file and selected: segmented once
            taken.add(r.id)
            items.append(_Input(series_stem(r), Path(r.path), None, r))
    return items


def _render(console: Any, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("input", "labels", "seconds")
    for r in rows:
        table.add_row(r["input"], r["labels"], f"{r['seconds']:.1f}")
    console.print(table)
