"""The score's inputs: one row per knee and visit, its features picked from results tables by
column name.

A run's results table has one row per item. A knee-visit is (subject, visit, side); a run
may hold several items of one knee-visit (two MRI series) and a knee-visit's radiograph and
MRI values may come from two runs. :func:`knee_features` joins them: rows without a subject,
visit or side (a bilateral film read as one item, a ``subject_visit`` item) are left out and
counted; the numeric value of a feature of a knee-visit is the mean over its rows that have
it (missing values skipped).

Features are the columns whose names match the patterns (``fnmatch`` globs, case-sensitive)
and that hold numbers; only present columns are used. A classifier's per-class probability
columns ``<prefix>_probability_<k>`` with integer class names ``k`` (``kl_probability_0`` ..
``kl_probability_4``, ``mri_kl_probability_0`` ..) are replaced by one feature, the expected
grade ``<prefix>_expected_grade = sum_k k * p_k`` (the probabilities sum to one, so the five
columns carry four numbers; their expectation is the one that orders knees).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from kneescope.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

KNEE_KEYS = ("subject", "visit", "side")
"""The columns that name a knee-visit."""

SIDES = ("right", "left")

DEFAULT_FEATURES: tuple[str, ...] = (
    # classifier probabilities (MRI 3D KL, radiograph KL): as expected grades
    "mri_kl_probability_*",
    "kl_probability_*",
    # radiograph joint space width (minimum, per compartment)
    "mjsw_*_mm",
    # MRI cartilage and meniscus biomarkers (measure): mean thickness per plate, and the
    # central (weight-bearing) subregions of Wirth-Eckstein 2008 - central medial/lateral
    # tibia cMT/cLT, central-central medial/lateral femur ccMF/ccLF - where OA thins
    # cartilage first: mean thickness and denuded share (chosen on validation seed 16002)
    "*_cartilage_thickness_mean_mm",
    "we2008_c[ML]T_ThCtAB_mm",
    "we2008_cc[ML]F_ThCtAB_mm",
    "we2008_c[ML]T_dABp_pct",
    "we2008_cc[ML]F_dABp_pct",
    "*_denuded_bone_area_mm2",
    "*_meniscus_extrusion_mm",
    "*_tibial_coverage_pct",
    # MRI findings (mri_findings): presence, size grades, areas
    "finding_*",
    "defect_*_mm2",
)
"""The feature patterns used when none are given."""

CLINICAL_FEATURES = ("age_years", "sex_female", "bmi_kg_m2")
"""Clinical covariates (``clinical=True``): age at the knee's first visit with an age, sex
(1 female, 0 male; OAI ``P02SEX`` 2 = female), BMI (``P01BMI``)."""

MAX_MISSING_FRACTION = 0.5
"""A feature missing for more than this share of the knees is dropped (and reported)."""

_PROBABILITY = re.compile(r"^(?P<prefix>.+)_probability_(?P<k>\d+)$")


@dataclass(frozen=True)
class KneeFeatures:
    """Knee-visits and their features.

    Attributes:
        knees: DataFrame with the :data:`KNEE_KEYS` columns then one float64 column per
            feature (NaN where missing), one row per knee-visit, sorted by the keys.
        features: the feature names, in column order.
        sources: feature -> the result columns it came from.
        dropped: feature -> why it was left out (mostly missing, constant).
        rows_without_knee: result rows without subject, visit or side (left out).
    """

    knees: pd.DataFrame
    features: tuple[str, ...]
    sources: dict[str, tuple[str, ...]]
    dropped: dict[str, str]
    rows_without_knee: int

    def matrix(self) -> np.ndarray:
        """``(n_knees, n_features)`` float64 feature matrix (NaN where missing)."""
        return self.knees.loc[:, list(self.features)].to_numpy(dtype=np.float64, copy=True)


def _numeric(series: pd.Series) -> pd.Series | None:
    """``series`` as float64 (flags as 0/1), or None when it holds text (labels, paths)."""
    import pandas as pd

    if series.dtype.kind in "biuf":
        return series.astype(np.float64)
    if series.dtype != object:
        return None
    values = series.dropna()
    if values.empty or any(isinstance(v, str | bytes) for v in values):
        return None
    return pd.to_numeric(series, errors="coerce").astype(np.float64)


def _matching(columns: Sequence[str], patterns: Sequence[str]) -> list[str]:
    return [c for c in columns if any(fnmatch.fnmatchcase(c, p) for p in patterns)]


def feature_frame(
    table: pd.DataFrame, patterns: Sequence[str] = DEFAULT_FEATURES
) -> tuple[pd.DataFrame, dict[str, tuple[str, ...]]]:
    """One results table's features, row by row: (frame with the knee keys and one float64
    column per feature, feature -> source columns). Columns matching no pattern or holding
    no numbers are left out; probability groups become expected grades."""
    import pandas as pd

    missing = [k for k in KNEE_KEYS if k not in table.columns]
    if missing:
        raise InputError(
            f"the results table has no {', '.join(missing)} column; the score needs "
            "subject, visit and side for each item (run the pipeline on catalog items)"
        )
    out: dict[str, pd.Series] = {k: table[k].fillna("").astype(str) for k in KNEE_KEYS}
    sources: dict[str, tuple[str, ...]] = {}
    groups: dict[str, dict[int, str]] = {}
    for column in _matching([str(c) for c in table.columns], patterns):
        if column in KNEE_KEYS:
            continue
        match = _PROBABILITY.match(column)
        if match is not None:
            groups.setdefault(match["prefix"], {})[int(match["k"])] = column
            continue
        values = _numeric(table[column])
        if values is not None:
            out[column] = values
            sources[column] = (column,)
    for prefix, classes in sorted(groups.items()):
        if len(classes) < 2:
            continue
        probs = {k: _numeric(table[c]) for k, c in classes.items()}
        if any(p is None for p in probs.values()):
            continue
        name = f"{prefix}_expected_grade"
        expected = sum(float(k) * p for k, p in probs.items() if p is not None)
        out[name] = pd.Series(expected, index=table.index, dtype=np.float64)
        sources[name] = tuple(classes[k] for k in sorted(classes))
    return pd.DataFrame(out, index=table.index), sources


def knee_features(
    tables: Sequence[pd.DataFrame],
    patterns: Sequence[str] = DEFAULT_FEATURES,
    *,
    required: Sequence[str] = (),
    max_missing: float = MAX_MISSING_FRACTION,
) -> KneeFeatures:
    """Join results tables into one row per knee-visit with the features they have.

    Args:
        tables: results tables (``RUN/results.parquet`` read as DataFrames).
        patterns: feature name globs (:data:`DEFAULT_FEATURES`).
        required: feature names that must be there (a saved model's); they are kept even
            when mostly missing, and none is looked for beyond them.
        max_missing: a feature (not required) missing for more than this share of the
            knees, or with one value only, is dropped.

    Raises:
        InputError: a table without the knee columns, no knee-visit at all, no feature, or
            a required feature that no table has.
    """
    import pandas as pd

    frames: list[pd.DataFrame] = []
    sources: dict[str, tuple[str, ...]] = {}
    wanted = list(required) if required else None
    for table in tables:
        frame, found = feature_frame(table, patterns if wanted is None else ["*"])
        frames.append(frame)
        for name, cols in found.items():
            sources.setdefault(name, cols)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if rows.empty:
        raise InputError("the results table is empty; run the pipeline's items first")
    has_knee = (
        (rows["subject"] != "") & (rows["visit"] != "") & rows["side"].str.lower().isin(SIDES)
    )
    without = int((~has_knee).sum())
    rows = rows.loc[has_knee].copy()
    rows["side"] = rows["side"].str.lower()
    if rows.empty:
        raise InputError(
            f"none of the {without} result rows names a knee (subject, visit and side "
            "right/left); score knee items, e.g. MRI series or unit radiograph_knee"
        )
    names = [c for c in rows.columns if c not in KNEE_KEYS]
    if wanted is not None:
        absent = [f for f in wanted if f not in names]
        if absent:
            raise InputError(
                f"the score model needs {', '.join(absent)}, which the results do not have; "
                "run the steps that write them, or fit a new score on these results"
            )
        names = list(wanted)
    knees = (
        rows.loc[:, [*KNEE_KEYS, *names]].groupby(list(KNEE_KEYS), sort=True).mean().reset_index()
    )
    dropped: dict[str, str] = {}
    kept: list[str] = []
    n = len(knees)
    for name in names:
        values = knees[name].to_numpy(dtype=np.float64)
        finite = np.isfinite(values)
        if wanted is None:
            missing = 1.0 - finite.mean()
            if missing > max_missing:
                dropped[name] = f"missing for {missing:.0%} of {n} knees"
                continue
            if np.unique(values[finite]).size < 2:
                dropped[name] = "one value for every knee"
                continue
        kept.append(name)
    if not kept:
        detail = "; ".join(f"{k}: {v}" for k, v in list(dropped.items())[:5])
        raise InputError(
            "no usable score feature in the results (looked for "
            f"{', '.join(patterns)}{'; ' + detail if detail else ''}); run measure, the "
            "radiograph steps or the MRI classifier first, or name --feature patterns"
        )
    knees = knees.loc[:, [*KNEE_KEYS, *kept]].astype({k: np.float64 for k in kept})
    return KneeFeatures(
        knees=knees,
        features=tuple(kept),
        sources={k: sources.get(k, (k,)) for k in kept},
        dropped=dropped,
        rows_without_knee=without,
    )
