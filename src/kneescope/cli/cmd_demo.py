"""``kneescope demo``: the main job end to end on a synthetic cohort.

Stages (each skipped when its result is already in the workspace, so a second demo is fast):
synthesise an OAI-style cohort -> ingest the tree and its clinical tables into the catalog ->
convert the volumes to the Zarr store -> train a small 3D U-Net on the cataloged DESS/label
pairs (cached) -> run every DESS series through segment -> measure -> results table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, stderr, workspace


def demo(
    subjects: Annotated[int, typer.Option("--subjects", "-n", help="Synthetic participants.")] = 3,
    visits: Annotated[
        str, typer.Option("--visits", help="OAI visit codes, comma-separated (V00 = baseline).")
    ] = "V00,V01",
    size: Annotated[
        Literal["small", "full"],
        typer.Option(
            "--size",
            help="MRI grid: small (48x128x128 voxels, fast) or full (160x384x384, OAI DESS).",
            case_sensitive=False,
        ),
    ] = "small",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic cohort.")] = 7,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the main job on a synthetic cohort: synth -> ingest -> convert -> train a small
    model (cached) -> run segment + measure on every DESS series -> results table."""
    from kneescope.catalog.database import display_url
    from kneescope.errors import InputError, RunError

    if subjects < 1:
        raise InputError(f"--subjects must be at least 1, got {subjects}")
    ws = workspace(workspace_dir, catalog).ensure()
    err = stderr()
    steps: list[dict[str, Any]] = []
    cohort_dir = ws.root / "cohort"

    def stage(name: str, detail: str, seconds: float, **extra: Any) -> None:
        steps.append({"stage": name, "detail": detail, "seconds": round(seconds, 2), **extra})
        if not as_json:
            err.print(f"[bold green]✓[/] {name:<8} {detail} [dim]({seconds:.1f} s)[/]")

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
    model_path, trained = _train(ws, quiet=as_json)
    stage("train", f"{'trained' if trained else 'cached'} model {model_path}", _since(t0))

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

    payload = {
        "workspace": str(ws.root),
        "model": str(model_path),
        "results": str(result.results_path),
        "preview": _preview(result.results_path),
        **_qc_summary(result.results_path),
        "cohort": str(cohort_dir),
        "catalog": display_url(ws.catalog_url),
        "store": str(ws.store_dir),
        "synth_spec": json.loads(spec_text),
        "stages": steps,
    }
    emit(payload, as_json, lambda console: _render(console, payload))


def _since(t0: float) -> float:
    return time.perf_counter() - t0


def _synth(
    out: Path, subjects: int, visits: str, size: str, seed: int, err: Any, *, quiet: bool
) -> str:
    """Generate the cohort unless the same one is already there; return its spec JSON."""
    from kneescope.synth.cohort import CohortSpec
    from kneescope.synth.generate import generate_cohort
    from kneescope.synth.params import size_spec
    from kneescope.synth.visits import parse_visits

    size_spec(size)
    spec = CohortSpec(subjects=subjects, visits=parse_visits(visits), size=size, seed=seed)
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
    "medial_meniscus_extrusion_mm",
)


def _preview(results: Path) -> list[dict[str, Any]]:
    """The first rows of the results table, a few columns (for the summary)."""
    import pandas as pd

    table = pd.read_parquet(results) if results.suffix == ".parquet" else pd.read_csv(results)
    columns = [c for c in _PREVIEW_COLUMNS if c in table.columns]
    rows = [
        {str(k): v for k, v in row.items()}
        for row in table[columns].head(8).to_dict(orient="records")
    ]
    if "qc_ok" in table.columns:  # a number is shown only with its QC verdict beside it
        for row, ok in zip(rows, table["qc_ok"].head(8), strict=False):
            row["qc"] = "ok" if bool(ok) else "failed"
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if value != value else f"{value:.2f}"  # NaN: not measured
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


def _render(console: Any, payload: dict[str, Any]) -> None:
    from rich.table import Table

    if payload["preview"]:
        table = Table(title="results (first rows, a few columns)")
        for column in payload["preview"][0]:
            table.add_column(column.replace("_", " "), overflow="fold")
        for row in payload["preview"]:
            table.add_row(*(_cell(v) for v in row.values()))
        console.print(table)
        failed = payload.get("qc_failed", 0)
        flags = ", ".join(f"{k} {v}" for k, v in payload.get("qc_flags", {}).items())
        if failed:
            console.print(
                f"[bold yellow]{failed} of {payload.get('knees', '?')} knees failed QC[/] "
                f"(knees per flag: {flags}); see the qc_* and qc_reasons columns of the "
                "results table. A value that could not be measured is shown as -.",
                highlight=False,
            )
    console.print("\n[bold]kneescope demo finished.[/] Where to look:")
    console.print(f"  cohort (OAI layout, DICOM) {payload['cohort']}", highlight=False)
    console.print(f"  catalog                    {payload['catalog']}", highlight=False)
    console.print(f"  Zarr store                 {payload['store']}", highlight=False)
    console.print(f"  model                      {payload['model']}", highlight=False)
    console.print(f"  results table              {payload['results']}", highlight=False)
    ws = payload["workspace"]
    console.print(
        f"\nNext: kneescope catalog -w {ws} --summary; kneescope status -w {ws}",
        highlight=False,
    )
