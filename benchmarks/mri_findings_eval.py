"""Sensitivity and specificity of the MRI findings per finding (issue 16).

Reads the knees cached by ``benchmarks/mri_findings_data.py`` (image, truth label map and
exact findings truth). For every knee it measures a label map (``measure_knee``) and runs
the detector (:func:`kneescope.biomarkers.findings.detect_findings`), on

- the truth label map (``--labels truth``, every cached knee), and/or
- the label map of the shipped segmentation model (``--labels model``, the first ``--seg``
  knees of each stratum in file order: a smaller sample, CPU inference; ``--segment-only``
  segments and caches them without reading any truth).

Each knee gives one case per compartment (medial, lateral) and finding. A finding is
positive in the truth as :mod:`kneescope.synth.findings_truth` defines it (full-thickness
defect: denuded area >= 10 mm^2; extrusion > 3 mm; BML, tear: present). Detection: the
detector's sizes against :class:`~kneescope.biomarkers.findings.FindingsConfig`'s
thresholds (or ``--tune``: for each finding, the threshold with the highest sensitivity
among those with specificity >= 0.90 on these knees, halfway between neighbouring values;
used on the validation seed only). A finding that cannot be measured (NaN) counts as not
detected and is counted. Usage::

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/mri_findings_eval.py \\
        --data /work/data16/B/16002 --labels truth --tune --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from kneescope.biomarkers.findings import FindingsConfig, detect_findings
from kneescope.biomarkers.measure import measure_knee
from kneescope.core import Volume

COMPARTMENTS = ("medial", "lateral")
SIZE = {  # finding -> (detector size column, config threshold field, strict ">")
    "ftd": ("defect_{c}_area_mm2", "defect_area_mm2", False),
    "bml": ("bml_{c}_volume_mm3", "bml_volume_mm3", False),
    "tear": ("tear_{c}_volume_mm3", "tear_volume_mm3", False),
    "extrusion": ("{c}_meniscus_extrusion_mm", "extrusion_mm", True),
}


def segment(image: Volume, side: str) -> Volume:
    from kneescope.inference.segmenter import SegmentConfig, Segmenter
    from kneescope.models.pretrained import DEFAULT_MODEL, step_model_path

    global _SEGMENTER
    if _SEGMENTER is None:
        _SEGMENTER = Segmenter(step_model_path(None, DEFAULT_MODEL), SegmentConfig())
    labels: Volume = _SEGMENTER.segment(image, side=side).labels
    return labels


_SEGMENTER: Any = None


def model_labels(npz: Path, doc: dict[str, Any]) -> Volume:
    """The shipped model's label map of a cached knee (segmented once, cached beside it as
    ``<key>.model-labels.npz``)."""
    cache = npz.with_suffix(".model-labels.npz")
    meta = {"side": doc["side"]}
    if cache.exists():
        z = np.load(cache)
        return Volume(z["labels"], z["affine"], meta)
    z = np.load(npz)
    labels = segment(Volume(z["image"], z["affine"], meta), doc["side"])
    np.savez_compressed(cache, labels=labels.array, affine=labels.affine_ras)
    return labels


def knee_features(npz: Path, doc: dict[str, Any], source: str) -> dict[str, float]:
    """Detector output + measured extrusion of one cached knee on ``source`` labels."""
    z = np.load(npz)
    meta = {"side": doc["side"]}
    image = Volume(z["image"], z["affine"], meta)
    labels = Volume(z["labels"], z["affine"], meta)
    if source == "model":
        labels = model_labels(npz, doc)
    measured = measure_knee(labels, doc["side"], with_maps=False).values
    found = detect_findings(image.array, labels.array, labels.affine_ras, measured)
    for c in COMPARTMENTS:
        found[f"{c}_meniscus_extrusion_mm"] = float(measured[f"{c}_meniscus_extrusion_mm"])
    return found


def cases(rows: list[dict[str, Any]], finding: str) -> tuple[np.ndarray, np.ndarray]:
    """(truth 0/1, detector size; NaN = not measurable) over knees x compartments."""
    col = SIZE[finding][0]
    truth = [r["truth"][f"finding_{finding}_{c}"] for r in rows for c in COMPARTMENTS]
    size = [r["found"][col.format(c=c)] for r in rows for c in COMPARTMENTS]
    return np.asarray(truth, dtype=float), np.asarray(size, dtype=float)


def rates(truth: np.ndarray, called: np.ndarray) -> dict[str, float]:
    pos, neg = truth == 1, truth == 0
    return {
        "positives": int(pos.sum()),
        "negatives": int(neg.sum()),
        "sensitivity": float(called[pos].mean()) if pos.any() else float("nan"),
        "specificity": float((~called[neg]).mean()) if neg.any() else float("nan"),
    }


def call(size: np.ndarray, threshold: float, strict: bool) -> np.ndarray:
    ok = np.isfinite(size)
    s = np.where(ok, size, -np.inf)
    return (s > threshold) if strict else (s >= threshold)


def tune(truth: np.ndarray, size: np.ndarray, strict: bool, min_spec: float = 0.9) -> float:
    """Threshold with the best (sensitivity, specificity) among those with specificity >=
    ``min_spec``; candidates halfway between neighbouring sizes, and of the equally good ones
    the middle one (the middle of the gap between the classes)."""
    values = np.unique(size[np.isfinite(size)])
    cands = np.concatenate([[values[0] - 1.0], 0.5 * (values[1:] + values[:-1]), [values[-1]]])
    scored = []
    for t in cands:
        r = rates(truth, call(size, float(t), strict))
        if r["specificity"] >= min_spec:
            scored.append(((r["sensitivity"], r["specificity"]), float(t)))
    if not scored:
        return float(cands[-1])
    best = max(s for s, _ in scored)
    ties = [t for s, t in scored if s == best]
    return float(ties[len(ties) // 2])


def grade_agreement(rows: list[dict[str, Any]], finding: str) -> dict[str, float]:
    """Exact agreement of the size grade among compartments positive in truth and detected."""
    both = [
        (r["truth"][f"finding_{finding}_{c}_grade"], r["found"][f"finding_{finding}_{c}_grade"])
        for r in rows
        for c in COMPARTMENTS
        if r["truth"][f"finding_{finding}_{c}"] == 1 and r["found"][f"finding_{finding}_{c}"] == 1
    ]
    if not both:
        return {"n": 0, "exact": float("nan")}
    return {"n": len(both), "exact": float(np.mean([a == b for a, b in both]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--labels", choices=("truth", "model"), default="truth")
    ap.add_argument("--seg", type=int, default=2, help="model labels: knees per stratum")
    ap.add_argument("--tune", action="store_true", help="choose thresholds (validation only)")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="also report a finding at another threshold declared beforehand, e.g. "
        "defect_area_mm2=30 (repeatable; the defaults stay the primary result)",
    )
    ap.add_argument(
        "--segment-only",
        action="store_true",
        help="model labels: only segment and cache the sample's knees (no truth is read)",
    )
    args = ap.parse_args()
    docs = sorted(args.data.glob("*.json"))
    rows: list[dict[str, Any]] = []
    per_stratum: dict[str, int] = {}
    cpu = 0.0
    for path in docs:
        doc = json.loads(path.read_text())
        d = doc["severity"]
        stratum = "high" if d >= 3.4 else "mid" if d >= 2.3 else "low"
        if args.labels == "model":
            if per_stratum.get(stratum, 0) >= args.seg:
                continue
            per_stratum[stratum] = per_stratum.get(stratum, 0) + 1
        t0 = time.process_time()
        if args.segment_only:
            model_labels(path.with_suffix(".npz"), doc)
            cpu += time.process_time() - t0
            print(f"{path.stem} segmented ({cpu:.0f} s cpu so far)", flush=True)
            continue
        found = knee_features(path.with_suffix(".npz"), doc, args.labels)
        cpu += time.process_time() - t0
        rows.append({"key": path.stem, "severity": d, "truth": doc["truth"], "found": found})
    if args.segment_only:
        return
    cfg = FindingsConfig()
    also: dict[str, list[float]] = {}
    for item in args.also:
        field, _, value = item.partition("=")
        if field not in {f for _, f, _ in SIZE.values()}:
            ap.error(f"--also {item}: unknown threshold field")
        also.setdefault(field, []).append(float(value))
    report: dict[str, Any] = {
        "data": str(args.data),
        "labels": args.labels,
        "knees": len(rows),
        "cpu_s_new": round(cpu, 1),
        "findings": {},
    }
    print(f"{args.data} labels={args.labels} knees={len(rows)} (new cpu {cpu:.0f} s)")
    for finding, (_, field, strict) in SIZE.items():
        truth, size = cases(rows, finding)
        threshold = float(getattr(cfg, field))
        tuned = tune(truth, size, strict) if args.tune else None
        r = rates(truth, call(size, threshold, strict))
        entry: dict[str, Any] = {
            "threshold": threshold,
            **r,
            "not_measurable": int((~np.isfinite(size)).sum()),
        }
        for value in also.get(field, []):
            a = rates(truth, call(size, value, strict))
            entry.setdefault("also", {})[str(value)] = a
            print(
                f"  {finding:9s} also {value:7.2f}: pos {a['positives']:3d} neg "
                f"{a['negatives']:3d}  sens {a['sensitivity']:.3f} spec {a['specificity']:.3f}"
            )
        if tuned is not None:
            entry["tuned_threshold"] = tuned
            entry["at_tuned"] = rates(truth, call(size, tuned, strict))
        if finding in ("ftd", "bml"):
            entry["grade_agreement"] = grade_agreement(rows, finding)
        entry["cases"] = [
            [
                r["key"],
                c,
                r["truth"][f"finding_{finding}_{c}"],
                r["found"][SIZE[finding][0].format(c=c)],
            ]
            for r in rows
            for c in COMPARTMENTS
        ]
        report["findings"][finding] = entry
        line = (
            f"  {finding:9s} thr {threshold:7.2f}  pos {r['positives']:3d} neg {r['negatives']:3d}"
            f"  sens {r['sensitivity']:.3f} spec {r['specificity']:.3f}"
            f"  n/m {entry['not_measurable']}"
        )
        if tuned is not None:
            t = entry["at_tuned"]
            line += (
                f"  | tuned {tuned:.2f}: sens {t['sensitivity']:.3f} spec {t['specificity']:.3f}"
            )
        print(line)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
