"""`kneescope segment` against the strongest simple baselines: same volume, weights, threads.

For each model (the shipped 2D model ``knee-seg-2d.pt`` and the 3D benchmark model that
``bench_3d_model.py`` trains, NOT a shipped model) one full-size 160x384x384 synthetic knee is
segmented by each engine below, each run in a FRESH subprocess with the same thread count,
the rounds interleaved (A B C ... A B C ...), ``--repeats`` rounds:

=================  ===============================================================================
engine             what runs
=================  ===============================================================================
kneescope          ``kneescope.inference.Segmenter`` with the defaults of ``kneescope segment``
                   (``SegmentConfig(device="cpu")``: whatever window, overlap, precision and
                   engine kneescope ships when the script runs; ``precision="auto"`` is fp32 on
                   CPUs without native bf16).
kneescope-fp32     the same with ``precision="fp32"`` (only run where auto means bf16).
monai-fp32         ``monai.inferers.sliding_window_inference`` in fp32, the model's window
                   (2D: 256x256 slices as a batch of 2D images; 3D: 16x192x192), overlap 0.25,
                   constant blending (MONAI's default, the cheapest), the best sw_batch_size of
                   a sweep (below), ``torch.argmax``.
monai-bf16         the same under ``torch.autocast("cpu", torch.bfloat16)`` (window outputs cast
                   to fp32 before MONAI accumulates them), the best sw_batch_size for bf16
                   (swept only where bf16 is native; emulated bf16 reuses the fp32 choice and
                   runs ``--bf16-repeats`` times, default 1: it is ~9x slower than fp32 there).
monai-kswin        MONAI given kneescope's own window, overlap and precision (read from the
                   kneescope run of the same round; 2D: that many slices per network call):
                   the strongest MONAI.
monai-matched      MONAI given every setting of kneescope's run: window, overlap, precision,
                   windows per call AND blending (kneescope's ``auto``: constant for 2D models,
                   Gaussian with sigma 1/8 of the window for 3D; MONAI's ``mode`` and
                   ``sigma_scale``). The engine the
                   "Dice between maps" target is judged against: the same computation, so the
                   maps differ only by the arithmetic (the rewritten network, accumulation
                   order), not by a different blending.
nnunet             nnU-Net v2's ``nnUNetPredictor.predict_sliding_window_return_logits`` set up
                   with ``manual_initialization`` around the SAME network object: tile step
                   0.75 (= overlap 0.25), mirroring off, Gaussian blending (nnU-Net's), fp32 on
                   the CPU, the model's window as patch size (2D: one slice per call, as nnU-Net
                   does), then argmax.
torchio            TorchIO ``GridSampler`` / ``GridAggregator`` (overlap mode "average") with the
                   model's window and overlap (rounded to even voxels, as TorchIO requires),
                   batches of the best MONAI sw_batch_size windows.
=================  ===============================================================================

Every baseline gets kneescope's preprocessing (``plan_model_grid``: reorientation, left knees
mirrored for side-canonical models, resampling to the model spacing; z-score normalisation
with ``kneescope.transforms.intensity_stats`` on the whole volume) and kneescope's clean-up
(``clean_up_knee``: medial/lateral by position, largest components) and the way back to the
input grid, all INSIDE the timed region, as kneescope's own run has them.

Before the rounds, one sweep process per model times MONAI's fp32 sliding window on a
sub-volume of the same knee (2D: 16 slices; 3D: 28 slices) for each sw_batch_size in
``--sweep`` (2D default 1 2 4 8 16 slices; 3D 1 2 4 windows), each twice, interleaved; the
fastest (lowest best-of-two) is the one the rounds use.

Columns of the table (per engine; over the rounds):
- ``wall s``: median wall time of the segmentation call (volume in memory -> cleaned label
  map on the input grid; reading the file, imports and loading the weights are not in it), and
  ``min``: the best round.
- ``peak MB``: median peak RSS of the child process (``VmHWM``; includes the Python, torch
  and library baseline), ``import MB``: RSS right after the imports (before the volume and the
  weights), ``ready MB``: RSS with the volume read and the model loaded, before the timed call.
- ``net s``: time inside the network calls; ``GFLOP/s``: network-only GFLOP/s = FLOPs of the
  windows actually run (``torch.utils.flop_counter`` on the unmodified network, per window
  shape, times the number of windows) / network time; ``windows``: network samples run (2D:
  slices, 3D: windows); ``bs``: windows (2D: slices) per network call.
- ``load``: the 1-minute load average at the start of the child's timed call (median).
- Dice vs kneescope: per structure between the engine's map and kneescope's (last round);
  ``min`` over structures. Dice vs truth: mean over structures against the generator's label
  map (per structure in the JSON).
- ratios: kneescope's median wall and peak RSS over the STRONGEST baseline's (the baseline
  with the lowest median wall); the lowest baseline peak RSS is reported too.

Run (the final pass, on a quiet machine; see the time estimate below):
    .venv/bin/python benchmarks/bench_3d_model.py --work /work/data19/C/m3d    # once, ~13 min
    .venv/bin/python benchmarks/segment_vs_baselines.py --work DIR \
        --model3d /work/data19/C/m3d/ws/models/bench-3d.pt --repeats 3 --json DIR/result.json
Time (estimates from the development machine, load ~3: one 3D run of any engine ~50-90 s,
one 2D run ~10-15 s, each child ~4 s more for start-up and FLOP counting): 2D, 3 rounds and one
emulated-bf16 MONAI run: ~6 min; 3D, 3 rounds: ~14 min, plus ~7 min for its one emulated-bf16
run (``--bf16-repeats 0`` leaves bf16 out). To stay within ~15 min on a 2-core machine without
native bf16, run the 2D model with 3 rounds and the 3D model with ``--repeats 2
--bf16-repeats 0`` (two invocations, ``--models 2d`` / ``--models 3d``). The script prints one
line per run as it goes.
Quick check of the plumbing (1 round, the 24 central slices, shorter sweep; its Dice values
mean little: on a 24-slice crop the clean-up keeps different fragments):
    nice .venv/bin/python benchmarks/segment_vs_baselines.py --work DIR --quick [--models 2d]
Options: --models 2d 3d, --engines (subset), --threads 2, --volume IMG --truth LABELS --side,
--bf16-repeats N. Without --volume the held-out right knee seed 530000 is rendered into
DIR/bench (or reused).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

ENGINES = (
    "kneescope",
    "kneescope-fp32",
    "monai-fp32",
    "monai-bf16",
    "monai-kswin",
    "monai-matched",
    "nnunet",
    "torchio",
)
BASELINES = ("monai-fp32", "monai-bf16", "monai-kswin", "monai-matched", "nnunet", "torchio")
SHIPPED_2D = Path(__file__).resolve().parent.parent / "src/kneescope/pretrained/knee-seg-2d.pt"
BENCH_SEED = 530_000
"""The benchmark knee: a held-out right knee (development seed, not a training-bank or locked
test seed)."""


# --------------------------------------------------------------------------- child helpers


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _rss_now_mb() -> float:
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    """This process's peak RSS (``VmHWM``). Not ``ru_maxrss``: on Linux a child's ru_maxrss
    starts at its parent's RSS at the fork (kept across exec), so every child of a parent that
    holds a rendered knee reported at least the parent's ~1 GB."""
    return _status_mb("VmHWM")


