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

Nothing already in the output folder is lost (see :func:`generate_cohort`): the cohort is
rendered into a hidden sibling folder first and only then moved into place. ``mode``:

- ``new`` (default): the folder must be missing or empty;
- ``append``: the folder holds a synthetic cohort; the new subjects are added and every table
  (``truth/*.csv``, ``clinical/*.csv``, ``contents.csv``, ``labels/manifest.csv``) keeps all
  its old rows, followed by the new ones. Subjects of the same seed continue its subject
  numbering (``-n 2`` then ``-n 3 --append`` writes exactly what ``-n 5`` writes); a new
  participant id that is already in the folder (another seed may draw it) is refused.
  ``synth_spec.json`` then lists the parts: ``{"parts": [{"first_index": 0, "spec": {...}},
  ...]}`` (a plain :class:`CohortSpec` while the cohort is one seed numbered from 0);
- ``overwrite``: the folder holds a synthetic cohort (or nothing) and is replaced as a whole.

An error at any point leaves the folder as it was (moves already made are undone).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from kneescope.errors import InputError
from kneescope.io import atomic_write_path
from kneescope.io.atomic import remove_path, replace_folder
from kneescope.io.csv_table import write_csv_table
from kneescope.synth.cohort import (
    CohortSpec,
    SubjectPlan,
    klg_text,
    participant_id,
    plan_subject,
)
from kneescope.synth.subject_writer import Row, SubjectRows, fmt, write_subject

SynthMode = Literal["new", "append", "overwrite"]
SPEC_NAME = "synth_spec.json"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CohortSummary:
    """What was written: counts and the output folder.

    ``subjects`` and the series counts are this run's; ``cohort_subjects`` is the number of
    subjects in the folder afterwards (more than ``subjects`` after an append);
    ``first_index``: the subject index of the first new subject (its seed's numbering).
    """

    out: Path
    subjects: int
    visits: tuple[str, ...]
    mri_series: int
    radiographs: int
    full_leg: int
    cohort_subjects: int = 0
    first_index: int = 0


@dataclass(frozen=True)
class SpecPart:
    """Subjects ``first_index .. first_index + spec.subjects - 1`` drawn from ``spec``."""

    first_index: int
    spec: CohortSpec

    def participant_ids(self) -> list[str]:
        return [
            participant_id(self.spec.seed, self.first_index + i) for i in range(self.spec.subjects)
        ]


def read_spec_parts(out: Path) -> list[SpecPart]:
    """The parts of the synthetic cohort in ``out`` (from its ``synth_spec.json``).

    Raises:
        InputError: no ``synth_spec.json``, or one that is not a kneescope synth spec.
    """
    path = out / SPEC_NAME
    if not path.is_file():
        raise InputError(f"{out} holds no synthetic cohort (no {SPEC_NAME})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "parts" in data:
            return [
                SpecPart(int(part["first_index"]), CohortSpec.model_validate(part["spec"]))
                for part in data["parts"]
            ]
        return [SpecPart(0, CohortSpec.model_validate(data))]
    except (OSError, ValueError, TypeError, KeyError, ValidationError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path} is not a kneescope synth spec ({reason})") from None


def _same_but_subjects(a: CohortSpec, b: CohortSpec) -> bool:
    return a.model_copy(update={"subjects": 1}) == b.model_copy(update={"subjects": 1})


def spec_document(parts: Sequence[SpecPart]) -> dict[str, object]:
    """What ``synth_spec.json`` holds for ``parts``: a plain spec while the cohort is one
    seed numbered from 0, else ``{"parts": [...]}`` (consecutive parts of one spec merged)."""
    merged: list[SpecPart] = []
    for part in parts:
        last = merged[-1] if merged else None
        if (
            last is not None
            and _same_but_subjects(last.spec, part.spec)
            and part.first_index == last.first_index + last.spec.subjects
        ):
            total = last.spec.subjects + part.spec.subjects
            merged[-1] = SpecPart(
                last.first_index, last.spec.model_copy(update={"subjects": total})
            )
        else:
            merged.append(part)
    if len(merged) == 1 and merged[0].first_index == 0:
        return merged[0].spec.model_dump(mode="json")
    return {
        "parts": [
            {"first_index": p.first_index, "spec": p.spec.model_dump(mode="json")} for p in merged
        ]
    }


def _work(args: tuple[CohortSpec, int, str]) -> SubjectRows:
    spec, index, out = args
    return write_subject(spec, plan_subject(spec, index), Path(out))


def write_csv(path: Path, rows: Sequence[Row], columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` (dicts of str) as CSV with ``columns`` (default: union, first-seen order),
    creating the folder (:func:`~kneescope.io.csv_table.write_csv_table`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_csv_table(path, rows, columns)


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
    """Truth about each subject's disease model (arm, rates, baseline KLG, predominant
    compartment, progression class: non-progressor / typical / fast)."""
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
                "Progression_R": p.progression["right"],
                "Progression_L": p.progression["left"],
            }
        )
    return out


def generate_cohort(
    spec: CohortSpec,
    out: Path,
    *,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
    mode: SynthMode = "new",
) -> CohortSummary:
    """Write the cohort ``spec`` to ``out`` using ``jobs`` processes (see the module doc).

    ``progress(done, total)`` is called after each subject. ``mode``: ``new`` (``out`` missing
    or empty), ``append`` (add to the synthetic cohort in ``out``, merging every table) or
    ``overwrite`` (replace the synthetic cohort in ``out``).

    Raises:
        InputError: ``out`` is a file; ``new`` and ``out`` is not empty; ``append`` or
            ``overwrite`` and ``out`` holds something other than a synthetic cohort; or a new
            participant id is already in ``out``. Nothing is written then, and on any other
            error ``out`` is left as it was.
    """
    out = Path(out).expanduser().resolve()  # a symlinked folder: work where it points
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; give a folder for the synthetic cohort")
    _clean_stale(out)  # first: it may put back a cohort that an interrupted run moved aside
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if entries and mode == "new":
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise InputError(
            f"{out} is not empty ({shown}); add subjects to its cohort with --append, replace "
            "it with --overwrite, or give a new folder"
        )
    if entries and not (out / SPEC_NAME).is_file():
        raise InputError(
            f"{out} is not empty and holds no synthetic cohort (no {SPEC_NAME}); refusing to "
            f"{'add to' if mode == 'append' else 'replace'} it; give a new or empty folder"
        )
    parts = read_spec_parts(out) if entries and mode == "append" else []
    first = max(
        (p.first_index + p.spec.subjects for p in parts if p.spec.seed == spec.seed), default=0
    )
    new_part = SpecPart(first, spec)
    if parts:
        taken = {pid for p in parts for pid in p.participant_ids()} | _truth_ids(out)
        clash = sorted(set(new_part.participant_ids()) & taken)
        if clash:
            raise InputError(
                f"participant {clash[0]} (seed {spec.seed}) is already in {out}; append with "
                "another --seed"
            )
    stage = _sibling(out, "synth-tmp")
    try:
        summary = _render_cohort(spec, stage, first, jobs=jobs, progress=progress)
        if parts:
            cohort_parts = [*parts, new_part]
            _merge_tables(out, stage)
            _write_spec(stage, cohort_parts)
            _move_into(stage, out)
        else:
            cohort_parts = [new_part]
            _write_spec(stage, cohort_parts)
            if entries:
                _replace_folder(stage, out)
            else:  # missing or empty: an existing folder (maybe the shell's) stays itself
                out.mkdir(parents=True, exist_ok=True)
                _move_into(stage, out)
    finally:
        remove_path(stage)
    summary = CohortSummary(
        out=out,
        subjects=summary.subjects,
        visits=summary.visits,
        mri_series=summary.mri_series,
        radiographs=summary.radiographs,
        full_leg=summary.full_leg,
        cohort_subjects=sum(p.spec.subjects for p in cohort_parts),
        first_index=first,
    )
    logger.info("synthetic cohort written to %s: %s", out, summary)
    return summary


def _render_cohort(
    spec: CohortSpec,
    out: Path,
    first: int,
    *,
    jobs: int,
    progress: Callable[[int, int], None] | None,
) -> CohortSummary:
    """Render subjects ``first ..`` of ``spec`` and write their tables into the folder ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    indices = range(first, first + spec.subjects)
    plans = [plan_subject(spec, i) for i in indices]
    results: list[SubjectRows] = []
    args = [(spec, i, str(out)) for i in indices]
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
    return CohortSummary(
        out=out,
        subjects=spec.subjects,
        visits=spec.visits,
        mri_series=len(labels),
        radiographs=len(gather("xray_truth")) // 2,
        full_leg=len(gather("leg_truth")) // 2,
    )


def _write_spec(folder: Path, parts: Sequence[SpecPart]) -> None:
    with atomic_write_path(folder / SPEC_NAME) as tmp:
        tmp.write_text(json.dumps(spec_document(parts), indent=2, sort_keys=True) + "\n")


def _truth_ids(out: Path) -> set[str]:
    """Participant ids listed in ``out/truth/subjects.csv`` (empty when there is none)."""
    path = out / "truth" / "subjects.csv"
    if not path.is_file():
        return set()
    with path.open(newline="", encoding="utf-8") as fh:
        return {row.get("ParticipantID", "") for row in csv.DictReader(fh)} - {""}


def _read_csv(path: Path) -> tuple[list[str], list[Row]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = [dict(row) for row in reader]
        return list(reader.fieldnames or []), rows


def _merge_tables(out: Path, stage: Path) -> None:
    """Rewrite every CSV table in ``stage`` that ``out`` has too as old rows + new rows."""
    for new_path in sorted(stage.rglob("*.csv")):
        old_path = out / new_path.relative_to(stage)
        if not old_path.is_file():
            continue
        old_cols, old_rows = _read_csv(old_path)
        new_cols, new_rows = _read_csv(new_path)
        columns = old_cols + [c for c in new_cols if c not in old_cols]
        write_csv(new_path, old_rows + new_rows, columns)


def _sibling(folder: Path, what: str) -> Path:
    """A fresh hidden path next to ``folder`` (same file system, so renames are atomic)."""
    return folder.parent / f".{folder.name}.{what}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _clean_stale(out: Path) -> None:
    """Remove what a killed run left next to ``out``: its hidden render folder, and the old
    cohort it had moved aside for ``overwrite`` (put back at ``out`` when ``out`` is gone)."""
    if not out.parent.is_dir():
        return
    for kind in ("synth-tmp", "synth-old"):
        for path in sorted(out.parent.glob(f".{out.name}.{kind}-*")):
            try:
                pid = int(path.name.rsplit("-", 2)[-2])
                os.kill(pid, 0)
                continue  # its process still runs
            except (ValueError, IndexError):
                continue  # not named by us
            except PermissionError:
                continue  # another user's live process
            except ProcessLookupError:
                pass
            if kind == "synth-old" and not out.exists():
                os.replace(path, out)
                logger.warning("put back %s, moved aside by an interrupted run", out)
            else:
                remove_path(path)


def _replace_folder(stage: Path, out: Path) -> None:
    """Put the complete folder ``stage`` at ``out``; an old ``out`` goes only afterwards (it
    waits under a ``synth-old`` name that the next run puts back if this one is killed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    replace_folder(stage, out, aside=_sibling(out, "synth-old"))


def _plan_moves(stage: Path, out: Path) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    """(new entries to move in, merged tables to replace) from ``stage`` into ``out``.

    Raises:
        InputError: a file the new subjects would write exists already (nothing moved yet).
    """
    moves: list[tuple[Path, Path]] = []
    replaces: list[tuple[Path, Path]] = []
    pending = [(stage, out)]
    while pending:
        src_dir, dst_dir = pending.pop()
        for src in sorted(src_dir.iterdir()):
            dst = dst_dir / src.name
            if not dst.exists() and not dst.is_symlink():
                moves.append((src, dst))
            elif src.is_dir() and dst.is_dir() and not dst.is_symlink():
                pending.append((src, dst))
            elif (
                src.is_file() and dst.is_file() and (src.suffix == ".csv" or src.name == SPEC_NAME)
            ):
                replaces.append((src, dst))
            else:
                raise InputError(
                    f"{dst} exists already and would be overwritten by the new subjects; "
                    "nothing was changed"
                )
    # the spec last: until it is replaced, the folder still describes the old cohort
    replaces.sort(key=lambda pair: pair[1].name == SPEC_NAME)
    return moves, replaces


def _move_into(stage: Path, out: Path) -> None:
    """Move the new subjects' files from ``stage`` into ``out`` and replace the merged tables;
    on any error undo every step made, so ``out`` is as it was."""
    moves, replaces = _plan_moves(stage, out)
    backups = stage / ".old-tables"
    backups.mkdir()
    done: list[tuple[str, Path, Path]] = []
    try:
        for src, dst in moves:
            os.replace(src, dst)
            done.append(("moved", src, dst))
        for number, (src, dst) in enumerate(replaces):
            backup = backups / f"{number}{dst.suffix}"
            try:
                os.link(dst, backup)
            except OSError:  # no hard links on this file system
                shutil.copy2(dst, backup)
            os.replace(src, dst)
            done.append(("replaced", backup, dst))
    except BaseException:
        for what, src, dst in reversed(done):
            if what == "moved":
                os.replace(dst, src)
            else:
                os.replace(src, dst)  # the old table back from its backup
        raise
