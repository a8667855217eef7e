"""A finished run, loaded for its report: one record per knee and visit, the cohort's reference
ranges, and readers of each knee's image, label map and thickness maps.

:func:`load_run` reads ``WS/runs/NAME/results.parquet`` (through
:func:`kneescope.cohort.results_table.read_run_results`) and the workspace's catalog (through
:class:`kneescope.catalog.view.CatalogView`: series descriptions, image paths, label maps, the
readers' KL grade ``XRKL``). Heavy data (images, label maps, maps) is read per knee, by the
process that draws that knee's page (:func:`read_image`, :func:`read_labels`,
:func:`read_maps`).

Identifiers are pseudonymous: a knee is named by its subject code, side and visit; patient
names are never read. Header strings (series descriptions) are kept as they are: the pages'
templates escape them (Jinja2 autoescape).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kneescope.errors import InputError, KneescopeError, NotFoundError
from kneescope.reports.names import knee_page_path, knee_page_stem, safe_part

if TYPE_CHECKING:
    import pandas as pd

    from kneescope.biomarkers.maps import ThicknessMap
    from kneescope.core import Volume

KL_VARIABLES = ("XRKL", "KLG", "KL")
"""Catalog clinical variables read as the knee's KL grade, first found wins."""

REFERENCE_MIN_KNEES = 5
"""Fewest KL 0-1 knees (QC passed) the reference ranges are taken from; with fewer, the run's
QC-passed knees are used (and the page says so)."""

_NOT_VALUES = ("qc_", "time_", "file_")
_NOT_VALUE_COLUMNS = frozenset({"attempts", "slurm_job_id", "labels_present"})
_PROBABILITY = re.compile(r"^(?P<group>.+?)_probability_(?P<cls>[0-9a-z_]+)$")
SCORE_FILES = ("cohort/oa_score/oa_scores.csv", "oa_score/oa_scores.csv")
"""Where a run's holistic OA scores are (the ``oa_score`` cohort step's, ``kneescope
score``'s), relative to the run folder; the first found is read."""
SCORE_VALUES = ("oa_score", "oa_probability_kl2")
_INFORMATIVE_FLAGS = ("not_labelled_",)


@dataclass(frozen=True)
class ReferenceRanges:
    """Per biomarker the 5th..95th percentile of a reference group of the run's knees.

    Attributes:
        source: which knees, in words (e.g. "the 12 KL 0-1 knee-visits that passed QC").
        n: how many knee-visits.
        ranges: column -> (p5, p95), for numeric columns with at least 2 finite values.
    """

    source: str
    n: int
    ranges: dict[str, tuple[float, float]]


@dataclass(frozen=True)
class KneeRecord:
    """One knee at one visit of the run (one results row).

    Attributes:
        item_id, subject, visit, side, series: as in the results table (side "" unknown).
        description: the series description from the catalog ("" unknown), unescaped.
        qc_ok: the row's QC verdict.
        qc_flags: raised QC flag names without ``qc_`` (``missing_lateral_meniscus``).
        qc_reasons: flag name -> the measure step's reason text ("" when none was given).
        kl_grade: the readers' KL grade from the catalog (None when unknown).
        values: numeric biomarker columns -> value (NaN kept).
        probabilities: group (``kl``) -> class label -> probability, from
            ``<group>_probability_<k>`` columns.
        image_path: the series' image (file, DICOM folder) or None; ``store_key``: its key
            in ``WS/store`` when converted.
        labels_path: the label map the run measured (the run's own, else the catalog's).
        maps_path: the run's ``thickness_maps.npz`` of this knee, or None.
        page: the knee page, relative to the report folder; ``thumbnail``: its thumbnail.
        scores: the knee-visit's holistic OA score (``oa_score``: expected KL grade,
            ``oa_probability_kl2``: P(KL >= 2)) when the run was scored; {} otherwise.
        labels_scheme: the label scheme of ``labels_path`` (kneescope's own for the run's
            segmentations; the ``measure`` step's ``labels`` option for catalog label maps).
        review: the knee's current QC review when the results table carries one
            (``qc_review``, ``qc_reviewer``, ``qc_reviewed_at``, ``qc_review_note`` after
            ``kneescope qc import``); {} when not reviewed.
    """

    item_id: str
    subject: str
    visit: str
    side: str
    series: str
    description: str
    qc_ok: bool
    qc_flags: tuple[str, ...]
    qc_reasons: dict[str, str]
    kl_grade: float | None
    values: dict[str, float]
    probabilities: dict[str, dict[str, float]]
    image_path: str | None
    store_key: str | None
    labels_path: str | None
    maps_path: str | None
    page: str
    thumbnail: str
    review: dict[str, str] = field(default_factory=dict)
    labels_scheme: str = "kneescope"
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        """The page's file stem (``9000001_right_V00``): also its figure folder's name."""
        return Path(self.page).stem

    @property
    def title(self) -> str:
        """``subject side knee, visit``: how the pages name this knee."""
        side = f"{self.side} knee" if self.side else "knee (side unknown)"
        return f"{self.subject} {side}, {self.visit}"


@dataclass(frozen=True)
class RunData:
    """A finished run, ready for its report (see :func:`load_run`).

    Attributes:
        name: the run's name; ``run_dir``: its folder; ``workspace``: the workspace root.
        kneescope_version: the version that wrote the run (config.json, else the rows).
        table: the results table as read (one row per item).
        knees: one record per row, sorted by subject, side, visit.
        numeric_columns: the biomarker columns (numeric, not QC/timing/provenance).
        reference: the reference ranges of :attr:`numeric_columns`.
        cohort_figures: PNG figures the run's cohort steps wrote (``RUN/cohort/*/*.png``).
        store_dir: the workspace's Zarr store folder (images of converted series).
        units: column -> unit in words (from the name's suffix).
        measure_options: the options of the run's ``measure`` step ({} when none).
    """

    name: str
    run_dir: Path
    workspace: Path
    kneescope_version: str
    table: pd.DataFrame
    knees: tuple[KneeRecord, ...]
    numeric_columns: tuple[str, ...]
    reference: ReferenceRanges
    cohort_figures: tuple[Path, ...]
    store_dir: Path
    units: dict[str, str] = field(default_factory=dict)
    measure_options: dict[str, Any] = field(default_factory=dict)

    def visits_of(self, knee: KneeRecord) -> list[KneeRecord]:
        """Every visit of ``knee``'s knee (same subject and side) in the run, in visit order."""
        same = [k for k in self.knees if k.subject == knee.subject and k.side == knee.side]
        return sorted(same, key=lambda k: _visit_order(k.visit))


def _visit_order(visit: str) -> tuple[int, str]:
    digits = re.sub(r"\D", "", visit)
    return (int(digits) if digits else 10**6, visit)


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def numeric_columns(table: pd.DataFrame) -> tuple[str, ...]:
    """The biomarker columns of a results table: numeric (not bool), not QC, timing, file or
    bookkeeping columns, not the probability columns."""
    out = []
    for column in table.columns:
        name = str(column)
        if name.startswith(_NOT_VALUES) or name in _NOT_VALUE_COLUMNS:
            continue
        if _PROBABILITY.match(name):
            continue
        kind = table[column].dtype.kind
        if kind in "fiu":
            out.append(name)
    return tuple(out)


def raised_flags(row: Mapping[str, Any]) -> tuple[str, ...]:
    """Names (without ``qc_``) of the QC flags raised in a results row: True booleans and
    positive counts; ``qc_ok`` and ``qc_reasons`` are not flags."""
    out = []
    for key, value in row.items():
        name = str(key)
        if not name.startswith("qc_") or name in ("qc_ok", "qc_reasons"):
            continue
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            if bool(value):
                out.append(name[3:])
        elif _is_number(value) or type(value).__name__.startswith("int"):
            number = float(value)
            if math.isfinite(number) and number > 0:
                out.append(name[3:])
    return tuple(out)


def split_reasons(text: str, flags: tuple[str, ...]) -> dict[str, str]:
    """``qc_reasons`` text (``"flag: why; other_flag: why"``) split by the raised ``flags``;
    a flag without a reason in the text maps to ""."""
    found: list[tuple[int, str]] = []
    for flag in flags:
        at = text.find(f"{flag}: ")
        if at >= 0:
            found.append((at, flag))
    found.sort()
    out = {flag: "" for flag in flags}
    for n, (at, flag) in enumerate(found):
        end = found[n + 1][0] if n + 1 < len(found) else len(text)
        out[flag] = text[at + len(flag) + 2 : end].strip().rstrip(";").strip()
    return out


def is_informative(flag: str) -> bool:
    """True for flags that do not fail QC by themselves (``not_labelled_*``)."""
    return flag.startswith(_INFORMATIVE_FLAGS)


def reference_ranges(
    table: pd.DataFrame, columns: tuple[str, ...], kl: list[float | None]
) -> ReferenceRanges:
    """The 5th..95th percentile of each column over the reference knees: the KL 0-1 rows
    that passed QC when there are at least :data:`REFERENCE_MIN_KNEES`, else every row that
    passed QC, else every row. ``kl``: the KL grade of each row (None unknown)."""
    import numpy as np

    qc = (
        table["qc_ok"].fillna(False).astype(bool).to_numpy()
        if "qc_ok" in table.columns
        else np.ones(len(table), bool)
    )
    healthy = np.array([g is not None and g <= 1 for g in kl], dtype=bool) & qc
    if healthy.sum() >= REFERENCE_MIN_KNEES:
        chosen = healthy
        source = f"the {int(chosen.sum())} knee-visits with KL 0-1 that passed QC"
    elif qc.sum() >= 2:
        chosen = qc
        source = (
            f"all {int(chosen.sum())} knee-visits of the run that passed QC (only "
            f"{int(healthy.sum())} with KL 0-1, fewer than {REFERENCE_MIN_KNEES})"
        )
    else:
        chosen = np.ones(len(table), bool)
        source = f"all {len(table)} knee-visits of the run (fewer than 2 passed QC)"
    ranges: dict[str, tuple[float, float]] = {}
    sub = table.loc[chosen]
    for column in columns:
        values = sub[column].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size >= 2:
            lo, hi = np.percentile(values, [5.0, 95.0])
            ranges[column] = (float(lo), float(hi))
    return ReferenceRanges(source, int(chosen.sum()), ranges)


def _units(table_columns: list[str]) -> dict[str, str]:
    """column -> unit from its name's suffix (``_mm3`` -> mm³)."""
    suffixes = (
        ("_mm3", "mm³"),
        ("_mm2", "mm²"),
        ("_mm", "mm"),
        ("_pct", "%"),
        ("_deg", "°"),
        ("_s", "s"),
    )
    out = {}
    for c in table_columns:
        for suffix, unit in suffixes:
            if c.endswith(suffix):
                out[c] = unit
                break
    return out


def _run_config(run_dir: Path) -> dict[str, Any]:
    """The run's ``config.json`` ({} when missing or unreadable)."""
    try:
        config = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _measure_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The options of the run's ``measure`` step ({} when it has none)."""
    steps = (config.get("config") or {}).get("steps") or []
    for step in steps:
        if isinstance(step, dict) and step.get("name") == "measure":
            options = step.get("options") or {}
            return dict(options) if isinstance(options, dict) else {}
    return {}


def _scores(run_dir: Path) -> dict[tuple[str, str, str], dict[str, float]]:
    """(subject, visit, side) -> the OA score values of the run's ``oa_scores.csv``
    ({} when the run was not scored or the file cannot be read)."""
    import pandas as pd

    for name in SCORE_FILES:
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            table = pd.read_csv(path, dtype={k: str for k in ("subject", "visit", "side")})
        except (OSError, ValueError):
            return {}
        out: dict[tuple[str, str, str], dict[str, float]] = {}
        for row in table.to_dict(orient="records"):
            key = (_text(row.get("subject")), _text(row.get("visit")), _text(row.get("side")))
            values = {}
            for column in SCORE_VALUES:
                value: Any = row.get(column)
                if _is_number(value) and math.isfinite(float(value)):
                    values[column] = float(value)
            out[key] = values
        return out
    return {}


def _version(run_dir: Path, table: pd.DataFrame) -> str:
    version = _run_config(run_dir).get("kneescope_version")
    if version:
        return str(version)
    if "kneescope_version" in table.columns and len(table):
        return _text(table["kneescope_version"].iloc[0])
    return ""


def _kl_lookup(view: Any) -> dict[tuple[str, str, str], float]:
    out: dict[tuple[str, str, str], float] = {}
    if view is None:
        return out
    for variable in reversed(KL_VARIABLES):  # the first name wins: written last
        for row in view.clinical_values(variable):
            number = row.get("value_num")
            if number is None or row.get("visit") is None or row.get("side") is None:
                continue
            out[(str(row["subject"]), str(row["visit"]), str(row["side"]))] = float(number)
    return out


def _series_lookup(view: Any, subjects: list[str]) -> dict[str, Any]:
    """series id (``series-<id>`` item ids) and series UID -> catalog SeriesRecord."""
    out: dict[str, Any] = {}
    if view is None:
        return out
    for subject in subjects:
        try:
            records = view.series(subject)
        except KneescopeError:
            continue
        for rec in records:
            out[f"series-{rec.id}"] = rec
            if rec.series_uid:
                out.setdefault(f"uid:{rec.series_uid}", rec)
    return out


def load_run(workspace: Path, name: str, *, catalog_url: str | None = None) -> RunData:
    """Load run ``name`` of ``workspace`` for its report.

    Args:
        workspace: the workspace folder (``WS/runs/NAME`` is the run).
        name: the run's name.
        catalog_url: the catalog to read (default the workspace's own).

    Raises:
        NotFoundError: no such run, or it has no results table yet.
        InputError: the results table cannot be read or has no rows.
    """
    from kneescope.catalog.view import CatalogView
    from kneescope.cohort.results_table import read_run_results
    from kneescope.workspace import Workspace

    ws = Workspace.resolve(Path(workspace), catalog_url)
    run_dir = ws.runs_dir / name
    table = read_run_results(run_dir)
    if table.empty:
        raise InputError(f"run {name!r} has no finished items in {run_dir}; nothing to report")
    view = CatalogView.for_workspace(ws)
    rows = table.to_dict(orient="records")
    subjects = sorted({_text(r.get("subject")) for r in rows if _text(r.get("subject"))})
    series = _series_lookup(view, subjects)
    kl = _kl_lookup(view)
    columns = numeric_columns(table)
    measure_options = _measure_options(_run_config(run_dir))
    scheme = str(measure_options.get("labels", "kneescope"))
    knees = []
    kl_of_row: list[float | None] = []
    for row in rows:
        knee = _knee_record({str(k): v for k, v in row.items()}, series, kl, columns, scheme)
        knees.append(knee)
        kl_of_row.append(knee.kl_grade)
    scores = _scores(run_dir)
    if scores:
        knees = [
            dataclasses.replace(k, scores=scores.get((k.subject, k.visit, k.side), {}))
            for k in knees
        ]
    reference = reference_ranges(table, columns, kl_of_row)
    knees = _unique_pages(knees)
    knees.sort(key=lambda k: (k.subject, k.side, _visit_order(k.visit), k.item_id))
    figures = tuple(sorted((run_dir / "cohort").glob("*/*.png")))
    return RunData(
        name=name,
        run_dir=run_dir,
        workspace=ws.root,
        kneescope_version=_version(run_dir, table),
        table=table,
        knees=tuple(knees),
        numeric_columns=columns,
        reference=reference,
        cohort_figures=figures,
        store_dir=ws.store_dir,
        units=_units(list(columns)),
        measure_options=measure_options,
    )


def _knee_record(
    row: dict[str, Any],
    series: Mapping[str, Any],
    kl: Mapping[tuple[str, str, str], float],
    columns: tuple[str, ...],
    scheme: str,
) -> KneeRecord:
    item_id = _text(row.get("item_id"))
    subject, visit, side = (_text(row.get(k)) for k in ("subject", "visit", "side"))
    uid = _text(row.get("series"))
    rec = series.get(item_id) or series.get(f"uid:{uid}")
    flags = raised_flags(row)
    reasons = split_reasons(_text(row.get("qc_reasons")), flags)
    values = {}
    for column in columns:
        value = row.get(column)
        values[column] = float(value) if value is not None else math.nan
    probabilities: dict[str, dict[str, float]] = {}
    for key, value in row.items():
        match = _PROBABILITY.match(str(key))
        if match and _is_number(value) and math.isfinite(float(value)):
            group = probabilities.setdefault(match["group"], {})
            group[match["cls"]] = float(value)
    own = _text(row.get("file_segment_labels"))
    labels = own or (rec.label_paths[0] if rec is not None and rec.label_paths else "")
    image = (rec.path if rec is not None else "") or _text(row.get("input_path"))
    qc_ok = row.get("qc_ok")
    return KneeRecord(
        item_id=item_id,
        subject=subject,
        visit=visit,
        side=side,
        series=uid,
        description=(rec.description or "") if rec is not None else "",
        qc_ok=bool(qc_ok) if qc_ok is not None and not _is_nan(qc_ok) else True,
        qc_flags=flags,
        qc_reasons=reasons,
        kl_grade=kl.get((subject, visit, side)),
        values=values,
        probabilities=probabilities,
        image_path=image or None,
        store_key=(rec.store_key if rec is not None else None) or None,
        labels_path=labels or None,
        maps_path=_text(row.get("file_measure_thickness_maps")) or None,
        page=knee_page_path(subject, side, visit),
        thumbnail=f"knees/{knee_page_stem(subject, side, visit)}/thumb.png",
        review=_review(row),
        labels_scheme="kneescope" if own else scheme,
    )


