"""Time one synthetic knee (image + labels + truth) and check thickness truth on its labels.

Usage:
    .venv/bin/python benchmarks/synth_knee_time.py [--size full] [--repeat 1] [--klg 2]

Prints wall time per knee (single process, numpy single-threaded work), peak RSS, and per
plate the truth mean thickness vs. a distance-transform measurement on the rendered label
map (outer-boundary cartilage voxels -> distance to the nearest bone voxel centre).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from scipy import ndimage

from kneescope.core.labels import CARTILAGE_PLATES
from kneescope.synth.knee import render_knee
from kneescope.synth.params import sample_knee_params, size_spec


def measured(labels: np.ndarray, cart: int, bone: int, spacing: tuple[float, ...]) -> float:
    c, b = labels == cart, labels == bone
    box = ndimage.find_objects(c.astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 12, 0), s.stop + 12) for s in box)
    c, b = c[box], b[box]
    dist = ndimage.distance_transform_edt(~b, sampling=spacing)
    outer = c & ndimage.binary_dilation(~(c | b))
    return float(dist[outer].mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="full")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--klg", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    size = size_spec(args.size)
    times, cpu = [], []
    sample = None
    for r in range(args.repeat):
        params = sample_knee_params(np.random.default_rng(args.seed + r), klg=args.klg)
        t0, c0 = time.perf_counter(), time.process_time()
        sample = render_knee(params, size)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    assert sample is not None
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"size={size.name} shape={size.shape}: {np.mean(times):.2f} s per knee "
        f"wall (min {min(times):.2f}, n={len(times)}); CPU {np.mean(cpu):.2f} s; "
        f"peak RSS {rss_mb:.0f} MB"
    )
    spacing = sample.labels.spacing_mm
    for plate, (cart, bone) in CARTILAGE_PLATES.items():
        truth = sample.truth.plates[plate].thickness_mean_mm
        got = measured(sample.labels.array, cart, bone, spacing)
        print(
            f"  {plate:15s} truth {truth:.3f} mm, measured {got:.3f} mm "
            f"({100 * (got - truth) / truth:+.1f} %)"
        )
    for v in (2, 4, 5, 7, 8, 9):
        truth_v = sample.truth.label_volumes_mm3[str(v)]
        counted = float((sample.labels.array == v).sum()) * sample.labels.voxel_volume_mm3
        print(
            f"  label {v}: continuous volume {truth_v:.0f} mm3, label-map count "
            f"{counted:.0f} mm3 ({100 * (counted - truth_v) / truth_v:+.1f} %)"
        )


if __name__ == "__main__":
    main()
