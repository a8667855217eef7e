"""``kneescope demo``: the main job end to end on a synthetic cohort, checked against its truth.

Stages (each skipped when its result is already in the workspace, so a second demo is fast):
synthesise an OAI-style cohort -> ingest the tree and its clinical tables into the catalog ->
convert the volumes to the Zarr store -> the model: the shipped default segmentation model
(``kneescope models``), a model given with ``--model``, or, with ``--train``, a small 3D U-Net
trained on the cataloged DESS/label pairs (cached) -> run every DESS series through
segment -> measure -> results table -> check every knee against the cohort's exact truth
(:mod:`kneescope.cli.demo_truth`): Dice per structure and the error of every biomarker the
truth tables know, with each knee's QC verdict beside its numbers.

The default grid (``--size demo``, :data:`kneescope.synth.params.DEMO`) has 0.85 mm slices
and the 2D model's 0.3646 mm in-plane pixels over a 109 x 117 x 117 mm field of view: fine
enough for meniscal extrusion (at most 1.0 mm medial-lateral and 0.75 mm in-plane, even on an
8-degree oblique knee) and no resampling for the shipped 2D model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, stderr, workspace


def demo(
    subjects: Annotated[int, typer.Option("--subjects", "-n", help="Synthetic participants.")] = 2,
    visits: Annotated[
        str, typer.Option("--visits", help="OAI visit codes, comma-separated (V00 = baseline).")
    ] = "V00",
    size: Annotated[
        Literal["demo", "small", "full"],
        typer.Option(
            "--size",
            help="MRI grid: demo (128x320x320 voxels, 0.85 mm slices: fast, and fine enough "
            "for every biomarker), small (48x128x128, coarse: QC refuses meniscal extrusion "
            "on it) or full (160x384x384, the OAI DESS grid, slowest).",
            case_sensitive=False,
        ),
    ] = "demo",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic cohort.")] = 7,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Segmentation model: a file written by `kneescope train`, its name in "
            "WORKSPACE/models/, or a shipped model's name (`kneescope models list`). "
            "Default: the shipped knee-seg model.",
            show_default=False,
        ),
    ] = None,
    train: Annotated[
        bool,
        typer.Option(
            "--train",
            help="Train a small demo model on the cohort first (a few minutes; cached in "
            "WORKSPACE/models/demo-knee.pt) and use it instead of the shipped model.",
        ),
    ] = False,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the main job on a synthetic cohort with the shipped model: synth -> ingest ->
    convert -> segment + measure every DESS series -> results table, then check every knee
    against the cohort's exact truth (QC verdict, Dice per structure, biomarker errors)."""
    from kneescope.catalog.database import display_url
    from kneescope.errors import InputError, RunError

    if subjects < 1:
        raise InputError(f"--subjects must be at least 1, got {subjects}")
    if train and model is not None:
        raise InputError("--train and --model exclude each other; give one of them")
    ws = workspace(workspace_dir, catalog).ensure()
    err = stderr()
    steps: list[dict[str, Any]] = []
    cohort_dir = ws.root / "cohort"

    cpu_mark = [_cpu_s()]
    cpu_start = cpu_mark[0]

    def stage(name: str, detail: str, seconds: float, **extra: Any) -> None:
        cpu, cpu_mark[0] = _cpu_s() - cpu_mark[0], _cpu_s()
        steps.append(
            {
                "stage": name,
                "detail": detail,
                "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu, 2),
                **extra,
            }
        )
        if not as_json:
            err.print(
                f"[bold green]✓[/] {name:<8} {detail} [dim]({seconds:.1f} s, CPU {cpu:.1f} s)[/]"
            )

    t_all = time.perf_counter()
    t0 = time.perf_counter()
    spec_text = _synth(cohort_dir, subjects, visits, size, seed, err, quiet=as_json)
    stage("synth", f"{subjects} subjects x {visits} ({size}) in {cohort_dir}", _since(t0))

    t0 = time.perf_counter()
    report = _ingest(ws, cohort_dir)
    stage("ingest", report, _since(t0))

    t0 = time.perf_counter()
    conv = _convert(ws)
    stage(
        "convert",
        f"{conv.converted} converted, {conv.skipped} already in the store, ratio {conv.ratio:.2f}x",
        _since(t0),
    )

    t0 = time.perf_counter()
    if train:
        model_path, trained = _train(ws, quiet=as_json)
        model_source = "trained" if trained else "trained (cached)"
        stage("train", f"{model_source} model {model_path}", _since(t0))
    else:
        model_path, model_source = _model(ws, model)
        stage("model", f"{model_source} {model_path}", _since(t0))

    t0 = time.perf_counter()
    result, _status = _run(ws, model_path, quiet=as_json)
    stage(
        "run",
        f"{result.done} knees done ({result.skipped} unchanged, {result.failed} failed)",
        _since(t0),
    )
    if result.failed:
        raise RunError(
            f"{result.failed} items failed in {result.run_dir}; see `kneescope status -w {ws.root}`"
        )

    t0 = time.perf_counter()
    check, check_file = _check(result.results_path, cohort_dir, result.run_dir)
    stage(
        "check",
        f"{len(check.passed)} of {len(check.knees)} knees passed QC; compared with the "
        f"synthetic truth in {check_file}",
        _since(t0),
    )

    payload = {
        "workspace": str(ws.root),
        "model": str(model_path),
        "model_source": model_source,
        "results": str(result.results_path),
        "truth_check": str(check_file),
        "preview": _preview(result.results_path),
        **_qc_summary(result.results_path),
        "truth": check.to_dict(),
        "cohort": str(cohort_dir),
        "catalog": display_url(ws.catalog_url),
        "store": str(ws.store_dir),
        "synth_spec": json.loads(spec_text),
        "stages": steps,
        "seconds": round(_since(t_all), 1),
        "cpu_seconds": round(_cpu_s() - cpu_start, 1),
    }
    emit(payload, as_json, lambda console: _render(console, payload))


