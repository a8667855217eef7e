"""Does seeing the other knee help? One knee vs both knees on the same trained backbone.

    .venv/bin/python benchmarks/kl_pair_heads.py --model kl-single.pt --data DIR
        [--epochs 60] [--out-json OUT.json] [--out-model PAIRED.pt]

The backbone of a trained single-knee KL model (``--model``) is frozen; its pooled features are
computed once for every crop of ``DIR/train`` and ``DIR/val`` (kneeKL224 layout; pairs from the
L/R names). Two linear heads are then trained on the training features with the same
optimiser, epochs and seed: the single-knee head (the knee's features; started from the
model's own head) and the both-knees head (the knee's and the other knee's features side by
side, as the paired network's head; started from the single head with zeros for the other
knee). Both are scored on ``val`` (accuracy, quadratic kappa, AUC for KL >= 2, ECE after a
temperature fitted on ``val``). The difference is what the other knee adds at a fixed
backbone; it is not a comparison of two networks trained end to end. ``--out-model`` writes
the both-knees model (the backbone + the paired head, with its temperature) as a paired
classification model file.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kneescope.capabilities.classification.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
)
from kneescope.capabilities.classification.folder_data import load_class_folder
from kneescope.capabilities.classification.grade_metrics import grade_summary
from kneescope.capabilities.classification.predict import load_classifier
from kneescope.models.model_file import save_model_file
from kneescope.transforms.image_batch import normalise_images


def features(network: Any, images: np.ndarray, spec: Any) -> torch.Tensor:
    """``(N, F)`` pooled backbone features (eval mode, no augmentation)."""
    x = torch.from_numpy(normalise_images(images, spec.input_size_vox, spec.normalisation))
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], 64):
            out.append(network.backbone(x[start : start + 64]))
    return torch.cat(out)


def train_head(
    x: torch.Tensor, y: torch.Tensor, init_w: torch.Tensor, init_b: torch.Tensor, epochs: int
) -> torch.nn.Linear:
    torch.manual_seed(0)
    head = torch.nn.Linear(x.shape[1], init_w.shape[0])
    with torch.no_grad():
        head.weight.copy_(init_w)
        head.bias.copy_(init_b)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(x.shape[0]))
        for start in range(0, x.shape[0], 128):
            idx = order[start : start + 128]
            loss = torch.nn.functional.cross_entropy(head(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    return head


def score(logits: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    t = fit_temperature(logits, truth)
    probs = apply_temperature(logits, t)
    summary = grade_summary(probs, truth)
    return {
        "accuracy": summary["accuracy"],
        "quadratic_kappa": summary["quadratic_kappa"],
        "auc_kl_ge_2": summary["auc_at_least_2"],
        "mean_abs_error": summary["mean_abs_error"],
        "temperature": t,
        "ece": expected_calibration_error(probs, truth),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out-json", type=Path)
    parser.add_argument("--out-model", type=Path)
    args = parser.parse_args()
    model = load_classifier(args.model)
    net: Any = model.network.eval()
    spec = model.spec
    sets = {
        s: load_class_folder(args.data / s, spec.classes, spec.input_size_vox)
        for s in ("train", "val")
    }
    feats = {s: features(net, d.images, spec) for s, d in sets.items()}
    labels = {s: torch.from_numpy(d.labels) for s, d in sets.items()}
    pairs = {s: torch.from_numpy(np.asarray(d.pairs)) for s, d in sets.items()}
    w, b = net.head.weight.detach(), net.head.bias.detach()
    single = train_head(feats["train"], labels["train"], w, b, args.epochs)
    both_x = {s: torch.cat([feats[s], feats[s][pairs[s]]], dim=1) for s in sets}
    paired = train_head(
        both_x["train"], labels["train"], torch.cat([w, torch.zeros_like(w)], 1), b, args.epochs
    )
    with torch.no_grad():
        report = {
            "backbone": str(args.model),
            "epochs": args.epochs,
            "train_knees": len(sets["train"].labels),
            "val_knees": len(sets["val"].labels),
            "val_knees_with_other_knee": int(
                (pairs["val"] != torch.arange(len(pairs["val"]))).sum()
            ),
            "start (the model's own head)": score(
                net.head(feats["val"]).double().numpy(), sets["val"].labels
            ),
            "single_knee_head": score(single(feats["val"]).double().numpy(), sets["val"].labels),
            "both_knees_head": score(paired(both_x["val"]).double().numpy(), sets["val"].labels),
        }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out_json is not None:
        args.out_json.write_text(text + "\n")
    if args.out_model is not None:
        file = model.model_file
        state = dict(file.state_dict)
        state["head.weight"] = paired.weight.detach().clone()
        state["head.bias"] = paired.bias.detach().clone()
        network = file.network.model_copy(update={"paired": True})
        t = report["both_knees_head"]["temperature"]
        save_model_file(
            replace(file, network=network, state_dict=state, spec={**file.spec, "temperature": t}),
            args.out_model,
        )


if __name__ == "__main__":
    main()
