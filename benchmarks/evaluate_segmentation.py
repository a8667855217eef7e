"""Accuracy of a segmentation model on a locked evaluation set (benchmarks/model_test_sets.py).

For each knee of the set: segment its image with the library's Segmenter (the path
``kneescope segment`` takes, its default options), then score the label map against the
set's exact one (``kneescope.inference.evaluation``): Dice and HD95 (95th-percentile symmetric
surface distance, mm) per structure; measure the predicted map with
``kneescope.biomarkers.measure_knee`` (as ``kneescope measure`` does) and compare each plate's
mean cartilage thickness with three references: the *visible* truth
(``thickness_mean_visible_mm``, the one docs/biomarkers.md and the demo use for label-map
measurements; ``thickness_error_mm``, the one the model cards show, unless
``--thickness-truth plain``), the *plain* truth (``thickness_mean_mm``) and the measurement of
the set's exact label map (what a perfect segmentation would read: the part of the error that
is the model's own). Reports mean and worst knee per structure and plate, per
out-of-distribution variant as well, and every knee's row.

The set's manifest is checked first: a set whose files changed is refused.

    .venv/bin/python benchmarks/evaluate_segmentation.py --model M --set DIR \\
        [--threads 2] [--json OUT] [--sha256 HEX] [--device auto] [--overwrite]
    .venv/bin/python benchmarks/evaluate_segmentation.py --truth-labels --set DIR --json OUT

``--model``: a model file, or a shipped model's name. ``--truth-labels`` scores the set's own
label maps instead of a model's: Dice 1 and HD95 0 by construction, and the thickness errors
are the floor of the measurement on this grid (what a perfect segmentation would get).
Prints Markdown tables; ``--json`` writes everything (refuses to replace a file without
``--overwrite``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kneescope.errors import InputError, KneescopeError

PLATES = ("femoral", "medial_tibial", "lateral_tibial", "patellar")


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise InputError(f"{path} not found; is this a set made by model_test_sets.py?")
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def resolve_model(model: str) -> Path:
    """A model file path, else a shipped model's name (kneescope.models.pretrained)."""
    path = Path(model).expanduser()
    if path.is_file():
        return path.absolute()
    try:
        from kneescope.models.pretrained import resolve_model as shipped
    except ImportError:
        raise InputError(f"model {model} not found; give the model file's path") from None
    return shipped(model)


ERRORS = {
    "thickness_error_visible_mm": "visible truth",
    "thickness_error_plain_mm": "plain truth",
    "thickness_error_vs_label_map_mm": "exact label map, measured",
}
"""Per-plate thickness errors of every knee: the predicted map's measurement minus ..."""


def _measure(labels: Any, side: str) -> tuple[dict[str, float], bool, str]:
    """Biomarker values, qc_ok and the error line (when nothing could be measured)."""
    from kneescope.biomarkers import measure_knee

    try:
        measured = measure_knee(labels, side=side, with_maps=False)
    except InputError as exc:  # e.g. no femur found: nothing can be measured
        return {}, False, str(exc)
    return dict(measured.values), bool(measured.qc["qc_ok"]), ""