def _since(t0: float) -> float:
    return time.perf_counter() - t0


def _cpu_s() -> float:
    """CPU seconds used so far by this process and its finished child processes (the
    synth and run workers): beside the wall-clock time, it tells a busy machine apart."""
    import os

    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _synth(
    out: Path, subjects: int, visits: str, size: str, seed: int, err: Any, *, quiet: bool
) -> str:
    """Generate the cohort unless the same one is already there; return its spec JSON."""
    from kneescope.synth.cohort import CohortSpec
    from kneescope.synth.generate import generate_cohort
    from kneescope.synth.params import size_spec
    from kneescope.synth.visits import parse_visits

    size_spec(size)
    # no bone-marrow lesions or meniscal tears: the shipped segmentation model was trained
    # and tested on knees without them, and a tear's bright signal can cost it a meniscus
    # (docs/diagnosis.md); the demo shows the main job as the model card describes it
    spec = CohortSpec(
        subjects=subjects, visits=parse_visits(visits), size=size, seed=seed, findings=False
    )
    spec_file = out / "synth_spec.json"
    wanted = spec.model_dump(mode="json")
    if spec_file.is_file() and json.loads(spec_file.read_text()) == wanted:
        return spec_file.read_text()
    if out.exists() and any(out.iterdir()):
        from kneescope.errors import InputError

        raise InputError(
            f"{out} holds another synthetic cohort; use another --workspace or remove {out}"
        )

    def progress(done: int, total: int) -> None:
        if not quiet:
            err.print(f"  synth: subject {done}/{total}", highlight=False)

    generate_cohort(spec, out, jobs=2, progress=progress)
    return spec_file.read_text()


def _ingest(ws: Any, cohort_dir: Path) -> str:
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.ingest import ingest

    cat = Catalog.for_workspace(ws, create=True)
    try:
        tree = ingest(cat, cohort_dir, "oai")  # with the tables of its clinical/ folder
    finally:
        cat.close()
    t = tree.to_json()
    return (
        f"{t.get('added', 0)} series added, {t.get('unchanged', 0)} unchanged, "
        f"{t.get('failed', 0)} failed; {tree.clinical_values} clinical values added "
        f"({tree.clinical_unchanged} unchanged)"
    )


def _convert(ws: Any) -> Any:
    from kneescope.catalog.convert import convert_catalog
    from kneescope.catalog.database import Catalog

    cat = Catalog.for_workspace(ws, create=False)
    try:
        return convert_catalog(cat, ws.store_dir, jobs=2)
    finally:
        cat.close()


DEMO_MODEL = "demo-knee"
"""Name of the demo's model (WS/models/demo-knee.pt)."""

