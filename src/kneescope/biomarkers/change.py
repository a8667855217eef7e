"""Precision from rescans and change over time: pure arithmetic on measured values.

- :func:`rescan_precision`: the test-retest precision of each biomarker from several scans of
  each of several knees: per knee the standard deviation (SD, ``ddof=1``) and the coefficient
  of variation (CV = SD / mean), then the root mean square (RMS) over knees, the usual
  summary of a precision study (Glueer et al., Osteoporos Int 1995).
- :func:`sdc95`: the smallest detectable change at 95 % confidence, ``1.96 * sqrt(2) * SD``:
  the change between two scans that measurement error alone exceeds in only 5 % of knees.
- :func:`change_from_baseline`: per visit and biomarker, the value, its change from the first
  visit (absolute and %), the SDC95 and whether the change exceeds it.
- :func:`standardised_response_mean`: SRM = mean change / SD of the change over knees.
- :class:`PrecisionTable`: the SDs a longitudinal analysis uses, with where they came from;
  saved and read as JSON (``benchmarks/biomarker_precision.py --precision-table`` writes one;
  kneescope ships the one measured on synthetic rescans, :func:`shipped_precision`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from kneescope.errors import InputError

SDC_FACTOR = 1.96 * math.sqrt(2.0)
"""SDC95 = SDC_FACTOR x SD (two measurements, each with error SD; 95 % two-sided)."""

SHIPPED_PRECISION = "precision_synth_dess.json"
"""The precision table shipped in this package (measured by benchmarks/biomarker_precision.py
on synthetic rescans on the OAI DESS grid)."""

MEAN_FLOOR = 1e-9
"""A per-knee mean at or below this (e.g. no denuded bone at all) has no CV."""


@dataclass(frozen=True)
class Precision:
    """Rescan precision of one biomarker.

    Attributes:
        sd: RMS over knees of the per-knee SD, in the biomarker's own unit.
        cv_pct: RMS over knees of the per-knee CV (%); NaN where a knee's mean is ~0.
        knees: knees that entered the RMS; scans: scans per knee (the smallest count).
    """

    sd: float
    cv_pct: float
    knees: int
    scans: int


def rescan_precision(
    knees: Sequence[Sequence[Mapping[str, float]]], columns: Sequence[str] | None = None
) -> dict[str, Precision]:
    """Precision of each column from rescans.

    Args:
        knees: per knee, its scans' measured values (column -> value); at least 2 scans per
            knee. A knee where a column is NaN in any scan is left out of that column.
        columns: the columns to summarise; default: every column of the first scan.

    Returns:
        column -> :class:`Precision` (columns that no knee measured in all scans are left out).

    Raises:
        InputError: fewer than 2 scans of a knee.
    """
    if not knees:
        raise InputError("precision needs at least one knee with 2 or more scans")
    for i, scans in enumerate(knees):
        if len(scans) < 2:
            raise InputError(f"knee {i} has {len(scans)} scan(s); precision needs 2 or more")
    names = list(columns) if columns is not None else list(knees[0][0])
    out: dict[str, Precision] = {}
    for name in names:
        sds, cvs = [], []
        n_scans = min(len(s) for s in knees)
        for scans in knees:
            vals = np.array([float(s.get(name, math.nan)) for s in scans], dtype=np.float64)
            if not np.all(np.isfinite(vals)):
                continue
            sd = float(np.std(vals, ddof=1))
            sds.append(sd)
            mean = float(np.mean(vals))
            cvs.append(100.0 * sd / abs(mean) if abs(mean) > MEAN_FLOOR else math.nan)
        if not sds:
            continue
        cv_arr = np.asarray(cvs)
        cv = math.nan if np.any(np.isnan(cv_arr)) else float(np.sqrt(np.mean(cv_arr**2)))
        out[name] = Precision(
            sd=float(np.sqrt(np.mean(np.square(sds)))), cv_pct=cv, knees=len(sds), scans=n_scans
        )
    return out


def sdc95(sd: float) -> float:
    """Smallest detectable change (95 %) for a measurement error ``sd`` (same unit)."""
    return SDC_FACTOR * sd


@dataclass(frozen=True)
class PrecisionTable:
    """Rescan SDs per biomarker and where they came from.

    Attributes:
        columns: biomarker -> :class:`Precision`.
        source: in words: what was measured, on which grid, by which command (printed with
            every longitudinal result).
    """

    columns: dict[str, Precision]
    source: str

    def to_json(self) -> str:
        """The table as JSON text (``{"source": ..., "columns": {name: {sd, cv_pct, knees,
        scans}}}``; NaN CVs as null)."""
        cols = {
            name: {
                "sd": p.sd,
                "cv_pct": None if math.isnan(p.cv_pct) else p.cv_pct,
                "knees": p.knees,
                "scans": p.scans,
            }
            for name, p in sorted(self.columns.items())
        }
        return json.dumps({"source": self.source, "columns": cols}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> PrecisionTable:
        """Parse :meth:`to_json`'s format; ``where`` names the file in errors.

        Raises:
            InputError: not that format (not JSON, a missing field, a negative SD, ...).
        """
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(
                f"{where} is not a precision table: not JSON ({exc}); write one with "
                "benchmarks/biomarker_precision.py --precision-table FILE"
            ) from None
        cols = data.get("columns") if isinstance(data, dict) else None
        source = data.get("source") if isinstance(data, dict) else None
        if not isinstance(cols, dict) or not isinstance(source, str):
            raise InputError(
                f"{where} is not a precision table: it needs a 'source' text and a 'columns' "
                "object; write one with benchmarks/biomarker_precision.py --precision-table FILE"
            )
        out: dict[str, Precision] = {}
        for name, entry in cols.items():
            try:
                sd = float(entry["sd"])
                cv = math.nan if entry.get("cv_pct") is None else float(entry["cv_pct"])
                p = Precision(
                    sd=sd, cv_pct=cv, knees=int(entry["knees"]), scans=int(entry["scans"])
                )
            except (KeyError, TypeError, ValueError):
                raise InputError(
                    f"{where}: column {name!r} needs numbers sd, knees, scans (and cv_pct or "
                    "null); fix the file or write it again with the benchmark"
                ) from None
            if not math.isfinite(sd) or sd < 0:
                raise InputError(
                    f"{where}: column {name!r} has sd {entry['sd']!r}; an SD is a finite "
                    "number >= 0"
                )
            out[str(name)] = p
        return cls(columns=out, source=source)

    @classmethod
    def read(cls, path: Path) -> PrecisionTable:
        """Read a table written by :meth:`to_json` (raises :class:`InputError`)."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"--precision {path} does not exist; give a precision table") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--precision {path}: cannot read it ({exc})") from None
        table = cls.from_json(text, str(path))
        return cls(columns=table.columns, source=f"{table.source} (read from {path})")


