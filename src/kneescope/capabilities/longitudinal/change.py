"""A knee followed over visits: the results table turned into knee-visits, changes from
baseline and per-visit summaries.

A knee is (subject, side); a knee-visit is (subject, side, visit), visits aligned by their
OAI visit codes (``V00``, ``1``, ``v03`` all name OAI visits; :func:`visit_order` sorts them
by the months of :data:`kneescope.core.oai_layout.VISIT_MONTHS`). A results table may hold
several rows of one knee-visit (two MRI series, or runs joined): a biomarker's value is the
mean of its rows' values (missing values skipped).

Months since baseline, per knee-visit, from the first source that has them:

1. ``table``: a numeric ``months`` column of the results table (synthetic endpoint tables);
2. ``dates``: the visits' dates (``YYYYMMDD``, e.g. the catalog's DICOM StudyDate), days /
   (365.25 / 12);
3. ``visit code``: the OAI visit code's months (V00 0, V01 12, V03 24, V05 36, V06 48, ...).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from kneescope.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

KNEE = ("subject", "side")
"""The columns that name a knee."""

KNEE_VISIT = ("subject", "side", "visit")
"""The columns that name a knee-visit."""

SIDES = ("right", "left")

DAYS_PER_MONTH = 365.25 / 12.0

TEXT_COLUMNS = ("side_from_anatomy", "measured_side")
"""Text columns the side check reads (all distinct non-empty values of a knee-visit's rows,
joined with ``/``)."""

KLG_COLUMNS = ("baseline_klg", "klg")
"""Columns of a table that carry the KL grade (``baseline_klg`` wins; ``klg`` is read at the
baseline visit)."""


@dataclass(frozen=True)
class KneeVisits:
    """The results table as knee-visits.

    Attributes:
        frame: one row per knee-visit, sorted by subject, side and visit order: ``subject``,
            ``side`` (right/left), ``visit`` (``V00`` form), ``visit_rank`` (int, months of the
            code, order of unknown codes after), the biomarker and bone-size columns (float64,
            NaN where missing), ``qc_ok`` (bool: every row's ``qc_ok`` true, or no such
            column), the :data:`TEXT_COLUMNS` present (str) and ``months_table`` (float64,
            the table's ``months`` column, NaN when it has none).
        biomarkers: the followed biomarker columns, in table order.
        bone_size: the bone-size columns found.
        units: column -> unit read from its name's suffix (``mm``, ``mm2``, ``mm3``, ``%``).
        rows_without_knee: result rows without subject, visit or side (left out).
        rows_bad_visit: result rows whose visit is no visit code (left out).
    """

    frame: pd.DataFrame
    biomarkers: tuple[str, ...]
    bone_size: tuple[str, ...]
    units: dict[str, str]
    rows_without_knee: int
    rows_bad_visit: int


def unit_of(column: str) -> str:
    """The unit a column's name ends in: ``_mm3`` -> ``mm3``, ``_pct`` -> ``%`` ("" when
    none)."""
    for suffix, unit in (
        ("_mm3", "mm3"),
        ("_mm2", "mm2"),
        ("_mm", "mm"),
        ("_pct", "%"),
        ("_deg", "deg"),
    ):
        if column.endswith(suffix):
            return unit
    return ""


def visit_rank(code: str) -> int:
    """Sort key of a ``V00``-form visit code: its OAI months (unknown codes: 1000 + number,
    after every known visit)."""
    from kneescope.core.oai_layout import VISIT_MONTHS

    if code in VISIT_MONTHS:
        return int(VISIT_MONTHS[code])
    return 1000 + int(code[1:])


def visit_order(codes: Sequence[str]) -> list[str]:
    """Distinct visit codes (``V00`` form) in time order."""
    return sorted(set(codes), key=visit_rank)


def _numeric(series: pd.Series) -> pd.Series | None:
    """``series`` as float64, or None when it holds text or flags (not a biomarker)."""
    import pandas as pd

    if series.dtype.kind in "iuf":
        return series.astype(np.float64)
    if series.dtype != object:
        return None
    values = series.dropna()
    if values.empty or any(isinstance(v, str | bytes | bool | np.bool_) for v in values):
        return None
    return pd.to_numeric(series, errors="coerce").astype(np.float64)


def matching(columns: Sequence[str], patterns: Sequence[str]) -> list[str]:
    """``columns`` (in order) that match any of the ``fnmatch`` ``patterns``."""
    return [c for c in columns if any(fnmatch.fnmatchcase(c, p) for p in patterns)]


def knee_visits(
    table: pd.DataFrame,
    biomarker_patterns: Sequence[str],
    bone_patterns: Sequence[str],
    exclude: Sequence[str] = (),
) -> KneeVisits:
    """Collapse a results table into one row per knee-visit (see :class:`KneeVisits`).

    Args:
        table: a run's results table (``RUN/results.parquet``) or any table with subject,
            visit, side and biomarker columns.
        biomarker_patterns: globs of the biomarkers to follow (numeric columns only).
        bone_patterns: globs of the bone-size columns.
        exclude: globs of columns never followed (truth twins, QC flags).

    Raises:
        InputError: no subject/visit/side columns, no knee-visit, or no biomarker matched.
    """
    import pandas as pd

    from kneescope.catalog.naming import normalize_visit, side_from_text

    missing = [k for k in ("subject", "visit", "side") if k not in table.columns]
    if missing:
        raise InputError(
            f"the results table has no {', '.join(missing)} column; following knees over "
            "visits needs subject, visit and side for each row (run the pipeline on catalog "
            "items)"
        )
    if table.empty:
        raise InputError("the results table is empty; run the pipeline's items first")
    subject = table["subject"].fillna("").astype(str).str.strip()
    side = table["side"].fillna("").astype(str).map(lambda s: side_from_text(s) or "")
    raw_visit = table["visit"].fillna("").astype(str).str.strip()

    def code(text: str) -> str:
        try:
            return normalize_visit(text) if text else ""
        except ValueError:
            return "?"

    visit = raw_visit.map(code)
    has_knee = (subject != "") & (side != "") & (raw_visit != "")
    bad_visit = has_knee & (visit == "?")
    keep = has_knee & ~bad_visit
    without = int((~has_knee).sum())
    if not keep.any():
        raise InputError(
            f"none of the {len(table)} result rows names a knee-visit (subject, visit code "
            "and side right/left); follow knee items over visits, e.g. MRI series from the "
            "catalog"
        )
    columns = [str(c) for c in table.columns]
    biomarkers: list[str] = []
    values: dict[str, pd.Series] = {}
    excluded = set(matching(columns, exclude))
    for name in matching(columns, biomarker_patterns):
        if name in KNEE_VISIT or name == "months" or name in excluded:
            continue
        number = _numeric(table[name])
        if number is not None:
            biomarkers.append(name)
            values[name] = number
    if not biomarkers:
        raise InputError(
            f"no numeric column of the results table matches the biomarker patterns "
            f"{list(biomarker_patterns)}; name columns the table has (e.g. "
            "we2008_cMFTC_ThCtAB_mm) in the longitudinal step's biomarkers option"
        )
    bone: list[str] = []
    for name in matching(columns, bone_patterns):
        number = _numeric(table[name])
        if number is not None:
            bone.append(name)
            values.setdefault(name, number)
    frame = pd.DataFrame(
        {"subject": subject, "side": side, "visit": visit, **values}, index=table.index
    ).loc[keep]
    frame["months_table"] = (
        _numeric(table["months"]).loc[keep]  # type: ignore[union-attr]
        if "months" in table.columns and _numeric(table["months"]) is not None
        else np.nan
    )
    frame["qc_ok"] = (
        table["qc_ok"].loc[keep].fillna(False).astype(bool) if "qc_ok" in table.columns else True
    )
    texts = [c for c in TEXT_COLUMNS if c in table.columns]
    for name in texts:
        frame[name] = table[name].loc[keep].fillna("").astype(str).str.strip().str.lower()
    for name in KLG_COLUMNS:
        if name in table.columns and name not in frame.columns:
            number = _numeric(table[name])
            if number is not None:
                frame[name] = number.loc[keep]
    numeric = [c for c in frame.columns if c not in KNEE_VISIT and c not in texts]
    grouped = frame.groupby(list(KNEE_VISIT), sort=False)
    agg: dict[str, str] = {c: "mean" for c in numeric if c != "qc_ok"}
    agg["qc_ok"] = "all"
    out = grouped.agg(agg)
    for name in texts:
        out[name] = grouped[name].agg(lambda s: "/".join(sorted({v for v in s if v})))
    out = out.reset_index()
    out["visit_rank"] = out["visit"].map(visit_rank).astype(np.int64)
    out = out.sort_values(["subject", "side", "visit_rank"], kind="stable").reset_index(drop=True)
    units = {c: unit_of(c) for c in (*biomarkers, *bone)}
    return KneeVisits(
        frame=out,
        biomarkers=tuple(biomarkers),
        bone_size=tuple(bone),
        units=units,
        rows_without_knee=without,
        rows_bad_visit=int(bad_visit.sum()),
    )


@dataclass(frozen=True)
class Aligned:
    """Knee-visits aligned to each knee's baseline.

    Attributes:
        frame: the :class:`KneeVisits` frame of the knees that have a baseline, plus
            ``baseline_visit`` (str), ``months`` (float64, months since the knee's baseline),
            ``months_source`` (``table``, ``dates`` or ``visit code``; "" when unknown) and,
            for every biomarker and bone-size column ``c``, ``c__base`` (its baseline value).
        no_baseline: knees (subject, side) left out because they lack the baseline visit.
        single_visit: knees with the baseline visit only (kept: no change to report).
    """

    frame: pd.DataFrame
    no_baseline: list[tuple[str, str]] = field(default_factory=list)
    single_visit: list[tuple[str, str]] = field(default_factory=list)


def parse_date(text: str | None) -> date | None:
    """A ``YYYYMMDD`` (or ``YYYY-MM-DD``) date, None when empty or not a date."""
    if not text:
        return None
    digits = str(text).replace("-", "").strip()
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def align(
    kv: KneeVisits,
    baseline: str | None,
    dates: Mapping[tuple[str, str], str | None] | None = None,
) -> Aligned:
    """Attach each knee's baseline values and the months since its baseline.

    Args:
        kv: the knee-visits.
        baseline: the baseline visit code; None: each knee's first visit.
        dates: (subject, visit code) -> the visit's date (``YYYYMMDD``) where known.

    Raises:
        InputError: no knee has the baseline visit.
    """
    from kneescope.core.oai_layout import VISIT_MONTHS

    frame = kv.frame
    if baseline is None:
        first = frame.groupby(list(KNEE), sort=False)["visit_rank"].transform("min")
        is_base = frame["visit_rank"] == first
    else:
        is_base = frame["visit"] == baseline
    base = frame.loc[is_base]
    knees_all = list(dict.fromkeys(zip(frame["subject"], frame["side"], strict=True)))
    knees_base = set(zip(base["subject"], base["side"], strict=True))
    no_baseline = [k for k in knees_all if k not in knees_base]
    if not knees_base:
        seen = ", ".join(visit_order(list(frame["visit"])))
        raise InputError(
            f"no knee has the baseline visit {baseline} (visits in the table: {seen}); set "
            "the longitudinal step's baseline option to one of them, or leave it out (each "
            "knee's first visit)"
        )
    cols = [*kv.biomarkers, *(c for c in kv.bone_size if c not in kv.biomarkers)]
    carried = ["months_table", *(c for c in KLG_COLUMNS if c in frame.columns)]
    base_part = base.loc[:, [*KNEE, "visit", *cols, *carried]].rename(
        columns={"visit": "baseline_visit", **{c: f"{c}__base" for c in [*cols, *carried]}}
    )
    out = frame.merge(base_part, on=list(KNEE), how="inner", validate="many_to_one")
    # baseline at or before the visit only: earlier visits than the baseline are left out
    base_rank = out["baseline_visit"].map(visit_rank)
    out = out.loc[out["visit_rank"] >= base_rank].reset_index(drop=True)
    counts = out.groupby(list(KNEE), sort=False)["visit"].transform("size")
    single = list(
        dict.fromkeys(
            zip(out.loc[counts == 1, "subject"], out.loc[counts == 1, "side"], strict=True)
        )
    )
    # months since baseline: table, then dates, then visit codes
    months = np.full(len(out), np.nan)
    source = np.full(len(out), "", dtype=object)
    from_table = (out["months_table"] - out["months_table__base"]).to_numpy(dtype=np.float64)
    ok = np.isfinite(from_table)
    months[ok], source[ok] = from_table[ok], "table"
    if dates:
        day_diff = np.array(
            [
                _day_difference(dates, s, v, b)
                for s, v, b in zip(out["subject"], out["visit"], out["baseline_visit"], strict=True)
            ],
            dtype=np.float64,
        )
        use = ~ok & np.isfinite(day_diff)
        months[use], source[use] = day_diff[use] / DAYS_PER_MONTH, "dates"
        ok |= use
    code_months = np.array(
        [
            float(VISIT_MONTHS[v] - VISIT_MONTHS[b])
            if v in VISIT_MONTHS and b in VISIT_MONTHS
            else math.nan
            for v, b in zip(out["visit"], out["baseline_visit"], strict=True)
        ],
        dtype=np.float64,
    )
    use = ~ok & np.isfinite(code_months)
    months[use], source[use] = code_months[use], "visit code"
    out["months"] = months
    out["months_source"] = source
    return Aligned(frame=out, no_baseline=no_baseline, single_visit=single)


def _day_difference(
    dates: Mapping[tuple[str, str], str | None], subject: str, visit: str, base: str
) -> float:
    a = parse_date(dates.get((subject, visit)))
    b = parse_date(dates.get((subject, base)))
    if a is None or b is None:
        return math.nan
    return float((a - b).days)


CHANGE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("subject", "str", ""),
    ("side", "str", ""),
    ("visit", "str", ""),
    ("baseline_visit", "str", ""),
    ("months", "float", "months"),
    ("months_source", "str", ""),
    ("baseline_klg", "float", ""),
    ("biomarker", "str", ""),
    ("unit", "str", ""),
    ("value", "float", ""),
    ("baseline_value", "float", ""),
    ("change", "float", ""),
    ("change_pct", "float", "%"),
    ("annualised_rate", "float", "per year"),
    ("sdc95", "float", ""),
    ("exceeds_sdc95", "bool", ""),
    ("qc_ok", "bool", ""),
    ("flagged", "bool", ""),
    ("in_summary", "bool", ""),
)
"""The change table's columns (name, kind, unit): one row per knee x visit x biomarker.
``value``, ``baseline_value``, ``change`` and ``sdc95`` are in the biomarker's ``unit``,
``annualised_rate`` in unit per year; ``flagged`` marks a knee-visit the longitudinal QC
flagged; ``in_summary`` whether the row entered the per-visit summaries."""


def change_table(
    aligned: Aligned,
    biomarkers: Sequence[str],
    units: Mapping[str, str],
    sdc: Mapping[str, float],
    klg: pd.Series,
    flagged: pd.Series,
    in_summary: pd.Series,
) -> pd.DataFrame:
    """The long change table (columns :data:`CHANGE_COLUMNS`), knee-visits x biomarkers.

    Args:
        aligned: the aligned knee-visits.
        biomarkers: the biomarker columns.
        units: biomarker -> unit.
        sdc: biomarker -> smallest detectable change (same unit; missing: NaN).
        klg: per row of ``aligned.frame``, the knee's baseline KL grade (NaN unknown).
        flagged: per row, the knee-visit was flagged by the longitudinal QC.
        in_summary: per row, the knee-visit enters the summaries.
    """
    import pandas as pd

    from kneescope.stats.change import annualised_rate, change_from_baseline

    frame = aligned.frame
    n = len(frame)
    names = list(biomarkers)
    value = frame.loc[:, names].to_numpy(dtype=np.float64)  # (n, b)
    base = frame.loc[:, [f"{c}__base" for c in names]].to_numpy(dtype=np.float64)
    change, pct = change_from_baseline(value, base)
    months = frame["months"].to_numpy(dtype=np.float64)
    rate = annualised_rate(change, months[:, None])
    sdcs = np.array([sdc.get(c, math.nan) for c in names], dtype=np.float64)
    exceeds = np.isfinite(change) & (np.abs(change) > sdcs[None, :]) & (months[:, None] > 0)
    b = len(names)

    def rep(column: str) -> np.ndarray:
        return np.repeat(frame[column].to_numpy(), b)

    return pd.DataFrame(
        {
            "subject": rep("subject"),
            "side": rep("side"),
            "visit": rep("visit"),
            "baseline_visit": rep("baseline_visit"),
            "months": np.repeat(months, b),
            "months_source": rep("months_source"),
            "baseline_klg": np.repeat(klg.to_numpy(dtype=np.float64), b),
            "biomarker": np.tile(np.array(names, dtype=object), n),
            "unit": np.tile(np.array([units.get(c, "") for c in names], dtype=object), n),
            "value": value.ravel(),
            "baseline_value": base.ravel(),
            "change": change.ravel(),
            "change_pct": pct.ravel(),
            "annualised_rate": rate.ravel(),
            "sdc95": np.tile(sdcs, n),
            "exceeds_sdc95": exceeds.ravel(),
            "qc_ok": np.repeat(frame["qc_ok"].to_numpy(dtype=bool), b),
            "flagged": np.repeat(flagged.to_numpy(dtype=bool), b),
            "in_summary": np.repeat(in_summary.to_numpy(dtype=bool), b),
        }
    )


SUMMARY_COLUMNS: tuple[str, ...] = (
    "biomarker",
    "unit",
    "visit",
    "baseline_visit",
    "group",
    "n",
    "months_mean",
    "mean_change",
    "sd_change",
    "mean_ci_low",
    "mean_ci_high",
    "srm",
    "srm_ci_low",
    "srm_ci_high",
    "mean_change_pct",
    "mean_annualised_rate",
    "share_increase",
    "share_beyond_sdc95",
    "sdc95",
)
"""The summary table's columns: one row per biomarker x follow-up visit x group (``all``,
then ``KL0`` .. ``KL4`` by baseline KL grade where known, and ``KL>=2``: the knees with
radiographic OA at baseline, where the usual cartilage-loss SRMs are reported). Changes in
the biomarker's unit, ``*_pct`` in %, the rate per year; ``share_increase`` the share of
knees whose value went up (for thickness: apparent thickening)."""


def summarise(changes: pd.DataFrame) -> pd.DataFrame:
    """Per biomarker x follow-up visit (and baseline KL grade) over the knees in the summary
    (``in_summary``): n, mean change with its 95 % CI, SD, SRM with its 95 % CI, mean %
    change, mean annualised rate, share increasing and beyond the SDC95 (columns
    :data:`SUMMARY_COLUMNS`)."""
    import pandas as pd

    from kneescope.stats.change import response_summary

    rows: list[dict[str, object]] = []
    used = changes.loc[changes["in_summary"] & (changes["visit"] != changes["baseline_visit"])]
    if used.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    used = used.assign(visit_rank=used["visit"].map(visit_rank))
    order = list(dict.fromkeys(changes["biomarker"]))
    groups = [("all", used)]
    klg = used["baseline_klg"]
    grades = sorted({int(g) for g in klg.dropna()})
    for grade in grades:
        groups.append((f"KL{grade}", used.loc[klg == grade]))
    if any(g >= 2 for g in grades) and any(g < 2 for g in grades):
        groups.append(("KL>=2", used.loc[klg >= 2]))
    for name, part in groups:
        for (biomarker, rank, visit, base), cell in part.groupby(
            ["biomarker", "visit_rank", "visit", "baseline_visit"], sort=False
        ):
            sdc = float(cell["sdc95"].iloc[0])
            s = response_summary(cell["change"].to_numpy(dtype=np.float64), sdc)
            rows.append(
                {
                    "biomarker": biomarker,
                    "unit": cell["unit"].iloc[0],
                    "visit": visit,
                    "baseline_visit": base,
                    "group": name,
                    "n": s.n,
                    "months_mean": float(np.nanmean(cell["months"])) if s.n else math.nan,
                    "mean_change": s.mean,
                    "sd_change": s.sd,
                    "mean_ci_low": s.mean_ci_low,
                    "mean_ci_high": s.mean_ci_high,
                    "srm": s.srm,
                    "srm_ci_low": s.srm_ci_low,
                    "srm_ci_high": s.srm_ci_high,
                    "mean_change_pct": _nanmean(cell["change_pct"]),
                    "mean_annualised_rate": _nanmean(cell["annualised_rate"]),
                    "share_increase": s.share_increase,
                    "share_beyond_sdc95": s.share_beyond_sdc,
                    "sdc95": sdc,
                    "_order": (order.index(str(biomarker)), int(str(rank))),
                }
            )
    table = pd.DataFrame(rows)
    group_order = {g: i for i, (g, _) in enumerate(groups)}
    table["_group"] = table["group"].map(group_order)
    table = table.sort_values(["_order", "_group"], kind="stable")
    return table.loc[:, list(SUMMARY_COLUMNS)].reset_index(drop=True)


def _nanmean(series: pd.Series) -> float:
    arr = series.to_numpy(dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan
