"""End to end: `kneescope ingest` (first and unchanged re-run) and `kneescope convert` on a tree.

Builds an OAI-style tree of DESS series rendered by the project's phantom
(:func:`kneescope.synth.knee.render_knee`, full 160x384x384 uint16 grid with noise and bias
field by default) written as DICOM with :func:`kneescope.io.write_dicom_series`, plus its
label maps in ``labels/``, and optionally many small extra series to scale the file count.
Then runs the real console script in subprocesses and prints wall times (including Python
start-up) and the commands' own JSON reports.

Run: .venv/bin/python benchmarks/ingest_convert_tree.py [--subjects 2] [--visits 2]
     [--size full|small] [--extra-series 0] [--jobs 2] [--keep DIR]
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
import time
from pathlib import Path
from typing import Any

import numpy as np

RELEASES = ("0.C.2", "1.C.2", "3.C.2", "5.C.1", "6.C.1", "8.C.1", "10.C.1")


def build_tree(root: Path, *, subjects: int, visits: int, size: str, extra: int) -> int:
    """Write the tree; returns the number of series folders."""
    from kneescope.core import Volume
    from kneescope.io.dicom_series import write_dicom_series
    from kneescope.io.dicom_write import DicomWriteMeta
    from kneescope.io.nifti import write_nifti
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import sample_knee_params, size_spec

    labels_dir = root / "labels"
    labels_dir.mkdir(parents=True)
    n = 0
    for s in range(subjects):
        pid = f"9{s + 1:06d}"
        side = "right" if s % 2 == 0 else "left"
        params = sample_knee_params(np.random.default_rng(s), side=side)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        sample = render_knee(params, size_spec(size))
        print(f"rendered {pid} {side} {sample.image.shape} in {time.perf_counter() - t0:.1f} s")
        for v in range(visits):
            date = f"{2004 + v}0101"
            series = f"1{s:03d}{v:04d}"
            folder = root / RELEASES[v] / pid / date / series
            folder.parent.mkdir(parents=True, exist_ok=True)
            desc = f"SAG_3D_DESS_{side.upper()}"
            meta = DicomWriteMeta(
                patient_id=pid,
                study_date=date,
                series_description=desc,
                laterality=side,  # type: ignore[arg-type]
                uid_seed=f"{pid}-{date}-{desc}",
            )
            write_dicom_series(sample.image, folder, meta=meta)
            write_nifti(sample.labels, labels_dir / f"{series}.nii.gz")
            n += 1
    rng = np.random.default_rng(99)
    for e in range(extra):
        pid = f"98{e // 4:05d}"
        folder = root / "0.C.2" / pid / "20040101" / f"2{e:07d}"
        folder.parent.mkdir(parents=True, exist_ok=True)
        array = rng.integers(0, 1000, size=(32, 32, 8)).astype(np.uint16)
        meta = DicomWriteMeta(
            patient_id=pid,
            study_date="20040101",
            series_description="COR_IW_TSE_RIGHT",
            uid_seed=f"extra-{e}",
        )
        write_dicom_series(Volume(array, np.diag([0.4, 0.4, 3.0, 1.0])), folder, meta=meta)
        n += 1
    return n


_CPU = {"s": 0.0}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(*args: str) -> tuple[float, dict[str, Any]]:
    """Run the console script; returns wall seconds and its JSON; CPU seconds in _CPU["s"]
    (the command and its worker processes, user + system)."""
    exe = Path(sys.executable).with_name("kneescope")
    cpu0 = _children_cpu_s()
    t0 = time.perf_counter()
    out = subprocess.run([str(exe), *args, "--json"], capture_output=True, text=True, check=True)
    _CPU["s"] = _children_cpu_s() - cpu0
    return time.perf_counter() - t0, json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--visits", type=int, default=2)
    parser.add_argument("--size", choices=("full", "small"), default="full")
    parser.add_argument("--extra-series", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="build here and keep it")
    args = parser.parse_args()

    base = args.keep or Path(tempfile.mkdtemp(prefix="kneescope-bench-"))
    root, ws = base / "OAI", base / "ws"
    try:
        t0 = time.perf_counter()
        n = build_tree(
            root,
            subjects=args.subjects,
            visits=args.visits,
            size=args.size,
            extra=args.extra_series,
        )
        files = sum(1 for p in root.rglob("*") if p.is_file())
        print(f"tree: {n} series, {files} files, built in {time.perf_counter() - t0:.1f} s")

        wall, first = run("ingest", str(root), "-w", str(ws))
        print(
            f"ingest (first):     {wall:6.2f} s wall, {first['seconds']:.2f} s in ingest; "
            f"added {first['added']}, failed {first['failed']}, labels {first['labels']}"
        )
        wall, again = run("ingest", str(root), "-w", str(ws))
        print(
            f"ingest (unchanged): {wall:6.2f} s wall, {again['seconds']:.3f} s in ingest, "
            f"{_CPU['s']:.2f} s CPU; added {again['added']}, unchanged {again['unchanged']}"
        )
        wall, conv = run("convert", "-w", str(ws), "--jobs", str(args.jobs))
        print(
            f"convert (--jobs {args.jobs}): {wall:6.2f} s wall; converted {conv['converted']}, "
            f"{conv['bytes_in'] / 1e6:.1f} MB in -> {conv['bytes_out'] / 1e6:.1f} MB out, "
            f"ratio {conv['ratio']:.3f}x, {conv['mb_per_s']:.1f} MB/s (in-command wall)"
        )
        print(
            f"convert CPU:        {_CPU['s']:6.2f} s (all processes) -> "
            f"{conv['bytes_in'] / 1e6 / _CPU['s']:.1f} MB per CPU-second; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        wall, skip = run("convert", "-w", str(ws), "--jobs", str(args.jobs))
        print(
            f"convert (again):    {wall:6.2f} s wall; converted {skip['converted']}, "
            f"skipped {skip['skipped']}"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
