"""What a prediction run leaves behind (one folder; the cohort step's
``RUN/cohort/prediction/``), every file written atomically:

* ``prediction_metrics.csv``: one row per outcome and model (or reference score): knees,
  events, prevalence, AUC and AP with their subject-bootstrap 95 % CIs, Brier score, ECE, the
  Cox model's C-index, and each model's AUC gap to each reference with its paired CI;
* ``prediction_knees.csv``: one row per outcome and knee at risk: subject, side, event,
  time_months, time_event, fold, each model's out-of-fold probability ``p_<model>`` and each
  reference's score ``ref_<name>``;
* ``prediction_calibration.csv``: the calibration bins (outcome, model, lower, upper, count,
  mean_probability, observed);
* ``prediction_calibration_<outcome>.png``: reliability curves of every model of an outcome;
* ``prediction_summary.json``: the settings, definitions, exclusions and figures.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kneescope.capabilities.prediction.evaluate import PredictionResult
from kneescope.io.folder_writer import Writer, json_ready

METRICS_FILE = "prediction_metrics.csv"
KNEES_FILE = "prediction_knees.csv"
CALIBRATION_FILE = "prediction_calibration.csv"
SUMMARY_FILE = "prediction_summary.json"


def metric_rows(result: PredictionResult) -> list[dict[str, Any]]:
    """The rows of ``prediction_metrics.csv`` (CIs as ``*_ci_low`` / ``*_ci_high``)."""
    rows: list[dict[str, Any]] = []
    for name, outcome in result.outcomes.items():
        for m in outcome.metrics:
            row: dict[str, Any] = {"outcome": name}
            for key, value in m.items():
                if isinstance(value, list) and len(value) == 2:
                    row[f"{key.removesuffix('_ci')}_ci_low"] = value[0]
                    row[f"{key.removesuffix('_ci')}_ci_high"] = value[1]
                else:
                    row[key] = value
            rows.append(row)
    return rows


def save_calibration_figure(
    curves: Mapping[str, Sequence[dict[str, Any]]], path: Path, title: str
) -> Path:
    """Reliability figure (PNG, atomic): per model the observed share of events against the
    mean predicted probability of each calibration bin, and the diagonal."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from kneescope.io.atomic import atomic_write

    fig = Figure(figsize=(5.0, 4.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    top = 0.05
    for model, bins in curves.items():
        xs = [float(b["mean_probability"]) for b in bins]
        ys = [float(b["observed"]) for b in bins]
        top = max(top, *xs, *ys)
        ax.plot(xs, ys, "o-", markersize=4, linewidth=1.2, label=model)
    lim = min(1.0, 1.1 * top)
    ax.plot([0, lim], [0, lim], color="0.5", linestyle="--", linewidth=1, label="calibrated")
    ax.set_xlim(0, lim)
    ax.set_ylim(0, lim)
    ax.set_xlabel("predicted probability (out-of-fold, bin mean)")
    ax.set_ylabel("observed share of events")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")


def _figure_writer(
    curves: Mapping[str, Sequence[dict[str, Any]]], title: str
) -> Callable[[Path], object]:
    return lambda tmp: save_calibration_figure(curves, tmp, title)


def write_outputs(result: PredictionResult, write: Writer) -> dict[str, str]:
    """Write the files of the module docstring; returns name -> absolute path."""
    import pandas as pd

    from kneescope.io.csv_table import write_csv_table

    files: dict[str, str] = {}
    metrics = json_ready(metric_rows(result))
    files["metrics"] = write(METRICS_FILE, lambda tmp: write_csv_table(tmp, metrics))
    frames = [o.knees.assign(outcome=name) for name, o in result.outcomes.items() if len(o.knees)]
    knees = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(knees):
        cols = ["outcome", *[c for c in knees.columns if c != "outcome"]]
        rows = json_ready(knees.loc[:, cols].to_dict(orient="records"))
        files["knees"] = write(KNEES_FILE, lambda tmp: write_csv_table(tmp, rows, cols))
    bins = [
        {"outcome": name, "model": model, **b}
        for name, o in result.outcomes.items()
        for model, model_bins in o.calibration.items()
        for b in model_bins
    ]
    if bins:
        files["calibration"] = write(CALIBRATION_FILE, lambda tmp: write_csv_table(tmp, bins))
    for name, o in result.outcomes.items():
        if not o.calibration:
            continue
        aucs = ", ".join(
            f"{m['name']} AUC {m['auc']:.3f}" for m in o.metrics if m["kind"] == "model"
        )
        title = f"{name}, out-of-fold\n{aucs}"
        curves = dict(o.calibration)
        fname = f"prediction_calibration_{name}.png"
        files[f"calibration_{name}"] = write(fname, _figure_writer(curves, title))
    summary = json_ready(result.summary())
    files["summary"] = write(SUMMARY_FILE, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return files
