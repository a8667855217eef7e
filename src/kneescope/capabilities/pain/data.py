"""The knee x visit tables the ``pain`` and ``phenotypes`` steps analyse, built from a run's
results table and the catalog's clinical values.

* knee-visit keys come from the results table (``subject``, ``visit``, ``side``; several
  items of one knee-visit averaged, rows without a knee's side left out and counted);
* WOMAC knee pain from the catalog's person-level visit variables ``WOMKPR`` / ``WOMKPL``
  (OAI ``V00WOMKPR``: right, left), matched to the knee's side;
* the KL grade from the knee-level visit variable ``XRKL``;
* BMI from the subject-level variable ``P01BMI`` (or ``BMI``; a visit's value where the
  catalog has one per visit);
* months since baseline from the OAI visit code (:data:`kneescope.core.oai_layout.VISIT_MONTHS`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kneescope.cohort.results_table import read_reviewed_run
from kneescope.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from kneescope.catalog.view import CatalogView

KEYS = ("subject", "visit", "side")
NOT_BIOMARKERS = ("true_*", "latent_*", "qc_*", "time_*")
"""Columns never taken as biomarkers (a synthetic table's truth, QC flags, timings)."""


@dataclass(frozen=True)
class KneeVisits:
    """Knee-visit rows of a run.

    Attributes:
        table: one row per knee x visit: ``subject``, ``visit``, ``side``, ``months`` and the
            numeric results columns (means over a knee-visit's items).
        rows_without_knee: results rows left out for lacking a subject, visit or side.
    """

    table: pd.DataFrame
    rows_without_knee: int


def matching(columns: Sequence[str], patterns: Sequence[str]) -> list[str]:
    """Columns matching any ``fnmatch`` pattern (case-sensitive), minus :data:`NOT_BIOMARKERS`,
    in table order."""
    return [
        c
        for c in columns
        if any(fnmatch.fnmatchcase(c, p) for p in patterns)
        and not any(fnmatch.fnmatchcase(c, p) for p in NOT_BIOMARKERS)
    ]


def knee_visits(results: pd.DataFrame, columns: Sequence[str]) -> KneeVisits:
    """The run's knee-visits with the numeric ``columns`` (item rows of one knee-visit
    averaged) and months since baseline from the visit code.

    Raises:
        InputError: the table lacks the knee keys or a column, a column is not numeric, a
            visit code is not an OAI visit.
    """
    import pandas as pd

    from kneescope.core.oai_layout import VISIT_MONTHS

    missing = [c for c in (*KEYS, *columns) if c not in results.columns]
    if missing:
        raise InputError(
            f"the results table lacks column(s) {missing}; run the MRI pipeline's measure "
            "step (or name columns that exist)"
        )
    data = results.loc[:, [*KEYS, *columns]].copy()
    for key in KEYS:
        data[key] = data[key].fillna("").astype(str)
    has_knee = (data["subject"] != "") & (data["visit"] != "") & (data["side"] != "")
    data = data.loc[has_knee]
    for c in columns:
        converted = pd.to_numeric(data[c], errors="coerce")
        if converted.isna().all() and data[c].notna().any():
            raise InputError(f"results column {c!r} is not numeric; name numeric biomarkers")
        data[c] = converted
    unknown = sorted(set(data["visit"]) - set(VISIT_MONTHS))
    if unknown:
        raise InputError(
            f"visit code(s) {unknown} are not OAI visits (V00, V01, ...); months since "
            "baseline come from the code"
        )
    table = data.groupby(list(KEYS), sort=True).mean(numeric_only=True).reset_index()
    table.insert(3, "months", table["visit"].map(lambda v: float(VISIT_MONTHS[v])))
    return KneeVisits(table, int((~has_knee).sum()))


def _first_number(rows: list[dict[str, object]]) -> dict[tuple[str, str | None, str | None], float]:
    out: dict[tuple[str, str | None, str | None], float] = {}
    for row in rows:
        value = row.get("value_num")
        if value is None:
            continue
        key = (str(row["subject"]), row.get("visit"), row.get("side"))  # type: ignore[misc]
        out.setdefault(key, float(value))  # type: ignore[arg-type]
    return out


def add_clinical(
    table: pd.DataFrame,
    catalog: CatalogView | None,
    *,
    pain_variable: str = "WOMKP",
    klg_variable: str = "XRKL",
    bmi_variables: Sequence[str] = ("P01BMI", "BMI"),
) -> pd.DataFrame:
    """``table`` (knee-visit rows) with ``pain``, ``klg`` and ``bmi`` columns from the catalog
    (NaN where it has no value).

    Raises:
        InputError: no catalog.
    """
    if catalog is None:
        raise InputError(
            "pain and KL grades come from the workspace catalog; run in a workspace whose "
            "clinical tables are ingested (`kneescope ingest CLINICAL.csv --kind clinical`)"
        )
    out = table.copy()
    pain_r = _first_number(catalog.clinical_values(f"{pain_variable}R"))
    pain_l = _first_number(catalog.clinical_values(f"{pain_variable}L"))
    klg = _first_number(catalog.clinical_values(klg_variable))
    bmi: dict[tuple[str, str | None, str | None], float] = {}
    for name in bmi_variables:
        for key, value in _first_number(catalog.clinical_values(name)).items():
            bmi.setdefault(key, value)

    def pick_bmi(subject: str, visit: str) -> float:
        for key in ((subject, visit, None), (subject, None, None)):
            if key in bmi:
                return bmi[key]
        return float("nan")

    def pick_pain(subject: str, visit: str, side: str) -> float:
        source = {"right": pain_r, "left": pain_l}.get(side)
        return float("nan") if source is None else source.get((subject, visit, None), float("nan"))

    from kneescope.catalog.naming import side_from_text

    sides = [side_from_text(str(d)) or str(d) for d in out["side"]]
    keys = list(zip(out["subject"], out["visit"], sides, strict=True))
    out["pain"] = np.array([pick_pain(s, v, d) for s, v, d in keys], dtype=np.float64)
    out["klg"] = np.array([klg.get((s, v, d), float("nan")) for s, v, d in keys], dtype=np.float64)
    out["bmi"] = np.array([pick_bmi(s, v) for s, v, _ in keys], dtype=np.float64)
    return out


def joined_results(
    results: pd.DataFrame,
    run_dir: Path,
    join_runs: Sequence[str],
    view: CatalogView | None = None,
) -> pd.DataFrame:
    """``results`` with the rows of other runs of the same workspace appended (``join_runs``:
    run names, e.g. a radiograph run whose JSW or KL probabilities sit beside this run's MRI
    biomarkers); :func:`knee_visits` then averages each knee-visit's rows column by column,
    so each run's columns join by subject, visit and side. Knees a reviewer rejected are left
    out of the other runs (:func:`~kneescope.cohort.results_table.read_reviewed_run`)."""
    import pandas as pd

    if not join_runs:
        return results
    others = [read_reviewed_run(run_dir.parent / name, view) for name in join_runs]
    return pd.concat([results, *others], ignore_index=True, sort=False)
