"""The page of one knee at one visit: segmentation overlays, thickness maps, biomarkers with
the cohort's reference ranges, the knee's other visits, predicted grades, QC in words.

:func:`write_knee_pages` writes every knee page of a run into a report folder
(``knees/<subject>_<side>_<visit>.html``, its figures in ``knees/<same stem>/``, the style
sheet in ``static/``), in parallel over ``workers`` processes. Each file is written
atomically; the caller (``kneescope report``) writes the whole folder under a temporary name
and renames it, so a report is never half there.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kneescope.errors import KneescopeError
from kneescope.reports.run_data import (
    KneeRecord,
    ReferenceRanges,
    RunData,
    compute_maps,
    is_informative,
    read_image,
    read_labels,
    read_maps,
)

if TYPE_CHECKING:
    from kneescope.core import Volume

log = logging.getLogger(__name__)

KNEE_TEMPLATE = "knee.html.j2"
THICKNESS_FIGURE = "thickness.png"
TRAJECTORY_FIGURE = "trajectories.png"
THUMBNAIL = "thumb.png"

_PROBABILITY_WORDS = {
    "kl": "KL grade probabilities",
    "mri_kl": "KL grade from the MRI (probabilities)",
    "oa": "OA score: KL grade probabilities",
}


@dataclass(frozen=True)
class KneePage:
    """A written knee page.

    Attributes:
        item_id, subject, visit, side: the knee and visit.
        page: the page, relative to the report folder (``knees/<stem>.html``).
        thumbnail: its thumbnail PNG, relative to the report folder.
        qc_ok: the knee's QC verdict; ``flags``: raised QC flags (names without ``qc_``);
            ``flag_texts``: one explanation per flag, same order.
        kl_grade: the readers' KL grade (None unknown).
        bytes: size of the page and every image it shows, in bytes.
        seconds: wall time spent on this page.
        problems: what could not be shown and why (image or maps missing), in words.
    """

    item_id: str
    subject: str
    visit: str
    side: str
    page: str
    thumbnail: str
    qc_ok: bool
    flags: tuple[str, ...]
    flag_texts: tuple[str, ...]
    kl_grade: float | None
    bytes: int
    seconds: float
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Job:
    """Everything one process needs to draw one page (pickled to a worker)."""

    knee: KneeRecord
    visits: tuple[KneeRecord, ...]
    reference: ReferenceRanges
    units: dict[str, str]
    numeric_columns: tuple[str, ...]
    run_name: str
    kneescope_version: str
    store_dir: Path
    report_dir: Path
    measure_options: dict[str, Any]


def write_knee_pages(run: RunData, report_dir: Path, *, workers: int = 1) -> list[KneePage]:
    """Write the page of every knee and visit of ``run`` into ``report_dir`` (created), plus
    the shared ``static/`` files; returns the pages in the run's knee order.

    Args:
        run: the loaded run (:func:`kneescope.reports.run_data.load_run`).
        report_dir: the report folder (``knees/`` and ``static/`` are written in it).
        workers: processes drawing pages in parallel (1: in this process).

    A knee whose image, label map or maps cannot be read still gets its page, saying what is
    missing and why (:attr:`KneePage.problems`).
    """
    from kneescope.reports.templating import write_static

    report_dir.mkdir(parents=True, exist_ok=True)
    write_static(report_dir)
    jobs = [
        _Job(
            knee=knee,
            visits=tuple(run.visits_of(knee)),
            reference=run.reference,
            units=run.units,
            numeric_columns=run.numeric_columns,
            run_name=run.name,
            kneescope_version=run.kneescope_version,
            store_dir=run.store_dir,
            report_dir=report_dir,
            measure_options=run.measure_options,
        )
        for knee in run.knees
    ]
    if workers <= 1 or len(jobs) <= 1:
        return [_write_page(job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        return list(pool.map(_write_page, jobs, chunksize=1))


def _overlay_context(
    job: _Job, folder: Path, problems: list[str]
) -> tuple[list[Any], str, Volume | None]:
    """Write the overlays and the thumbnail; return the template's overlay entries, why there
    are none (when there are none) and the label map (None when unreadable)."""
    import numpy as np

    from kneescope.core import Volume
    from kneescope.reports.overlays import write_overlays, write_png
    from kneescope.reports.thickness_figure import PLATE_TITLES

    knee = job.knee
    thumb = job.report_dir / knee.thumbnail
    try:
        labels = read_labels(knee)
    except KneescopeError as exc:
        problems.append(f"segmentation overlays: {exc}")
        thumb.parent.mkdir(parents=True, exist_ok=True)
        write_png(thumb, np.full((120, 120, 3), 200, np.uint8))  # a placeholder: no segmentation
        return [], str(exc), None
    try:
        image = read_image(knee, job.store_dir)
    except KneescopeError as exc:
        problems.append(f"image: {exc}; the segmentation is shown on black")
        image = Volume(np.zeros(labels.array.shape, np.float32), labels.affine_ras)
    try:
        figures = write_overlays(
            image, labels, folder, thumbnail=thumb, thumbnail_plate=thumbnail_plate(knee.qc_flags)
        )
    except KneescopeError as exc:
        problems.append(f"segmentation overlays: {exc}")
        write_png(thumb, np.full((120, 120, 3), 200, np.uint8))
        return [], str(exc), labels
    entries = [
        {
            "src": f"{knee.stem}/{f.path.name}",
            "width": f.width,
            "height": f.height,
            "alt": f"sagittal, coronal and axial slices through the {PLATE_TITLES[f.plate]}",
            "caption": f"Through the {PLATE_TITLES[f.plate]}: sagittal · coronal · axial.",
        }
        for f in figures
        if f.plate
    ]
    if not entries:
        return [], "the label map holds no cartilage plate", labels
    return entries, "", labels


_FLAG_PLATES = (
    ("medial_tibial", "medial_tibial"),
    ("lateral_tibial", "lateral_tibial"),
    ("medial_meniscus", "medial_tibial"),
    ("lateral_meniscus", "lateral_tibial"),
    ("femoral", "femoral"),
    ("patellar", "patellar"),
    ("patella", "patellar"),
)


def thumbnail_plate(flags: tuple[str, ...]) -> str:
    """The plate a knee's thumbnail cuts: the one its first structure-specific QC flag
    concerns (a meniscus: its tibial plate), else the medial tibial plate (where OA shows
    first)."""
    for flag in flags:
        for word, plate in _FLAG_PLATES:
            if word in flag:
                return plate
    return "medial_tibial"


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG from its header."""
    with path.open("rb") as handle:
        head = handle.read(24)
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _value_row(column: str, words: str, knee: KneeRecord, job: _Job) -> dict[str, Any]:
    value = knee.values.get(column, math.nan)
    ref = job.reference.ranges.get(column)
    mark, mark_class = "", ""
    if ref is not None and math.isfinite(value):
        if value > ref[1]:
            mark, mark_class = "▲", "above"
        elif value < ref[0]:
            mark, mark_class = "▼", "below"
    return {
        "column": column,
        "words": words,
        "value": value,
        "unit": job.units.get(column, ""),
        "ref": ref,
        "mark": mark,
        "mark_class": mark_class,
    }


