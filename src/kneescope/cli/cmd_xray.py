"""``kneescope xray``: knee radiographs end to end, per knee and per leg.

Knee films (bilateral PA): both knees located (side, centre, standard ROI), KL grade with
calibrated probabilities, JSN per compartment, mJSW medial/lateral and the JSW at the fixed
locations. Full-leg films (taller than twice their width and over 500 mm): HKA per leg.
``--cropped``: images that are knee crops already (PNG, JPEG or DICOM, one knee each): KL
probabilities only, one row per image.

A knee that cannot be graded (not found, a lateral view, an implant, ...) gets its reason in
the row, never a made-up grade. Exit codes: 0 done; 1 some inputs could not be read (the
others are reported and written); 2 nothing could be done (every input unreadable, or no
knee/leg/crop graded or measured: one line says why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, stderr
from kneescope.errors import InputError, KneescopeError

KNEES_CSV = "xray_knees.csv"
LEGS_CSV = "xray_legs.csv"
CROPS_CSV = "xray_crops.csv"

KL_GRADES = 5
FULL_LEG_MIN_MM = 500.0
"""A film at least this tall (and over twice as tall as wide) is a full-leg film."""


@dataclass
class _Report:
    """Rows gathered over every input."""

    knees: list[dict[str, Any]] = field(default_factory=list)
    legs: list[dict[str, Any]] = field(default_factory=list)
    crops: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def xray(
    inputs: Annotated[
        list[Path] | None,
        typer.Option(
            "--input",
            "-i",
            help="A knee film or full-leg film (a DICOM file, or a folder of them: a series); "
            "with --cropped, a knee crop (PNG, JPEG or DICOM). Repeat for several.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            "--out",
            help="Folder for the tables: xray_knees.csv (knee films), xray_legs.csv "
            "(full-leg films), xray_crops.csv (--cropped). Created if missing.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="KL grading model: a file, a name in WORKSPACE/models/ or a shipped model's "
            "name. Default: the shipped kl-xray-real (when installed).",
            show_default=False,
        ),
    ] = None,
    cropped: Annotated[
        bool,
        typer.Option(
            "--cropped",
            help="The inputs are knee crops already (one knee each, as in kneeKL224): KL "
            "probabilities only, no localisation and no mm measurements.",
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing tables in the --output folder.")
    ] = False,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Grade knee radiographs: side, KL grade and probabilities, JSN, mJSW and JSW profile per
    knee; HKA per leg of full-leg films; with --cropped, KL of knee crops."""
    paths = list(inputs or [])
    if not paths:
        raise InputError("nothing to read: give knee films with -i FILE (repeat for several)")
    if output is not None:
        _check_output(output, overwrite, cropped)
    report = _Report()
    files = _expand(paths, report)
    if cropped:
        _grade_crops(files, model, workspace_dir, catalog, report)
    else:
        _read_films(files, model, workspace_dir, catalog, report, with_profile=as_json)
    if output is not None:
        _write_tables(output, report, cropped)
    payload: dict[str, Any] = (
        {"crops": report.crops}
        if cropped
        else {"knees": [_json_knee(r) for r in report.knees], "legs": report.legs}
    )
    payload["unreadable"] = [{"input": str(p), "reason": why} for p, why in report.unreadable]
    emit(payload, as_json, lambda console: _render(console, report, cropped))
    for note in dict.fromkeys(report.notes):
        stderr().print(f"warning: {note}", markup=False, highlight=False, soft_wrap=True)
    _exit_status(report, cropped)


# --- inputs ------------------------------------------------------------------------------


