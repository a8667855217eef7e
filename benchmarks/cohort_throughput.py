"""Cohort throughput end to end from DICOM: synth -> ingest -> load -> segment -> measure.

What a user's cohort goes through, with the shipped segmentation model: a synthetic cohort
of full-size OAI DESS knees (160x384x384, 0.7 x 0.365 x 0.365 mm) is written once as DICOM
series in the OAI folder layout (``kneescope synth``: both knees of ``ceil(n / 2)`` subjects
at V00, no radiographs, no bone-marrow lesions or meniscal tears, which the shipped model was
not trained on), ingested into a fresh workspace catalog, and run as one cohort run
``load_volume -> segment -> measure -> peak_rss`` on the chosen executor (default: a Dask
LocalCluster of 2 one-thread workers, the 2 cores of the development machine). ``segment``
uses the shipped default model (``knee-seg`` = ``knee-seg-2d``) unless ``--model`` names
another; ``measure`` runs on the network's own label maps with its defaults (thickness maps
on). Every knee is then checked against the synthetic truth (Dice per structure, biomarker
errors), so the throughput is that of maps worth measuring.

Run (on a quiet 2-core machine ~3-5 min with the cohort already generated, ~2 min more to
generate it the first time; ``--render-only`` generates it alone; ``--profile 2`` adds ~1 min):

    .venv/bin/python benchmarks/cohort_throughput.py --n 6 --profile 2 \\
        --data bench-out/cohort_throughput --json bench-out/cohort_throughput.json

Prints one JSON object (and writes it to ``--json``):

- ``volumes_per_hour``: n x 3600 / wall of the whole run (cluster start included; catalog
  ingest and cohort generation excluded, they are one-off and reported apart).
- ``steady_volumes_per_hour``: workers x 3600 / mean seconds of one item's steps: the rate
  once the cluster is up and every worker busy (what a 50,000-volume run approaches).
- ``cpu_s_per_volume``: CPU seconds (user + system) of the driver and every worker over the
  run (worker start, imports and model loading included), per volume (``driver_cpu_s``,
  ``workers_cpu_s``: the two parts over the whole run);
  ``volumes_per_hour_from_cpu`` = cores x 3600 / that: the rate the same work reaches on
  that many otherwise idle cores (the honest figure on a machine others load; ``cores`` =
  workers x threads per worker, 2 in-process).
- ``mean_phase_s``: mean seconds per volume of each phase: ``read`` (DICOM series -> volume;
  the run reads the next item on a reader thread while the current one computes),
  ``preprocess`` (segment's prepare: reorient, resample, intensity statistics), ``infer``
  (network + stitching), ``postprocess`` (segment's finish: clean-up, back to the input
  grid), ``write`` (label map and measurement files), ``measure`` (biomarkers).
- ``mean_phase_cpu_equivalent_s``: the phases scaled to ``cpu_s_per_volume`` (each phase's
  share of an item's wall time x its CPU seconds): an estimate that assumes the load slowed
  every phase alike; worker start and model loading are spread over the phases.
- ``mean_step_s``: mean seconds per step (load_volume, segment, measure, peak_rss).
- ``worker_peak_rss_mib``: the largest peak RSS of any worker process (ru_maxrss).
- ``truth``: Dice per structure (mean, worst) and the mean absolute error of the biomarkers
  the truth knows, over the knees that passed QC.
- ``profile`` (``--profile K``): CPU seconds of each phase (read, prepare, infer, finish,
  measure) of the first K volumes run in this process with torch on one thread
  (``time.process_time`` around each phase, the phases one at a time: immune to other
  processes' load but for what sharing the cores' caches costs), and
  ``volumes_per_hour_on_2_cores`` = 2 x 3600 / their
  sum: the rate 2 one-thread workers reach when nothing else runs (without writing files,
  worker start or scheduling). ``--profile-only`` skips the cohort run.
- ``load_before``/``load_after``: ``os.getloadavg()`` around the run (1, 5, 15 min).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from kneescope.cohort.pipeline_config import PipelineConfig
from kneescope.cohort.runner import run_pipeline
from kneescope.workspace import Workspace

SEED = 190000
"""Master seed of the benchmark cohort (a development seed: not a training-bank seed
500000-500015, not a locked test seed >= 9,100,000)."""


def generate(data: Path, subjects: int, seed: int, jobs: int) -> tuple[Path, float]:
    """The DICOM cohort of ``subjects`` subjects (both knees, V00, full size) in ``data``,
    generated unless already there; returns its folder and the seconds generation took."""
    from kneescope.synth.cohort import CohortSpec
    from kneescope.synth.generate import generate_cohort

    spec = CohortSpec(
        subjects=subjects,
        visits=("V00",),
        size="full",
        seed=seed,
        radiographs=False,
        full_leg=False,
        findings=False,
    )
    out = data / f"cohort-full-{subjects}subjects-seed{seed}"
    spec_file = out / "synth_spec.json"
    if spec_file.is_file() and json.loads(spec_file.read_text()) == spec.model_dump(mode="json"):
        return out, 0.0
    start = time.perf_counter()
    generate_cohort(spec, out, jobs=jobs)
    return out, time.perf_counter() - start


def ingest_cohort(ws: Workspace, cohort: Path) -> float:
    """Ingest the OAI-layout cohort into the workspace catalog; returns seconds."""
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.ingest import ingest

    start = time.perf_counter()
    cat = Catalog.for_workspace(ws, create=True)
    try:
        ingest(cat, cohort, "oai")
    finally:
        cat.close()
    return time.perf_counter() - start


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) of this process (the driver, with the Dask scheduler) and
    of its finished children (the Dask workers a LocalCluster starts, reaped at its end)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def summary(table: pd.DataFrame) -> dict[str, Any]:
    """Mean seconds per step and per phase, and the largest worker peak RSS."""
    columns = [str(c) for c in table.columns]
    steps = {
        c[len("time_step_") : -2]: float(table[c].mean())
        for c in columns
        if c.startswith("time_step_")
    }
    phases = {
        c[len("time_") : -2]: float(table[c].mean())
        for c in columns
        if c.startswith("time_") and not c.startswith(("time_step_", "time_total"))
    }
    return {
        "mean_step_s": steps,
        "mean_item_s": float(sum(steps.values())),
        "mean_phase_s": phases,
        "worker_peak_rss_mib": float(table["worker_peak_rss_mib"].max()),
    }


def truth_summary(table: pd.DataFrame, cohort: Path) -> dict[str, Any]:
    """Dice per structure and biomarker errors against the cohort's truth (QC-passed knees)."""
    from kneescope.cli.demo_truth import check_against_truth

    records = [{str(k): v for k, v in r.items()} for r in table.to_dict(orient="records")]
    check = check_against_truth(records, cohort).to_dict()
    dice = {
        s: {"mean": round(float(v["mean"]), 4), "worst": round(float(v["worst"]), 4)}
        for s, v in check["dice"].items()
        if "mean" in v
    }
    errors = {
        q: round(float(v["mean"]), 4)
        for q, v in check["errors"].items()
        if "mean" in v and v["mean"] == v["mean"]
    }
    failed = [
        {"knee": f"{k['subject']} {k['visit']} {k['side']}", "qc_reasons": k["qc_reasons"]}
        for k in check["per_knee"]
        if k["qc"] != "ok"
    ]
    return {
        "knees": check["knees"],
        "qc_passed": check["qc_passed"],
        "qc_failed": failed,
        "dice": dice,
        "mean_abs_error": errors,
        "error_units": check["error_units"],
    }


