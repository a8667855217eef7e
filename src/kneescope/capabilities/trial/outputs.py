"""What a trial analysis leaves behind (one folder, written through ``kneescope.io``).

* ``trial_results.csv`` and ``trial_results.parquet``: the tidy table, one row per endpoint x
  visit x statistic x arm (:data:`RESULT_COLUMNS`). ``statistic`` is one of

  - ``mean_value`` (per arm, every visit; observed mean and SD-free t CI of the mean),
  - ``mean_change``, ``sd_change``, ``srm`` (per arm, post-baseline visits; observed),
  - ``lsmean_change`` (per arm; MMRM LS-mean change from baseline with SE, df, CI),
  - ``difference`` (arm ``treatment - control``; MMRM LS-mean difference, SE,
    Satterthwaite df, t, p, CI), ``cohens_d`` (the same difference / the pooled SD of the
    observed change),
  - ``responder_rate`` (per arm) and ``risk_difference`` (with its Newcombe CI and p), one
    pair per ``[[responders]]`` entry (``threshold`` and ``direction`` in ``note``);
* ``trial_power.csv``: per endpoint and wanted power, the subjects per arm needed for the
  target effect at the primary visit, and this trial's power for it;
* ``trial_summary.json``: the settings, subjects per arm, the subjects left out and why, per
  endpoint the primary visit's difference, its CI, p, Cohen's d, the fitted covariance over
  visits and whether the fit converged, the responders and power, and the file names;
* ``trajectories_<endpoint>.png`` and ``forest_<endpoint>.png`` per endpoint.
"""

from __future__ import annotations

import json
import math
import re
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from kneescope import __version__
from kneescope.capabilities.trial.analysis import DIFFERENCE, EndpointResult, TrialResult
from kneescope.io.folder_writer import Writer, json_ready
from kneescope.io.parquet_table import TableColumn

RESULTS_CSV = "trial_results.csv"
RESULTS_PARQUET = "trial_results.parquet"
POWER_CSV = "trial_power.csv"
SUMMARY_JSON = "trial_summary.json"

RESULT_COLUMNS: tuple[TableColumn, ...] = (
    TableColumn("endpoint", "str"),
    TableColumn("visit", "str"),
    TableColumn("months", "float", "months"),
    TableColumn("statistic", "str"),
    TableColumn("arm", "str"),
    TableColumn("n", "int"),
    TableColumn("estimate", "float"),
    TableColumn("se", "float"),
    TableColumn("df", "float"),
    TableColumn("ci_low", "float"),
    TableColumn("ci_high", "float"),
    TableColumn("t_value", "float"),
    TableColumn("p_value", "float"),
    TableColumn("note", "str"),
)
"""The tidy table's columns (the estimate's unit is the endpoint's: its name's suffix)."""

POWER_COLUMNS = (
    "endpoint",
    "visit",
    "target_effect",
    "effect_source",
    "se",
    "df",
    "sd_effective",
    "power",
    "n_control",
    "n_treatment",
    "n_total",
    "power_this_trial",
    "n_control_this_trial",
    "n_treatment_this_trial",
)


def figure_stem(endpoint: str) -> str:
    """A file-name-safe form of an endpoint name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", endpoint).strip("._") or "endpoint"


def output_files(endpoints: list[str]) -> tuple[str, ...]:
    """Every file name a trial with ``endpoints`` writes."""
    figures = [
        f"{kind}_{figure_stem(e)}.png" for e in endpoints for kind in ("trajectories", "forest")
    ]
    return (RESULTS_CSV, RESULTS_PARQUET, POWER_CSV, SUMMARY_JSON, *figures)


def result_rows(result: TrialResult) -> list[dict[str, Any]]:
    """The tidy table's rows (see the module docstring)."""
    rows: list[dict[str, Any]] = []
    for e in result.endpoints:
        for d in e.descriptive:
            base = {"endpoint": e.endpoint, "visit": d["visit"], "months": d["months"]}
            rows.append(
                {**base, "statistic": "mean_value", "arm": d["arm"], "n": d["n"],
                 "estimate": d["mean_value"]}
            )  # fmt: skip
            if d["visit"] == result.data.baseline:
                continue
            n = d["n_change"]
            rows.append(
                {**base, "statistic": "mean_change", "arm": d["arm"], "n": n,
                 "estimate": d["mean_change"], "ci_low": d["ci_low"], "ci_high": d["ci_high"]}
            )  # fmt: skip
            rows.append(
                {**base, "statistic": "sd_change", "arm": d["arm"], "n": n,
                 "estimate": d["sd_change"]}
            )  # fmt: skip
            rows.append({**base, "statistic": "srm", "arm": d["arm"], "n": n, "estimate": d["srm"]})
        for m in e.lsmeans:
            rows.append(
                {"endpoint": e.endpoint, "visit": m["visit"], "months": m["months"],
                 "statistic": "lsmean_change", "arm": m["arm"], "n": e.subjects[m["arm"]],
                 "estimate": m["estimate"], "se": m["se"], "df": m["df"],
                 "ci_low": m["ci_low"], "ci_high": m["ci_high"]}
            )  # fmt: skip
        n_both = e.subjects["control"] + e.subjects["treatment"]
        for d in e.differences:
            base = {"endpoint": e.endpoint, "visit": d["visit"], "months": d["months"]}
            rows.append(
                {**base, "statistic": "difference", "arm": DIFFERENCE, "n": n_both,
                 "estimate": d["estimate"], "se": d["se"], "df": d["df"],
                 "ci_low": d["ci_low"], "ci_high": d["ci_high"], "t_value": d["t_value"],
                 "p_value": d["p_value"], "note": "MMRM, Satterthwaite df"}
            )  # fmt: skip
            rows.append(
                {**base, "statistic": "cohens_d", "arm": DIFFERENCE, "n": n_both,
                 "estimate": d["cohens_d"], "note": "LS-mean difference / pooled SD of change"}
            )  # fmt: skip
    months = result.data.months
    for r in result.responders:
        note = f"change {r.direction} {r.threshold:g}"
        base = {"endpoint": r.endpoint, "visit": r.visit, "months": months[r.visit], "note": note}
        for arm, n, rate in (
            ("control", r.n_control, r.rate_control),
            ("treatment", r.n_treatment, r.rate_treatment),
        ):
            rows.append(
                {**base, "statistic": "responder_rate", "arm": arm, "n": n, "estimate": rate}
            )
        rows.append(
            {**base, "statistic": "risk_difference", "arm": DIFFERENCE,
             "n": r.n_control + r.n_treatment, "estimate": r.risk_difference,
             "ci_low": r.ci_low, "ci_high": r.ci_high, "p_value": r.p_value}
        )  # fmt: skip
    return rows