def _write_page(job: _Job) -> KneePage:
    """Draw one knee page and its figures (runs in a worker process)."""
    from kneescope.io.atomic import atomic_write_text
    from kneescope.reports.overlays import VIEW_CAPTIONS, palette_for
    from kneescope.reports.qc_text import flag_sentence
    from kneescope.reports.templating import render
    from kneescope.reports.thickness_figure import write_knee_thickness_figure
    from kneescope.reports.trajectories import (
        KEY_BIOMARKERS,
        trajectory_columns,
        write_trajectory_figure,
    )

    start = time.perf_counter()
    knee = job.knee
    folder = job.report_dir / "knees" / knee.stem
    folder.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []

    overlays, overlay_missing, labels = _overlay_context(job, folder, problems)

    thickness = None
    thickness_missing = ""
    thickness_note = ""
    try:
        maps = read_maps(knee)
    except KneescopeError as exc:
        maps = None
        thickness_missing = f"The thickness maps cannot be read: {exc}"
        problems.append(f"thickness maps: {exc}")
    if maps is None and labels is not None and not thickness_missing:
        try:
            maps = compute_maps(knee, labels, job.measure_options)
            thickness_note = (
                "The run did not keep its thickness maps (a run from an older kneescope, or "
                "the measure option maps = false): measured again from the label map for "
                "this report."
            )
        except KneescopeError as exc:
            thickness_missing = (
                f"No thickness maps: the run kept none and measuring failed ({exc})."
            )
    if maps:
        path = write_knee_thickness_figure(
            maps, folder / THICKNESS_FIGURE, title=f"{knee.title}: cartilage thickness"
        )
        width, height = _png_size(path)
        thickness = {"src": f"{knee.stem}/{path.name}", "width": width, "height": height}
    elif not thickness_missing:
        thickness_missing = (
            "This run did not keep thickness maps (the measure step's option maps = false, "
            "or a run from an older kneescope): run the pipeline again with maps kept to see "
            "them here."
        )

    key_columns = [(c, w) for c, w in KEY_BIOMARKERS if c in job.numeric_columns]
    key_set = {c for c, _ in key_columns}
    key_rows = [_value_row(c, w, knee, job) for c, w in key_columns]
    other_rows = [_value_row(c, c, knee, job) for c in job.numeric_columns if c not in key_set]

    visit_values = [v.values for v in job.visits]
    trajectory = None
    trajectory_rows: list[dict[str, Any]] = []
    if len(job.visits) > 1:
        columns = trajectory_columns(visit_values)
        if columns:
            path = write_trajectory_figure(
                [v.visit for v in job.visits],
                visit_values,
                columns,
                folder / TRAJECTORY_FIGURE,
                current=knee.visit,
                reference=job.reference.ranges,
                title=f"{knee.subject} {knee.side} knee over the visits",
            )
            width, height = _png_size(path)
            trajectory = {"src": f"{knee.stem}/{path.name}", "width": width, "height": height}
        trajectory_rows = [
            {"column": c, "words": w, "cells": [v.values.get(c, math.nan) for v in job.visits]}
            for c, w in key_columns
        ]

    flags = [
        {
            "name": f,
            "informative": is_informative(f),
            "text": flag_sentence(f, knee.qc_reasons.get(f)),
        }
        for f in knee.qc_flags
    ]
    palette = palette_for({})
    from kneescope.core.labels import KNEE_LABELS

    legend = [
        {"name": name.replace("_", " "), "rgb": [int(x) for x in palette.rgb[value]]}
        for value, name in KNEE_LABELS.labels.items()
    ]
    probabilities = [
        {
            "group": group,
            "words": _PROBABILITY_WORDS.get(group, f"{group.replace('_', ' ')} probabilities"),
            "classes": [
                {"label": label, "p": p} for label, p in sorted(classes.items(), key=_class_key)
            ],
        }
        for group, classes in sorted(knee.probabilities.items())
    ]
    html = render(
        KNEE_TEMPLATE,
        static="../static",
        run_name=job.run_name,
        kneescope_version=job.kneescope_version,
        knee=knee,
        flags=flags,
        problems=problems,
        overlays=overlays,
        overlay_missing=overlay_missing,
        view_captions=list(VIEW_CAPTIONS.values()),
        legend=legend,
        thickness=thickness,
        thickness_missing=thickness_missing,
        thickness_note=thickness_note,
        reference_source=job.reference.source,
        key_rows=key_rows,
        other_rows=other_rows,
        visits=[
            {
                "visit": v.visit,
                "current": v.item_id == knee.item_id,
                "href": f"{v.stem}.html",
            }
            for v in job.visits
        ],
        trajectory=trajectory,
        trajectory_rows=trajectory_rows,
        probabilities=probabilities,
    )
    page = job.report_dir / knee.page
    atomic_write_text(page, html)
    size = page.stat().st_size + sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    seconds = time.perf_counter() - start
    log.debug("knee page %s: %d bytes, %.2f s", knee.page, size, seconds)
    return KneePage(
        item_id=knee.item_id,
        subject=knee.subject,
        visit=knee.visit,
        side=knee.side,
        page=knee.page,
        thumbnail=knee.thumbnail,
        qc_ok=knee.qc_ok,
        flags=knee.qc_flags,
        flag_texts=tuple(str(f["text"]) for f in flags),
        kl_grade=knee.kl_grade,
        bytes=size,
        seconds=seconds,
        problems=tuple(problems),
    )


def _class_key(item: tuple[str, float]) -> tuple[int, str]:
    label = item[0]
    return (int(label), label) if label.isdigit() else (10**6, label)
