"""Phase and memory profile of one ``Segmenter`` call, engine against engine, interleaved.

Each run is a fresh subprocess (same threads) that imports kneescope from the given source
folder, builds a ``Segmenter`` with the given options, reads the volume and segments it
phase by phase (``prepare`` -> ``infer`` -> ``finish``; a source without the phase API runs
``segment``). A sampling thread reads the process's resident set every 2 ms, so each phase's
peak RSS is known, not only the process's.

Engines are given as ``NAME=SRC[,option=value...]``: ``SRC`` is a ``src`` folder (this
checkout's ``src``, or an older commit's unpacked with ``git archive <commit> src | tar -x
-C DIR``), options are :class:`~kneescope.inference.segmenter.SegmentConfig` fields
(``roi_size_vox=8x384x384``, ``overlap=0``, ``precision=fp32``, ``blend=constant``, ...).
Runs are interleaved (A B C A B C ...) with the 1-minute load average recorded before each.

Run (the lead's quiet pass; ~2 min per engine and repeat on 2 cores)::

    git archive 17ff7c0 src | tar -x -C /tmp/base
    .venv/bin/python benchmarks/segment_engine.py --volume KNEE.nii --truth LABELS.nii \\
        --side right --repeats 3 --engine before=/tmp/base/src --engine after=src \\
        [--json OUT.json]

Columns of the table (per engine; times are the best over repeats, RSS the lowest peak):

- ``wall_s``: prepare + infer + finish (volume in memory -> label map on the input grid);
  ``prepare_s``, ``infer_s``, ``finish_s``: each phase.
- ``rss_import_mb``: resident set after the imports (Python, NumPy, torch, kneescope);
  ``rss_model_mb``: after the ``Segmenter`` is built; ``rss_read_mb``: after reading the volume.
- ``peak_<phase>_mb``: the highest resident set sampled during that phase;
  ``peak_rss_mb``: the process's ``ru_maxrss`` (everything, reading included).
- ``dice_vs_first``: the lowest Dice over structures between this engine's map and the
  first engine's (1.0 = identical labels); ``identical``: the maps are equal voxel for voxel.
- ``dice_truth``: mean Dice against ``--truth`` over the structures (per structure in the
  JSON output).
- ``load1``: mean 1-minute load average over this engine's runs (2 cores: above ~2 the
  timings are inflated by other processes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "src/kneescope/pretrained/knee-seg-2d.pt"


class RssSampler:
    """Samples the resident set of this process every ``period_s``; ``mark`` closes a phase."""

    def __init__(self, period_s: float = 0.002) -> None:
        self.period_s = period_s
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _loop(self) -> None:
        while not self.stop.is_set():
            value = self.rss()
            with self.lock:
                self.peak = max(self.peak, value)
            time.sleep(self.period_s)

    def mark(self) -> tuple[float, float]:
        """(RSS now, peak since the last mark) in MB; starts a new phase."""
        now = self.rss()
        with self.lock:
            peak = max(self.peak, now)
            self.peak = now
        return now / 2**20, peak / 2**20


def _parse_value(text: str) -> Any:
    if "x" in text and all(p.isdigit() for p in text.split("x")):
        return [int(p) for p in text.split("x")]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text in ("true", "false"):
        return text == "true"
    return text


def parse_engine(text: str) -> tuple[str, str, dict[str, Any]]:
    """``NAME=SRC[,key=value...]`` -> (name, src, options)."""
    name, _, rest = text.partition("=")
    src, *pairs = rest.split(",")
    options = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        options[key] = _parse_value(value)
    if not name or not src:
        raise SystemExit(f"--engine {text!r}: give NAME=SRC[,option=value...]")
    return name, src, options


def child(args: argparse.Namespace) -> None:
    sampler = RssSampler()
    import torch

    torch.set_num_threads(args.threads)
    from kneescope.inference.segmenter import SegmentConfig, Segmenter
    from kneescope.io import read_volume

    record: dict[str, Any] = {}
    record["rss_import_mb"], _ = sampler.mark()
    options = json.loads(args.options)
    known = set(SegmentConfig.model_fields)
    unknown = sorted(set(options) - known)
    if unknown:
        raise SystemExit(f"this source's SegmentConfig has no field(s) {unknown}")
    seg = Segmenter(args.model, SegmentConfig(**options))
    record["rss_model_mb"], _ = sampler.mark()
    image = read_volume(args.volume)
    record["rss_read_mb"], _ = sampler.mark()
    t0 = time.perf_counter()
    if hasattr(seg, "prepare"):
        prepared = seg.prepare(image, side=args.side)
        t1 = time.perf_counter()
        _, record["peak_prepare_mb"] = sampler.mark()
        raw = seg.infer(prepared)
        del prepared
        t2 = time.perf_counter()
        _, record["peak_infer_mb"] = sampler.mark()
        result = seg.finish(raw)
        del raw
        t3 = time.perf_counter()
        _, record["peak_finish_mb"] = sampler.mark()
        record.update(prepare_s=t1 - t0, infer_s=t2 - t1, finish_s=t3 - t2)
    else:
        result = seg.segment(image, side=args.side)
        t3 = time.perf_counter()
        _, record["peak_segment_mb"] = sampler.mark()
        record.update({f"{k}_s": v for k, v in result.seconds.items() if k != "total"})
    record["wall_s"] = t3 - t0
    record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record["window"] = list(seg.roi)
    record["precision"] = seg.precision_name
    np.save(args.out, np.asarray(result.labels.array, dtype=np.uint8))
    print(json.dumps(record))


def dice_table(a: np.ndarray, b: np.ndarray, classes: int) -> dict[int, float]:
    """Dice per label 1..classes-1 (NaN where both maps lack it), via one joint histogram."""
    joint = np.bincount(
        a.reshape(-1).astype(np.int64) * classes + b.reshape(-1), minlength=classes**2
    )
    table = joint.reshape(classes, classes)
    out = {}
    for c in range(1, classes):
        both = table[c, c]
        total = table[c].sum() + table[:, c].sum()
        out[c] = float(2 * both / total) if total else float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--volume", type=Path, required=True)
    parser.add_argument("--truth", type=Path, help="the volume's true label map")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--side", choices=["right", "left"], default="right")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--engine",
        action="append",
        default=[],
        help="NAME=SRC[,option=value...] (repeatable; default: this checkout's src)",
    )
    parser.add_argument("--json", type=Path, help="also write every run and the summary here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    here = Path(__file__).resolve().parents[1] / "src"
    engines = [parse_engine(e) for e in (args.engine or [f"current={here}"])]
    tmp = Path(tempfile.mkdtemp(prefix="segengine-"))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in engines}
    for repeat in range(args.repeats):
        for name, src, options in engines:
            out = tmp / f"{name}.npy"
            env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(args.threads)
            cmd = [
                sys.executable,
                __file__,
                "--child",
                "--model",
                str(args.model),
                "--volume",
                str(args.volume),
                "--side",
                args.side,
                "--threads",
                str(args.threads),
                "--options",
                json.dumps(options),
                "--out",
                str(out),
            ]
            load1 = os.getloadavg()[0]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                raise SystemExit(f"engine {name} failed")
            record = json.loads(proc.stdout.strip().splitlines()[-1])
            record["load1"] = load1
            runs[name].append(record)
            print(f"repeat {repeat} {name}: {json.dumps(record)}", file=sys.stderr, flush=True)
    summary = _summarise(engines, runs, tmp, args)
    shutil.rmtree(tmp, ignore_errors=True)
    _print_table(summary)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=1))


def _summarise(
    engines: list[tuple[str, str, dict[str, Any]]],
    runs: dict[str, list[dict[str, Any]]],
    tmp: Path,
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    from kneescope.inference.segmentation_model import load_model

    spec = load_model(args.model).spec
    classes = spec.num_classes
    truth = None
    if args.truth is not None:
        from kneescope.io import read_volume

        truth = np.asarray(read_volume(args.truth).array, dtype=np.uint8)
    first = np.load(tmp / f"{engines[0][0]}.npy")
    summary: dict[str, dict[str, Any]] = {}
    for name, src, options in engines:
        rs = runs[name]
        labels = np.load(tmp / f"{name}.npy")
        row: dict[str, Any] = {"src": src, "options": options}
        for key in rs[0]:
            values = [r[key] for r in rs if isinstance(r.get(key), int | float)]
            if key.endswith("_s") and values:
                row[key] = min(values)
                row[key.replace("_s", "_median_s")] = float(np.median(values))
            elif key.endswith("_mb") and values:
                row[key] = min(values)
            elif key == "load1":
                row[key] = float(np.mean(values))
            elif not values:
                row[key] = rs[0][key]
        dice = dice_table(labels, first, classes)
        row["dice_vs_first"] = min(v for v in dice.values() if v == v) if dice else 1.0
        row["identical"] = bool(np.array_equal(labels, first))
        if truth is not None:
            per = dice_table(labels, truth, classes)
            row["dice_truth_per_structure"] = {spec.labels[c]: per[c] for c in per}
            row["dice_truth"] = float(np.nanmean(list(per.values())))
        summary[name] = row
    return summary


def _print_table(summary: dict[str, dict[str, Any]]) -> None:
    columns = [
        "wall_s",
        "prepare_s",
        "infer_s",
        "finish_s",
        "rss_import_mb",
        "rss_model_mb",
        "rss_read_mb",
        "peak_prepare_mb",
        "peak_infer_mb",
        "peak_finish_mb",
        "peak_rss_mb",
        "dice_vs_first",
        "identical",
        "dice_truth",
        "load1",
    ]
    names = list(summary)
    print("engine".ljust(18) + "".join(n.rjust(14) for n in names))
    for col in columns:
        cells = []
        for n in names:
            v = summary[n].get(col, "")
            cells.append((f"{v:.3f}" if isinstance(v, float) else str(v)).rjust(14))
        print(col.ljust(18) + "".join(cells))
    base = summary[names[0]]
    for n in names[1:]:
        s = summary[n]
        print(
            f"{n} / {names[0]}: wall {s['wall_s'] / base['wall_s']:.3f}x, "
            f"peak RSS {s['peak_rss_mb'] / base['peak_rss_mb']:.3f}x"
        )


if __name__ == "__main__":
    main()
