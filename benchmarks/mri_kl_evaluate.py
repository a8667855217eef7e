"""Evaluate the 3D MRI KL model against the radiograph KL model and a biomarker-only model on the
SAME knees (issue 16, A).

Subcommands (run from the repository root, ``OMP_NUM_THREADS=1 nice -n 15``):

``cohort --out DIR [--subjects 30] [--parts 3]``
    The test cohort: ``kneescope synth``'s generator (``generate_cohort``) with seed 16009
    (locked test seed), visit V00, the small MRI grid (48x128x128, the full field of view),
    bilateral PA knee films, no full-leg films; written in ``--parts`` appended parts (a part
    already there is kept).

``features --data DIR --seeds 16001,16002 --out CSV``
    The ``measure`` biomarkers (``biomarkers.measure.measure_knee``, no maps) of the label
    maps of knees cached by ``mri_kl_data.py``, one row per knee with ``name``, ``klg``.

``evaluate --cohort DIR --model MRI_MODEL --features-train CSV --features-val CSV
--json OUT``
    On every knee of the cohort's ``truth/knee_truth.csv``:

    * MRI: the DICOM series read with ``io.readers.read_volume`` and graded with
      ``mri_kl.grade_volumes`` (exactly what the ``mri_klg`` step does; the knee's side from
      the table);
    * radiographs: ``kneescope xray -m kl-xray-synth`` on the cohort's PA films (the whole
      pipeline: knee localisation, ROI, KL), joined by film and side;
    * biomarkers only: a multinomial logistic regression (scikit-learn, standardised features,
      L2; ``C`` chosen on the validation knees, seed 16002) on the ``measure`` columns of the
      knees' label maps, fitted on the training knees (seed 16001), temperature-calibrated
      on the validation knees;

    and reports for each: accuracy, quadratic kappa, AUC(KL >= 2), mean absolute grade error,
    ECE (15 bins), the confusion matrix (rows truth) and the per-knee probabilities.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

TEST_SEED = 16009


def cohort(args: argparse.Namespace) -> None:
    from kneescope.synth.cohort import CohortSpec
    from kneescope.synth.generate import generate_cohort

    out: Path = args.out
    done = 0
    truth = out / "truth" / "knee_truth.csv"
    if truth.exists():
        with truth.open(newline="") as fh:
            done = len({r["ParticipantID"] for r in csv.DictReader(fh)})
    step = max(1, args.subjects // args.parts)
    while done < args.subjects:
        k = min(step, args.subjects - done)
        spec = CohortSpec(subjects=k, visits=("V00",), size="small", seed=args.seed, full_leg=False)
        generate_cohort(spec, out, mode="append" if done else "new")
        done += k
        print(f"subjects {done}", flush=True)


def _measure_row(labels: Any, affine: Any, side: str) -> dict[str, float]:
    from kneescope.biomarkers.measure import measure_knee
    from kneescope.core import Volume

    row = measure_knee(Volume(labels, affine), side=side, with_maps=False).as_row()
    return {k: float(v) for k, v in row.items() if isinstance(v, int | float)}


def features(args: argparse.Namespace) -> None:
    from kneescope.io.csv_table import write_csv_table

    rows: list[dict[str, Any]] = []
    for seed in args.seeds.split(","):
        for path in sorted((args.data / seed).glob("*.npz")):
            if path.name.endswith(".tmp.npz"):
                continue
            with np.load(path) as knee:
                values = _measure_row(knee["labels"], knee["affine_ras"], str(knee["side"]))
                rows.append({"name": path.stem, "klg": int(knee["klg"]), **values})
    columns = sorted({k for r in rows for k in r} - {"name", "klg"})
    write_csv_table(args.out, rows, ["name", "klg", *columns])
    print(f"{len(rows)} knees, {len(columns)} columns -> {args.out}")


def _metrics(probs: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    from kneescope.capabilities.classification.calibration import expected_calibration_error
    from kneescope.capabilities.classification.grade_metrics import grade_summary

    summary = grade_summary(probs, truth)
    confusion = np.zeros((5, 5), dtype=int)
    np.add.at(confusion, (truth, probs.argmax(axis=1)), 1)
    return {
        **summary,
        "ece": expected_calibration_error(probs, truth),
        "confusion": confusion.tolist(),
        "n": len(truth),
    }


def _read_features(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = [c for c in rows[0] if c not in ("name", "klg")]
    x = np.array([[float(r[c]) if r[c] != "" else np.nan for c in columns] for r in rows])
    y = np.array([int(r["klg"]) for r in rows])
    return columns, x, y


def biomarker_model(train_csv: Path, val_csv: Path) -> tuple[Any, list[str], float, dict[str, Any]]:
    """(fitted pipeline, columns, temperature, choice record) of the biomarker-only model."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from kneescope.capabilities.classification.calibration import fit_temperature
    from kneescope.core.agreement import quadratic_kappa

    columns, x_train, y_train = _read_features(train_csv)
    val_columns, x_val, y_val = _read_features(val_csv)
    keep = [
        i
        for i, c in enumerate(columns)
        if c in val_columns and np.isfinite(x_train[:, i]).all() and np.std(x_train[:, i]) > 0
    ]
    cols = [columns[i] for i in keep]
    x_train = x_train[:, keep]
    x_val = x_val[:, [val_columns.index(c) for c in cols]]
    x_val = np.where(np.isfinite(x_val), x_val, np.nanmean(x_train, axis=0))
    tried = {}
    best = None
    for c in (0.01, 0.1, 1.0, 10.0):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
        model.fit(x_train, y_train)
        kappa = quadratic_kappa(y_val, model.predict(x_val), 5)
        tried[str(c)] = kappa
        if best is None or kappa > best[0]:
            best = (kappa, c, model)
    assert best is not None
    model = best[2]
    logits = model.decision_function(x_val)
    temperature = fit_temperature(np.asarray(logits, dtype=np.float64), y_val)
    record = {"C": best[1], "val_kappa_by_C": tried, "features": len(cols)}
    return model, cols, temperature, record