def _endpoint_summary(e: EndpointResult, primary: str) -> dict[str, Any]:
    main = e.primary(primary)
    return {
        "endpoint": e.endpoint,
        "subjects": e.subjects,
        "left_out": e.left_out,
        "observations": e.observations,
        "converged": e.mmrm.converged if e.mmrm else None,
        "error": e.error or None,
        "primary": None
        if main is None
        else {
            k: main[k]
            for k in ("visit", "estimate", "se", "df", "ci_low", "ci_high", "p_value", "cohens_d")
        },
        "differences": e.differences,
        "srm": [
            {"arm": d["arm"], "visit": d["visit"], "srm": d["srm"], "n": d["n_change"]}
            for d in e.descriptive
            if d["n_change"]
        ],
        "covariance": e.mmrm.covariance if e.mmrm else None,
        "covariance_visits": list(e.mmrm.visits) if e.mmrm else None,
        "power": e.power,
    }


def summary(result: TrialResult, files: dict[str, str]) -> dict[str, Any]:
    """The ``trial_summary.json`` document (JSON-ready: NaN as null)."""
    data = result.data
    return json_ready(
        {
            "kneescope_version": __version__,
            **result.settings,
            "source": data.source,
            "visits": list(data.visits),
            "months": data.months,
            "primary_visit": result.primary_visit,
            "alpha": result.alpha,
            "covariates": list(data.covariates),
            "subjects": {arm: data.subjects(arm) for arm in ("control", "treatment")},
            "excluded": data.excluded,
            "endpoints": [_endpoint_summary(e, result.primary_visit) for e in result.endpoints],
            "responders": [r.to_json() for r in result.responders],
            "seconds": result.seconds,
            "files": files,
        }
    )


def write_outputs(result: TrialResult, write: Writer) -> dict[str, Any]:
    """Write every file (module docstring); returns the summary document."""
    from kneescope.io.csv_table import write_csv_table
    from kneescope.io.parquet_table import write_parquet_table

    rows = [{k: _plain(v) for k, v in row.items()} for row in result_rows(result)]
    names = [c.name for c in RESULT_COLUMNS]
    files: dict[str, str] = {}
    files["results_csv"] = write(RESULTS_CSV, lambda tmp: write_csv_table(tmp, rows, names))
    files["results_parquet"] = write(
        RESULTS_PARQUET, lambda tmp: write_parquet_table(tmp, rows, RESULT_COLUMNS)
    )
    power_rows = [{k: _plain(v) for k, v in p.items()} for e in result.endpoints for p in e.power]
    files["power_csv"] = write(
        POWER_CSV, lambda tmp: write_csv_table(tmp, power_rows, list(POWER_COLUMNS))
    )
    level = 1.0 - result.alpha
    for e in result.endpoints:
        stem = figure_stem(e.endpoint)
        if not e.lsmeans:
            continue
        title = (
            f"{e.endpoint}: control n={e.subjects['control']}, treated n={e.subjects['treatment']}"
        )
        files[f"trajectories:{e.endpoint}"] = write(
            f"trajectories_{stem}.png",
            partial(_trajectories, e, title=title, level=level),
        )
        files[f"forest:{e.endpoint}"] = write(
            f"forest_{stem}.png", partial(_forest, e, title=title, level=level)
        )
    document = summary(result, {k: Path(v).name for k, v in files.items()})
    files["summary"] = write(SUMMARY_JSON, json.dumps(document, indent=2, allow_nan=False) + "\n")
    return document


def _trajectories(e: EndpointResult, path: Path, *, title: str, level: float) -> Path:
    from kneescope.capabilities.trial.figures import save_trajectory_figure

    return save_trajectory_figure(e.endpoint, e.lsmeans, path, title=title, level=level)


def _forest(e: EndpointResult, path: Path, *, title: str, level: float) -> Path:
    from kneescope.capabilities.trial.figures import save_forest_figure

    return save_forest_figure(e.endpoint, e.differences, path, title=title, level=level)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