def evaluate_knee(
    name: str,
    side: str,
    pred: Any,
    truth_labels: Any,
    truth_plates: dict[str, dict[str, float]],
    reference: str = "visible",
) -> dict[str, Any]:
    """Scores of one knee's predicted label map (a Volume on the truth's grid).

    ``thickness_error_mm`` is the error against the ``reference`` truth (``visible`` or
    ``plain``); :data:`ERRORS` are all three references (the exact label map's measurement is
    what a perfect segmentation would read: the error that is the model's own).
    """
    from kneescope.core.geometry import spacing_from_affine
    from kneescope.inference.evaluation import (
        STRUCTURES,
        dice_per_label,
        hd95_per_label,
        thickness_errors,
    )

    t0 = time.perf_counter()
    p, t = pred.array, truth_labels.array
    dice = dice_per_label(p, t)
    hd95 = hd95_per_label(p, t, spacing_from_affine(truth_labels.affine_ras))
    metric_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    values, qc_ok, measure_error = _measure(pred, side)
    measure_s = time.perf_counter() - t1
    exact = values if pred is truth_labels else _measure(truth_labels, side)[0]
    exact_thickness = {
        pl: exact.get(f"{pl}_cartilage_thickness_mean_mm", math.nan) for pl in PLATES
    }
    visible = {pl: truth_plates[pl]["thickness_mean_visible_mm"] for pl in PLATES}
    plain = {pl: truth_plates[pl]["thickness_mean_mm"] for pl in PLATES}
    errors = {
        "thickness_error_visible_mm": thickness_errors(values, visible, PLATES),
        "thickness_error_plain_mm": thickness_errors(values, plain, PLATES),
        "thickness_error_vs_label_map_mm": thickness_errors(values, exact_thickness, PLATES),
    }
    return {
        "name": name,
        "side": side,
        "dice": {STRUCTURES[c]: v for c, v in dice.items()},
        "hd95_mm": {STRUCTURES[c]: v for c, v in hd95.items()},
        "thickness_error_mm": errors[f"thickness_error_{reference}_mm"],
        **errors,
        "thickness_measured_mm": {
            pl: values.get(f"{pl}_cartilage_thickness_mean_mm", math.nan) for pl in PLATES
        },
        "thickness_label_map_mm": exact_thickness,
        "thickness_truth_visible_mm": visible,
        "thickness_truth_plain_mm": plain,
        "qc_ok": qc_ok,
        "measure_error": measure_error,
        "seconds": {"metrics": metric_s, "measure": measure_s},
    }