def _expand(paths: list[Path], report: _Report) -> list[Path]:
    """Files to read: a file as given, a folder's regular files (recursively, name order)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            if not found:
                report.unreadable.append((path, "an empty folder"))
            files.extend(found)
        elif not path.exists():
            report.unreadable.append((path, "no such file"))
        else:
            files.append(path)
    if not files and report.unreadable:
        path, why = report.unreadable[0]
        raise InputError(f"{path}: {why}; give knee films (DICOM files or series folders)")
    return files


def _check_output(output: Path, overwrite: bool, cropped: bool) -> None:
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output} is a file; give a folder for the tables")
    if not output.parent.is_dir():
        raise InputError(f"--output {output}: folder {output.parent} does not exist")
    names = (CROPS_CSV,) if cropped else (KNEES_CSV, LEGS_CSV)
    for name in names:
        if (output / name).exists() and not overwrite:
            raise InputError(f"--output {output} already holds {name}; pass --overwrite")


def _read_film(path: Path) -> Any:
    from kneescope.io.readers import read_film

    try:
        return read_film(path)
    except OSError as exc:
        raise InputError(f"cannot read it ({exc.strerror or exc})") from None


def _why(exc: KneescopeError, path: Path) -> str:
    text = str(exc)
    return text[len(str(path)) + 2 :] if text.startswith(f"{path}: ") else text


# --- knee and full-leg films ---------------------------------------------------------------


class _Kl:
    """The KL model, loaded once on first use (None when it cannot be had)."""

    def __init__(self, name: str | None, workspace_dir: Path | None, catalog: str | None):
        self.name = name
        self.workspace_dir = workspace_dir
        self.catalog = catalog
        self.loaded = False
        self.model: Any = None
        self.label = ""

    def get(self, report: _Report) -> Any:
        if self.loaded:
            return self.model
        self.loaded = True
        from kneescope.capabilities.classification.kl import DEFAULT_KL_MODEL, load_kl_model

        workspace = None
        if self.workspace_dir is not None or self.catalog is not None or self.name is not None:
            from kneescope.cli.common import workspace as resolve_workspace

            try:
                workspace = resolve_workspace(self.workspace_dir, self.catalog)
            except KneescopeError:
                workspace = None
        try:
            self.model = load_kl_model(self.name, workspace=workspace)
        except KneescopeError as exc:
            if self.name is not None:
                raise  # the model asked for must be there
            report.notes.append(
                f"no KL grades: the default KL model {DEFAULT_KL_MODEL} is not available "
                f"({exc}); give one with -m MODEL"
            )
            self.model = None
        self.label = self.name or DEFAULT_KL_MODEL
        return self.model


def _is_full_leg(film: Any) -> bool:
    height = film.shape[0] * float(film.spacing_mm[0])
    width = film.shape[1] * float(film.spacing_mm[1])
    return height >= FULL_LEG_MIN_MM and height > 2.0 * width


def _read_films(
    files: list[Path],
    model: str | None,
    workspace_dir: Path | None,
    catalog: str | None,
    report: _Report,
    *,
    with_profile: bool,
) -> None:
    kl = _Kl(model, workspace_dir, catalog)
    if model is not None:
        kl.get(report)  # a model named on the command line must load before any work
    for path in files:
        try:
            film = _read_film(path)
        except KneescopeError as exc:
            report.unreadable.append((path, _why(exc, path)))
            continue
        try:
            if _is_full_leg(film):
                report.legs.extend(_leg_rows(path, film, report))
            else:
                report.knees.extend(_knee_rows(path, film, kl, report, with_profile=with_profile))
        except KneescopeError as exc:
            report.unreadable.append((path, _why(exc, path)))


def _knee_rows(
    path: Path, film: Any, kl: _Kl, report: _Report, *, with_profile: bool
) -> list[dict[str, Any]]:
    import numpy as np

    from kneescope.capabilities.radiographs.jsw_step import jsw_values, result_values
    from kneescope.capabilities.radiographs.locate_step import location_values
    from kneescope.xray.jsw import measure_jsw
    from kneescope.xray.locate import locate_knees

    located = locate_knees(film)
    rows: list[dict[str, Any]] = []
    for knee in located:
        row: dict[str, Any] = {"film": str(path), **location_values(located, knee)}
        row.update({"kl_grade": None, **{f"kl_p{g}": None for g in range(KL_GRADES)}})
        row["kl_model"] = ""
        if knee.gradable and knee.roi is not None:
            result = measure_jsw(knee.roi)
            row.update(result_values(result))
            if with_profile:
                row["_profile"] = {
                    "roi_col": [round(float(c), 1) for c in result.profile_col],
                    "jsw_mm": [round(float(v), 3) for v in result.profile_jsw_mm],
                }
        else:
            row.update(jsw_values(None))
            row["jsw_reason"] = knee.reason or row["jsw_reason"]
        rows.append(row)
    gradable = [k for k in located if k.gradable]
    classifier = kl.get(report) if gradable else None
    if classifier is not None:
        from kneescope.capabilities.classification.kl import grade_knees

        own = [k.roi for k in gradable if k.roi is not None]
        pairs = []
        for k in gradable:
            other = located.knee("left" if k.side == "right" else "right")
            pairs.append(other.roi if other.gradable and other.roi is not None else k.roi)
        rois = np.stack(own)
        others = np.stack([p for p in pairs if p is not None])
        prediction = grade_knees(classifier, rois, others)
        for k, grade, probs in zip(
            gradable, prediction.grades, prediction.probabilities, strict=True
        ):
            row = next(r for r in rows if r["knee_side"] == k.side)
            row["kl_grade"] = int(grade)
            row.update({f"kl_p{g}": round(float(p), 4) for g, p in enumerate(probs)})
            row["kl_model"] = kl.label
    return rows


def _leg_rows(path: Path, film: Any, report: _Report) -> list[dict[str, Any]]:
    from kneescope.capabilities.landmarks.full_leg import measure_full_leg

    try:
        legs = measure_full_leg(film)
    except KneescopeError as exc:
        if isinstance(exc, InputError):
            raise
        report.notes.append(f"no HKA for full-leg films: {exc}")
        return [
            {"film": str(path), "leg_side": side, "hka_deg": None, "reason": "no full-leg model"}
            for side in ("right", "left")
        ]
    rows = []
    for leg in legs:
        row: dict[str, Any] = {"film": str(path), "leg_side": leg.side}
        row["hka_deg"] = None if leg.hka_deg is None else round(float(leg.hka_deg), 2)
        row["mad_mm"] = None if leg.mad_mm is None else round(float(leg.mad_mm), 2)
        for name in ("hip", "knee", "ankle"):
            rc = getattr(leg, f"{name}_rc")
            row[f"{name}_row_px"] = None if rc is None else round(float(rc[0]), 1)
            row[f"{name}_col_px"] = None if rc is None else round(float(rc[1]), 1)
        row["reason"] = leg.reason or ""
        rows.append(row)
    return rows


# --- knee crops ----------------------------------------------------------------------------


def _grade_crops(
    files: list[Path],
    model: str | None,
    workspace_dir: Path | None,
    catalog: str | None,
    report: _Report,
) -> None:
    from kneescope.io.raster_image import is_raster_image, read_raster_image

    images: list[Any] = []
    names: list[Path] = []
    for path in files:
        try:
            image = read_raster_image(path) if is_raster_image(path) else _read_film(path).array
        except KneescopeError as exc:
            report.unreadable.append((path, _why(exc, path)))
            continue
        images.append(image)
        names.append(path)
    if not images:
        return
    kl = _Kl(model, workspace_dir, catalog)
    classifier = kl.get(report)
    if classifier is None:
        raise InputError(
            "no KL model to grade the crops with: the default kl-xray-real is not installed; "
            "give one with -m MODEL"
        )
    from kneescope.capabilities.classification.kl import grade_crops

    prediction = grade_crops(classifier, images)
    for path, grade, probs in zip(names, prediction.grades, prediction.probabilities, strict=True):
        row: dict[str, Any] = {"image": str(path), "kl_grade": int(grade)}
        row.update({f"kl_p{g}": round(float(p), 4) for g, p in enumerate(probs)})
        row["kl_model"] = kl.label
        report.crops.append(row)


# --- output --------------------------------------------------------------------------------


def _table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]


def _write_tables(output: Path, report: _Report, cropped: bool) -> None:
    from kneescope.io.csv_table import write_csv_table

    output.mkdir(exist_ok=True)
    written = []
    if cropped and report.crops:
        written.append(write_csv_table(output / CROPS_CSV, report.crops))
    if report.knees:
        written.append(write_csv_table(output / KNEES_CSV, _table_rows(report.knees)))
    if report.legs:
        written.append(write_csv_table(output / LEGS_CSV, report.legs))
    for path in written:
        stderr().print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


def _json_knee(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if not k.startswith("_") and not k.startswith("kl_p")}
    probs = [row.get(f"kl_p{g}") for g in range(KL_GRADES)]
    out["kl_probabilities"] = None if probs[0] is None else probs
    if "_profile" in row:
        out["jsw_profile"] = row["_profile"]
    return out


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _render(console: Console, report: _Report, cropped: bool) -> None:
    if cropped:
        table = Table(title="KL grades of knee crops")
        for name in ("image", "KL", *(f"P(KL{g})" for g in range(KL_GRADES))):
            table.add_column(name)
        for row in report.crops:
            probs = [_fmt(row[f"kl_p{g}"]) for g in range(KL_GRADES)]
            table.add_row(Path(row["image"]).name, _fmt(row["kl_grade"]), *probs)
        console.print(table)
    if report.knees:
        table = Table(title="Knees")
        for name in ("film", "side", "KL", "P(KL)", "JSN M/L", "mJSW M/L mm", "reason"):
            table.add_column(name)
        for row in report.knees:
            grade = row["kl_grade"]
            p = None if grade is None else row[f"kl_p{grade}"]
            table.add_row(
                Path(row["film"]).name,
                row["knee_side"],
                _fmt(grade),
                _fmt(p),
                f"{_fmt(row.get('jsn_medial'))}/{_fmt(row.get('jsn_lateral'))}",
                f"{_fmt(row.get('mjsw_medial_mm'))}/{_fmt(row.get('mjsw_lateral_mm'))}",
                row["reason"] or row.get("jsw_reason") or "",
            )
        console.print(table)
    if report.legs:
        table = Table(title="Legs (full-leg films)")
        for name in ("film", "side", "HKA deg", "reason"):
            table.add_column(name)
        for row in report.legs:
            table.add_row(
                Path(row["film"]).name, row["leg_side"], _fmt(row["hka_deg"]), row["reason"]
            )
        console.print(table)
    for path, why in report.unreadable:
        console.print(f"{path}: {why}", markup=False, highlight=False, soft_wrap=True)


def _exit_status(report: _Report, cropped: bool) -> None:
    done = (
        len(report.crops)
        if cropped
        else sum(1 for r in report.knees if r["gradable"])
        + sum(1 for r in report.legs if r["hka_deg"] is not None)
    )
    if done == 0 and report.unreadable and not (report.knees or report.legs):
        path, why = report.unreadable[0]
        more = (
            f" (and {len(report.unreadable) - 1} more inputs)" if len(report.unreadable) > 1 else ""
        )
        raise InputError(f"{path}: {why}{more}; nothing could be read")
    if done == 0:
        reasons = [f"{p}: {why}" for p, why in report.unreadable]
        reasons += [
            f"{Path(r['film']).name} {r['knee_side']} knee: {r['reason']}" for r in report.knees
        ]
        reasons += [
            f"{Path(r['film']).name} {r['leg_side']} leg: {r['reason']}" for r in report.legs
        ]
        what = "knee crop" if cropped else "knee or leg"
        raise InputError(
            f"no {what} could be graded or measured ({'; '.join(dict.fromkeys(reasons))}); "
            "give bilateral PA knee films or full-leg films"
        )
    if report.unreadable:
        names = ", ".join(str(p) for p, _ in report.unreadable)
        raise KneescopeError(
            f"{len(report.unreadable)} inputs could not be read or measured ({names}); the "
            "others are reported; fix or leave out those files"
        )
