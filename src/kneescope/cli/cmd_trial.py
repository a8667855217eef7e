"""``kneescope trial``: treatment evaluation of a randomised cohort (MMRM per endpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, workspace


def trial(
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            "-c",
            help="The trial's config (trial.toml: data, arms, endpoints, visits, covariates, "
            "responders, power; docs/trial.md).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for the trial's files (default: WORKSPACE/trials/NAME).",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the files of an earlier analysis.")
    ] = False,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a treatment: per endpoint an MMRM of the change from baseline (unstructured
    covariance, Satterthwaite df), LS-mean differences per visit with CIs, Cohen's d, SRM per
    arm, responders, and the sample size for a target effect; a tidy table and figures."""
    from kneescope.capabilities.trial.config import load_trial_config, trial_name
    from kneescope.capabilities.trial.service import check_output_folder, run_trial
    from kneescope.catalog.view import CatalogView

    cfg = load_trial_config(config)
    name = trial_name(cfg, config)
    ws = workspace(workspace_dir, catalog)
    folder = output if output is not None else ws.root / "trials" / name
    check_output_folder(folder, overwrite)
    view = CatalogView.for_workspace(ws) if cfg.data.run is not None else None
    payload = run_trial(
        cfg,
        folder,
        workspace_root=ws.root,
        view=view,
        settings={"trial": name, "config": str(config.resolve()), "knee": cfg.analysis.knee},
    )
    emit(payload, as_json, lambda console: render_trial(console, payload))


def render_trial(console: Any, payload: dict[str, Any]) -> None:
    """The trial in a few lines: arms, and per endpoint the primary visit's difference."""
    from rich.table import Table

    subjects = payload["subjects"]
    excluded = payload.get("excluded") or {}
    left = f"; left out: {', '.join(f'{n} {r}' for r, n in excluded.items())}" if excluded else ""
    console.print(
        f"trial {payload.get('trial', '')}: {subjects['control']} control and "
        f"{subjects['treatment']} treated subjects ({payload['source']}), visits "
        f"{', '.join(payload['visits'])}{left}",
        highlight=False,
        markup=False,
    )
    level = f"{1 - payload['alpha']:.0%}"
    table = Table(
        "endpoint",
        "visit",
        "difference",
        f"{level} CI",
        "p",
        "Cohen's d",
        f"n/arm, {payload['endpoints'][0]['power'][0]['power']:.0%} power"
        if payload["endpoints"] and payload["endpoints"][0]["power"]
        else "n/arm",
    )

    def num(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for e in payload["endpoints"]:
        main = e.get("primary")
        if main is None:
            table.add_row(e["endpoint"], "-", e.get("error") or "not estimated", "", "", "", "")
            continue
        power = e["power"][0] if e["power"] else {}
        needed = power.get("n_control")
        table.add_row(
            e["endpoint"],
            main["visit"],
            num(main["estimate"], "+.4g"),
            f"[{num(main['ci_low'], '+.4g')}, {num(main['ci_high'], '+.4g')}]",
            num(main["p_value"], ".3g"),
            num(main["cohens_d"], "+.2f"),
            "-" if needed is None else f"{needed:.0f} (effect {power['target_effect']:.3g})",
        )
    console.print(table)
    for r in payload.get("responders", []):
        console.print(
            f"responders {r['endpoint']} {r['visit']} (change {r['direction']} "
            f"{r['threshold']:g}): control {num(r['rate_control'], '.1%')}, treated "
            f"{num(r['rate_treatment'], '.1%')}, difference {num(r['risk_difference'], '+.1%')} "
            f"[{num(r['ci_low'], '+.1%')}, {num(r['ci_high'], '+.1%')}]",
            highlight=False,
            markup=False,
        )
    console.print(f"files in {payload['output']}", markup=False, highlight=False)