DEMO_TRAINING: dict[str, Any] = {
    "name": DEMO_MODEL,
    "mode": "3d",
    "network": "unet3d-small",
    "iterations": 400,
    "validate_every": 100,
    "checkpoint_every": 50,
    "val_fraction": 0.2,
    "patch_size_vox": (32, 64, 64),
    "batch_size": 2,
    "lr": 0.01,
    "max_minutes": 5.5,
    "seed": 0,
}
"""A small 3D U-Net trained in a few minutes on 2 CPU cores: enough to see anatomy, not to
reach the accuracy targets of docs/segmentation.md (train longer for that)."""


def _train(ws: Any, *, quiet: bool) -> tuple[Path, bool]:
    """Train the demo model unless the same one is cached; return (model path, trained)."""
    from kneescope.training.config import split_training_table, task_config, task_factory

    training = split_training_table(DEMO_TRAINING, "demo training config")
    options = task_config(task_factory(training.task), training, "demo training config")
    model_path = ws.models_dir / f"{DEMO_MODEL}.pt"
    marker = ws.models_dir / f"{DEMO_MODEL}.config.json"
    resolved = {
        "name": training.name,
        **training.engine.model_dump(mode="json"),
        **options.model_dump(mode="json"),
    }
    wanted = json.dumps(resolved, sort_keys=True)
    if model_path.is_file() and marker.is_file() and marker.read_text() == wanted:
        return model_path, False
    if quiet:
        from kneescope.training.run import run_training

        run_training(training, ws)
    else:
        from kneescope.cli.cmd_train import train_with_progress

        train_with_progress(training, ws, None)
    from kneescope.io import atomic_write_path

    with atomic_write_path(marker) as tmp:
        tmp.write_text(wanted)
    return model_path, True


def _model(ws: Any, model: str | None) -> tuple[Path, str]:
    """The model file the demo segments with and where it came from, in words."""
    from kneescope.errors import ModelError
    from kneescope.models.pretrained import DEFAULT_MODEL, find_shipped, resolve_model

    try:
        path = resolve_model(model, ws)
    except ModelError as exc:
        if model is not None:
            raise
        raise ModelError(f"{exc}; or run `kneescope demo --train`") from None
    shipped = find_shipped(model or DEFAULT_MODEL)
    if shipped is not None and shipped.path.resolve() == path.resolve():
        alias = f" ({model or DEFAULT_MODEL})" if (model or DEFAULT_MODEL) != shipped.name else ""
        return path, f"shipped model {shipped.name}{alias}"
    return path, "model"


def _check(results: Path, cohort_dir: Path, run_dir: Path) -> tuple[Any, Path]:
    """Compare every knee of the results with the cohort's truth; write truth_check.csv into
    the run folder; return the :class:`~kneescope.cli.demo_truth.TruthCheck` and the file."""
    import pandas as pd

    from kneescope.cli.demo_truth import TRUTH_CHECK_CSV, check_against_truth, check_rows
    from kneescope.io.csv_table import write_csv_table

    table = pd.read_parquet(results) if results.suffix == ".parquet" else pd.read_csv(results)
    records = [{str(k): v for k, v in r.items()} for r in table.to_dict(orient="records")]
    check = check_against_truth(records, cohort_dir)
    path = run_dir / TRUTH_CHECK_CSV
    write_csv_table(
        path,
        check_rows(check),
        ["subject", "visit", "side", "qc", "quantity", "measured", "truth", "error", "error_unit"],
    )
    return check, path


def _run(ws: Any, model_path: Path, *, quiet: bool) -> tuple[Any, Any]:
    from kneescope.cli.cmd_run import run_with_progress
    from kneescope.cohort.pipeline_config import PipelineConfig

    pipeline = PipelineConfig.model_validate(
        {
            "name": "demo",
            "items": {"catalog": {"sequence": "DESS"}},
            "steps": [
                {"name": "load_volume"},
                {"name": "segment", "options": {"model": str(model_path)}},
                {"name": "measure"},
            ],
            "executor": {"kind": "local"},
        }
    )
    return run_with_progress(pipeline, ws, ws.root, quiet=quiet)


_PREVIEW_COLUMNS = (
    "subject",
    "visit",
    "side",
    "femoral_cartilage_thickness_mean_mm",
    "medial_tibial_cartilage_thickness_mean_mm",
    "lateral_tibial_cartilage_thickness_mean_mm",
    "patellar_cartilage_thickness_mean_mm",
    "medial_meniscus_extrusion_mm",
    "lateral_meniscus_extrusion_mm",
)
PREVIEW_ROWS = 12
"""Knees the demo's results table shows (the whole table is in the results file)."""


