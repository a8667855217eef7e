"""Speed and size of ``kneescope report`` on a 100-knee run (issue 18 targets).

Targets: the report of a 100-knee run in < 60 s on 2 cores; a knee page with its images
< 2 MB; the cohort page loads in < 2 s in headless Chromium.

The run (built once into ``--data``, each stage skipped when its output exists): ``kneescope
synth`` of 25 subjects x 2 visits (V00, V01), both knees, the small MRI grid (48x128x128), seed
1801 (100 DESS series = 100 knee-visits); ``ingest``; ``convert``; ``run`` of ``load_volume ->
load_labels -> measure`` (the generator's truth label maps measured, thickness maps kept) on 2
Dask workers. ``--workspace WS --run NAME`` measures an existing run instead (e.g. a copy of
the full-size demo workspace, for the knee-page size at the OAI grid).

Measured:
- ``kneescope report --run NAME -o OUT --overwrite -j WORKERS`` as a subprocess: wall seconds
  and the CPU seconds of the process tree;
- every page's bytes with the local files it references (images, style sheets, scripts):
  the largest knee page, the median knee page, the cohort page;
- the cohort page in headless Chromium (Debian's ``/usr/bin/chromium`` through Playwright,
  ``KNEESCOPE_TEST_CHROMIUM`` overrides): ``--loads`` fresh browser contexts (empty cache)
  each open ``index.html`` from disk; the time from navigation start to the load event
  (Navigation Timing ``loadEventEnd``; every ``<img>`` of the page is loaded by then, lazy ones
  included as they are made eager first) and whether every image has loaded.

    nice .venv/bin/python benchmarks/report_speed.py --data /work/data18/C/report_speed --workers 2
    nice .venv/bin/python benchmarks/report_speed.py --workspace WS --run demo --workers 2

With ``--phases`` the report is also written in this process, phase by phase (``load_run``;
the knee pages on ``--workers`` processes; the cohort page), each with its wall and CPU seconds
(this process and its reaped workers): on a machine shared with other work the wall time
overstates what 2 quiet cores take, and ``serial CPU + knee-page CPU / workers`` estimates it.

With ``--check-pages`` every page of the report also goes through the browser tests' checks
(``tests/browser/browser_checks.py``: images loaded, failed requests, script errors, dialogs,
horizontal overflow at 1280 px); the pages with a problem are listed.

Prints one JSON object (and a Markdown summary on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

KNEESCOPE = str(Path(sys.executable).with_name("kneescope"))
PIPELINE = """name = "{name}"

[items]
catalog = {{ sequence = "DESS" }}

[[steps]]
name = "load_volume"
[[steps]]
name = "load_labels"
[[steps]]
name = "measure"

[executor]
kind = "dask"
workers = {workers}
"""
# the browser tests' checks and Chromium flags (one place: tests/browser/browser_checks.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "browser"))
from browser_checks import CHROMIUM_ARGS  # noqa: E402


def _kneescope(*argv: str, ok: tuple[int, ...] = (0, 1)) -> None:
    """Run ``kneescope ARGV``; exit codes in ``ok`` are fine (1: some items failed QC)."""
    done = subprocess.run([KNEESCOPE, *argv], capture_output=True, text=True, check=False)
    if done.returncode not in ok:
        raise SystemExit(f"kneescope {' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")


def build_run(data: Path, subjects: int, seed: int, workers: int, name: str) -> Path:
    """The benchmark's workspace under ``data`` with a finished run ``name``; returns it."""
    cohort, ws = data / "cohort", data / "ws"
    if not (cohort / "synth_spec.json").exists():
        _kneescope(
            "synth", "-o", str(cohort), "-n", str(subjects), "--visits", "V00,V01",
            "--size", "small", "--seed", str(seed), "-j", str(workers),
        )  # fmt: skip
    if not (ws / "catalog.sqlite").exists():
        ws.mkdir(parents=True, exist_ok=True)
        _kneescope("ingest", str(cohort), "-w", str(ws))
        _kneescope("convert", "-w", str(ws), "-j", str(workers))
    if not (ws / "runs" / name / "results.parquet").exists():
        config = data / "pipeline.toml"
        config.write_text(PIPELINE.format(name=name, workers=workers), encoding="utf-8")
        _kneescope("run", "-c", str(config), "-w", str(ws))
    return ws