class _Timed:
    """Counts network samples per shape and the seconds spent inside the network."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.samples: Counter[tuple[int, ...]] = Counter()

    def add(self, seconds: float, n: int, shape: tuple[int, ...]) -> None:
        self.seconds += seconds
        self.calls += 1
        self.samples[shape] += n


def _timed_module(net: Any, timer: _Timed, autocast: Any = None) -> Any:
    """``net`` as a module whose calls are timed (and run under ``autocast``, outputs fp32)."""
    import torch

    class Timed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t0 = time.perf_counter()
            if autocast is not None:
                with torch.autocast("cpu", dtype=autocast):
                    out = self.net(x).float()
            else:
                out = self.net(x)
            timer.add(time.perf_counter() - t0, int(x.shape[0]), tuple(x.shape[1:]))
            return out

    return Timed().eval()


def _flops_per_sample(
    model_path: Path, shapes: list[tuple[int, ...]]
) -> dict[tuple[int, ...], float]:
    """FLOPs of one sample of each (C, *spatial) shape on the unmodified network (meta device)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from kneescope.inference.segmentation_model import load_model

    net = load_model(model_path).build().to("meta").eval()
    out = {}
    for shape in shapes:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            net(torch.zeros((1, *shape), device="meta"))
        out[shape] = float(counter.get_total_flops())
    return out


