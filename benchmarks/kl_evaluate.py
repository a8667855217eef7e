"""Evaluate a KL (or other graded) classification model on a folder of crops (kneeKL224 layout).

    .venv/bin/python benchmarks/kl_evaluate.py --model MODEL --data DIR [--json OUT.json]
        [--diagram OUT.png] [--no-pairs]

``DIR/<grade>/<id><L|R>.png`` (grades = the model's classes): every crop is resized to the
model's input (no ROI cropping: the crops are already the model's field of view); a paired
model sees each knee with the other knee of the same id (``--no-pairs``: with itself). Prints
and writes accuracy, quadratic kappa, AUC for grade >= 2, mean absolute grade error, ECE (15
bins) with the model's temperature and without, recall per grade and the confusion matrix
(rows truth), and with ``--diagram`` a reliability diagram.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from kneescope.capabilities.classification.calibration import (
    apply_temperature,
    expected_calibration_error,
    save_reliability_diagram,
)
from kneescope.capabilities.classification.folder_data import load_class_folder
from kneescope.capabilities.classification.grade_metrics import grade_summary
from kneescope.capabilities.classification.predict import load_classifier, predict_logits
from kneescope.models.pretrained import resolve_model


def evaluate(model_name: str, data_dir: Path, *, pairs: bool = True) -> dict[str, object]:
    model = load_classifier(resolve_model(model_name))
    classes = model.spec.classes
    k = len(classes)
    data = load_class_folder(data_dir, classes, model.spec.input_size_vox)
    other = data.images[data.pairs] if pairs and data.pairs is not None else None
    logits = predict_logits(model, data.images, other)
    probs = apply_temperature(logits, model.spec.temperature)
    truth = data.labels
    predicted = probs.argmax(axis=1)
    summary = grade_summary(probs, truth)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    recall = [
        float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else None
        for c in range(k)
    ]
    return {
        "model": model_name,
        "temperature": model.spec.temperature,
        "data": str(data_dir),
        "n": len(truth),
        "paired_input": bool(model.model_file.network.paired and pairs),
        "accuracy": summary["accuracy"],
        "classes": list(classes),
        "quadratic_kappa": summary["quadratic_kappa"],
        "auc_kl_ge_2": summary["auc_at_least_2"],
        "mean_abs_error": summary["mean_abs_error"],
        "ece": expected_calibration_error(probs, truth),
        "ece_uncalibrated": expected_calibration_error(apply_temperature(logits, 1.0), truth),
        "recall": recall,
        "confusion": confusion.tolist(),
        "_probs": probs,
        "_truth": truth,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--diagram", type=Path)
    parser.add_argument("--no-pairs", action="store_true")
    args = parser.parse_args()
    report = evaluate(args.model, args.data, pairs=not args.no_pairs)
    probs, truth = report.pop("_probs"), report.pop("_truth")
    if args.diagram is not None:
        save_reliability_diagram(
            probs, truth, args.diagram, title=f"{args.model} on {args.data.name}"
        )
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