class _Refs(HTMLParser):
    """Local files a page references (img/script src, link href)."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        ref = a.get("src", "") if tag in ("img", "script") else ""
        if tag == "link":
            ref = a.get("href", "")
        if ref and ":" not in ref.split("/", 1)[0] and not ref.startswith("#"):
            self.refs.add(ref.split("#", 1)[0].split("?", 1)[0])


def page_bytes(page: Path) -> int:
    """Bytes of ``page`` and of every local file it references (each counted once)."""
    parser = _Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    total = page.stat().st_size
    for ref in parser.refs:
        target = (page.parent / ref).resolve()
        if target.is_file():
            total += target.stat().st_size
    return total


def chromium_loads(index: Path, loads: int) -> list[dict[str, Any]]:
    """Open ``index`` ``loads`` times in fresh contexts of headless Chromium."""
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("KNEESCOPE_TEST_CHROMIUM") or shutil.which("chromium") or ""
    out: list[dict[str, Any]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            for _ in range(loads):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                failed: list[str] = []

                def on_failed(request: Any, failed: list[str] = failed) -> None:
                    failed.append(str(request.url))

                page.on("requestfailed", on_failed)
                page.add_init_script(
                    "document.addEventListener('DOMContentLoaded', () => {"
                    " for (const img of document.images) img.loading = 'eager'; });"
                )
                started = time.perf_counter()
                page.goto(index.resolve().as_uri(), wait_until="load")
                wall_s = time.perf_counter() - started
                timing = page.evaluate(
                    "() => { const n = performance.getEntriesByType('navigation')[0];"
                    " const imgs = Array.from(document.images);"
                    " return {load_ms: n.loadEventEnd - n.startTime,"
                    " dom_ms: n.domContentLoadedEventEnd - n.startTime,"
                    " images: imgs.length,"
                    " loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length}; }"
                )
                out.append(
                    {
                        "load_s": round(timing["load_ms"] / 1000.0, 3),
                        "dom_content_loaded_s": round(timing["dom_ms"] / 1000.0, 3),
                        "goto_wall_s": round(wall_s, 3),
                        "images": timing["images"],
                        "images_loaded": timing["loaded"],
                        "failed_requests": failed,
                    }
                )
                context.close()
        finally:
            browser.close()
    return out


def _cpu_s() -> float:
    """CPU seconds of this process and its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def report_phases(ws: Path, run: str, out: Path, workers: int) -> dict[str, Any]:
    """Write the report of ``run`` into ``out`` in this process, timing each phase (as
    ``kneescope.reports.report.write_report`` does, without the atomic folder swap)."""
    from kneescope.reports.knee_page import write_knee_pages
    from kneescope.reports.report import kl_grades, with_reviews, write_cohort_page
    from kneescope.reports.run_data import load_run
    from kneescope.reports.templating import write_static

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    phases: dict[str, Any] = {}

    def timed(name: str, started: float, cpu: float) -> None:
        phases[name] = {
            "wall_s": round(time.perf_counter() - started, 2),
            "cpu_s": round(_cpu_s() - cpu, 2),
        }

    t, c = time.perf_counter(), _cpu_s()
    data = load_run(ws, run)
    table = with_reviews(data.table, ws, None)
    timed("load_run", t, c)
    t, c = time.perf_counter(), _cpu_s()
    write_static(out)
    knee_pages = write_knee_pages(data, out, workers=workers)
    timed("knee_pages", t, c)
    t, c = time.perf_counter(), _cpu_s()
    write_cohort_page(
        run,
        table,
        out,
        kl=kl_grades(data),
        pages={k.item_id: k.page for k in knee_pages},
        thumbnails={k.item_id: k.thumbnail for k in knee_pages},
        trial=[],
    )
    timed("cohort_page", t, c)
    serial = phases["load_run"]["cpu_s"] + phases["cohort_page"]["cpu_s"]
    phases["quiet_estimate_s"] = round(serial + phases["knee_pages"]["cpu_s"] / workers, 1)
    phases["knee_page_cpu_s_each"] = round(phases["knee_pages"]["cpu_s"] / len(knee_pages), 3)
    return phases