def _preview(results: Path) -> list[dict[str, Any]]:
    """The first rows of the results table, a few columns, each row with its QC verdict
    (``qc``: ok, failed or not checked) right after the knee's side."""
    import pandas as pd

    table = pd.read_parquet(results) if results.suffix == ".parquet" else pd.read_csv(results)
    columns = [c for c in _PREVIEW_COLUMNS if c in table.columns]
    verdicts = (
        ["ok" if bool(ok) else "failed" for ok in table["qc_ok"].head(PREVIEW_ROWS)]
        if "qc_ok" in table.columns
        else ["not checked"] * min(len(table), PREVIEW_ROWS)
    )
    rows: list[dict[str, Any]] = []
    for record, verdict in zip(
        table[columns].head(PREVIEW_ROWS).to_dict(orient="records"), verdicts, strict=True
    ):
        row: dict[str, Any] = {}
        for key, value in record.items():
            row[str(key)] = value
            if key == "side":  # a number is shown only with its QC verdict beside it
                row["qc"] = verdict
        row.setdefault("qc", verdict)
        rows.append(row)
    return rows


def _cell(value: Any, digits: int = 2, *, signed: bool = False) -> str:
    if isinstance(value, float):
        if value != value:  # NaN: not measured
            return "-"
        return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return str(value)


def _qc_summary(results: Path) -> dict[str, Any]:
    """Knees, knees that failed QC, and how many knees raised each QC flag."""
    import pandas as pd

    table = pd.read_parquet(results) if results.suffix == ".parquet" else pd.read_csv(results)
    summary: dict[str, Any] = {"knees": len(table), "qc_failed": 0, "qc_flags": {}}
    if "qc_ok" not in table.columns:
        return summary
    summary["qc_failed"] = int((~table["qc_ok"].astype(bool)).sum())
    for column in table.columns:
        if column.startswith("qc_") and column not in ("qc_ok", "qc_reasons"):
            raised = int((table[column].fillna(0).astype(float) > 0).sum())
            if raised and column != "qc_side_unverified":
                summary["qc_flags"][column[3:]] = raised
    return summary


_HEADERS = {
    "femoral_cartilage_thickness_mean_mm": "fem. mm",
    "medial_tibial_cartilage_thickness_mean_mm": "MT mm",
    "lateral_tibial_cartilage_thickness_mean_mm": "LT mm",
    "patellar_cartilage_thickness_mean_mm": "pat. mm",
    "medial_meniscus_extrusion_mm": "med. ext. mm",
    "lateral_meniscus_extrusion_mm": "lat. ext. mm",
}
"""Short headers of the results preview (its title says what they are)."""


def _quantity(key: str, unit: str) -> str:
    """Words for a quantity of the truth check (``femoral cartilage thickness mean error
    (mm)``; the thickness against the visible truth says so)."""
    visible = key.endswith("_vs_visible")
    column = key.removesuffix("_vs_visible")
    for suffix in ("_mm3", "_mm2", "_mm"):
        if column.endswith(suffix):
            column = column[: -len(suffix)]
            break
    what = column.replace("_", " ")
    return f"{what} error ({unit})" + (" vs visible truth" if visible else "")


def _knee_name(knee: dict[str, Any]) -> str:
    return f"{knee['subject']} {knee['visit']} {knee['side']}"