def shipped_precision() -> PrecisionTable:
    """The precision table shipped with kneescope (:data:`SHIPPED_PRECISION`)."""
    text = resources.files("kneescope.biomarkers").joinpath(SHIPPED_PRECISION).read_text("utf-8")
    table = PrecisionTable.from_json(text, SHIPPED_PRECISION)
    return PrecisionTable(
        columns=table.columns, source=f"{table.source} (kneescope's shipped {SHIPPED_PRECISION})"
    )


@dataclass(frozen=True)
class VisitChange:
    """One biomarker at one visit of one knee.

    Attributes:
        visit: index of the visit (0 = baseline); biomarker: column name.
        value: measured value (NaN when not measured).
        change: value - baseline value (NaN at baseline... 0.0; NaN when either is NaN).
        change_pct: 100 x change / baseline (NaN when the baseline is ~0 or NaN).
        sdc95: smallest detectable change in the biomarker's unit (NaN without a precision).
        exceeds_sdc: |change| > sdc95 (False when either is NaN, and at baseline).
    """

    visit: int
    biomarker: str
    value: float
    change: float
    change_pct: float
    sdc95: float
    exceeds_sdc: bool


def change_from_baseline(
    visits: Sequence[Mapping[str, float]], columns: Sequence[str], precision: PrecisionTable
) -> list[VisitChange]:
    """Change of each column from the first visit, visit by visit.

    Args:
        visits: each visit's measured values (column -> value), in time order; >= 2.
        columns: the biomarkers to report.
        precision: where the SDs come from (a column it lacks gets NaN SDC).

    Returns:
        one :class:`VisitChange` per visit and column, visits outermost.

    Raises:
        InputError: fewer than 2 visits.
    """
    if len(visits) < 2:
        raise InputError(f"change over time needs 2 or more visits of one knee, got {len(visits)}")
    out = []
    base = visits[0]
    for v, values in enumerate(visits):
        for name in columns:
            b = float(base.get(name, math.nan))
            x = float(values.get(name, math.nan))
            d = x - b
            pct = 100.0 * d / b if math.isfinite(b) and abs(b) > MEAN_FLOOR else math.nan
            p = precision.columns.get(name)
            sdc = sdc95(p.sd) if p is not None else math.nan
            exceeds = bool(v > 0 and math.isfinite(d) and math.isfinite(sdc) and abs(d) > sdc)
            out.append(VisitChange(v, name, x, d, pct, sdc, exceeds))
    return out


def standardised_response_mean(changes: Sequence[float]) -> tuple[float, float, float, int]:
    """(mean change, SD of the change (ddof=1), SRM = mean / SD, knees) over the finite
    ``changes`` (one per knee); SRM is NaN with fewer than 2 knees or an SD of 0."""
    arr = np.asarray([c for c in changes if math.isfinite(c)], dtype=np.float64)
    n = int(arr.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(arr.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    sd = float(arr.std(ddof=1))
    return mean, sd, (mean / sd if sd > 0 else math.nan), n


def thickness_change_columns(names: Sequence[str]) -> list[str]:
    """The thickness columns a longitudinal analysis reports, in ``names``' order: the
    Wirth-Eckstein ThCtAB and ThCcAB (``we2008_<REGION>_ThCtAB_mm`` / ``..._ThCcAB_mm``) and
    the plate and region mean thicknesses (``..._thickness_mean_mm``)."""
    ends = ("_ThCtAB_mm", "_ThCcAB_mm", "_thickness_mean_mm")
    return [n for n in names if n.endswith(ends)]


def precision_summary(table: Mapping[str, Precision]) -> dict[str, Any]:
    """``{"columns": n, "max_cv_pct": ..., "rms_cv_pct": ...}`` over the finite CVs."""
    cvs = np.array([p.cv_pct for p in table.values() if math.isfinite(p.cv_pct)])
    if cvs.size == 0:
        return {"columns": len(table), "max_cv_pct": math.nan, "rms_cv_pct": math.nan}
    return {
        "columns": len(table),
        "max_cv_pct": float(cvs.max()),
        "rms_cv_pct": float(np.sqrt(np.mean(cvs**2))),
    }
