"""The CPU's measured convolution peak (oneDNN via PyTorch): the denominator of "% of peak".

Runs a sweep of realistic convolution shapes (2D and 3D, 3x3(x3) kernels, 32-256 channels, the
sizes U-Net levels see) in NCHW and channels-last layouts, each timed best-of ``--repeats``
after a warm-up, and reports the best GFLOP/s per shape and the peak (the best over all
shapes). Every convolution runs on oneDNN (``torch.mkldnn_convolution``: PyTorch's own size
heuristic would send small 3D inputs to its slow native kernel). fp32 always; bf16 too when
the CPU runs it natively (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``) or when
``--bf16`` forces it (emulated on AVX2-only CPUs, reported as such).

Command (the figure in docs/network_speed.md; ~1 min on 2 cores)::

    .venv/bin/python benchmarks/conv_peak.py --threads 2 --json /tmp/conv_peak.json

Columns: ``dims`` 2 or 3; ``c_in -> c_out``; ``spatial`` the input's spatial shape (batch 8
slices in 2D, 1 volume in 3D); ``GFLOP`` of one call (2 x multiply-adds); ``nchw`` and
``cl`` GFLOP/s in the plain and channels-last layouts. The last lines give the peak per
precision and the machine load (``os.getloadavg()``) before and after: figures taken under
load are low; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

SHAPES_2D = [  # (c_in, c_out, (h, w)), batch 8
    (32, 32, (192, 192)),
    (64, 64, (96, 96)),
    (128, 128, (48, 48)),
    (256, 256, (24, 24)),
    (128, 256, (48, 48)),
    (256, 256, (48, 48)),
]
SHAPES_3D = [  # (c_in, c_out, (d, h, w)), batch 1
    (32, 32, (16, 96, 96)),
    (64, 64, (16, 48, 48)),
    (128, 128, (8, 24, 24)),
    (256, 256, (4, 12, 12)),
    (128, 128, (16, 48, 48)),
]
BATCH_2D = 8


def conv_flops(c_in: int, c_out: int, spatial: tuple[int, ...], batch: int) -> float:
    """FLOPs (2 per multiply-add) of a 3^D 'same' convolution, stride 1."""
    n = batch
    for s in spatial:
        n *= s
    return 2.0 * n * c_in * c_out * 3 ** len(spatial)


def time_conv(
    c_in: int, c_out: int, spatial: tuple[int, ...], dtype: torch.dtype, layout: str, repeats: int
) -> float:
    """Best wall seconds of one convolution call."""
    dims = len(spatial)
    batch = BATCH_2D if dims == 2 else 1
    x = torch.randn((batch, c_in, *spatial)).to(dtype)
    w = (torch.randn((c_out, c_in) + (3,) * dims) * 0.05).to(dtype)
    b = torch.zeros(c_out, dtype=dtype)
    if layout == "cl":
        fmt = torch.channels_last if dims == 2 else torch.channels_last_3d
        x = x.contiguous(memory_format=fmt)
        w = w.contiguous(memory_format=fmt)
    ones = [1] * dims

    def conv() -> torch.Tensor:  # oneDNN directly: PyTorch's size heuristic would send small
        return torch.mkldnn_convolution(x, w, b, ones, ones, ones, 1)  # 3D inputs elsewhere

    best = float("inf")
    with torch.inference_mode():
        conv()
        for _ in range(repeats):
            t0 = time.perf_counter()
            conv()
            best = min(best, time.perf_counter() - t0)
    return best


def sweep(threads: int, repeats: int, dtypes: list[torch.dtype]) -> dict[str, Any]:
    torch.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    peaks: dict[str, float] = {}
    for dtype in dtypes:
        name = str(dtype).replace("torch.", "")
        for c_in, c_out, spatial in [*SHAPES_2D, *SHAPES_3D]:
            batch = BATCH_2D if len(spatial) == 2 else 1
            flops = conv_flops(c_in, c_out, spatial, batch)
            rates = {
                layout: flops / time_conv(c_in, c_out, spatial, dtype, layout, repeats) / 1e9
                for layout in ("nchw", "cl")
            }
            rows.append(
                {
                    "dtype": name,
                    "dims": len(spatial),
                    "c_in": c_in,
                    "c_out": c_out,
                    "spatial": list(spatial),
                    "gflop": flops / 1e9,
                    "gflops_nchw": rates["nchw"],
                    "gflops_cl": rates["cl"],
                }
            )
            print(
                f"{name:8s} {len(spatial)}D {c_in:4d} -> {c_out:4d} "
                f"{'x'.join(map(str, spatial)):>12s} {flops / 1e9:7.2f} GFLOP  "
                f"nchw {rates['nchw']:6.1f}  cl {rates['cl']:6.1f} GFLOP/s",
                flush=True,
            )
            peaks[name] = max(peaks.get(name, 0.0), *rates.values())
    return {"rows": rows, "peak_gflops": peaks}


def bf16_native() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per shape")
    parser.add_argument("--bf16", action="store_true", help="also bf16 where not native")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    native = bf16_native()
    dtypes = [torch.float32] + ([torch.bfloat16] if native or args.bf16 else [])
    load_before = os.getloadavg()
    result = sweep(args.threads, args.repeats, dtypes)
    result.update(
        {
            "threads": args.threads,
            "bf16_native": native,
            "load_before": list(load_before),
            "load_after": list(os.getloadavg()),
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
        }
    )
    for name, peak in result["peak_gflops"].items():
        note = "" if name != "bfloat16" or native else " (emulated: no native bf16 on this CPU)"
        print(f"peak {name}: {peak:.1f} GFLOP/s at {args.threads} threads{note}")
    print(f"load before {load_before}, after {result['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
