"""Outcome prediction from baseline on the synthetic generator's endpoint table, against the
generator's oracle.

    .venv/bin/python benchmarks/outcome_prediction.py --seed 17001 [--subjects 2000] \\
        [--draws 200] [--n-boot 1000] [--ceiling-subjects 8000] [--json OUT.json] \\
        [--out DIR]

What it does (issue 17, item 2):

1. ``kneescope.synth.endpoints.endpoint_table`` of ``--subjects`` subjects, visits V00, V01,
   V03, V05, V06 (0-48 months), seed ``--seed`` (measurement noise on);
2. the four outcomes of ``kneescope.capabilities.prediction`` (incident OA and KL progression
   within 48 months, medial JSW loss >= 0.7 mm at 48 months, cMFTC thickness loss beyond the
   SDC at 24 months), each modelled from baseline features (clinical, KL/JSN grades, JSW,
   regional cartilage thickness, WOMAC pain; the contralateral knee's too) by logistic
   regression, gradient boosting and Cox, 5-fold cross-validation grouped by subject;
   AUC and AP with subject-bootstrap 95 % CIs;
3. references on the same knees: ``oracle`` = P(event | the knee's latent baseline state) by
   Monte Carlo over the generator's post-baseline model (``--draws`` futures per knee),
   ``oracle_rate`` = the same with the knee's true initial rate known (an upper bound no
   baseline model reaches), and ``ceiling_observable`` = a logistic and a gradient-boosting
   model fitted on the same baseline features of an independent cohort of
   ``--ceiling-subjects`` subjects (seed ``--seed + 1000``), the better of the two on these
   knees: what the *visible* baseline data allow with a large sample;
4. per outcome and model: AUC [95 % CI], AP [95 % CI], the AUC gap to ``oracle`` and to
   ``ceiling_observable`` with paired bootstrap CIs.

Seeds: validation 17001-17099 (design choices), locked test 17101 (run once).
Target (issue 17): AUC within 0.03 of the oracle AUC on the same knees.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kneescope.capabilities.prediction import models as prediction_models
from kneescope.capabilities.prediction.config import PredictionConfig
from kneescope.capabilities.prediction.evaluate import predict_outcomes
from kneescope.capabilities.prediction.oracle import oracle_probabilities
from kneescope.capabilities.prediction.outcomes import baseline_features, knee_outcome, prepare
from kneescope.capabilities.prediction.outputs import write_outputs
from kneescope.io.folder_writer import folder_writer, json_ready
from kneescope.synth.cohort import CohortSpec
from kneescope.synth.endpoints import endpoint_table

VISITS = ("V00", "V01", "V03", "V05", "V06")


def cohort(seed: int, subjects: int, cache: Path | None) -> pd.DataFrame:
    """The endpoint table (cached as parquet in ``cache`` when given)."""
    path = cache / f"endpoints_{seed}_{subjects}.parquet" if cache else None
    if path is not None and path.is_file():
        return pd.read_parquet(path)
    spec = CohortSpec(
        subjects=subjects, visits=VISITS, seed=seed, mri=False, radiographs=False, full_leg=False
    )
    table = endpoint_table(spec)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(path)
    return table


def ceiling_scores(
    train: pd.DataFrame, test: pd.DataFrame, config: PredictionConfig
) -> dict[str, pd.Series]:
    """Per outcome: the large-sample model's probabilities on ``test``'s knees at risk (the
    better on ``test`` of a logistic and a gradient-boosting model fitted on ``train``)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from kneescope.stats.discrimination import roc_auc

    tr = prepare(train, config)
    te = prepare(test, config)
    f_tr, names = baseline_features(tr, config)
    f_te, names_te = baseline_features(te, config)
    assert names == names_te
    out: dict[str, pd.Series] = {}
    for name in config.outcomes:
        k_tr = knee_outcome(tr, name, config).knees.merge(f_tr, on=["subject", "side"])
        k_te = knee_outcome(te, name, config).knees.merge(f_te, on=["subject", "side"])
        x_tr = k_tr.loc[:, list(names)].to_numpy(np.float64)
        x_te = k_te.loc[:, list(names)].to_numpy(np.float64)
        y_tr = k_tr["event"].to_numpy()
        y_te = k_te["event"].to_numpy(np.float64)
        best: tuple[float, np.ndarray] = (-1.0, np.zeros(len(k_te)))
        for clf in (
            prediction_models.make_classifier("logistic"),
            HistGradientBoostingClassifier(
                learning_rate=0.05, max_iter=400, max_leaf_nodes=15, min_samples_leaf=50
            ),
        ):
            with prediction_models.single_thread():
                clf.fit(x_tr, y_tr)
                p = clf.predict_proba(x_te)[:, 1]
            auc = roc_auc(y_te, p)
            if auc > best[0]:
                best = (auc, p)
        index = pd.MultiIndex.from_frame(k_te.loc[:, ["subject", "side"]])
        out[name] = pd.Series(best[1], index=index)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seed", type=int, default=17001)
    ap.add_argument("--subjects", type=int, default=2000)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--ceiling-subjects", type=int, default=8000, help="0: no ceiling model")
    ap.add_argument("--models", default="logistic,gbm,cox")
    ap.add_argument("--spline-knots", type=int, default=None, help="design experiments only")
    ap.add_argument("--cache", type=Path, default=None, help="folder caching endpoint tables")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write the prediction files here")
    args = ap.parse_args(argv)
    if args.spline_knots is not None:
        prediction_models.LOGISTIC_SPLINE_KNOTS = args.spline_knots
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    table = cohort(args.seed, args.subjects, args.cache)
    timings["endpoint_table_s"] = time.perf_counter() - t0
    config = PredictionConfig(
        models=tuple(args.models.split(",")),  # type: ignore[arg-type]
        n_boot=args.n_boot,
        seed=args.seed,
    )
    t0 = time.perf_counter()
    oracle = oracle_probabilities(table, config, draws=args.draws, seed=args.seed)
    oracle_rate = oracle_probabilities(
        table, config, draws=args.draws, seed=args.seed, known_rate=True
    )
    timings["oracle_s"] = time.perf_counter() - t0
    refs: dict[str, dict[str, pd.Series]] = {
        k: {"oracle": oracle[k], "oracle_rate": oracle_rate[k]} for k in oracle
    }
    if args.ceiling_subjects:
        t0 = time.perf_counter()
        train = cohort(args.seed + 1000, args.ceiling_subjects, args.cache)
        ceiling = ceiling_scores(train, table, config)
        for k, v in ceiling.items():
            refs[k]["ceiling_observable"] = v
        timings["ceiling_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = predict_outcomes(table, config, refs)
    timings["predict_s"] = time.perf_counter() - t0
    if args.out is not None:
        write_outputs(result, folder_writer(args.out))
    print(
        f"seed {args.seed}, {args.subjects} subjects, {len(table)} knee-visits; "
        f"oracle {args.draws} draws/knee; bootstrap {args.n_boot}"
    )
    report: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "timings": timings,
    }
    for name, outcome in result.outcomes.items():
        info = outcome.to_json()
        report[name] = info
        print(f"\n{name}: {info['definition']}")
        print(f"  {info['knees']} knees at risk, {info['events']} events {info['skipped']}")
        for m in info["metrics"]:
            gap = m.get("auc_gap_oracle")
            gap_ci = m.get("auc_gap_oracle_ci", [math.nan, math.nan])
            gap_c = m.get("auc_gap_ceiling_observable")
            gap_c_ci = m.get("auc_gap_ceiling_observable_ci", [math.nan, math.nan])
            line = (
                f"  {m['name']:<19} AUC {m['auc']:.3f} [{m['auc_ci'][0]:.3f}, "
                f"{m['auc_ci'][1]:.3f}]  AP {m['ap']:.3f} [{m['ap_ci'][0]:.3f}, "
                f"{m['ap_ci'][1]:.3f}]"
            )
            if gap is not None:
                line += f"  gap to oracle {gap:+.3f} [{gap_ci[0]:+.3f}, {gap_ci[1]:+.3f}]"
            if gap_c is not None:
                line += f"  to ceiling {gap_c:+.3f} [{gap_c_ci[0]:+.3f}, {gap_c_ci[1]:+.3f}]"
            if "c_index" in m:
                line += f"  C-index {m['c_index']:.3f}"
            if "ece" in m:
                line += f"  ECE {m['ece']:.3f}"
            print(line)
    print("\ntimings: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    if args.json is not None:
        args.json.write_text(json.dumps(json_ready(report), indent=2, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