def _xray(cohort_dir: Path, out: Path) -> dict[tuple[str, str], np.ndarray]:
    """KL probabilities of kl-xray-synth per (participant, side) from ``kneescope xray``."""
    films: dict[str, str] = {}  # film folder -> participant (truth/xray_truth.csv)
    with (cohort_dir / "truth" / "xray_truth.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            films[str((cohort_dir / row["Folder"]).resolve())] = row["ParticipantID"]
    if not (out / "xray_knees.csv").exists():
        cmd = [sys.executable, "-m", "kneescope", "xray", "-m", "kl-xray-synth", "-o", str(out)]
        for film in sorted(films):
            cmd += ["-i", film]
        subprocess.run(cmd, check=True, capture_output=True)
    result: dict[tuple[str, str], np.ndarray] = {}
    with (out / "xray_knees.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            film = Path(row["film"]).resolve()  # a file of the film's series folder
            pid = films.get(str(film)) or films.get(str(film.parent))
            if pid is None or row.get("kl_p0", "") == "":
                continue  # not located or not gradable
            probs = np.array([float(row[f"kl_p{k}"]) for k in range(5)])
            result[(pid, row["knee_side"])] = probs
    return result


def evaluate(args: argparse.Namespace) -> None:
    from kneescope.capabilities.classification.calibration import apply_temperature
    from kneescope.capabilities.classification.mri_kl import grade_volumes, load_mri_kl_model
    from kneescope.io.digest import file_sha256
    from kneescope.io.readers import read_volume
    from kneescope.models.pretrained import resolve_model

    start = time.perf_counter()
    cohort_dir: Path = args.cohort
    with (cohort_dir / "truth" / "knee_truth.csv").open(newline="") as fh:
        knees = [r for r in csv.DictReader(fh) if r.get("Folder")]
    truth = np.array([int(r["KLG"]) for r in knees])
    model_path = resolve_model(args.model)
    classifier = load_mri_kl_model(model_path)
    mri = np.empty((len(knees), 5))
    for i, r in enumerate(knees):
        volume = read_volume(cohort_dir / r["Folder"])
        mri[i] = grade_volumes(classifier, [volume], [r["Side"]]).probabilities[0]
    mri_s = time.perf_counter() - start

    model, cols, temperature, record = biomarker_model(args.features_train, args.features_val)
    bio = np.empty((len(knees), 5))
    for i, r in enumerate(knees):
        labels = read_volume(cohort_dir / r["LabelPath"])
        values = _measure_row(labels.array, labels.affine_ras, r["Side"])
        x = np.array([[values.get(c, np.nan) for c in cols]])
        x = np.where(np.isfinite(x), x, model[0].mean_)
        bio[i] = apply_temperature(np.asarray(model.decision_function(x), float), temperature)

    xray = _xray(cohort_dir, args.xray_out)
    has_xray = np.array([(r["ParticipantID"], r["Side"]) in xray for r in knees])
    xr = np.array([xray.get((r["ParticipantID"], r["Side"]), np.full(5, np.nan)) for r in knees])

    spec = json.loads((cohort_dir / "synth_spec.json").read_text())
    seeds = sorted({part["spec"]["seed"] for part in spec.get("parts", [{"spec": spec}])})
    report: dict[str, Any] = {
        "cohort_seeds": seeds,
        "cohort": str(cohort_dir),
        "knees": len(knees),
        "klg_counts": np.bincount(truth, minlength=5).tolist(),
        "model": {"name": args.model, "sha256": file_sha256(model_path)},
        "mri": {**_metrics(mri, truth), "seconds_per_knee": mri_s / len(knees)},
        "biomarkers": {**_metrics(bio, truth), **record, "temperature": temperature},
        "xray_knees_graded": int(has_xray.sum()),
    }
    if has_xray.any():
        report["xray"] = _metrics(xr[has_xray], truth[has_xray])
        report["mri_on_xray_graded_knees"] = _metrics(mri[has_xray], truth[has_xray])
    report["per_knee"] = [
        {
            "participant": r["ParticipantID"],
            "side": r["Side"],
            "klg": int(r["KLG"]),
            "severity": float(r["Severity"]),
            "mri": mri[i].round(4).tolist(),
            "xray": None if not has_xray[i] else xr[i].round(4).tolist(),
            "biomarkers": bio[i].round(4).tolist(),
        }
        for i, r in enumerate(knees)
    ]
    report["summary"] = {
        k: {m: report[k][m] for m in ("accuracy", "quadratic_kappa", "auc_at_least_2", "ece")}
        for k in ("mri", "xray", "biomarkers")
        if k in report
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"{len(knees)} knees (cohort seed {seeds}), KL counts {report['klg_counts']}")
    print(f"{'model':12} {'n':>4} {'acc':>6} {'kappa':>6} {'AUC>=2':>6} {'ECE':>6} {'MAE':>6}")
    for key in ("mri", "xray", "mri_on_xray_graded_knees", "biomarkers"):
        if key in report:
            m = report[key]
            cells = [m[k] for k in ("accuracy", "quadratic_kappa", "auc_at_least_2", "ece")]
            text = " ".join("     -" if v is None else f"{v:>6.3f}" for v in cells)
            print(f"{key[:12]:12} {m['n']:>4} {text} {m['mean_abs_error']:>6.3f}")
    print(f"wrote {args.json}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("cohort")
    p.add_argument("--out", type=Path, default=Path("/work/data16/A/test16009"))
    p.add_argument("--subjects", type=int, default=30)
    p.add_argument("--seed", type=int, default=TEST_SEED, help="another seed: a plumbing check")
    p.add_argument("--parts", type=int, default=3)
    p = sub.add_parser("features")
    p.add_argument("--data", type=Path, default=Path("/work/data16/A/knees"))
    p.add_argument("--seeds", default="16001")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("evaluate")
    p.add_argument("--cohort", type=Path, default=Path("/work/data16/A/test16009"))
    p.add_argument("--model", default="/work/data16/A/kl-mri-synth.pt")
    p.add_argument("--features-train", type=Path, default=Path("/work/data16/A/feat_16001.csv"))
    p.add_argument("--features-val", type=Path, default=Path("/work/data16/A/feat_16002.csv"))
    p.add_argument("--xray-out", type=Path, default=Path("/work/data16/A/xray16009"))
    p.add_argument("--json", type=Path, default=Path("bench-out/mri_kl/evaluate_16009.json"))
    args = parser.parse_args()
    {"cohort": cohort, "features": features, "evaluate": evaluate}[args.command](args)


if __name__ == "__main__":
    main()
