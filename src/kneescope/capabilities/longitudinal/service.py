"""The longitudinal analysis of a results table: knee-visits, changes, QC, summaries.

:func:`analyse` is the one path the ``longitudinal`` cohort step takes (and anything else
that holds a results table: a benchmark, a notebook).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kneescope.capabilities.longitudinal.change import (
    KNEE,
    Aligned,
    KneeVisits,
    align,
    change_table,
    knee_visits,
    summarise,
    unit_of,
    visit_order,
)
from kneescope.capabilities.longitudinal.config import LongitudinalConfig
from kneescope.capabilities.longitudinal.qc import QcResult, longitudinal_qc
from kneescope.io.folder_writer import json_ready

if TYPE_CHECKING:
    import pandas as pd

    from kneescope.biomarkers.change import PrecisionTable
    from kneescope.catalog.view import CatalogView


@dataclass(frozen=True)
class LongitudinalResult:
    """What :func:`analyse` found.

    Attributes:
        changes: the long change table (:data:`~.change.CHANGE_COLUMNS`).
        summary: per biomarker x visit x group (:data:`~.change.SUMMARY_COLUMNS`).
        qc: the QC flags (:data:`~.qc.QC_COLUMNS`).
        knee_visits: the collapsed knee-visits.
        aligned: the knee-visits aligned to their baselines.
        qc_result: the QC result (flags per row, bone-size changes).
        bone_columns: the bone-size columns the QC summed.
        precision_source: where the SDC95s came from, in words.
        klg_source: where the baseline KL grades came from ("" when none).
    """

    changes: pd.DataFrame
    summary: pd.DataFrame
    qc: pd.DataFrame
    knee_visits: KneeVisits
    aligned: Aligned
    qc_result: QcResult
    bone_columns: tuple[str, ...]
    precision_source: str
    klg_source: str

    def values(self, headline: Sequence[str] = ()) -> dict[str, Any]:
        """JSON values for ``cohort_results.json``: counts, the flagged knee-visits with
        their reasons, and the summaries (group ``all``) of the ``headline`` biomarkers."""
        frame = self.aligned.frame
        months = frame["months_source"].value_counts()
        flagged = []
        for (subject, side, visit), part in self.qc.groupby(
            ["subject", "side", "visit"], sort=False
        ):
            flagged.append(
                {
                    "subject": subject,
                    "side": side,
                    "visit": visit,
                    "checks": sorted(set(part["check"])),
                    "reasons": list(part["reason"]),
                }
            )
        followed = frame.loc[frame["visit"] != frame["baseline_visit"]]
        heads = self.summary.loc[
            self.summary["biomarker"].isin(list(headline)) & (self.summary["group"] == "all")
        ]
        return json_ready(
            {
                "knees": int(frame.groupby(list(KNEE)).ngroups),
                "knee_visits": len(frame),
                "follow_up_knee_visits": len(followed),
                "visits": visit_order(list(frame["visit"])),
                "biomarkers": len(self.knee_visits.biomarkers),
                "months_source": {str(k): int(v) for k, v in months.items() if k},
                "knees_without_baseline": [
                    {"subject": s, "side": d} for s, d in self.aligned.no_baseline
                ],
                "rows_without_knee": self.knee_visits.rows_without_knee,
                "rows_bad_visit": self.knee_visits.rows_bad_visit,
                "side_checked": self.qc_result.side_checked,
                "bone_checked": self.qc_result.bone_checked,
                "bone_columns": list(self.bone_columns),
                "bone_change_pct_max_abs": _max_abs(self.qc_result.bone_change_pct),
                "flagged_knee_visits": int(self.qc_result.flagged.sum()),
                "flagged": flagged,
                "precision_source": self.precision_source,
                "klg_source": self.klg_source,
                "headline": heads.to_dict(orient="records"),
            }
        )


HEADLINE: tuple[str, ...] = (
    "we2008_cMFTC_ThCtAB_mm",
    "we2008_MT_ThCtAB_mm",
    "we2008_cMF_ThCtAB_mm",
    "we2008_LFTC_ThCtAB_mm",
    "medial_jsw_mm",
)
"""Biomarkers whose summaries go into the step's values (when the table has them): medial
femorotibial cartilage thickness (the OAI's usual endpoint), its parts, the lateral one and
the radiographic medial JSW."""


def _max_abs(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.abs(finite).max()) if finite.size else math.nan


def bone_size_columns(columns: Sequence[str]) -> tuple[str, ...]:
    """The bone-size columns to sum: the volumes (mm3) when any, else the areas (mm2), else
    whatever unit comes first (a sum needs one unit)."""
    for unit in ("mm3", "mm2"):
        picked = tuple(c for c in columns if unit_of(c) == unit)
        if picked:
            return picked
    if not columns:
        return ()
    first = unit_of(columns[0])
    return tuple(c for c in columns if unit_of(c) == first)


def catalog_klg(catalog: CatalogView | None, variable: str) -> dict[tuple[str, str, str], float]:
    """(subject, visit, side) -> the catalog's knee-level grade ``variable`` (numbers only)."""
    found: dict[tuple[str, str, str], float] = {}
    if catalog is None:
        return found
    for row in catalog.clinical_values(variable):
        if row.get("value_num") is not None and row.get("visit") and row.get("side"):
            key = (str(row["subject"]), str(row["visit"]), str(row["side"]))
            found[key] = float(row["value_num"])
    return found


def baseline_grades(
    aligned: Aligned, catalog: Mapping[tuple[str, str, str], float], variable: str
) -> tuple[pd.Series, str]:
    """Per aligned row, its knee's KL grade at baseline, and where it came from: the table's
    ``baseline_klg`` (at baseline), else the table's ``klg`` at baseline, else the catalog's
    ``variable`` at the baseline visit; NaN where none has it."""
    import pandas as pd

    frame = aligned.frame
    for column in ("baseline_klg", "klg"):
        base = f"{column}__base"
        if base in frame and frame[base].notna().any():
            return frame[base].astype(np.float64), f"results table column {column} at baseline"
    if catalog:
        grades = [
            catalog.get((s, b, d), math.nan)
            for s, b, d in zip(
                frame["subject"], frame["baseline_visit"], frame["side"], strict=True
            )
        ]
        series = pd.Series(grades, index=frame.index, dtype=np.float64)
        if series.notna().any():
            return series, f"catalog {variable} at the baseline visit"
    return pd.Series(math.nan, index=frame.index, dtype=np.float64), ""


def analyse(
    table: pd.DataFrame,
    config: LongitudinalConfig,
    precision: PrecisionTable,
    *,
    klg: Mapping[tuple[str, str, str], float] | None = None,
    dates: Mapping[tuple[str, str], str | None] | None = None,
) -> LongitudinalResult:
    """Follow every knee of ``table`` over its visits.

    Args:
        table: the results table (one row per item; subject, visit, side and biomarkers).
        config: the options.
        precision: rescan SDs for the SDC95 (:func:`kneescope.biomarkers.change.sdc95`).
        klg: (subject, visit, side) -> KL grade from the catalog (:func:`catalog_klg`).
        dates: (subject, visit) -> visit date ``YYYYMMDD`` where known.

    Raises:
        InputError: no knee-visits, no biomarker, no knee with the baseline visit.
    """
    from kneescope.biomarkers.change import sdc95

    kv = knee_visits(table, config.biomarkers, config.bone_size, config.exclude)
    aligned = align(kv, config.baseline, dates)
    frame = aligned.frame
    bone = bone_size_columns(kv.bone_size)
    qc = longitudinal_qc(frame, bone, config.bone_tolerance_pct, check_side=config.check_side)
    flagged = qc.flagged
    keep = np.ones(len(frame), dtype=bool)
    if config.exclude_flagged:
        keep &= ~flagged
    if config.qc_ok_only:
        base_ok = _baseline_qc_ok(frame)
        keep &= frame["qc_ok"].to_numpy(dtype=bool) & base_ok
    grades, klg_source = baseline_grades(aligned, klg or {}, config.klg_variable)
    sdc = {c: sdc95(precision.columns[c].sd) for c in kv.biomarkers if c in precision.columns}
    import pandas as pd

    changes = change_table(
        aligned,
        kv.biomarkers,
        kv.units,
        sdc,
        grades,
        pd.Series(flagged, index=frame.index),
        pd.Series(keep, index=frame.index),
    )
    summary = summarise(changes)
    return LongitudinalResult(
        changes=changes,
        summary=summary,
        qc=qc.flags,
        knee_visits=kv,
        aligned=aligned,
        qc_result=qc,
        bone_columns=bone,
        precision_source=precision.source,
        klg_source=klg_source,
    )


def _baseline_qc_ok(frame: pd.DataFrame) -> np.ndarray:
    """Per row: the item-level QC of its knee's baseline visit passed."""
    base = frame.loc[frame["visit"] == frame["baseline_visit"], [*KNEE, "qc_ok"]]
    ok = {(s, d): bool(q) for s, d, q in base.itertuples(index=False)}
    return np.array(
        [ok.get((s, d), False) for s, d in zip(frame["subject"], frame["side"], strict=True)],
        dtype=bool,
    )