def check_pages(folder: Path) -> dict[str, Any]:
    """The browser tests' checks on every page of the report ``folder``."""
    from browser_checks import (
        broken_images,
        horizontal_overflow,
        open_file,
        watch_page,
    )
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("KNEESCOPE_TEST_CHROMIUM") or shutil.which("chromium") or ""
    pages = [folder / "index.html", *sorted((folder / "knees").glob("*.html"))]
    problems: dict[str, Any] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            for path in pages:
                watched = watch_page(context.new_page())
                open_file(watched, path)
                found = {
                    "broken_images": broken_images(watched.page),
                    "overflow": horizontal_overflow(watched.page)[:5],
                    "failed_requests": watched.failed_requests,
                    "errors": watched.page_errors + watched.console_errors,
                    "dialogs": watched.dialogs,
                }
                found = {k: v for k, v in found.items() if v}
                if found:
                    problems[str(path.relative_to(folder))] = found
                watched.page.close()
        finally:
            browser.close()
    return {"pages": len(pages), "pages_with_problems": len(problems), "problems": problems}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("report_speed_data"))
    parser.add_argument("--workspace", type=Path, help="measure this workspace's run instead")
    parser.add_argument("--run", default="bench100")
    parser.add_argument("--subjects", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1801)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--out", type=Path, help="report folder (default: DATA/report)")
    parser.add_argument("--phases", action="store_true", help="also time each phase in-process")
    parser.add_argument("--check-pages", action="store_true", help="browser checks on every page")
    args = parser.parse_args(argv)

    if args.workspace is not None:
        ws = args.workspace
    else:
        ws = build_run(args.data, args.subjects, args.seed, args.workers, args.run)
    out = args.out or (args.data / "report")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    _kneescope(
        "report", "--run", args.run, "-w", str(ws), "-o", str(out), "--overwrite",
        "-j", str(args.workers), "--json", ok=(0,),
    )  # fmt: skip
    wall_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    knee_pages = sorted((out / "knees").glob("*.html"))
    sizes = {p.name: page_bytes(p) for p in knee_pages}
    largest = max(sizes, key=lambda k: sizes[k]) if sizes else ""
    loads = chromium_loads(out / "index.html", args.loads)
    load_s = [entry["load_s"] for entry in loads]
    result = {
        "run": args.run,
        "workspace": str(ws),
        "knee_pages": len(knee_pages),
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "report_wall_s": round(wall_s, 2),
        "report_cpu_s": round(cpu_s, 2),
        "largest_knee_page": largest,
        "largest_knee_page_mb": round(sizes.get(largest, 0) / 1e6, 3),
        "median_knee_page_mb": round(statistics.median(sizes.values()) / 1e6, 3) if sizes else 0,
        "cohort_page_mb": round(page_bytes(out / "index.html") / 1e6, 3),
        "report_folder_mb": round(
            sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6, 2
        ),
        "cohort_load_s_median": round(statistics.median(load_s), 3),
        "cohort_load_s_max": round(max(load_s), 3),
        "cohort_loads": loads,
    }
    if args.check_pages:
        result["page_checks"] = check_pages(out)
    if args.phases:
        phases_out = out.with_name(out.name + "-phases")
        result["phases"] = report_phases(ws, args.run, phases_out, args.workers)
    print(json.dumps(result, indent=2))
    print(
        f"| {args.run} | {len(knee_pages)} knee pages | report {wall_s:.1f} s wall, {cpu_s:.1f} s "
        f"CPU, -j {args.workers} | largest knee page {result['largest_knee_page_mb']} MB | "
        f"cohort page {result['cohort_page_mb']} MB, loads in {result['cohort_load_s_median']} s "
        f"(max {result['cohort_load_s_max']} s of {args.loads}) |",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
