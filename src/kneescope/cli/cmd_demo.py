"""``kneescope demo``: the main job end to end on a synthetic cohort.

Stages (each skipped when its result is already in the workspace, so a second demo is fast):
synthesise an OAI-style cohort -> ingest the tree and its clinical tables into the catalog ->
convert the volumes to the Zarr store -> report where everything is.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, stderr, workspace


def demo(
    subjects: Annotated[int, typer.Option("--subjects", "-n", help="Synthetic participants.")] = 3,
    visits: Annotated[str, typer.Option("--visits", help="OAI visit codes.")] = "V00,V01",
    size: Annotated[
        str, typer.Option("--size", help="MRI grid: small (fast) or full (160x384x384).")
    ] = "small",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic cohort.")] = 7,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the main job on a synthetic cohort: synth -> ingest -> convert, in WORKSPACE."""
    from kneescope.errors import InputError

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

    payload = {
        "workspace": str(ws.root),
        "cohort": str(cohort_dir),
        "catalog": ws.catalog_url,
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
        tree = ingest(cat, cohort_dir, "oai")
        values = 0
        for table in sorted((cohort_dir / "clinical").glob("*.csv")):
            values += ingest(cat, table, "clinical").clinical_values
    finally:
        cat.close()
    t = tree.to_json()
    return (
        f"{t.get('added', 0)} series added, {t.get('unchanged', 0)} unchanged, "
        f"{t.get('failed', 0)} failed; {values} clinical values"
    )


def _convert(ws: Any) -> Any:
    from kneescope.catalog.convert import convert_catalog
    from kneescope.catalog.database import Catalog

    cat = Catalog.for_workspace(ws, create=False)
    try:
        return convert_catalog(cat, ws.store_dir, jobs=2)
    finally:
        cat.close()


def _render(console: Any, payload: dict[str, Any]) -> None:
    console.print("\n[bold]kneescope demo finished.[/] Where to look:")
    console.print(f"  cohort (OAI layout, DICOM) {payload['cohort']}", highlight=False)
    console.print(f"  catalog                    {payload['catalog']}", highlight=False)
    console.print(f"  Zarr store                 {payload['store']}", highlight=False)
    ws = payload["workspace"]
    console.print(f"\nNext: kneescope catalog -w {ws} --summary", highlight=False)
