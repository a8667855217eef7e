"""Generate a whole synthetic cohort on disk: images in parallel, then the tables.

:func:`generate_cohort` plans every subject from the seed, renders subjects in worker
processes (``concurrent.futures``), then writes, in subject order:

- ``<release>/contents.csv`` (Folder, ParticipantID, StudyDate, Barcode, StudyDescription,
  SeriesDescription);
- ``labels/manifest.csv`` (image series folder -> label NIfTI);
- ``clinical/AllClinical.csv`` (ID, P02SEX, V00AGE, P01BMI, TRTARM, V{vv}WOMKPR/L) and
  ``clinical/kXR.csv`` (ID, SIDE 1=right/2=left, V{vv}XRKL, V{vv}XRJSM, V{vv}XRJSL,
  V{vv}XROSFM);
- ``truth/knee_truth.csv``, ``truth/regional_thickness.csv``, ``truth/xray_truth.csv``,
  ``truth/full_leg_truth.csv``, ``truth/subjects.csv``;
- ``synth_spec.json`` (the resolved :class:`CohortSpec`).

Same seed -> same bytes, whatever ``jobs`` is.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kneescope.io import atomic_write_path
from kneescope.synth.cohort import CohortSpec, SubjectPlan, klg_text, plan_subject
from kneescope.synth.subject_writer import Row, SubjectRows, fmt, write_subject

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CohortSummary:
    """What was written: counts and the output folder."""

    out: Path
    subjects: int
    visits: tuple[str, ...]
    mri_series: int
    radiographs: int
    full_leg: int


def _work(args: tuple[CohortSpec, int, str]) -> SubjectRows:
    spec, index, out = args
    return write_subject(spec, plan_subject(spec, index), Path(out))


def write_csv(path: Path, rows: Sequence[Row], columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` (dicts of str) as CSV with ``columns`` (default: union, first-seen order)."""
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            for key in row:
                seen.setdefault(key, None)
        columns = list(seen)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def clinical_rows(spec: CohortSpec, plans: Sequence[SubjectPlan]) -> tuple[list[Row], list[Row]]:
    """(AllClinical rows, kXR rows) in OAI-like wide format."""
    allc: list[Row] = []
    kxr: list[Row] = []
    for plan in plans:
        row: Row = {
            "ID": plan.participant_id,
            "P02SEX": str(plan.sex),
            "V00AGE": str(plan.age),
            "P01BMI": fmt(plan.bmi, 1),
            "TRTARM": "1" if plan.arm == "treatment" else "0",
        }
        for i, visit in enumerate(spec.visits):
            row[f"{visit}WOMKPR"] = str(plan.knees["right"][i].pain)
            row[f"{visit}WOMKPL"] = str(plan.knees["left"][i].pain)
        allc.append(row)
        for side, code in (("right", "1"), ("left", "2")):
            krow: Row = {"ID": plan.participant_id, "SIDE": code}
            for i, visit in enumerate(spec.visits):
                state = plan.knees[side][i]
                krow[f"{visit}XRKL"] = klg_text(state.klg)
                krow[f"{visit}XRJSM"] = str(state.jsn_medial)
                krow[f"{visit}XRJSL"] = str(state.jsn_lateral)
                krow[f"{visit}XROSFM"] = str(state.osteophyte_grade)
            kxr.append(krow)
    return allc, kxr


def subject_rows(plans: Sequence[SubjectPlan]) -> list[Row]:
    """Truth about each subject's disease model (arm, rates, baseline KLG)."""
    out = []
    for p in plans:
        out.append(
            {
                "ParticipantID": p.participant_id,
                "Arm": p.arm,
                "Age": str(p.age),
                "Sex": str(p.sex),
                "BMI": fmt(p.bmi, 1),
                "BaselineKLG_R": str(p.baseline_klg["right"]),
                "BaselineKLG_L": str(p.baseline_klg["left"]),
                "Rate_R": fmt(p.rate["right"]),
                "Rate_L": fmt(p.rate["left"]),
                "MedialPredominant_R": str(int(p.medial_predominant["right"])),
                "MedialPredominant_L": str(int(p.medial_predominant["left"])),
            }
        )
    return out


def generate_cohort(
    spec: CohortSpec,
    out: Path,
    *,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> CohortSummary:
    """Write the cohort ``spec`` under ``out`` (created if missing) using ``jobs`` processes.

    ``progress(done, total)`` is called after each subject.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plans = [plan_subject(spec, i) for i in range(spec.subjects)]
    results: list[SubjectRows] = []
    args = [(spec, i, str(out)) for i in range(spec.subjects)]
    if jobs <= 1:
        for a in args:
            results.append(_work(a))
            if progress:
                progress(len(results), spec.subjects)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for res in pool.map(_work, args):
                results.append(res)
                if progress:
                    progress(len(results), spec.subjects)
    results.sort(key=lambda r: r.index)

    releases: dict[str, list[Row]] = {}
    for res in results:
        for release, rows in res.contents.items():
            releases.setdefault(release, []).extend(rows)
    contents_cols = [
        "Folder", "ParticipantID", "StudyDate", "Barcode", "StudyDescription", "SeriesDescription"
    ]  # fmt: skip
    for release, rows in releases.items():
        write_csv(out / release / "contents.csv", rows, contents_cols)

    def gather(attr: str) -> list[Row]:
        return [row for res in results for row in getattr(res, attr)]

    labels = gather("labels")
    if labels:
        write_csv(out / "labels" / "manifest.csv", labels)
    write_csv(out / "truth" / "knee_truth.csv", gather("knee_truth"))
    if spec.mri:
        write_csv(out / "truth" / "regional_thickness.csv", gather("regional"))
    if spec.radiographs:
        write_csv(out / "truth" / "xray_truth.csv", gather("xray_truth"))
    if spec.full_leg:
        write_csv(out / "truth" / "full_leg_truth.csv", gather("leg_truth"))
    write_csv(out / "truth" / "subjects.csv", subject_rows(plans))
    allc, kxr = clinical_rows(spec, plans)
    write_csv(out / "clinical" / "AllClinical.csv", allc)
    write_csv(out / "clinical" / "kXR.csv", kxr)
    with atomic_write_path(out / "synth_spec.json") as tmp:
        tmp.write_text(json.dumps(spec.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    summary = CohortSummary(
        out=out,
        subjects=spec.subjects,
        visits=spec.visits,
        mri_series=len(labels),
        radiographs=len(gather("xray_truth")) // 2,
        full_leg=len(gather("leg_truth")) // 2,
    )
    logger.info("synthetic cohort written to %s: %s", out, summary)
    return summary
