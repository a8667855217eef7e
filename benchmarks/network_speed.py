"""The network pass alone: the plain network against each exact rewrite, GFLOP/s, % of peak.

Models: the shipped 2D model (``knee-seg-2d.pt``) on a window of 8 slices at 256 x 256 (its
training window) and at 384 x 384 (whole OAI slices), and a 3D U-Net of the 3D recipe
(MONAI UNet, features 16-32-64-128-256, one residual unit, instance norm, PReLU, 10 classes;
random weights: the speed does not depend on them) on a 16 x 192 x 192 window.

Variants, each a :func:`kneescope.inference.predictor.make_predictor` over the same weights,
timed INTERLEAVED (v1 v2 ... v1 v2 ...) in one process, best of ``--repeats``:

- ``plain``: the network as MONAI builds it, NCHW (the engine before issue 19).
- ``plain_cl``: the same, channels-last.
- ``rewritten``: :func:`~kneescope.inference.fast_network.optimise_network` (in-place norm +
  activation, merged residual convs, folded identity head), NCHW, no slice groups.
- ``rewritten_cl``: the same, channels-last.
- ``subpixel_cl``: ``rewritten_cl`` with ConvTranspose as sub-pixel convolutions.
- ``optimised``: ``make_predictor(optimise=True)``, the default engine: rewrites,
  channels-last and (2D) slice groups on one thread per core.
- ``optimised_x2`` (3D): ``optimised`` given 2 windows per call (``sw_batch_size`` 2), one
  per thread; its time is per window.
- ``compiled`` (``--compile``): ``torch.compile`` (inductor, CPU) of the rewritten
  channels-last network; compile seconds reported apart.

Interleaved with them, a **peak probe**: the two convolution shapes of
``benchmarks/conv_peak.py`` that reach its peak (2D 64 -> 64 at 96^2 and 128 -> 128 at 48^2,
channels-last), so "% of peak" compares the network with the CPU's conv peak measured under
the same load. ``benchmarks/conv_peak.py`` gives the full sweep (run it too, on a quiet
machine; ``--peak-gflops`` uses its figure instead of the probe).

Command (the figures in docs/network_speed.md; ~3 min on 2 quiet cores)::

    .venv/bin/python benchmarks/network_speed.py --threads 2 --repeats 3 \\
        --json /tmp/network_speed.json

On a CPU with native bf16 (AVX512-BF16/AMX), where kneescope runs bf16 by default, measure
that precision against ``conv_peak.py``'s bf16 peak: ``--precision bf16 --peak-gflops
BF16_PEAK`` (every variant in bf16, plus ``plain_autocast``, the plain network under
``torch.autocast``).

Columns: ``model``; ``variant``; ``s/pass`` best wall seconds of one window pass;
``GFLOP`` of the pass (the ORIGINAL network's convolutions, 2 x multiply-adds: rewrites that
add zero taps are not counted as work); ``GFLOP/s``; ``% peak`` of the probe's peak measured in
the same run (or ``--peak-gflops``); ``x plain`` the pass time over ``plain``'s. Then the
per-layer table (``--layers``): the top layers of ``plain`` and ``optimised`` by time (one
pass, forward hooks, 1 thread for the optimised variant's slice groups; approximate).
``load`` = ``os.getloadavg()`` before and after.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_2D = ROOT / "src" / "kneescope" / "pretrained" / "knee-seg-2d.pt"
PROBE_SHAPES = [(64, 64, (96, 96)), (128, 128, (48, 48))]


def conv_flops(network: nn.Module, x: torch.Tensor) -> float:
    """FLOPs (2 per multiply-add) of every (transposed) convolution in one forward of ``x``."""
    total = [0.0]

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        assert isinstance(mod, nn.modules.conv._ConvNd)
        k = 1
        for s in mod.kernel_size:
            k *= s
        if isinstance(mod, nn.ConvTranspose2d | nn.ConvTranspose3d):
            total[0] += 2.0 * inp[0].numel() * mod.out_channels * k / mod.groups
        else:
            total[0] += 2.0 * out.numel() * mod.in_channels * k / mod.groups

    handles = [
        m.register_forward_hook(hook)
        for m in network.modules()
        if isinstance(m, nn.modules.conv._ConvNd)
    ]
    with torch.inference_mode():
        network(x)
    for h in handles:
        h.remove()
    return total[0]


def models(which: list[str]) -> list[tuple[str, str, nn.Module, tuple[int, ...]]]:
    """(name, mode, network, window (B, C, d, h, w)) for each benchmarked model."""
    out: list[tuple[str, str, nn.Module, tuple[int, ...]]] = []
    if "2d" in which:
        from kneescope.inference.segmentation_model import load_model

        net2d = load_model(SHIPPED_2D).build(torch.device("cpu")).eval()
        out.append(("knee-seg-2d 8x256x256", "2d", net2d, (1, 1, 8, 256, 256)))
        out.append(("knee-seg-2d 8x384x384", "2d", net2d, (1, 1, 8, 384, 384)))
    if "3d" in which:
        from monai.networks.nets.unet import UNet

        torch.manual_seed(0)
        net3d = UNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=10,
            channels=(16, 32, 64, 128, 256),
            strides=(2, 2, 2, 2),
            num_res_units=1,
            norm=("instance", {"affine": True}),
            act=("prelu", {}),
        ).eval()
        out.append(("unet3d-recipe 16x192x192", "3d", net3d, (1, 1, 16, 192, 192)))
    return out


def variants(
    mode: str, net: nn.Module, compile_too: bool, dtype: torch.dtype | None = None
) -> tuple[dict[str, Callable[[torch.Tensor], torch.Tensor]], dict[str, float]]:
    """The predictors to time, and compile seconds where compiled. ``dtype`` bf16: every
    variant with its weights and inputs in bf16 (kneescope's bf16 path), plus
    ``plain_autocast``: the plain network under ``torch.autocast`` (how MONAI users run bf16)."""
    from kneescope.inference.fast_network import optimise_network, to_layout
    from kneescope.inference.predictor import make_predictor

    cpu = torch.device("cpu")
    dims = 2 if mode == "2d" else 3

    def pred(network: nn.Module, **kw: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        return make_predictor(
            copy.deepcopy(network),  # make_predictor casts to bf16 in place (Module.to)
            mode=mode,  # type: ignore[arg-type]
            device=cpu,
            autocast_dtype=kw.pop("autocast_dtype", dtype),
            **kw,
        )

    out = {
        "plain": pred(net, optimise=False),
        "plain_cl": pred(net, optimise=False, channels_last=True),
        "rewritten": pred(optimise_network(net), optimise=False),
        "rewritten_cl": pred(optimise_network(net), optimise=False, channels_last=True),
        "subpixel_cl": pred(
            optimise_network(net, subpixel=True), optimise=False, channels_last=True
        ),
        "optimised": pred(net, optimise=True),
    }
    if dtype is not None:
        out["plain_autocast"] = pred(net, optimise=False, cast_weights=False)
    if mode == "3d":  # 2 windows per call, one per thread; timed per window
        out["optimised_x2"] = pred(net, optimise=True)
    compile_s: dict[str, float] = {}
    if compile_too:
        fast = to_layout(optimise_network(net), dims)  # a copy: cast it before compiling
        compiled: Any = torch.compile(fast.to(dtype) if dtype else fast, dynamic=False)
        out["compiled"] = make_predictor(
            compiled,
            mode=mode,  # type: ignore[arg-type]
            device=cpu,
            autocast_dtype=dtype,
            optimise=False,
            channels_last=True,
        )
    return out, compile_s


def probe_gflops(repeats: int = 3, dtype: torch.dtype = torch.float32) -> float:
    """Best GFLOP/s of the peak shapes (channels-last, in ``dtype``) right now."""
    from torch.nn import functional

    best = 0.0
    for c_in, c_out, spatial in PROBE_SHAPES:
        x = torch.randn((8, c_in, *spatial), dtype=dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        w = (torch.randn(c_out, c_in, 3, 3) * 0.05).to(dtype)
        w = w.contiguous(memory_format=torch.channels_last)
        flops = 2.0 * 8 * spatial[0] * spatial[1] * c_in * c_out * 9
        with torch.inference_mode():
            functional.conv2d(x, w, padding=1)
            for _ in range(repeats):
                t0 = time.perf_counter()
                functional.conv2d(x, w, padding=1)
                best = max(best, flops / (time.perf_counter() - t0) / 1e9)
    return best


def layer_table(network: nn.Module, x: torch.Tensor, top: int) -> list[tuple[str, float]]:
    """Seconds per leaf module (forward hooks), the ``top`` slowest."""
    starts: dict[str, float] = {}
    seconds: dict[str, float] = defaultdict(float)
    handles = []
    for name, mod in network.named_modules():
        if any(True for _ in mod.children()):
            continue

        def pre(m: nn.Module, i: Any, name: str = name) -> None:
            starts[name] = time.perf_counter()

        def post(m: nn.Module, i: Any, o: Any, name: str = name) -> None:
            seconds[name] += time.perf_counter() - starts[name]

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    with torch.inference_mode():
        network(x)
        seconds.clear()
        network(x)
    for h in handles:
        h.remove()
    return sorted(seconds.items(), key=lambda kv: -kv[1])[:top]


def head_cost(net2d: nn.Module, slices: int, size: int, repeats: int) -> dict[str, Any]:
    """The shipped 2D U-Net's full-resolution head (ConvTranspose 32 -> 10 to full resolution,
    instance norm + PReLU, 3 x 3 conv 10 -> 10 + identity) against a head without wide 3 x 3
    convolutions at full resolution: a 1 x 1 convolution 32 -> 4 x 10 at half resolution,
    pixel shuffle, instance norm + PReLU, 1 x 1 conv 10 -> 10 (what a retrained release could
    use; random weights, timing and FLOPs only). Both timed plain and rewritten channels-last."""
    from torch.nn import functional

    from kneescope.inference.fast_network import NormAct, optimise_network, to_layout

    head = net2d.get_submodule("model.2")
    x = torch.randn(slices, 32, size // 2, size // 2)
    fast_head = to_layout(optimise_network(head), 2)
    torch.manual_seed(0)
    w1 = torch.randn(40, 32, 1, 1) * 0.1
    w2 = torch.randn(10, 10, 1, 1) * 0.1
    norm = NormAct(10, 1e-5, torch.ones(10), torch.zeros(10), 0.25)

    def light(t: torch.Tensor) -> torch.Tensor:
        y = functional.pixel_shuffle(functional.conv2d(t, w1), 2)
        return functional.conv2d(norm(y), w2)

    px = slices * size * size
    flops = {
        "current": 2.0 * (slices * (size // 2) ** 2 * 32 * 10 * 9 + px * 10 * 10 * 9),
        "light": 2.0 * (slices * (size // 2) ** 2 * 32 * 40 + px * 10 * 10),
    }
    xcl = x.contiguous(memory_format=torch.channels_last)
    runs: dict[str, Callable[[], Any]] = {
        "current_plain": lambda: head(x),
        "current_optimised": lambda: fast_head(xcl),
        "light_cl": lambda: light(xcl),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.inference_mode():
        for f in runs.values():
            f()
        for _ in range(repeats):
            for k, f in runs.items():
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    return {
        "input": [slices, 32, size // 2, size // 2],
        "gflop": {k: v / 1e9 for k, v in flops.items()},
        "seconds": {k: min(v) for k, v in times.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["2d", "3d"], choices=["2d", "3d"])
    parser.add_argument("--compile", action="store_true", help="also torch.compile (slow)")
    parser.add_argument("--peak-gflops", type=float, help="conv_peak.py's figure (else probe)")
    parser.add_argument("--layers", type=int, default=8, help="per-layer rows (0: none)")
    parser.add_argument("--head", action="store_true", help="also the 2D head's cost")
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="bf16: weights and inputs in bf16 (kneescope's path where bf16 is native); "
        "compare with conv_peak.py's bf16 peak",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.precision == "bf16" else None
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    layer_rows: dict[str, Any] = {}
    probe: list[float] = []
    for name, mode, net, shape in models(args.models):
        batch = torch.randn(shape)
        flat = batch
        if mode == "2d":
            flat = batch.permute(0, 2, 1, 3, 4).reshape(-1, 1, *shape[3:])
        gflop = conv_flops(net, flat) / 1e9
        preds, compile_s = variants(mode, net, args.compile, dtype)
        with torch.inference_mode():
            batch2 = torch.cat([batch, batch])
            for key, p in preds.items():  # warm-up (and compile)
                t0 = time.perf_counter()
                p(batch2 if key.endswith("_x2") else batch)
                if key == "compiled":
                    compile_s[key] = time.perf_counter() - t0
            times: dict[str, list[float]] = {k: [] for k in preds}
            for _ in range(args.repeats):
                probe.append(probe_gflops(dtype=dtype or torch.float32))
                for key, p in preds.items():
                    t0 = time.perf_counter()
                    p(batch2 if key.endswith("_x2") else batch)
                    per = 2 if key.endswith("_x2") else 1
                    times[key].append((time.perf_counter() - t0) / per)
        for key in preds:
            best = min(times[key])
            results.append(
                {
                    "model": name,
                    "variant": key,
                    "seconds": best,
                    "all_seconds": times[key],
                    "gflop": gflop,
                    "gflops_per_s": gflop / best,
                    "x_plain": best / min(times["plain"]),
                    "compile_s": compile_s.get(key),
                }
            )
        if args.layers:
            from kneescope.inference.fast_network import optimise_network, to_layout

            fast = to_layout(optimise_network(net), 2 if mode == "2d" else 3)
            fmt = torch.channels_last if mode == "2d" else torch.channels_last_3d
            layer_rows[name] = {
                "plain": layer_table(net, flat, args.layers),
                "optimised": layer_table(fast, flat.contiguous(memory_format=fmt), args.layers),
            }
    head = None
    if args.head:
        from kneescope.inference.segmentation_model import load_model

        head = head_cost(
            load_model(SHIPPED_2D).build(torch.device("cpu")).eval(), 8, 384, args.repeats
        )
    peak = args.peak_gflops or max(probe)
    for row in results:
        row["pct_peak"] = 100.0 * row["gflops_per_s"] / peak
    load_after = os.getloadavg()
    print(
        f"{'model':26s} {'variant':13s} {'s/pass':>7s} {'GFLOP':>6s} {'GFLOP/s':>8s} "
        f"{'% peak':>7s} {'x plain':>8s}"
    )
    for row in results:
        extra = f"  (compile {row['compile_s']:.0f} s)" if row["compile_s"] else ""
        print(
            f"{row['model']:26s} {row['variant']:13s} {row['seconds']:7.3f} {row['gflop']:6.2f} "
            f"{row['gflops_per_s']:8.1f} {row['pct_peak']:6.1f}% {row['x_plain']:8.2f}{extra}"
        )
    src = "--peak-gflops" if args.peak_gflops else f"probe, best of {len(probe)}"
    print(f"peak {peak:.1f} GFLOP/s ({src}); threads {args.threads}; {args.precision}")
    for name, tables in layer_rows.items():
        for variant, rows in tables.items():
            print(f"-- {name} {variant}: slowest layers (one pass, hooks)")
            for layer, s in rows:
                print(f"   {layer:60s} {s * 1e3:8.1f} ms")
    if head is not None:
        print(f"-- 2D head at full resolution, input {head['input']} (8 slices of 384^2)")
        print(
            f"   GFLOP: current {head['gflop']['current']:.2f}, without 3x3 at full "
            f"resolution {head['gflop']['light']:.2f}"
        )
        for k, s in head["seconds"].items():
            print(f"   {k:20s} {s:.3f} s")
    print(f"load before {load_before}, after {load_after}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": results,
                    "layers": layer_rows,
                    "head": head,
                    "peak_gflops": peak,
                    "peak_source": src,
                    "threads": args.threads,
                    "load_before": load_before,
                    "load_after": load_after,
                    "argv": sys.argv,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
