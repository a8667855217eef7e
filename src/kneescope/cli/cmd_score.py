"""``kneescope score``: the holistic OA score of a run's knees (fit, or apply a saved model)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, workspace


def score(
    runs: Annotated[
        list[str],
        typer.Option(
            "--run",
            help="Score the knees of this run (repeat to join several runs by knee and "
            "visit, e.g. an MRI run and a radiograph run).",
            show_default=False,
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            help="Apply this saved score model (an oa_score_model.json) instead of fitting "
            "a new one.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for the score's files (default: WORKSPACE/runs/RUN/oa_score).",
            show_default=False,
        ),
    ] = None,
    features: Annotated[
        list[str] | None,
        typer.Option(
            "--feature",
            help="Use the result columns matching this pattern, e.g. 'mjsw_*_mm' (repeat "
            "for several; default: classifier probabilities, JSW, cartilage, meniscus and "
            "findings columns).",
            show_default=False,
        ),
    ] = None,
    clinical: Annotated[
        bool,
        typer.Option("--clinical", help="Add age, sex and BMI from the clinical tables."),
    ] = False,
    folds: Annotated[
        int,
        typer.Option("--folds", min=2, help="Cross-validation folds (grouped by subject)."),
    ] = 5,
    no_store: Annotated[
        bool,
        typer.Option("--no-store", help="Do not store the scores in the catalog."),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the score files of an earlier score.")
    ] = False,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit a holistic OA score on a run's results against the readers' KL grades
    (cross-validated by subject), or apply a saved one (-m), and store every knee's score
    in the catalog."""
    from kneescope.capabilities.oa_score.features import DEFAULT_FEATURES
    from kneescope.capabilities.oa_score.model_file import load_model, model_digest
    from kneescope.capabilities.oa_score.outputs import OUTPUT_FILES
    from kneescope.capabilities.oa_score.score import ScoreOptions
    from kneescope.capabilities.oa_score.service import score_runs
    from kneescope.catalog.view import CatalogView
    from kneescope.cohort.pipeline_config import is_run_name
    from kneescope.cohort.results_table import read_run_results
    from kneescope.errors import InputError
    from kneescope.io.atomic import atomic_write_dir
    from kneescope.io.folder_writer import folder_writer

    bad = [r for r in runs if not is_run_name(r)]
    if bad:
        raise InputError(
            f"--run {bad[0]!r} is not a run name; give the name of a run folder under "
            "WORKSPACE/runs (see `kneescope status`)"
        )
    if len(set(runs)) != len(runs):
        raise InputError("--run names a run twice; give each run once")
    if model is not None and (features or clinical):
        raise InputError(
            "--feature and --clinical choose what a fit uses; a saved model (-m) "
            "has its own features: drop them, or drop -m to fit"
        )
    ws = workspace(workspace_dir, catalog)
    run_dirs = [ws.root / "runs" / r for r in runs]
    folder = output if output is not None else run_dirs[0] / "oa_score"
    _check_folder(folder, OUTPUT_FILES, overwrite)
    options = ScoreOptions(
        features=tuple(features) if features else DEFAULT_FEATURES,
        clinical=clinical,
        folds=folds,
    )
    score_model = load_model(model) if model is not None else None
    model_hash = model_digest(model) if model is not None else ""
    tables = [read_run_results(d) for d in run_dirs]
    view = CatalogView.for_workspace(ws)
    if view is None and score_model is None:
        raise InputError(
            f"workspace {ws.root} has no catalog: fitting needs the readers' KL grades of "
            "the clinical tables; ingest them (kneescope ingest) or apply a model with -m"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write_dir(folder) as tmp:  # all files or none; an old score stays until then
        outcome = score_runs(
            tables,
            view,
            folder_writer(tmp),
            run="+".join(runs),
            run_dir=folder,
            options=options,
            model=score_model,
            model_hash=model_hash,
            store=not no_store,
        )
    files = {k: str(folder / Path(v).name) for k, v in outcome.files.items()}
    payload = {**outcome.to_json(), "files": files, "output": str(folder)}
    emit(payload, as_json, lambda console: render_score(console, payload))


def _check_folder(folder: Path, ours: tuple[str, ...], overwrite: bool) -> None:
    """Refuse a file, a folder with someone else's files, or an earlier score without
    ``overwrite``."""
    from kneescope.errors import InputError

    if folder.exists() and not folder.is_dir():
        raise InputError(f"--output {folder} is a file; give a folder")
    if not folder.is_dir():
        return
    entries = sorted(p.name for p in folder.iterdir())
    foreign = [e for e in entries if e not in ours]
    if foreign:
        raise InputError(
            f"{folder} holds other files ({', '.join(foreign[:3])}); give a new or empty "
            "folder with -o"
        )
    if entries and not overwrite:
        raise InputError(
            f"{folder} holds an earlier score ({', '.join(entries[:3])}); add --overwrite "
            "to replace it, or give another folder with -o"
        )


def render_score(console: Any, payload: dict[str, Any]) -> None:
    """A few lines: what was scored, the cross-validated figures, the coefficients."""
    from rich.table import Table

    mode = "fitted" if payload["mode"] == "fit" else "applied"
    console.print(
        f"OA score {mode}: {payload['knees']} knee-visits of {payload['subjects']} subjects "
        f"({payload['knees_with_reader_kl']} with a reader KL grade)",
        highlight=False,
    )
    for key, label in (
        ("spearman_reader_kl_oof", "Spearman with the reader's KL grade (out-of-fold)"),
        ("spearman_reader_kl", "Spearman with the reader's KL grade"),
        ("auc_kl2_oof", "AUC of P(KL >= 2) (out-of-fold)"),
        ("ece_kl2_oof", "calibration error of P(KL >= 2) (out-of-fold ECE)"),
        ("ece_kl2", "calibration error of P(KL >= 2) (ECE)"),
    ):
        value = payload.get(key)
        if isinstance(value, float):
            console.print(f"{label}: {value:.3f}", highlight=False)
    coefficients = payload.get("coefficients_per_sd") or {}
    if coefficients:
        table = Table("feature", "coefficient per SD")
        for name, value in sorted(coefficients.items(), key=lambda kv: -abs(kv[1] or 0)):
            table.add_row(name, f"{value:+.3f}")
        console.print(table)
    if payload.get("catalog_run"):
        console.print(
            f"{payload['values_stored']} values stored in the catalog as run "
            f"{payload['catalog_run']}",
            highlight=False,
        )
    console.print(f"files in {payload['output']}", markup=False, highlight=False)
