"""Evaluate the holistic OA score on a synthetic cohort's pipeline run against the latent
severity, and time a 10,000-knee fit + application.

    # a run's results (one or several runs joined by knee-visit) + the cohort's truth table
    .venv/bin/python benchmarks/oa_score_eval.py eval -w WS --run mri --run xray \\
        --truth SYNTH/truth/knee_truth.csv [--features PATTERN ...] [--clinical] [--c 10] \\
        [--json OUT.json] [--figure OUT.png]

    # fit + application of 10,000 knee-visits (5-fold CV + the full model + scoring)
    .venv/bin/python benchmarks/oa_score_eval.py timing [--knees 10000] [--features 12]

``eval`` fits the score exactly as ``kneescope score`` does (features by column name, the
readers' KL grades ``XRKL`` from WS's catalog, subject-grouped 5-fold cross-validation) and
compares its **out-of-fold** score with the generator's latent severity ``Severity`` of
``truth/knee_truth.csv`` (knee-visits matched by ParticipantID, Visit, Side):

* ``spearman_severity``: Spearman correlation of the score with the severity, all knees;
* ``single_features``: the same |Spearman| for every input feature alone (the sign does not
  count against a feature), and ``best_single``;
* ``kl_grade``: Spearman of the reader's KL grade with the severity (the grade ties every
  knee of one grade, so inside a grade it says nothing);
* ``kl_grade_refined_by_score``: the reader's grade with its ties broken by the score (what
  the score adds to a known grade);
* ``within_klg``: per KL grade, the score's Spearman with the severity among the knees of
  that grade (and the best single feature's there);
* ``ece_kl2_oof`` (10 bins) and ``auc_kl2_oof`` of P(KL >= 2); the coefficients.

Targets (issue 16): Spearman >= 0.90 and >= best single + 0.05; within-KLG >= 0.5 for KLG
1-3; ECE <= 0.05; fit + application of 10,000 knees < 10 s. Later columns of other steps
(``mri_kl_*`` of ``mri_klg``, ``finding_*`` of ``mri_findings``) are picked up by name when
the run has them.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 5 or np.unique(a[ok]).size < 2 or np.unique(b[ok]).size < 2:
        return math.nan
    return float(spearmanr(a[ok], b[ok]).statistic)


def _truth(path: Path) -> dict[tuple[str, str, str], float]:
    with path.open(newline="") as handle:
        return {
            (r["ParticipantID"], r["Visit"], r["Side"]): float(r["Severity"])
            for r in csv.DictReader(handle)
        }


def evaluate(
    workspace: Path,
    runs: list[str],
    truth_csv: Path,
    *,
    features: list[str] | None,
    clinical: bool,
    c: float | None,
    figure: Path | None,
) -> dict[str, Any]:
    from kneescope.capabilities.oa_score.features import DEFAULT_FEATURES
    from kneescope.capabilities.oa_score.score import (
        DEFAULT_C,
        ScoreOptions,
        assemble,
        fit_score,
        reader_grades,
        save_reliability_figure,
    )
    from kneescope.catalog.view import CatalogView
    from kneescope.cohort.results_table import read_run_results
    from kneescope.workspace import Workspace

    c = DEFAULT_C if c is None else c
    ws = Workspace.resolve(workspace)
    view = CatalogView.for_workspace(ws)
    tables = [read_run_results(ws.root / "runs" / r) for r in runs]
    options = ScoreOptions(
        features=tuple(features) if features else DEFAULT_FEATURES, clinical=clinical, c=c
    )
    started = time.perf_counter()
    kf = assemble(tables, view, options)
    grades = reader_grades(view, kf.knees)
    result = fit_score(kf, grades, options, {"runs": runs})
    fit_s = time.perf_counter() - started
    truth = _truth(truth_csv)
    keys = list(zip(kf.knees["subject"], kf.knees["visit"], kf.knees["side"], strict=True))
    severity = np.array([truth.get(k, math.nan) for k in keys])
    score = result.scores["oa_score"].to_numpy()
    oof = result.scores["oa_fold"].to_numpy() >= 0
    use = oof & np.isfinite(severity)
    singles = {
        name: abs(_spearman(kf.knees[name].to_numpy()[use], severity[use])) for name in kf.features
    }
    best_name = max(singles, key=lambda n: -1 if math.isnan(singles[n]) else singles[n])
    within: dict[str, Any] = {}
    for grade in range(5):
        inside = use & (grades == grade)
        if inside.sum() < 5:
            continue
        best_inside = max(
            (abs(_spearman(kf.knees[n].to_numpy()[inside], severity[inside])), n)
            for n in kf.features
        )
        within[str(grade)] = {
            "knees": int(inside.sum()),
            "score": _spearman(score[inside], severity[inside]),
            "best_single": best_inside[0],
            "best_single_feature": best_inside[1],
        }
    rho = _spearman(score[use], severity[use])
    # the reader's grade with its ties broken by the score (rank inside the grade in (0, 1))
    refined = np.full(len(score), np.nan)
    for grade in np.unique(grades[use]):
        inside = np.nonzero(use & (grades == grade))[0]
        order = np.argsort(np.argsort(score[inside]))
        refined[inside] = grade + (order + 1) / (len(inside) + 1)
    summary = {
        "workspace": str(ws.root),
        "runs": runs,
        "truth": str(truth_csv),
        "knees": int(use.sum()),
        "subjects": result.summary["subjects"],
        "features": list(kf.features),
        "dropped_features": kf.dropped,
        "c": c,
        "clinical": clinical,
        "spearman_severity": rho,
        "single_features": singles,
        "best_single": {"feature": best_name, "spearman": singles[best_name]},
        "margin_over_best_single": rho - singles[best_name],
        "kl_grade": _spearman(grades[use], severity[use]),
        "kl_grade_refined_by_score": _spearman(refined[use], severity[use]),
        "within_klg": within,
        "ece_kl2_oof": result.summary.get("ece_kl2_oof"),
        "auc_kl2_oof": result.summary.get("auc_kl2_oof"),
        "spearman_reader_kl_oof": result.summary.get("spearman_reader_kl_oof"),
        "coefficients_per_sd": {c["feature"]: c["coefficient_per_sd"] for c in result.coefficients},
        "fit_seconds": fit_s,
    }
    if figure is not None and result.reliability:
        save_reliability_figure(
            result.reliability,
            figure,
            f"OA score P(KL >= 2), out-of-fold, {use.sum()} knees: "
            f"ECE {summary['ece_kl2_oof']:.3f}",
        )
    return summary


def timing(knees: int, features: int = 12, seed: int = 0) -> dict[str, Any]:
    """Fit (5-fold CV + full model) and apply the score to a synthetic ``knees``-row table."""
    import pandas as pd

    from kneescope.capabilities.oa_score.features import knee_features
    from kneescope.capabilities.oa_score.score import ScoreOptions, apply_score, fit_score

    rng = np.random.default_rng(seed)
    d = rng.uniform(0, 4.99, knees)
    n_subjects = knees // 4
    table = pd.DataFrame(
        {
            "subject": [f"S{i % n_subjects:06d}" for i in range(knees)],
            "visit": [("V00", "V01")[(i // n_subjects) % 2] for i in range(knees)],
            "side": [("right", "left")[(i // (2 * n_subjects)) % 2] for i in range(knees)],
            **{
                f"f{j:02d}_cartilage_thickness_mean_mm": 2.0
                - 0.1 * (j + 1) * d
                + rng.normal(0, 0.5, knees)
                for j in range(features)
            },
        }
    )
    grades = np.floor(d)
    started = time.perf_counter()
    kf = knee_features([table])
    order = {
        (s, v, sd): i
        for i, (s, v, sd) in enumerate(zip(table.subject, table.visit, table.side, strict=True))
    }
    g = np.array(
        [
            grades[order[k]]
            for k in zip(kf.knees.subject, kf.knees.visit, kf.knees.side, strict=True)
        ]
    )
    fitted = fit_score(kf, g, ScoreOptions(), {})
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    applied = apply_score(fitted.model, [table], None)
    apply_s = time.perf_counter() - started
    return {
        "knees": len(kf.knees),
        "features": features,
        "folds": fitted.summary["folds"],
        "fit_seconds": fit_s,
        "apply_seconds": apply_s,
        "total_seconds": fit_s + apply_s,
        "scored": len(applied.scores),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval")
    ev.add_argument("-w", "--workspace", type=Path, required=True)
    ev.add_argument("--run", action="append", required=True)
    ev.add_argument("--truth", type=Path, required=True)
    ev.add_argument("--features", nargs="*", default=None)
    ev.add_argument("--clinical", action="store_true")
    ev.add_argument("--c", type=float, default=None, help="default: the score's DEFAULT_C")
    ev.add_argument("--json", type=Path)
    ev.add_argument("--figure", type=Path)
    tm = sub.add_parser("timing")
    tm.add_argument("--knees", type=int, default=10000)
    tm.add_argument("--features", type=int, default=12)
    tm.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.command == "eval":
        out = evaluate(
            args.workspace,
            args.run,
            args.truth,
            features=args.features,
            clinical=args.clinical,
            c=args.c,
            figure=args.figure,
        )
    else:
        timing(200)  # warm the imports (sklearn, scipy) so that the figure is the work itself
        out = timing(args.knees, args.features)
    text = json.dumps(out, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