REVIEW_COLUMNS = ("qc_review", "qc_reviewer", "qc_reviewed_at", "qc_review_note")
"""The review columns a results table carries after ``kneescope qc import``
(:data:`kneescope.catalog.qc_reviews.REVIEW_COLUMNS`)."""


def _review(row: Mapping[str, Any]) -> dict[str, str]:
    """The row's QC review (column name without ``qc_`` -> text), {} when not reviewed."""
    if not _text(row.get("qc_review")):
        return {}
    return {c[3:]: _text(row.get(c)) for c in REVIEW_COLUMNS}


def _unique_pages(knees: list[KneeRecord]) -> list[KneeRecord]:
    """The knees with one page each: when several items share a knee and visit (two series
    of one knee-visit in a run), every one but the first (by item id) gets its item id in
    its page's name (``knees/9000001_right_V00_series-7.html``)."""
    seen: set[str] = set()
    out = []
    for knee in sorted(knees, key=lambda k: k.item_id):
        if knee.page in seen:
            stem = f"{knee.stem}_{safe_part(knee.item_id)}"
            knee = dataclasses.replace(
                knee, page=f"knees/{stem}.html", thumbnail=f"knees/{stem}/thumb.png"
            )
        seen.add(knee.page)
        out.append(knee)
    return out


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def read_image(knee: KneeRecord, store_dir: Path | None = None) -> Volume:
    """The knee's image: from the Zarr store ``store_dir`` (``RunData.store_dir``) when
    converted there, else its file or DICOM folder.

    Raises:
        NotFoundError: the run names no image for this knee.
        InputError: the image cannot be read.
    """
    from kneescope.io import read_volume
    from kneescope.io.zarr_store import VolumeStore

    if knee.store_key and store_dir is not None and store_dir.is_dir():
        try:
            return VolumeStore(store_dir).read(knee.store_key, verify=False)
        except KneescopeError:
            pass  # fall back to the source files
    if not knee.image_path:
        raise NotFoundError(f"{knee.title}: the catalog has no image of series {knee.series}")
    return read_volume(Path(knee.image_path))


def read_labels(knee: KneeRecord) -> Volume:
    """The label map the run measured for ``knee``, in kneescope's labels (a catalog label
    map in another scheme is converted as the ``measure`` step did).

    Raises:
        NotFoundError: the run kept none and the catalog has none.
        InputError: it cannot be read or is not written in its scheme.
    """
    from kneescope.biomarkers.label_schemes import resolve_scheme, to_kneescope_labels
    from kneescope.io import read_volume

    if not knee.labels_path:
        raise NotFoundError(f"{knee.title}: no label map (the run kept none)")
    volume = read_volume(Path(knee.labels_path))
    if knee.labels_scheme.lower() == "kneescope":
        return volume
    side = knee.side if knee.side in ("right", "left") else "auto"
    scheme = resolve_scheme(knee.labels_scheme)
    return to_kneescope_labels(volume, scheme, side, source=knee.labels_path).labels  # type: ignore[arg-type]


def read_maps(knee: KneeRecord) -> dict[str, ThicknessMap] | None:
    """The knee's thickness maps, or None when the run did not keep them (measure option
    ``maps = false``, or a run from before maps were kept)."""
    from kneescope.biomarkers.maps import load_maps

    if not knee.maps_path or not Path(knee.maps_path).is_file():
        return None
    return load_maps(Path(knee.maps_path))


def compute_maps(
    knee: KneeRecord, labels: Volume, measure_options: Mapping[str, Any]
) -> dict[str, ThicknessMap]:
    """The knee's thickness maps measured again from its label map (kneescope labels, as
    :func:`read_labels` returns) with the run's ``measure`` options: for runs that did not
    keep them (about a second or two per knee at full size).

    Raises:
        InputError: the options are invalid or the label map cannot be measured.
    """
    from kneescope.biomarkers.label_schemes import measure_labelled
    from kneescope.capabilities.biomarkers.config import MeasureStepConfig
    from kneescope.config import validate_config

    options = {k: v for k, v in measure_options.items() if k not in ("labels", "side")}
    config = validate_config(MeasureStepConfig, options, "the run's measure options")
    side = knee.side if knee.side in ("right", "left") else "auto"
    measured = measure_labelled(
        labels,
        "kneescope",
        side,  # type: ignore[arg-type]
        config.measure_config(),
        with_maps=True,
        source=knee.labels_path or knee.title,
    )
    return dict(measured.maps)