def _prepare(image: Any, spec: Any, side: str | None) -> tuple[Any, np.ndarray]:
    """kneescope's preprocessing for a baseline: the model grid and the normalised volume."""
    from kneescope.inference.model_grid import plan_model_grid
    from kneescope.transforms.intensity import intensity_stats

    frame = plan_model_grid(image, spec, side)
    arr = frame.to_model_axes(image.array)
    work = arr if frame.grid.is_identity else frame.grid.image_to_target(arr)
    x = intensity_stats(work, spec.normalisation).apply_numpy(work)
    return frame, np.ascontiguousarray(x, dtype=np.float32)


def _finish(frame: Any, labels_t: np.ndarray, spec: Any, side: str | None) -> np.ndarray:
    """kneescope's clean-up and the way back to the input grid, for a baseline."""
    from kneescope.inference.cleanup import clean_up_knee

    labels_t = np.ascontiguousarray(labels_t, dtype=np.uint8)
    clean_up_knee(
        labels_t,
        names=spec.labels,
        orientation=spec.orientation,
        side=side,
        side_canonical=spec.side_canonical,
    )
    return np.ascontiguousarray(frame.labels_to_source(labels_t), dtype=np.uint8)


def _monai_run(
    x: np.ndarray,
    spec: Any,
    net: Any,
    roi: tuple[int, ...],
    bs: int,
    overlap: float,
    blend: str = "constant",
    sigma_scale: float = 0.125,
) -> np.ndarray:
    """MONAI's sliding window on the normalised model-grid volume -> uint8 labels (I, J, K).

    ``blend``: MONAI's ``mode`` ("constant", its default, or "gaussian" with ``sigma_scale``).
    """
    import torch
    from monai.inferers.utils import sliding_window_inference

    kw: dict[str, Any] = {"overlap": overlap, "mode": blend, "sigma_scale": sigma_scale}
    with torch.inference_mode():
        logits: Any
        if spec.mode == "3d":
            logits = sliding_window_inference(torch.from_numpy(x)[None, None], roi, bs, net, **kw)
            return torch.argmax(logits, dim=1)[0].to(torch.uint8).numpy()
        logits = sliding_window_inference(torch.from_numpy(x)[:, None], roi[1:], bs, net, **kw)
        return torch.argmax(logits, dim=1).to(torch.uint8).numpy()


def _nnunet_run(
    x: np.ndarray, spec: Any, net: Any, roi: tuple[int, ...], overlap: float
) -> np.ndarray:
    """nnU-Net v2's predictor around ``net`` (tile step 1 - overlap, no mirroring, Gaussian)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import (  # type: ignore[import-untyped]
        nnUNetPredictor,
    )
    from nnunetv2.utilities.plans_handling.plans_handler import (  # type: ignore[import-untyped]
        PlansManager,
    )

    patch = list(roi[1:]) if spec.mode == "2d" else list(roi)
    config = {
        "data_identifier": "bench",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 1,
        "patch_size": patch,
        "median_image_size_in_voxels": list(x.shape[-len(patch) :]),
        "spacing": list(spec.spacing_mm[-len(patch) :]),
        "normalization_schemes": ["ZScoreNormalization"],
        "use_mask_for_norm": [False],
        "architecture": {
            "network_class_name": "monai.networks.nets.UNet",
            "arch_kwargs": {},
            "_kw_requires_import": [],
        },
        "batch_dice": False,
    }
    plans = {
        "dataset_name": "Dataset999_bench",
        "plans_name": "nnUNetPlans",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {"bench": config},
    }
    names = {"background": 0, **{name: value for value, name in spec.labels.items()}}
    dataset_json = {"labels": names, "channel_names": {"0": "MR"}, "file_ending": ".nii.gz"}
    manager = PlansManager(plans)
    predictor = nnUNetPredictor(
        tile_step_size=1.0 - overlap,
        use_gaussian=True,
        use_mirroring=False,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        allow_tqdm=False,
    )
    predictor.manual_initialization(
        net, manager, manager.get_configuration("bench"), None, dataset_json, "nnUNetTrainer", None
    )
    logits = predictor.predict_sliding_window_return_logits(torch.from_numpy(x)[None])
    with torch.inference_mode():
        return torch.argmax(logits, dim=0).to(torch.uint8).numpy()


def _even(n: float) -> int:
    return int(2 * round(n / 2))


def _torchio_run(
    x: np.ndarray, spec: Any, net: Any, roi: tuple[int, ...], bs: int, overlap: float
) -> np.ndarray:
    """TorchIO's grid sampler and aggregator (average mode) -> uint8 labels (I, J, K)."""
    import torch
    import torchio as tio

    patch: tuple[int, ...] = (1, roi[1], roi[2]) if spec.mode == "2d" else tuple(roi)
    over = tuple(0 if p == 1 else _even(p * overlap) for p in patch)
    image = tio.ScalarImage(tensor=torch.from_numpy(x)[None])  # type: ignore[no-untyped-call]
    subject = tio.Subject(image=image)
    sampler = tio.inference.GridSampler(subject, patch, over)  # type: ignore[arg-type]
    loader: Any = torch.utils.data.DataLoader(sampler, batch_size=bs)  # type: ignore[arg-type]
    aggregator = tio.inference.GridAggregator(sampler, overlap_mode="average")
    with torch.inference_mode():
        for batch in loader:
            data = batch["image"][tio.DATA]
            out = net(data[:, :, 0]).unsqueeze(2) if spec.mode == "2d" else net(data)
            aggregator.add_batch(out, batch[tio.LOCATION])
        logits = aggregator.get_output_tensor()
        return torch.argmax(logits, dim=0).to(torch.uint8).numpy()