def profile_phases(cohort: Path, count: int, segment_options: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds of each phase of one volume in this process, torch on one thread:
    ``time.process_time`` (every thread of the process) around read, prepare, infer, finish
    and measure, for the first ``count`` DESS series of the cohort. Immune to other
    processes' load (unlike wall time), except for what sharing the cores' caches costs."""
    import torch

    from kneescope.biomarkers.label_schemes import measure_labelled
    from kneescope.capabilities.biomarkers.step import Measure
    from kneescope.capabilities.segmentation.step import Segment
    from kneescope.inference.segmenter import Segmenter
    from kneescope.io import read_volume

    torch.set_num_threads(1)
    options = {k: v for k, v in segment_options.items() if k != "model"}
    step = Segment(model=segment_options.get("model"), **options)
    measure = Measure()
    t = time.process_time()
    segmenter = Segmenter(step.model_path, step.config)
    setup_s = time.process_time() - t
    manifest = pd.read_csv(cohort / "labels" / "manifest.csv").head(count)
    per_volume: list[dict[str, float]] = []
    for _, row in manifest.iterrows():
        side: Any = str(row["Side"])
        cpu: dict[str, float] = {}
        t = time.process_time()
        image = read_volume(cohort / str(row["Folder"]))
        cpu["read"] = time.process_time() - t
        t = time.process_time()
        prepared = segmenter.prepare(image, side)
        cpu["prepare"] = time.process_time() - t
        t = time.process_time()
        raw = segmenter.infer(prepared)
        cpu["infer"] = time.process_time() - t
        t = time.process_time()
        seg = segmenter.finish(raw)
        cpu["finish"] = time.process_time() - t
        t = time.process_time()
        measure_labelled(seg.labels, measure.scheme, side, measure.config, with_maps=measure.maps)
        cpu["measure"] = time.process_time() - t
        per_volume.append(cpu)
    mean = {k: round(sum(v[k] for v in per_volume) / len(per_volume), 2) for k in per_volume[0]}
    total = sum(mean.values())
    return {
        "volumes": len(per_volume),
        "setup_cpu_s": round(setup_s, 2),
        "mean_cpu_s": mean,
        "total_cpu_s_per_volume": round(total, 2),
        "volumes_per_hour_on_2_cores": round(2 * 3600.0 / total, 1),
        "load": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=6, help="volumes (both knees of n/2 subjects)")
    parser.add_argument("--model", default=None, help="model file or name (default knee-seg)")
    parser.add_argument("--executor", choices=["dask", "local"], default="dask")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--memory-limit", default="3GiB", help="per Dask worker")
    parser.add_argument("--prefetch", type=int, default=2, help="items read ahead (0: off)")
    parser.add_argument("--device", default="cpu", help="segment on cpu, cuda, cuda:N")
    parser.add_argument(
        "--segment-option",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help='extra segment option, e.g. precision="fp32" (repeatable)',
    )
    parser.add_argument("--data", type=Path, default=Path("bench-out/cohort_throughput"))
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--render-jobs", type=int, default=1)
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the workspace in --data")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--profile-only", action="store_true", help="skip the cohort run")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="K",
        help="also: CPU seconds per phase, one thread, first K volumes",
    )
    args = parser.parse_args()
    data = args.data.absolute()
    subjects = math.ceil(args.n / 2)
    cohort, generate_s = generate(data, subjects, args.seed, args.render_jobs)
    if args.render_only:
        print(json.dumps({"cohort": str(cohort), "generate_s": generate_s}))
        return
    executor: dict[str, Any] = (
        {"kind": "local"}
        if args.executor == "local"
        else {
            "kind": "dask",
            "workers": args.workers,
            "threads_per_worker": args.threads_per_worker,
            "memory_limit": args.memory_limit,
        }
    )
    segment_options: dict[str, Any] = {"device": args.device}
    if args.model:
        segment_options["model"] = args.model
    for option in args.segment_option:
        key, _, value = option.partition("=")
        segment_options[key] = json.loads(value)
    if args.profile and args.profile_only:
        print(json.dumps({"profile": profile_phases(cohort, args.profile, segment_options)}))
        return
    config = PipelineConfig.model_validate(
        {
            "name": "throughput",
            "items": {"catalog": {"sequence": "DESS"}},
            "steps": [
                {"name": "load_volume"},
                {"name": "segment", "options": segment_options},
                {"name": "measure"},
                {"name": "peak_rss"},
            ],
            "executor": executor,
            "prefetch": args.prefetch,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        ws_dir = Path(tempfile.mkdtemp(prefix="ws-", dir=data)) if args.keep else Path(tmp)
        ws = Workspace.resolve(ws_dir / "ws")
        ingest_s = ingest_cohort(ws, cohort)
        load_before = os.getloadavg()
        cpu_before = cpu_seconds()
        start = time.perf_counter()
        result = run_pipeline(config, ws)
        wall = time.perf_counter() - start
        cpu_after = cpu_seconds()
        driver_cpu = cpu_after[0] - cpu_before[0]
        workers_cpu = cpu_after[1] - cpu_before[1]
        cpu = driver_cpu + workers_cpu
        load_after = os.getloadavg()
        table = pd.read_parquet(result.results_path)
        if result.failed:
            raise SystemExit(f"{result.failed} items failed; see {result.run_dir}/run.log")
        n = len(table)
        stats = summary(table)
        # the same phases in CPU seconds, assuming every phase was slowed alike by the load
        scale = (cpu / n) / stats["mean_item_s"]
        stats["mean_phase_cpu_equivalent_s"] = {
            k: round(v * scale, 2) for k, v in stats["mean_phase_s"].items()
        }
        workers = args.workers if args.executor == "dask" else 1
        cores = args.workers * args.threads_per_worker if args.executor == "dask" else 2
        report: dict[str, Any] = {
            "n": n,
            "cohort": str(cohort),
            "model": args.model or "knee-seg (shipped default)",
            "segment_options": segment_options,
            "executor": executor,
            "prefetch": args.prefetch,
            "generate_s": round(generate_s, 1),
            "ingest_s": round(ingest_s, 2),
            "wall_s": round(wall, 2),
            "volumes_per_hour": round(3600.0 * n / wall, 1),
            "steady_volumes_per_hour": round(workers * 3600.0 / stats["mean_item_s"], 1),
            "cpu_s_per_volume": round(cpu / n, 2),
            "driver_cpu_s": round(driver_cpu, 2),
            "workers_cpu_s": round(workers_cpu, 2),
            "volumes_per_hour_from_cpu": round(cores * 3600.0 * n / cpu, 1),
            **stats,
            "truth": truth_summary(table, cohort),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in load_after],
            "cpu_count": os.cpu_count(),
            "workspace": str(ws.root) if args.keep else None,
        }
    if args.profile:
        report["profile"] = profile_phases(cohort, args.profile, segment_options)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)


if __name__ == "__main__":
    main()
