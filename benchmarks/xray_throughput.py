"""Knee films per hour end to end, and peak memory: read DICOM, locate both knees, grade KL,
measure JSW - what ``kneescope xray`` does per film.

Films come from :func:`kneescope.synth.knee_film_set.knee_films` (bilateral PA, 700 x ~1650
at 0.2 mm, rotation, scale, exposure, collimation, markers), written as DICOM
(MONOCHROME1/2 alternating) before the clock starts. ``--jobs`` worker processes (one
thread each, torch included) each take films from a shared queue; the wall time from the
first film to the last gives films per hour (wall); the CPU seconds per film give what
``--jobs`` idle cores would do (films/h from CPU time: on a shared, loaded machine the wall
figure measures the other load too). Peak RSS: the largest resident set of any
worker (``resource.getrusage``, the workers' own peaks) and of the parent.

The KL model is ``--model`` (a file or a shipped name; default the shipped ``kl-xray-real``);
when none can be loaded the run says so and measures read + locate + JSW only (never a made-up
grade).

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/xray_throughput.py \\
        [--films 40] [--jobs 2] [--seed 401] [--model kl-xray-real]

Prints a Markdown table and one JSON line (``--json``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_FILMS_PER_HOUR = 2000.0

_MODEL: Any = None


def _write_films(folder: Path, n: int, seed: int) -> list[Path]:
    from kneescope.io import write_dicom_radiograph
    from kneescope.io.dicom_write import DicomWriteMeta
    from kneescope.synth.knee_film_set import knee_films

    meta = DicomWriteMeta(
        patient_id="9000100",
        study_date="20050301",
        study_description="OAI^XR^ENROLLMENT",
        series_description="Bilateral PA Fixed Flexion Knee",
        modality="CR",
        uid_seed="throughput",
    )
    paths = []
    for i, film in enumerate(knee_films(n, seed)):
        photometric = "MONOCHROME1" if i % 2 else "MONOCHROME2"
        paths.append(
            write_dicom_radiograph(
                film.image, folder / f"film{i:04d}.dcm", meta=meta, photometric=photometric
            )
        )
    return paths


def _init(model: str | None) -> None:
    import torch

    torch.set_num_threads(1)
    global _MODEL
    from kneescope.capabilities.classification.kl import load_kl_model
    from kneescope.errors import KneescopeError

    try:
        _MODEL = load_kl_model(model)
    except KneescopeError:
        _MODEL = None


def _one(path: Path) -> dict[str, float]:
    import numpy as np

    from kneescope.capabilities.radiographs.jsw_step import jsw_values
    from kneescope.io import read_dicom_radiograph
    from kneescope.xray.locate import locate_knees

    c0 = time.process_time()
    t0 = time.perf_counter()
    film = read_dicom_radiograph(path)
    t1 = time.perf_counter()
    located = locate_knees(film)
    t2 = time.perf_counter()
    gradable = [k for k in located if k.gradable and k.roi is not None]
    if _MODEL is not None and gradable:
        from kneescope.capabilities.classification.kl import grade_knees

        rois = np.stack([k.roi for k in gradable])
        grade_knees(_MODEL, rois, rois[::-1] if len(gradable) == 2 else None)
    t3 = time.perf_counter()
    for k in gradable:
        jsw_values(k.roi)
    t4 = time.perf_counter()
    return {
        "cpu_s": time.process_time() - c0,
        "read_s": t1 - t0,
        "locate_s": t2 - t1,
        "kl_s": t3 - t2,
        "jsw_s": t4 - t3,
        "knees": float(len(gradable)),
        "worker_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--films", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=401)
    parser.add_argument("--model", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write_films(Path(tmp), args.films, args.seed)
        ctx = mp.get_context("spawn")
        with ctx.Pool(args.jobs, initializer=_init, initargs=(args.model,)) as pool:
            pool.map(_one, paths[: args.jobs])  # warm: imports and the model in every worker
            start = time.perf_counter()
            rows = pool.map(_one, paths, chunksize=1)
            wall = time.perf_counter() - start
        probe = ctx.Pool(1, initializer=_init, initargs=(args.model,))
        graded = probe.apply(_has_model)
        probe.close()
        probe.join()
    per_hour = len(paths) / wall * 3600.0
    cpu_per_film = sum(r["cpu_s"] for r in rows) / len(rows)
    # what the same work gives on --jobs idle cores (CPU time, not wall: a shared machine's
    # other load does not count against it)
    per_hour_cpu = args.jobs * 3600.0 / cpu_per_film
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("read_s", "locate_s", "kl_s", "jsw_s")}
    summary = {
        "films": len(paths),
        "jobs": args.jobs,
        "wall_s": round(wall, 2),
        "films_per_hour": round(per_hour, 1),
        "films_per_hour_from_cpu_time": round(per_hour_cpu, 1),
        "cpu_s_per_film": round(cpu_per_film, 4),
        "target_films_per_hour": TARGET_FILMS_PER_HOUR,
        "kl_model": args.model or "kl-xray-real",
        "kl_graded": graded,
        "knees_gradable": int(sum(r["knees"] for r in rows)),
        **{f"mean_{k}": round(v, 4) for k, v in mean.items()},
        "peak_worker_rss_mb": round(max(r["worker_rss_mb"] for r in rows), 1),
        "parent_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "cpus": os.cpu_count(),
    }
    head = ("films", "jobs", "films/h (wall)", "films/h (CPU)", "target", "KL graded", "read s")
    print("| " + " | ".join((*head, "locate s", "KL s", "JSW s", "peak RSS MB")) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {summary['films']} | {args.jobs} | {per_hour:.0f} | {per_hour_cpu:.0f} | "
        f"{TARGET_FILMS_PER_HOUR:.0f} | "
        f"{graded} | {mean['read_s']:.3f} | {mean['locate_s']:.3f} | {mean['kl_s']:.3f} | "
        f"{mean['jsw_s']:.3f} | {summary['peak_worker_rss_mb']} |"
    )
    if not graded:
        print("KL model not available: KL grading was not part of this run", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    return 0


def _has_model() -> bool:
    return _MODEL is not None


if __name__ == "__main__":
    sys.exit(main())