def summary_of(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    from kneescope.inference.evaluation import summarise

    keys = ("thickness_error_mm", *ERRORS)
    out: dict[str, Any] = {
        "knees": len(rows),
        "qc_ok": sum(bool(r["qc_ok"]) for r in rows),
        "dice": summarise([r["dice"] for r in rows], kind="dice"),
        "hd95_mm": summarise([r["hd95_mm"] for r in rows], kind="hd95"),
        **{key: summarise([r[key] for r in rows], kind="error") for key in keys},
    }
    for key in ("dice", "hd95_mm", *keys):
        for entry in out[key].values():  # the index -> the knee's name
            k = entry.pop("worst_knee")
            entry["worst_knee"] = rows[k]["name"] if k >= 0 else ""
    return out


def _fmt(v: float, digits: int = 3, sign: bool = False) -> str:
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def markdown(summary: dict[str, Any], title: str, reference: str) -> str:
    lines = [
        f"### {title}: {summary['knees']} knees, {summary['qc_ok']} QC-pass",
        "",
        "| structure | Dice mean | Dice worst | HD95 mm mean | HD95 mm worst | missing |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in summary["dice"].items():
        h = summary["hd95_mm"][name]
        lines.append(
            f"| {name} | {_fmt(d['mean'])} | {_fmt(d['worst'])} | {_fmt(h['mean'], 2)} "
            f"| {_fmt(h['worst'], 2)} | {h['missing']} |"
        )
    lines += [
        "",
        f"Mean cartilage thickness error, mm (against the {reference} truth; beside it the mean "
        "|error| against the other references):",
        "",
        "| plate | mean abs | bias | worst knee | unmeasured | "
        + " | ".join(f"vs {v}" for v in ERRORS.values())
        + " |",
        "|---|---|---|---|---|" + "---|" * len(ERRORS),
    ]
    for plate, e in summary["thickness_error_mm"].items():
        others = " | ".join(
            f"{_fmt(summary[k][plate]['mean'])} ({_fmt(summary[k][plate]['bias'], sign=True)})"
            for k in ERRORS
        )
        lines.append(
            f"| {plate} | {_fmt(e['mean'])} | {_fmt(e['bias'], sign=True)} | {_fmt(e['worst'])} "
            f"| {e['missing']} | {others} |"
        )
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    """NaN -> null, inf -> "inf" (strict JSON has neither)."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def run(args: argparse.Namespace) -> dict[str, Any]:
    from kneescope.inference.evaluation import verify_set_manifest
    from kneescope.io import read_volume
    from kneescope.io.atomic import atomic_write_text
    from kneescope.io.digest import file_sha256

    folder: Path = args.set.expanduser().absolute()
    if args.json is not None and args.json.exists() and not args.overwrite:
        raise InputError(f"{args.json} exists; pass --overwrite to replace it")
    if (args.model is None) == (not args.truth_labels):
        raise InputError("give --model M or --truth-labels (one of them)")
    t0 = time.perf_counter()
    manifest = verify_set_manifest(folder, args.sha256)
    print(
        f"{folder}: intact ({time.perf_counter() - t0:.1f} s), set_sha256 {manifest['set_sha256']}",
        flush=True,
    )
    knees = _read_csv(folder / "knees.csv")
    truth: dict[str, dict[str, dict[str, float]]] = {}
    for row in _read_csv(folder / "truth.csv"):
        truth.setdefault(row["name"], {})[row["plate"]] = {
            k: float(v) for k, v in row.items() if k not in ("name", "plate")
        }
    if args.limit is not None:
        knees = knees[: args.limit]

    segmenter = None
    model_info: dict[str, Any] = {"truth_labels": True}
    if args.model is not None:
        import torch

        torch.set_num_threads(args.threads)
        from kneescope.inference.segmenter import SegmentConfig, Segmenter

        model_path = resolve_model(args.model)
        config = SegmentConfig(device=args.device)  # kneescope segment's defaults
        segmenter = Segmenter(model_path, config)
        model_info = {
            "path": str(model_path),
            "sha256": file_sha256(model_path),
            "mode": segmenter.model.spec.mode,
            "options": config.model_dump(mode="json"),
            "device": str(segmenter.device),
            "precision": segmenter.precision_name,
            "threads": args.threads,
        }
    rows = []
    for knee in knees:
        name, side = knee["name"], knee["side"]
        truth_labels = read_volume(folder / "labels" / f"{name}.nii.gz")
        t1 = time.perf_counter()
        if segmenter is None:
            pred, seg_s = truth_labels, 0.0
        else:
            image = read_volume(folder / "images" / f"{name}.nii.gz")
            pred = segmenter.segment(image, side=side).labels
            seg_s = time.perf_counter() - t1
        row = evaluate_knee(name, side, pred, truth_labels, truth[name], args.thickness_truth)
        row["variant"] = knee.get("variant", "")
        row["klg"] = int(knee.get("klg", -1))
        row["seconds"]["segment"] = seg_s
        rows.append(row)
        dice = " ".join(_fmt(v, 2) for v in row["dice"].values())
        err = " ".join(f"{v:+.2f}" for v in row["thickness_error_mm"].values())
        print(
            f"  {name} ({row['variant']}): segment {seg_s:.1f} s, measure "
            f"{row['seconds']['measure']:.1f} s, metrics {row['seconds']['metrics']:.1f} s; "
            f"Dice {dice}; thickness error {err}; qc_ok {row['qc_ok']}",
            flush=True,
        )
    variants = sorted({r["variant"] for r in rows})
    report = {
        "set": {
            "folder": str(folder),
            "name": manifest["set"].get("name"),
            "complete": manifest["set"].get("complete"),
            "set_sha256": manifest["set_sha256"],
            "knees": len(rows),
        },
        "model": model_info,
        "thickness_reference": args.thickness_truth,
        "summary": summary_of(rows),
        "by_variant": {v: summary_of([r for r in rows if r["variant"] == v]) for v in variants}
        if len(variants) > 1
        else {},
        "knees": rows,
        "seconds_total": time.perf_counter() - t0,
    }
    title = f"{report['set']['name']} ({'truth labels' if segmenter is None else args.model})"
    print("\n" + markdown(report["summary"], title, args.thickness_truth))
    for v, s in report["by_variant"].items():
        print("\n" + markdown(s, f"variant {v}", args.thickness_truth))
    if args.json is not None:
        text = json.dumps(_json_safe(report), indent=1, allow_nan=False) + "\n"
        atomic_write_text(args.json, text)
        print(f"\nwrote {args.json}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Accuracy of a segmentation model on a locked set (see the module docstring)."
    )
    parser.add_argument("-m", "--model", default=None, help="model file or shipped model name")
    parser.add_argument(
        "--truth-labels", action="store_true", help="score the set's own label maps (the floor)"
    )
    parser.add_argument("-i", "--set", type=Path, required=True, help="the set's folder")
    parser.add_argument("--sha256", default=None, help="the set_sha256 the docs record")
    parser.add_argument("-o", "--json", type=Path, default=None, help="write the report here")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--thickness-truth",
        choices=("visible", "plain"),
        default="visible",
        help="reference of thickness_error_mm (both are reported)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--limit", type=int, default=None, help="only the first N knees")
    args = parser.parse_args(argv)
    try:
        run(args)
    except KneescopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