def _crop(image: Any, slices: int | None) -> Any:
    """The central ``slices`` slices along the image's first array axis (affine kept exact)."""
    if not slices or slices >= image.shape[0]:
        return image
    from kneescope.core import Volume

    a = (image.shape[0] - slices) // 2
    shift = np.eye(4)
    shift[0, 3] = a
    return Volume(
        np.ascontiguousarray(image.array[a : a + slices]),
        image.affine_ras @ shift,
        dict(image.metadata),
    )


def child(args: argparse.Namespace) -> None:
    """One engine on one volume in this (fresh) process; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    engine = args.child
    from kneescope.inference.segmentation_model import load_model
    from kneescope.io import read_volume

    if engine.startswith("monai"):
        import monai.inferers  # noqa: F401
    elif engine == "nnunet":
        import nnunetv2.inference.predict_from_raw_data  # type: ignore[import-untyped]  # noqa: F401
    elif engine == "torchio":
        import torchio  # noqa: F401
    else:
        from kneescope.inference.segmenter import SegmentConfig, Segmenter
    torch.set_num_threads(args.threads)  # in case an import changed it
    rss_imports = _rss_now_mb()

    image = _crop(read_volume(args.volume), args.crop)
    side = args.side
    timer = _Timed()
    info: dict[str, Any] = {}
    if engine in ("kneescope", "kneescope-fp32"):
        config = SegmentConfig(
            device="cpu", **({"precision": "fp32"} if engine.endswith("fp32") else {})
        )
        seg = Segmenter(args.model, config)
        spec = seg.model.spec
        inner = seg.predictor

        def predictor(batch: torch.Tensor) -> torch.Tensor:
            t0 = time.perf_counter()
            out = inner(batch)
            b, c, *spatial = batch.shape
            if spec.mode == "2d":  # (B, C, d, h, w) windows run as B*d slices
                timer.add(time.perf_counter() - t0, b * spatial[0], (c, *spatial[1:]))
            else:
                timer.add(time.perf_counter() - t0, b, (c, *spatial))
            return out

        seg.predictor = predictor
        rss_ready = _rss_now_mb()
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        result = seg.segment(image, side=side)
        wall = time.perf_counter() - t0
        labels = result.labels.array
        roi = tuple(int(v) for v in getattr(seg, "roi", spec.roi_size_vox))
        window_for = getattr(seg, "window_for", None)  # the window kneescope picks per volume
        if window_for is not None and not seg.config.cascade:
            from kneescope.inference.model_grid import plan_model_grid

            grid_shape = plan_model_grid(image, spec, result.side).grid.target_shape
            roi = tuple(int(v) for v in window_for(tuple(int(n) for n in grid_shape)))
        info = {
            "phases_s": dict(result.seconds),
            "precision": seg.precision_name,
            "roi": list(roi),
            "overlap": float(seg.config.overlap),
            "sw_batch_size": int(seg.config.sw_batch_size) * (roi[0] if spec.mode == "2d" else 1),
            "blend": seg.blend,
            "sigma_scale": float(seg.config.sigma_scale),
        }
    else:
        model = load_model(args.model)
        spec = model.spec
        net = model.build()
        del model
        autocast = torch.bfloat16 if args.precision == "bf16" else None
        timed = _timed_module(net, timer, autocast)
        roi = tuple(args.roi) if args.roi else spec.roi_size_vox
        overlap = args.overlap
        bs = args.sw_batch
        rss_ready = _rss_now_mb()
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        frame, x = _prepare(image, spec, side)
        if engine.startswith("monai"):
            lab = _monai_run(x, spec, timed, roi, bs, overlap, args.blend, args.sigma_scale)
        elif engine == "nnunet":
            bs = 1
            lab = _nnunet_run(x, spec, timed, roi, overlap)
        else:
            lab = _torchio_run(x, spec, timed, roi, bs, overlap)
        del x
        labels = _finish(frame, lab, spec, side)
        wall = time.perf_counter() - t0
        info = {
            "precision": args.precision,
            "roi": list(roi),
            "overlap": overlap,
            "sw_batch_size": bs,
            "blend": args.blend if engine.startswith("monai") else "",
        }
    peak = _peak_mb()
    load1 = os.getloadavg()[0]
    flops_per = _flops_per_sample(args.model, list(timer.samples))
    flops = sum(flops_per[s] * n for s, n in timer.samples.items())
    np.save(args.out, labels)
    print(
        json.dumps(
            {
                "engine": engine,
                "wall_s": wall,
                "peak_rss_mb": peak,
                "rss_after_imports_mb": rss_imports,
                "rss_ready_mb": rss_ready,
                "network_s": timer.seconds,
                "network_calls": timer.calls,
                "windows": sum(timer.samples.values()),
                "window_shapes": [list(s) for s in timer.samples],
                "gflop": flops / 1e9,
                "gflops_per_s": flops / 1e9 / timer.seconds if timer.seconds else float("nan"),
                "load_start": load0,
                "load_end": load1,
                "threads": args.threads,
                **info,
            }
        )
    )


def sweep(args: argparse.Namespace) -> None:
    """Time MONAI's sliding window per sw_batch_size on a sub-volume; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    import monai.inferers  # noqa: F401

    from kneescope.inference.segmentation_model import load_model
    from kneescope.io import read_volume

    model = load_model(args.model)
    spec = model.spec
    net = model.build()
    _, x = _prepare(read_volume(args.volume), spec, args.side)
    n = args.sweep_slices
    a = max(0, (x.shape[0] - n) // 2)
    x = np.ascontiguousarray(x[a : a + n])
    times: dict[str, dict[int, float]] = {}
    for precision in args.sweep_precisions:
        autocast = torch.bfloat16 if precision == "bf16" else None
        best: dict[int, float] = {}
        for _ in range(2):
            for bs in args.sweep:
                timer = _Timed()
                t0 = time.perf_counter()
                _monai_run(
                    x, spec, _timed_module(net, timer, autocast), spec.roi_size_vox, bs, 0.25
                )
                best[bs] = min(best.get(bs, math.inf), time.perf_counter() - t0)
        times[precision] = best
    print(json.dumps({"slices": int(x.shape[0]), "seconds": times, "load": os.getloadavg()[0]}))


# --------------------------------------------------------------------------- parent


def _run_child(cmd: list[str]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": cmd[cmd.index("--threads") + 1]}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"child failed: {' '.join(cmd[2:6])}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def confusion(a: np.ndarray, b: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) voxel counts of (a, b) label pairs."""
    idx = a.astype(np.int64).ravel() * classes + b.astype(np.int64).ravel()
    return np.bincount(idx, minlength=classes * classes).reshape(classes, classes)


def dice_from(conf: np.ndarray) -> list[float]:
    """Dice per structure 1..C-1 from a confusion matrix (NaN where both maps lack it)."""
    out = []
    for c in range(1, conf.shape[0]):
        denom = conf[c, :].sum() + conf[:, c].sum()
        out.append(float("nan") if denom == 0 else 2.0 * conf[c, c] / denom)
    return out


def bench_model(
    args: argparse.Namespace, mode: str, model: Path, volume: Path, truth: Path | None, tmp: Path
) -> dict[str, Any]:
    """Sweep, interleaved rounds and the summary of one model."""
    import torch

    from kneescope.inference.predictor import bf16_supported
    from kneescope.inference.segmentation_model import load_model

    spec = load_model(model).spec
    native_bf16 = bf16_supported(torch.device("cpu"))
    engines = [e for e in args.engines if not (e == "kneescope-fp32" and not native_bf16)]
    base = [
        sys.executable,
        __file__,
        "--model",
        str(model),
        "--volume",
        str(volume),
        "--side",
        args.side,
        "--threads",
        str(args.threads),
    ]
    if args.crop:
        base += ["--crop", str(args.crop)]

    sizes = args.sweep or ([1, 2, 4, 8, 16] if mode == "2d" else [1, 2, 4])
    if args.quick:
        sizes = [s for s in sizes if s in (1, 4, 8)] or sizes[:2]
    slices = (8 if args.quick else 16) if mode == "2d" else (16 if args.quick else 28)
    precisions = ["fp32", "bf16"] if native_bf16 else ["fp32"]
    t0 = time.perf_counter()
    sw = _run_child(
        [
            *base,
            "--child-sweep",
            "--sweep-slices",
            str(slices),
            "--sweep",
            *map(str, sizes),
            "--sweep-precisions",
            *precisions,
        ]
    )
    best = {p: int(min(t, key=lambda k: t[k])) for p, t in sw["seconds"].items()}
    best.setdefault("bf16", best["fp32"])
    print(
        f"[{mode}] sw_batch_size sweep on {sw['slices']} slices "
        f"({time.perf_counter() - t0:.0f} s, load {sw['load']:.1f}): "
        + "; ".join(
            f"{p}: " + ", ".join(f"{k}: {v:.2f} s" for k, v in t.items())
            for p, t in sw["seconds"].items()
        )
        + f" -> best {best}",
        flush=True,
    )

    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
    bf16_repeats = (
        args.bf16_repeats if args.bf16_repeats is not None else (args.repeats if native_bf16 else 1)
    )
    ks_window: dict[str, Any] = {
        "roi": list(spec.roi_size_vox),
        "overlap": 0.25,
        "precision": "fp32",
        "sw_batch_size": 8,
        "blend": "gaussian",
        "sigma_scale": 0.125,
    }
    for r in range(args.repeats):
        for engine in engines:
            if engine == "monai-bf16" and r >= bf16_repeats:
                continue
            extra: list[str] = []
            if engine == "monai-fp32":
                extra = ["--precision", "fp32", "--sw-batch", str(best["fp32"])]
            elif engine == "monai-bf16":
                extra = ["--precision", "bf16", "--sw-batch", str(best["bf16"])]
            elif engine in ("monai-kswin", "monai-matched"):
                bs = ks_window["sw_batch_size"]
                if engine == "monai-matched":
                    extra = ["--blend", ks_window["blend"]]
                    extra += ["--sigma-scale", str(ks_window["sigma_scale"])]
                extra += [
                    "--precision",
                    ks_window["precision"],
                    "--sw-batch",
                    str(bs),
                    "--roi",
                    *map(str, ks_window["roi"]),
                    "--overlap",
                    str(ks_window["overlap"]),
                ]
            elif engine == "torchio":
                extra = ["--sw-batch", str(best["fp32"])]
            out = tmp / f"{mode}-{engine}.npy"
            res = _run_child([*base, "--child", engine, "--out", str(out), *extra])
            res["labels"] = str(out)
            if engine == "kneescope":
                keys = ("roi", "overlap", "precision", "sw_batch_size", "blend", "sigma_scale")
                ks_window = {k: res[k] for k in keys}
            runs[engine].append(res)
            print(
                f"[{mode}] round {r + 1} {engine:15s} wall {res['wall_s']:7.2f} s  "
                f"peak {res['peak_rss_mb']:6.0f} MB  net {res['network_s']:6.2f} s  "
                f"{res['gflops_per_s']:5.1f} GFLOP/s  load {res['load_start']:.1f}",
                flush=True,
            )

    names = [spec.labels[c] for c in range(1, spec.num_classes)]
    ref = np.load(runs["kneescope"][-1]["labels"]) if "kneescope" in runs else None
    truth_arr = None
    if truth is not None:
        from kneescope.io import read_volume

        truth_arr = _crop(read_volume(truth), args.crop).array
    summary: dict[str, Any] = {
        "model": str(model),
        "mode": mode,
        "sweep": sw,
        "best_sw_batch_size": best,
        "engines": {},
    }
    for engine, rs in runs.items():
        if not rs:
            continue
        labels = np.load(rs[-1]["labels"])
        row: dict[str, Any] = {
            "runs": [{k: v for k, v in x.items() if k != "labels"} for x in rs],
            "wall_s_median": statistics.median(x["wall_s"] for x in rs),
            "wall_s_min": min(x["wall_s"] for x in rs),
            "peak_rss_mb_median": statistics.median(x["peak_rss_mb"] for x in rs),
            "rss_after_imports_mb": statistics.median(x["rss_after_imports_mb"] for x in rs),
            "rss_ready_mb": statistics.median(x["rss_ready_mb"] for x in rs),
            "network_s_median": statistics.median(x["network_s"] for x in rs),
            "gflops_per_s_median": statistics.median(x["gflops_per_s"] for x in rs),
            "load_median": statistics.median(x["load_start"] for x in rs),
            "windows": rs[-1]["windows"],
            "precision": rs[-1]["precision"],
            "roi": rs[-1]["roi"],
            "sw_batch_size": rs[-1]["sw_batch_size"],
        }
        if ref is not None:
            d = dice_from(confusion(labels, ref, spec.num_classes))
            row["dice_vs_kneescope"] = dict(zip(names, d, strict=True))
            finite = [v for v in d if not math.isnan(v)]
            row["dice_vs_kneescope_min"] = min(finite) if finite else float("nan")
        if truth_arr is not None:
            d = dice_from(confusion(labels, truth_arr, spec.num_classes))
            row["dice_vs_truth"] = dict(zip(names, d, strict=True))
            row["dice_vs_truth_mean"] = float(np.nanmean(d))
        summary["engines"][engine] = row
    rows = summary["engines"]
    baselines = [e for e in BASELINES if e in rows]
    if "kneescope" in rows and baselines:
        strongest = min(baselines, key=lambda e: rows[e]["wall_s_median"])
        lowest_rss = min(baselines, key=lambda e: rows[e]["peak_rss_mb_median"])
        ks = rows["kneescope"]
        summary["strongest_baseline"] = strongest
        summary["wall_ratio_vs_strongest"] = ks["wall_s_median"] / rows[strongest]["wall_s_median"]
        summary["peak_rss_ratio_vs_strongest"] = (
            ks["peak_rss_mb_median"] / rows[strongest]["peak_rss_mb_median"]
        )
        summary["lowest_rss_baseline"] = lowest_rss
        summary["peak_rss_ratio_vs_lowest_baseline"] = (
            ks["peak_rss_mb_median"] / rows[lowest_rss]["peak_rss_mb_median"]
        )
    _print_table(summary, names)
    return summary


def _print_table(summary: dict[str, Any], names: list[str]) -> None:
    rows = summary["engines"]
    print(f"\n[{summary['mode']}] {summary['model']}")
    head = ["engine", "prec", "bs", "wall s", "min", "peak MB", "import MB", "ready MB", "net s"]
    head += ["GFLOP/s", "windows", "load", "Dice vs ks (min)", "Dice vs truth"]
    widths = [15, 5, 3, 7, 7, 8, 9, 8, 7, 8, 7, 5, 16, 13]
    print(
        " ".join(
            f"{h:>{w}s}" if i else f"{h:{w}s}"
            for i, (h, w) in enumerate(zip(head, widths, strict=True))
        )
    )
    nan = float("nan")
    for engine, r in rows.items():
        cells = [
            f"{engine:15s}",
            f"{r['precision']:>5s}",
            f"{r['sw_batch_size']:3d}",
            f"{r['wall_s_median']:7.2f}",
            f"{r['wall_s_min']:7.2f}",
            f"{r['peak_rss_mb_median']:8.0f}",
            f"{r['rss_after_imports_mb']:9.0f}",
            f"{r['rss_ready_mb']:8.0f}",
            f"{r['network_s_median']:7.2f}",
            f"{r['gflops_per_s_median']:8.1f}",
            f"{r['windows']:7d}",
            f"{r['load_median']:5.1f}",
            f"{r.get('dice_vs_kneescope_min', nan):16.4f}",
            f"{r.get('dice_vs_truth_mean', nan):13.4f}",
        ]
        print(" ".join(cells))
    if "strongest_baseline" in summary:
        print(
            f"strongest baseline (lowest median wall): {summary['strongest_baseline']}; "
            f"kneescope/strongest: wall {summary['wall_ratio_vs_strongest']:.2f}x (target <= 0.6), "
            f"peak RSS {summary['peak_rss_ratio_vs_strongest']:.2f}x (target <= 0.5); vs the "
            f"lowest-RSS baseline ({summary['lowest_rss_baseline']}): "
            f"{summary['peak_rss_ratio_vs_lowest_baseline']:.2f}x"
        )
    matched = rows.get("monai-matched", {})
    if "dice_vs_kneescope_min" in matched:
        print(
            "Dice between maps, kneescope vs MONAI with every setting matched (monai-matched): "
            f"min over structures {matched['dice_vs_kneescope_min']:.4f} (target >= 0.99)"
        )
    for engine, r in rows.items():
        if "dice_vs_kneescope" in r and engine != "kneescope":
            print(
                f"  Dice {engine} vs kneescope: "
                + ", ".join(f"{n} {v:.4f}" for n, v in r["dice_vs_kneescope"].items())
            )
    for engine, r in rows.items():
        if "dice_vs_truth" in r:
            print(
                f"  Dice {engine} vs truth: "
                + ", ".join(f"{n} {v:.3f}" for n, v in r["dice_vs_truth"].items())
            )


def _machine() -> dict[str, Any]:
    """CPU, core count, native bf16, and the versions of the libraries compared."""
    from importlib.metadata import version

    import torch

    from kneescope.inference.predictor import bf16_supported

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    libs = ("kneescope", "torch", "monai", "nnunetv2", "torchio")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "native_bf16": bf16_supported(torch.device("cpu")),
        **{lib: version(lib) for lib in libs},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, help="folder for the benchmark knee and label maps")
    parser.add_argument("--models", nargs="+", choices=["2d", "3d"], default=["2d", "3d"])
    parser.add_argument("--model2d", type=Path, default=SHIPPED_2D)
    parser.add_argument(
        "--model3d", type=Path, help="bench_3d_model.py's model (3D skipped without it)"
    )
    parser.add_argument("--volume", type=Path)
    parser.add_argument("--truth", type=Path)
    parser.add_argument("--side", choices=["right", "left"], default="right")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--bf16-repeats",
        type=int,
        help="rounds with monai-bf16 (default: all where bf16 is native, else 1)",
    )
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--sweep", type=int, nargs="+", help="sw_batch_size values to sweep")
    parser.add_argument(
        "--quick", action="store_true", help="1 round on 24 central slices, short sweep"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    # child-only options
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--child-sweep", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--sw-batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--roi", type=int, nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--overlap", type=float, default=0.25, help=argparse.SUPPRESS)
    parser.add_argument("--blend", default="constant", help=argparse.SUPPRESS)
    parser.add_argument("--sigma-scale", type=float, default=0.125, help=argparse.SUPPRESS)
    parser.add_argument("--crop", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sweep-slices", type=int, default=16, help=argparse.SUPPRESS)
    parser.add_argument("--sweep-precisions", nargs="+", default=["fp32"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.child_sweep:
        sweep(args)
        return
    if args.quick:
        args.repeats, args.crop = 1, args.crop or 24
    work = args.work or Path(tempfile.mkdtemp(prefix="segbase-"))
    volume, truth = args.volume, args.truth
    if volume is None:
        from bench_3d_model import render_knee_files

        volume, truth = render_knee_files(work / "bench", BENCH_SEED, "right", held_out=True)
        args.side = "right"
    tmp = work / "maps"
    tmp.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S')} volume {volume}, {args.threads} threads, "
        f"{args.repeats} round(s), load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    machine = _machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()), flush=True)
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "machine": machine,
        "volume": str(volume),
        "threads": args.threads,
        "repeats": args.repeats,
        "crop_slices": args.crop,
        "load_at_start": load,
        "models": {},
    }
    for mode in args.models:
        model = args.model2d if mode == "2d" else args.model3d
        if model is None:
            print(f"[{mode}] no model given (--model3d): skipped")
            continue
        results["models"][mode] = bench_model(args, mode, model, volume, truth, tmp)
    results["seconds"] = time.perf_counter() - t0
    results["load_at_end"] = os.getloadavg()
    print(f"done in {results['seconds'] / 60:.1f} min; load at end {results['load_at_end'][0]:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
