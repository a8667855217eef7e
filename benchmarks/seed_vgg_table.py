"""The seed's 2D table: a VGG16-style KL classifier at 224 x 224 and at 512 x 512 on kneeKL224.

The seed trained VGG16 on knee crops at two input sizes and compared accuracy and memory.
This benchmark does the same on the public kneeKL224 crops (Chen 2018, CC BY 4.0; folders
``train/<KL>/<ID><L|R>.png`` and ``val/<KL>/...``; the ``test/`` folder is never read):

* ``train``: one input size. The network is kneescope's ``vgg_classifier`` with VGG16's
  layout (five stages of 2, 2, 3, 3, 3 convolutions, two hidden FC layers, dropout 0.5, no
  normalisation layers, one grey channel, 5 classes) at a fraction of VGG16's widths
  (``--width-div``; 8 gives 8, 16, 32, 64, 64 channels and 512-wide FC layers) so that a run
  fits the CPU budget. Both sizes see the same images in the same order: a seeded permutation
  of ``train/``, ``--images`` images in batches of ``--batch``, Adam (lr ``--lr``), weights
  initialised as torchvision's VGG (Kaiming normal, fan-out). 512 x 512 inputs are the
  224 x 224 crops upsampled bilinearly. Each image is normalised by its own mean and standard
  deviation. The run checkpoints every 10 iterations and resumes where it stopped; it keeps the
  training-loss curve, validates on ``val/`` half-way and at the end (accuracy, quadratic
  kappa, the logits), and counts its own CPU seconds. Run it niced on one thread.
* ``memory``: the peak memory of one training step (Adam, fp32) measured on the CPU with
  ``kneescope.memory.measure_cpu`` (a fresh process; peak RSS growth plus the weights) against
  what the planner behind ``kneescope plan`` predicts (``kneescope.memory.predict_step``) for
  the same network, input and batch: the reduced network at both sizes and full-width VGG16
  (64 .. 512 channels, FC 4096) at 224 (batch 16) and 512 (batch 2, when enough RAM is free).
* ``table``: the table (markdown) from the JSON files the two commands wrote.
* ``speed``: CPU seconds per image of one training step at both sizes, at ``--width-div``
  and at twice those widths (one thread).

Usage (from the repository root; about 8 CPU-minutes for 512, 1 for 224)::

    export OMP_NUM_THREADS=1
    nice -n 15 .venv/bin/python benchmarks/seed_vgg_table.py train --size 224 -o bench-out/seed_vgg
    nice -n 15 .venv/bin/python benchmarks/seed_vgg_table.py train --size 512 -o bench-out/seed_vgg
    nice -n 15 .venv/bin/python benchmarks/seed_vgg_table.py memory -o bench-out/seed_vgg
    .venv/bin/python benchmarks/seed_vgg_table.py table -o bench-out/seed_vgg
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path("/work/data/kneeKL224")
CLASSES = 5
VGG16_WIDTHS = (64, 128, 256, 512, 512)
VGG16_CONVS = (2, 2, 3, 3, 3)
VGG16_FC = 4096


def vgg16_config(size: int, width_div: int) -> Any:
    """VGG16's layout for one grey channel and 5 classes, widths divided by ``width_div``."""
    from kneescope.models import NetworkConfig

    return NetworkConfig(
        name="vgg_classifier",
        spatial_dims=2,
        in_channels=1,
        out_channels=CLASSES,
        features=tuple(w // width_div for w in VGG16_WIDTHS),
        convs_per_stage=VGG16_CONVS,
        fc_features=(VGG16_FC // width_div, VGG16_FC // width_div),
        dropout=0.5,
        norm="none",
        act="relu",
        input_shape_vox=(size, size),
    )


def list_split(split: str) -> list[tuple[Path, int]]:
    """(file, KL grade) of every PNG in ``DATA/split`` (``train`` or ``val`` only), sorted."""
    if split not in ("train", "val"):
        raise ValueError("only train/ and val/ are read (test/ is the locked test set)")
    files = []
    for grade in range(CLASSES):
        for path in sorted((DATA / split / str(grade)).glob("*.png")):
            files.append((path, grade))
    return files


def read_images(files: list[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 224, 224)`` float32 images (each z-scored) and ``(N,)`` int64 grades."""
    from PIL import Image

    images = np.empty((len(files), 224, 224), dtype=np.float32)
    for i, (path, _) in enumerate(files):
        with Image.open(path) as im:
            a = np.asarray(im.convert("L"), dtype=np.float32)
        if a.shape != (224, 224):
            raise ValueError(f"{path}: {a.shape}, expected 224 x 224")
        images[i] = (a - a.mean()) / max(float(a.std()), 1e-6)
    return images, np.array([g for _, g in files], dtype=np.int64)


def quadratic_kappa(truth: np.ndarray, pred: np.ndarray, k: int = CLASSES) -> float:
    """Cohen's kappa with quadratic weights ``(i - j)^2 / (k - 1)^2``."""
    observed = np.zeros((k, k))
    np.add.at(observed, (truth, pred), 1)
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    w = (i - j) ** 2 / (k - 1) ** 2
    return float(1 - (w * observed).sum() / (w * expected).sum())


def _init_vgg(net: Any) -> None:
    """Kaiming-normal (fan-out) convolutions, N(0, 0.01) linear layers, zero biases."""
    from torch import nn

    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def _batches(x: Any, size: int) -> Any:
    """``x`` ``(B, 224, 224)`` -> ``(B, 1, size, size)`` (bilinear upsampling for 512)."""
    import torch

    x = x[:, None]
    if size != x.shape[-1]:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear")
    return x


def evaluate(net: Any, images: np.ndarray, labels: np.ndarray, size: int) -> dict[str, Any]:
    """Accuracy, quadratic kappa and the ``(N, 5)`` logits on ``images``."""
    import torch

    net.eval()
    logits = []
    with torch.no_grad():
        for start in range(0, len(labels), 32):
            x = _batches(torch.from_numpy(images[start : start + 32]), size)
            logits.append(net(x).float())
    net.train()
    out = torch.cat(logits).numpy()
    pred = out.argmax(1)
    return {
        "accuracy": float((pred == labels).mean()),
        "quadratic_kappa": quadratic_kappa(labels, pred),
        "predicted_counts": np.bincount(pred, minlength=CLASSES).tolist(),
        "logits": out.round(5).tolist(),
    }


def train(args: argparse.Namespace) -> None:
    import torch

    from kneescope.io.atomic import atomic_write, atomic_write_text
    from kneescope.models import build_network, count_parameters

    torch.set_num_threads(1)
    out = Path(args.output) / f"train_{args.size}"
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    config = vgg16_config(args.size, args.width_div)
    iterations = math.ceil(args.images / args.batch)
    order = np.random.default_rng(args.seed).permutation(len(list_split("train")))
    train_files = list_split("train")
    picks = [
        int(order[(i * args.batch + b) % len(order)])
        for i in range(iterations)
        for b in range(args.batch)
    ]
    needed = sorted(set(picks))
    cpu0 = time.process_time()
    x_all, y_all = read_images([train_files[i] for i in needed])
    where = {idx: n for n, idx in enumerate(needed)}
    val_x, val_y = read_images(list_split("val"))
    read_cpu = time.process_time() - cpu0

    torch.manual_seed(args.seed)
    net = build_network(config)
    _init_vgg(net)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    state: dict[str, Any] = {"iteration": 0, "curve": [], "cpu_s": 0.0, "validations": []}
    if ckpt_path.exists():
        saved = torch.load(ckpt_path, weights_only=False)
        net.load_state_dict(saved["net"])
        opt.load_state_dict(saved["opt"])
        state = saved["state"]
        torch.set_rng_state(saved["rng"])
        print(f"resumed at iteration {state['iteration']}", flush=True)
    net.train()
    start_cpu = time.process_time()
    done_before = state["cpu_s"]

    def save() -> None:
        state["cpu_s"] = done_before + time.process_time() - start_cpu
        payload = {
            "net": net.state_dict(),
            "opt": opt.state_dict(),
            "state": state,
            "rng": torch.get_rng_state(),
        }
        atomic_write(ckpt_path, lambda tmp: torch.save(payload, tmp))

    half = iterations // 2
    while state["iteration"] < iterations:
        it = state["iteration"]
        rows = [where[p] for p in picks[it * args.batch : (it + 1) * args.batch]]
        x = _batches(torch.from_numpy(x_all[rows]), args.size)
        y = torch.from_numpy(y_all[rows])
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        state["curve"].append(round(float(loss.detach()), 5))
        state["iteration"] = it + 1
        if state["iteration"] in (half, iterations):
            metrics = evaluate(net, val_x, val_y, args.size)
            metrics["iteration"] = state["iteration"]
            metrics["images_seen"] = state["iteration"] * args.batch
            state["validations"].append(metrics)
            print(
                f"it {state['iteration']}: val accuracy {metrics['accuracy']:.3f} "
                f"kappa {metrics['quadratic_kappa']:.3f}",
                flush=True,
            )
            save()
        elif state["iteration"] % 10 == 0:
            save()
            recent = np.mean(state["curve"][-10:])
            print(f"it {state['iteration']}/{iterations} loss {recent:.3f}", flush=True)
    save()
    result = {
        "size": args.size,
        "network": config.model_dump(mode="json"),
        "parameters": count_parameters(config),
        "width_div": args.width_div,
        "batch": args.batch,
        "iterations": iterations,
        "images_seen": iterations * args.batch,
        "distinct_train_images": len(needed),
        "lr": args.lr,
        "seed": args.seed,
        "train_cpu_s": state["cpu_s"],
        "read_cpu_s": read_cpu,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "curve": state["curve"],
        "validations": state["validations"],
        "val_labels": val_y.tolist(),
        "val_majority_accuracy": float(np.bincount(val_y).max() / len(val_y)),
    }
    atomic_write_text(out / "result.json", json.dumps(result))
    print(
        json.dumps(
            {
                k: v
                for k, v in result.items()
                if k not in ("curve", "val_labels", "validations", "network")
            }
        )
    )


def memory(args: argparse.Namespace) -> None:
    import psutil

    from kneescope.io.atomic import atomic_write_text
    from kneescope.memory import StepConfig, measure_cpu, predict_step

    cases = [
        (f"VGG16/{args.width_div}", vgg16_config(224, args.width_div), 224, args.batch),
        (f"VGG16/{args.width_div}", vgg16_config(512, args.width_div), 512, args.batch),
        ("VGG16", vgg16_config(224, 1), 224, 16),
        ("VGG16", vgg16_config(512, 1), 512, 2),
    ]
    rows = []
    for name, net, size, batch in cases:
        step = StepConfig(input_shape_vox=(size, size), batch_size=batch, optimizer="adam")
        estimate = predict_step(net, step)
        row: dict[str, Any] = {
            "network": name,
            "size": size,
            "batch": batch,
            "parameters": estimate.parameters,
            "predicted_peak_mib": estimate.peak_bytes / 2**20,
            "predicted_required_mib": estimate.required_bytes / 2**20,
            "breakdown_mib": {k: v / 2**20 for k, v in estimate.breakdown_bytes.items()},
            "gflop_per_step": estimate.flops / 1e9,
        }
        free = psutil.virtual_memory().available
        if args.predict_only:
            row["measured"] = "not measured (--predict-only)"
        elif estimate.peak_bytes * 1.3 + 3 * 2**30 > free:
            row["measured"] = f"skipped: {free / 2**30:.1f} GiB free"
        else:
            m = measure_cpu([(net, step)], threads=1, timeout_s=1800)[0]
            row["measured_peak_rss_mib"] = m.peak_rss_bytes / 2**20
            row["measured_tracked_mib"] = m.tracked_peak_bytes / 2**20
            row["ratio_predicted_to_measured"] = estimate.peak_bytes / m.peak_rss_bytes
            row["step_s"] = m.seconds
        print(json.dumps(row), flush=True)
        rows.append(row)
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "memory.json", json.dumps(rows, indent=1))  # row by row


def _partial(run: Path, batch: int) -> str:
    """What an unfinished run reached (from its last checkpoint)."""
    ckpt = run / "checkpoint.pt"
    if not ckpt.exists():
        return "(not run)"
    import torch

    state = torch.load(ckpt, weights_only=False)["state"]
    it, cpu = state["iteration"], state["cpu_s"]
    seen = [f"val accuracy {m['accuracy']:.3f} at {m['images_seen']}" for m in state["validations"]]
    return (
        f"unfinished: {it * batch} images in {cpu / 60:.1f} CPU min "
        f"({cpu / max(it * batch, 1):.2f} CPU s per image incl. validation); "
        f"mean of the last 10 losses {np.mean(state['curve'][-10:] or [np.nan]):.3f}; "
        + "; ".join(seen)
    )


def speed(args: argparse.Namespace) -> None:
    """CPU seconds per image of a training step (8 random images, Adam; the 2nd step timed)."""
    import torch

    from kneescope.models import build_network, count_parameters

    torch.set_num_threads(1)
    for div in (args.width_div, args.width_div // 2):
        for size in (224, 512):
            config = vgg16_config(size, div)
            net = build_network(config)
            opt = torch.optim.Adam(net.parameters(), 1e-4)
            x, y = torch.randn(8, 1, size, size), torch.randint(0, CLASSES, (8,))
            for _ in range(2):
                start = time.process_time()
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(x), y).backward()
                opt.step()
                spent = time.process_time() - start
            print(
                f"VGG16/{div} {size}x{size}: {spent / 8:.3f} CPU s per image, "
                f"{count_parameters(config)} parameters",
                flush=True,
            )


def table(args: argparse.Namespace) -> None:
    from kneescope.capabilities.classification.calibration import (
        expected_calibration_error,
        softmax,
    )

    out = Path(args.output)
    print(
        "| input | images seen | CPU min (train) | val accuracy (half / end) | "
        "quadratic kappa (end) | ECE (end) | predicted grades 0..4 (end) |"
    )
    print("|---|---|---|---|---|---|---|")
    for size in (224, 512):
        path = out / f"train_{size}" / "result.json"
        if not path.exists():
            print(f"| {size}² | {_partial(out / f'train_{size}', args.batch)} | | | | | |")
            continue
        r = json.loads(path.read_text())
        v = r["validations"]
        labels = np.asarray(r["val_labels"])
        ece = expected_calibration_error(softmax(np.asarray(v[-1]["logits"])), labels)
        print(
            f"| {size}² | {r['images_seen']} | {r['train_cpu_s'] / 60:.1f} | "
            f"{' / '.join(format(m['accuracy'], '.3f') for m in v)} | "
            f"{v[-1]['quadratic_kappa']:.3f} | {ece:.3f} | {v[-1]['predicted_counts']} |"
        )
    mem = out / "memory.json"
    if mem.exists():
        print()
        print(
            "| network | input | batch | parameters | predicted peak MiB | measured peak MiB "
            "| predicted / measured |"
        )
        print("|---|---|---|---|---|---|---|")
        for row in json.loads(mem.read_text()):
            measured = row.get("measured_peak_rss_mib")
            print(
                f"| {row['network']} | {row['size']}² | {row['batch']} | "
                f"{row['parameters'] / 1e6:.1f} M | {row['predicted_peak_mib']:.0f} | "
                + (
                    f"{measured:.0f} | {row['ratio_predicted_to_measured']:.3f} |"
                    if measured is not None
                    else f"{row['measured']} | |"
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "memory", "table", "speed"):
        p = sub.add_parser(name)
        p.add_argument("-o", "--output", default="bench-out/seed_vgg")
        p.add_argument("--width-div", type=int, default=8)
        p.add_argument("--batch", type=int, default=16)
        if name == "train":
            p.add_argument("--size", type=int, choices=(224, 512), required=True)
            p.add_argument("--images", type=int, default=800)
            p.add_argument("--lr", type=float, default=1e-4)
            p.add_argument("--seed", type=int, default=0)
        if name == "memory":
            p.add_argument("--predict-only", action="store_true", help="skip the measurements")
    args = parser.parse_args()
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: set OMP_NUM_THREADS=1 (and run under nice -n 15) as documented")
    {"train": train, "memory": memory, "table": table, "speed": speed}[args.command](args)


if __name__ == "__main__":
    main()
