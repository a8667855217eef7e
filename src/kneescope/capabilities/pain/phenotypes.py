"""Data-driven knee phenotypes: a Gaussian mixture on each knee's baseline values and
trajectories (slopes over its visits), the number of phenotypes by BIC, their stability by
bootstrap adjusted Rand index (subjects resampled with both knees), and, where known classes
exist (a synthetic cohort's truth, or any knee-level label), their agreement with them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kneescope.capabilities.pain.config import PhenotypeConfig
from kneescope.errors import InputError
from kneescope.stats.clusters import (
    MixtureSelection,
    Stability,
    agreement,
    bootstrap_stability,
    select_mixture,
)

if TYPE_CHECKING:
    import pandas as pd

KNEE = ("subject", "side")


def knee_trajectories(
    table: pd.DataFrame,
    columns: Sequence[str],
    *,
    baseline_values: bool = True,
    slopes: bool = True,
    min_visits: int = 2,
) -> pd.DataFrame:
    """One row per knee: ``subject``, ``side``, ``visits`` (count), then per column
    ``<column>_baseline`` (the value at the knee's first visit, the column's unit) and/or
    ``<column>_slope_per_year`` (least-squares slope over the knee's visits, unit per year).

    Args:
        table: one row per knee x visit with ``subject``, ``side``, ``months`` (since
            baseline) and the ``columns`` (numeric).
        columns: the feature columns.
        baseline_values, slopes: which summaries to make.
        min_visits: knees with fewer visits (with all columns present) are left out when
            slopes are asked for.

    Raises:
        InputError: a missing column or no knee left.
    """
    import pandas as pd

    missing = [c for c in (*KNEE, "months", *columns) if c not in table.columns]
    if missing:
        raise InputError(f"the phenotype table lacks column(s) {missing}")
    data = table.loc[:, [*KNEE, "months", *columns]].copy()
    for c in ("months", *columns):
        data[c] = pd.to_numeric(data[c], errors="coerce")
    data = data.dropna().sort_values([*KNEE, "months"])
    rows: list[dict[str, Any]] = []
    for (subject, side), knee in data.groupby(list(KNEE), sort=True):
        if slopes and len(knee) < min_visits:
            continue
        row: dict[str, Any] = {"subject": str(subject), "side": str(side), "visits": len(knee)}
        years = knee["months"].to_numpy(np.float64) / 12.0
        for c in columns:
            values = knee[c].to_numpy(np.float64)
            if baseline_values:
                row[f"{c}_baseline"] = float(values[0])
            if slopes:
                centred = years - years.mean()
                denom = float(centred @ centred)
                row[f"{c}_slope_per_year"] = (
                    float(centred @ (values - values.mean()) / denom) if denom > 0 else np.nan
                )
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        raise InputError(
            f"no knee has {min_visits} or more visits with {list(columns)}; "
            "phenotypes from slopes need follow-up visits (or set slopes = false)"
        )
    return out.dropna().reset_index(drop=True)


@dataclass(frozen=True)
class Phenotypes:
    """What :func:`find_phenotypes` found.

    Attributes:
        knees: one row per knee: ``subject``, ``side``, the features, ``phenotype`` (0..k-1,
            largest first) and ``phenotype_probability``.
        features: the feature columns used.
        selection: the chosen mixture (BIC per k, means in feature units).
        stability: bootstrap ARI with the full-data phenotypes.
        agreement: ``{class column: ARI of the phenotypes with it}`` for known classes.
    """

    knees: pd.DataFrame
    features: tuple[str, ...]
    selection: MixtureSelection
    stability: Stability
    agreement: dict[str, float]

    def means_rows(self) -> list[dict[str, Any]]:
        """Per phenotype: ``phenotype``, ``knees``, then each feature's mean (its unit)."""
        return [
            {
                "phenotype": k,
                "knees": int(self.selection.sizes[k]),
                **{f: float(self.selection.means[k, j]) for j, f in enumerate(self.features)},
            }
            for k in range(self.selection.k)
        ]

    def bic_rows(self) -> list[dict[str, Any]]:
        """``k``, ``bic`` (NaN when not fitted), ``chosen`` and ``rejected`` (why the k was
        not eligible, "" when it was) per number of clusters tried."""
        sel = self.selection
        return [
            {
                "k": k,
                "bic": sel.bic.get(k, float("nan")),
                "chosen": k == sel.k,
                "rejected": sel.rejected.get(k, ""),
            }
            for k in sorted({*sel.bic, *sel.rejected})
        ]

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures."""
        st = self.stability
        return {
            "knees": len(self.knees),
            "subjects": int(self.knees["subject"].nunique()),
            "features": list(self.features),
            "k": self.selection.k,
            "bic": {str(k): v for k, v in sorted(self.selection.bic.items())},
            "rejected_k": {str(k): v for k, v in sorted(self.selection.rejected.items())},
            "sizes": [int(s) for s in self.selection.sizes],
            "stability_ari_mean": st.mean,
            "stability_ari_95": [st.low, st.high],
            "stability_resamples": len(st.ari),
            "stability_k_chosen": {
                str(int(k)): int(n)
                for k, n in zip(*np.unique(st.k_chosen, return_counts=True), strict=True)
            },
            "agreement_ari": dict(self.agreement),
            "seed": self.selection.seed,
        }


def find_phenotypes(
    knees: pd.DataFrame,
    features: Sequence[str],
    config: PhenotypeConfig,
    classes: Mapping[str, str] | None = None,
) -> Phenotypes:
    """Gaussian-mixture phenotypes of ``knees`` (:func:`knee_trajectories` rows).

    Args:
        knees: one row per knee with ``subject``, ``side`` and the ``features``.
        features: feature columns (standardised inside).
        config: ``k_range``, ``resamples``, ``reselect_k``, ``seed``.
        classes: ``{name: column of knees}`` of known knee classes to compare with (ARI).

    Raises:
        InputError: too few knees, a missing feature or class column.
    """
    missing = [c for c in (*KNEE, *features, *(classes or {}).values()) if c not in knees]
    if missing:
        raise InputError(f"the knee table lacks column(s) {missing}")
    x = knees.loc[:, list(features)].to_numpy(np.float64)
    ks = [k for k in config.k_range if k < len(x)]
    if not ks:
        raise InputError(f"{len(x)} knees are too few for k_range {list(config.k_range)}")
    selection = select_mixture(x, ks, seed=config.seed)
    stability = bootstrap_stability(
        x,
        selection,
        knees["subject"].astype(str).to_numpy(),
        resamples=config.resamples,
        seed=config.seed + 1,
        reselect=ks if config.reselect_k else None,
    )
    out = knees.copy()
    out["phenotype"] = selection.labels
    out["phenotype_probability"] = selection.probability
    found = {
        name: agreement(selection.labels, knees[column].astype(str).to_numpy())
        for name, column in (classes or {}).items()
    }
    return Phenotypes(out, tuple(features), selection, stability, found)
