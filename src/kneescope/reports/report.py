"""``kneescope report``: a finished run -> a report folder of static HTML (no server; it opens
from disk).

The folder (``WS/reports/RUN/`` by default) holds ``index.html`` (the cohort page,
:mod:`kneescope.reports.cohort_page`), ``knees/<subject>_<side>_<visit>.html`` (a page per
knee and visit, :mod:`kneescope.reports.knee_page`), the figures of each (``knees/<stem>/``,
``cohort/``) and ``static/`` (style sheets, the QC review script). It is written into a
temporary sibling folder and renamed into place at the end: a reader sees the old report or
the new one, never half of one.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kneescope.errors import InputError
from kneescope.reports.names import COHORT_PAGE

if TYPE_CHECKING:
    import pandas as pd

    from kneescope.reports.run_data import RunData

COHORT_FIGURES = "cohort"
"""The cohort page's figures, relative to the report folder."""

KL_VARIABLE = "XRKL"
"""The catalog's clinical variable holding the reader's KL grade of a knee at a visit."""


@dataclass(frozen=True)
class ReportOutcome:
    """What :func:`write_report` wrote.

    Attributes:
        run: the run's name.
        output: the report folder.
        knees: knee pages written (one per results row).
        flagged: knees with a QC flag raised.
        outliers: outlying key-biomarker values named on the cohort page.
        distributions: distribution figures.
        trial_figures: trial figures copied in.
        seconds: wall-clock seconds of the whole report.
    """

    run: str
    output: Path
    knees: int
    flagged: int
    outliers: int
    distributions: int
    trial_figures: int
    seconds: float
    largest_knee_page_bytes: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as text)."""
        return {
            "run": self.run,
            "output": str(self.output),
            "index": str(self.output / COHORT_PAGE),
            "knees": self.knees,
            "flagged": self.flagged,
            "outliers": self.outliers,
            "distributions": self.distributions,
            "trial_figures": self.trial_figures,
            "largest_knee_page_bytes": self.largest_knee_page_bytes,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


def check_output(folder: Path, overwrite: bool) -> None:
    """Refuse a file, a non-empty folder that is not a report, or an earlier report without
    ``overwrite`` (one line each: what is wrong and what to do).

    Raises:
        InputError: as above.
    """
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--output {folder} is a file; give a folder for the report")
    if not folder.is_dir():
        return
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return
    if COHORT_PAGE not in entries:
        raise InputError(
            f"{folder} holds other files ({', '.join(entries[:3])}) and no report; give a new "
            "or empty folder with -o"
        )
    if not overwrite:
        raise InputError(
            f"{folder} holds an earlier report; add --overwrite to replace it, or give "
            "another folder with -o"
        )


def kl_grades(run: RunData) -> dict[tuple[str, str, str], float]:
    """(subject, visit, side) -> the reader's KL grade (the catalog's XRKL) of the run's
    knees that have one."""
    return {
        (k.subject, k.visit, k.side): float(k.kl_grade) for k in run.knees if k.kl_grade is not None
    }


def with_reviews(table: pd.DataFrame, workspace: Path, catalog_url: str | None) -> pd.DataFrame:
    """``table`` with each knee's current QC review from the catalog (``kneescope qc
    import``) in its review columns (``qc_review``, ``qc_reviewer``, ``qc_reviewed_at``,
    ``qc_review_note``): the catalog's state now, not the one when the run ran (a knee the
    run redid after its ``resegment`` decision stays ``resegmented``). Unchanged when the
    catalog has no reviews (or cannot be read: a warning)."""
    from kneescope.catalog.qc_reviews import RESEGMENTED, REVIEW_COLUMNS
    from kneescope.cohort.qc_honour import workspace_reviews
    from kneescope.workspace import Workspace

    reviews = workspace_reviews(Workspace.resolve(workspace, catalog_url))
    if not reviews:
        return table
    keys = ["item_id", "subject", "visit", "side", "series"]
    rows = table.reindex(columns=keys).fillna("").astype(str).to_dict("records")
    columns = [reviews.columns({str(k): v for k, v in row.items()}) for row in rows]
    if "qc_review" in table.columns and "qc_reviewed_at" in table.columns:
        # the run knows whether it redid a knee after its re-segment decision; the catalog
        # alone (no computation time here) would say "resegment" still
        states = table["qc_review"].astype(str)
        times = table["qc_reviewed_at"].astype(str)
        for current, state, when in zip(columns, states, times, strict=True):
            redone = state == RESEGMENTED and current["qc_reviewed_at"] == when
            if current["qc_review"] == "resegment" and redone:
                current["qc_review"] = RESEGMENTED
    out = table.copy()
    for name in REVIEW_COLUMNS:
        out[name] = [c[name] for c in columns]
    return out


def trial_figure_sources(run_dir: Path, trial_dir: Path | None) -> list[tuple[str, Path]]:
    """(title, PNG) of the figures of a trial analysed on the run: the run's cohort steps'
    figures (``RUN/cohort/<step>/*.png``), those of every ``kneescope trial`` of this run in
    the workspace (``WS/trials/<name>/`` whose ``trial_summary.json`` says ``"source": "run
    RUN"``) and those of a ``kneescope trial`` output folder ``trial_dir``.

    Raises:
        InputError: ``trial_dir`` is not a folder, or holds no PNG figure.
    """
    found: list[tuple[str, Path]] = []
    cohort = run_dir / "cohort"
    if cohort.is_dir():
        for png in sorted(cohort.glob("*/*.png")):
            found.append((f"{png.parent.name}: {_figure_title(png)}", png))
    folders = workspace_trials(run_dir.parent.parent, run_dir.name)
    named = set(folders)  # labelled with their trial's name
    if trial_dir is not None:
        if not trial_dir.is_dir():
            raise InputError(
                f"--trial {trial_dir} is not a folder; give the output folder of `kneescope trial`"
            )
        if not any(trial_dir.glob("*.png")):
            raise InputError(
                f"--trial {trial_dir} holds no figures (*.png); give the output folder of "
                "`kneescope trial`"
            )
        if trial_dir.resolve() not in {f.resolve() for f in folders}:
            folders.append(trial_dir)
    for folder in folders:
        label = f"trial {folder.name}" if folder in named else "trial"
        found.extend((f"{label}: {_figure_title(p)}", p) for p in sorted(folder.glob("*.png")))
    return found


def workspace_trials(workspace: Path, run: str) -> list[Path]:
    """The ``kneescope trial`` output folders under ``WS/trials/`` analysing run ``run``
    (their ``trial_summary.json`` names it as ``"source": "run RUN"``), by name; a summary
    that cannot be read is skipped."""
    import json

    out = []
    for summary in sorted((workspace / "trials").glob("*/trial_summary.json")):
        try:
            source = json.loads(summary.read_text(encoding="utf-8")).get("source")
        except (OSError, ValueError, AttributeError):
            continue
        if source == f"run {run}":
            out.append(summary.parent)
    return out


def _figure_title(png: Path) -> str:
    """``trajectories_mt_thickness.png`` -> ``trajectories of mt_thickness``."""
    kind, _, rest = png.stem.partition("_")
    return f"{kind} of {rest}" if rest else kind


def write_report(
    workspace: Path,
    run: str,
    folder: Path,
    *,
    catalog_url: str | None = None,
    jobs: int = 1,
    overwrite: bool = False,
    trial_dir: Path | None = None,
) -> ReportOutcome:
    """Write the report of the finished run ``run`` of ``workspace`` into ``folder``
    (atomically: a temporary sibling renamed into place at the end).

    Args:
        workspace: the workspace folder (``runs/RUN`` with its results table, the catalog).
        run: the run's name.
        folder: the report folder (created; replaced only with ``overwrite``).
        catalog_url: the catalog (default: the workspace's ``catalog.sqlite``).
        jobs: worker processes for the knee pages (>= 1).
        overwrite: replace an earlier report in ``folder``.
        trial_dir: a ``kneescope trial`` output folder whose figures go on the cohort page
            (the run's own cohort-step figures, ``RUN/cohort/<step>/*.png``, always do).

    Raises:
        NotFoundError: no such run, or it has no results table.
        InputError: a bad output folder or ``trial_dir``; a run without finished items.
    """
    from kneescope.io.atomic import atomic_write_dir
    from kneescope.reports.knee_page import write_knee_pages
    from kneescope.reports.run_data import load_run
    from kneescope.reports.templating import write_static

    started = time.perf_counter()
    if jobs < 1:
        raise InputError(f"--jobs {jobs}: give 1 or more worker processes")
    check_output(folder, overwrite)
    data = load_run(workspace, run, catalog_url=catalog_url)
    if data.table.empty or not data.knees:
        raise InputError(
            f"run {run!r} has no finished items in its results table; finish it with "
            "`kneescope run` first"
        )
    trial = trial_figure_sources(data.run_dir, trial_dir)
    table = with_reviews(data.table, workspace, catalog_url)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write_dir(folder) as tmp:
        write_static(tmp)
        knee_pages = write_knee_pages(data, tmp, workers=jobs)
        pages = {k.item_id: k.page for k in knee_pages}
        thumbnails = {k.item_id: k.thumbnail for k in knee_pages if (tmp / k.thumbnail).is_file()}
        outcome = write_cohort_page(
            run,
            table,
            tmp,
            kl=kl_grades(data),
            pages=pages,
            thumbnails=thumbnails,
            trial=trial,
        )
    return ReportOutcome(
        run=run,
        output=folder,
        knees=len(knee_pages),
        flagged=outcome["flagged"],
        outliers=outcome["outliers"],
        distributions=outcome["distributions"],
        trial_figures=len(trial),
        seconds=time.perf_counter() - started,
        largest_knee_page_bytes=max((k.bytes for k in knee_pages), default=0),
        notes=tuple(outcome["notes"]),
    )


def write_cohort_page(
    run: str,
    frame: pd.DataFrame,
    folder: Path,
    *,
    kl: Mapping[tuple[str, str, str], float],
    pages: Mapping[str, str],
    thumbnails: Mapping[str, str],
    trial: list[tuple[str, Path]],
) -> dict[str, Any]:
    """The cohort page (``index.html``) with its figures (``cohort/``) into ``folder``.

    Args:
        run: the run's name.
        frame: its results table.
        folder: the report folder being written.
        kl: (subject, visit, side) -> the reader's KL grade.
        pages, thumbnails: item_id -> knee page / thumbnail relative to ``folder``.
        trial: (title, PNG) of trial figures to copy in.

    Returns:
        ``{"flagged", "outliers", "distributions", "notes"}``.
    """
    from kneescope import __version__
    from kneescope.io.atomic import atomic_write_text
    from kneescope.reports.cohort_page import (
        CohortPage,
        PageFigure,
        knee_cards,
        outlier_rows,
        render_cohort_page,
    )
    from kneescope.reports.distributions import find_outliers, write_distributions

    figures_dir = folder / COHORT_FIGURES
    figures_dir.mkdir(parents=True, exist_ok=True)
    outliers = find_outliers(frame)
    distributions = write_distributions(frame, kl, figures_dir, outliers=outliers)
    cards = knee_cards(frame, kl, pages, thumbnails, outliers)
    trial_figures = []
    trial_target = figures_dir / "trial"
    for k, (title, source) in enumerate(trial):
        trial_target.mkdir(exist_ok=True)
        name = f"{k:02d}_{source.parent.name}_{source.name}"
        shutil.copyfile(source, trial_target / name)
        trial_figures.append(PageFigure(title, f"{COHORT_FIGURES}/trial/{name}"))
    notes = []
    if not kl:
        notes.append(
            "No reader's KL grades (clinical variable XRKL) in the catalog: every knee is "
            "shown as 'no KL'."
        )
    if not pages:
        notes.append("No knee pages in this report.")
    versions = sorted(
        {str(v) for v in frame.get("kneescope_version", []) if isinstance(v, str) and v}
    )
    page = CohortPage(
        run=run,
        kneescope_version=__version__,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        cards=tuple(cards),
        distributions=tuple(
            PageFigure(
                d.label, f"{COHORT_FIGURES}/{d.path.name}", f"{d.knees} knee-visits with a value"
            )
            for d in distributions
        ),
        outliers=tuple(outlier_rows(outliers, cards)),
        trial_figures=tuple(trial_figures),
        kl_source=f"catalog variable {KL_VARIABLE}" if kl else "",
        results_versions=tuple(versions),
        notes=tuple(notes),
    )
    atomic_write_text(folder / COHORT_PAGE, render_cohort_page(page))
    return {
        "flagged": page.flagged,
        "outliers": len(page.outliers),
        "distributions": len(distributions),
        "notes": notes,
    }