def _render_truth(console: Any, truth: dict[str, Any]) -> None:
    """Accuracy against the synthetic truth over the QC-passed knees, then every QC-failed
    knee on its own line with its reasons and its errors."""
    from rich.table import Table

    passed_knees = [k for k in truth["per_knee"] if k["qc"] == "ok"]
    n_pass = len(passed_knees)
    if n_pass:
        table = Table(
            title=f"against the synthetic truth: {n_pass} knees that passed QC "
            "(mean and worst knee)",
        )
        for column in ("quantity", "mean", "bias", "worst", "worst knee"):
            table.add_column(column, overflow="fold")
        for structure, entry in truth["dice"].items():
            worst = passed_knees[entry["worst_knee"]] if entry["worst_knee"] >= 0 else None
            table.add_row(
                f"Dice {structure.replace('_', ' ')}",
                _cell(entry["mean"], 3),
                "",
                _cell(entry["worst"], 3),
                _knee_name(worst) if worst else "-",
            )
        for column, entry in truth["errors"].items():
            unit = truth["error_units"][column]
            worst = passed_knees[entry["worst_knee"]] if entry["worst_knee"] >= 0 else None
            digits = 3 if unit == "mm" else 1
            table.add_row(
                _quantity(column, unit),
                _cell(entry["mean"], digits),
                _cell(entry["bias"], digits, signed=True),
                _cell(worst["errors"][column], digits, signed=True) if worst else "-",
                _knee_name(worst) if worst else "-",
            )
        console.print(table)
        console.print(
            "mean: of the absolute error (Dice: of the Dice); bias: mean signed error "
            "(measured - truth); thickness against the cohort's imposed thickness (plain "
            "truth) and against the cartilage at least half a voxel thick (visible truth).",
            highlight=False,
        )
    for knee in truth["per_knee"]:
        if knee["qc"] == "ok":
            continue
        dice = [v for v in knee["dice"].values() if v == v]
        thick = [
            abs(v) for k, v in knee["errors"].items() if k.endswith("thickness_mean_mm") and v == v
        ]
        extrusion = [
            abs(v) for k, v in knee["errors"].items() if k.endswith("extrusion_mm") and v == v
        ]
        console.print(
            f"[bold yellow]QC {knee['qc']}[/] {_knee_name(knee)} (not in the summary): "
            f"lowest Dice {_cell(min(dice) if dice else float('nan'), 3)}, worst thickness "
            f"error {_cell(max(thick) if thick else float('nan'), 3)} mm, worst extrusion "
            f"error {_cell(max(extrusion) if extrusion else float('nan'))} mm; "
            f"QC flags: {', '.join(knee['qc_flags']) or 'none recorded'}",
            highlight=False,
        )
    if truth["without_truth"]:
        console.print(
            f"{len(truth['without_truth'])} knees have no truth row: "
            + ", ".join(truth["without_truth"][:5]),
            highlight=False,
        )


def _render(console: Any, payload: dict[str, Any]) -> None:
    from rich.table import Table

    if payload["preview"]:
        shown = len(payload["preview"])
        title = "results, with each knee's QC verdict" + (
            f" (first {shown} of {payload.get('knees', '?')} knees)"
            if shown < payload.get("knees", shown)
            else ""
        )
        caption = (
            "mean cartilage thickness (mm) of the femoral, medial and lateral tibial and "
            "patellar plates; medial and lateral meniscal extrusion (mm)"
        )
        table = Table(title=title, caption=caption)
        for column in payload["preview"][0]:
            header = _HEADERS.get(column, column.replace("_", " "))
            table.add_column(header, no_wrap=column in ("subject", "visit", "side", "qc"))
        for row in payload["preview"]:
            table.add_row(*(_cell(v) for v in row.values()))
        console.print(table)
    knees = payload.get("knees", 0)
    failed = payload.get("qc_failed", 0)
    flags = ", ".join(f"{k} {v}" for k, v in payload.get("qc_flags", {}).items())
    if failed:
        console.print(
            f"[bold yellow]{knees - failed} of {knees} knees passed QC; {failed} failed[/] "
            f"(knees per flag: {flags}); a failed knee's values are not results: see its "
            "qc_* and qc_reasons columns in the results table. A value that could not be "
            "measured is shown as -.",
            highlight=False,
        )
    else:
        console.print(f"[bold green]{knees - failed} of {knees} knees passed QC[/]")
    if "truth" in payload:
        _render_truth(console, payload["truth"])
    console.print("\n[bold]kneescope demo finished.[/] Where to look:")
    console.print(f"  cohort (OAI layout, DICOM) {payload['cohort']}", highlight=False)
    console.print(f"  catalog                    {payload['catalog']}", highlight=False)
    console.print(f"  Zarr store                 {payload['store']}", highlight=False)
    console.print(
        f"  model                      {payload['model']} ({payload.get('model_source', '')})",
        highlight=False,
    )
    console.print(f"  results table              {payload['results']}", highlight=False)
    if "truth_check" in payload:
        console.print(f"  check against the truth    {payload['truth_check']}", highlight=False)
    ws = payload["workspace"]
    console.print(
        f"\nNext: kneescope report --run demo -w {ws} (HTML pages: overlays, thickness maps, "
        f"QC in words); kneescope catalog -w {ws} --summary; kneescope status -w {ws}",
        highlight=False,
    )
