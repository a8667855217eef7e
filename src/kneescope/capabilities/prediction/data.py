"""A run's knee x visit table for prediction: its results joined with the catalog's clinical
values.

* results: the rows that name a knee-visit (``subject``, ``visit``, ``side`` right/left);
  several rows of one knee-visit (two series, a radiograph run joined to an MRI run) are
  averaged column by column (numeric columns only, missing values skipped);
* catalog, per knee-visit: the reader's KL grade ``XRKL`` -> ``klg``, the OARSI JSN grades
  ``XRJSM`` / ``XRJSL`` -> ``jsn_medial`` / ``jsn_lateral``, WOMAC knee pain ``WOMKP`` with a
  side (or ``WOMKPR`` / ``WOMKPL``) -> ``womac_pain``; per subject: age (``AGE``, the value of
  the visit, else the first one) -> ``age_years``, sex (``P02SEX``/``SEX``: 2 female) ->
  ``sex_female``, BMI (``P01BMI``/``BMI``) -> ``bmi_kg_m2``. Knee-visits the catalog grades
  but the run did not measure are rows too (their later KL grades are outcomes);
* the radiograph step's medial minimum JSW ``mjsw_medial_mm`` is also ``medial_jsw_mm`` (the
  name the outcome reads by default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kneescope.catalog.view import numeric_values_by_subject
from kneescope.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from kneescope.catalog.view import CatalogView

KEYS = ("subject", "visit", "side")
SIDES = ("right", "left")

KNEE_VARIABLES = {"XRKL": "klg", "XRJSM": "jsn_medial", "XRJSL": "jsn_lateral"}
"""Catalog clinical variables per knee-visit -> table column."""


def _knee_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns of the rows that name a knee-visit, averaged per knee-visit."""
    import pandas as pd

    missing = [k for k in KEYS if k not in table.columns]
    if missing:
        raise InputError(
            f"the results table has no {', '.join(missing)} column; prediction needs subject, "
            "visit and side for each item (run the pipeline on catalog items)"
        )
    keys = pd.DataFrame({k: table[k].fillna("").astype(str) for k in KEYS})
    keys["side"] = keys["side"].str.lower()
    numeric = {
        str(c): pd.to_numeric(table[c], errors="coerce").astype(np.float64)
        for c in table.columns
        if c not in KEYS and table[c].dtype.kind in "biuf"
    }
    rows = pd.concat([keys, pd.DataFrame(numeric, index=table.index)], axis=1)
    ok = (rows["subject"] != "") & (rows["visit"] != "") & rows["side"].isin(SIDES)
    rows = rows.loc[ok]
    if rows.empty:
        return pd.DataFrame(columns=list(KEYS))
    return rows.groupby(list(KEYS), sort=True).mean().reset_index()


def _catalog_knee_values(catalog: CatalogView) -> pd.DataFrame:
    import pandas as pd

    values: dict[tuple[str, str, str], dict[str, float]] = {}
    for variable, column in KNEE_VARIABLES.items():
        for row in catalog.clinical_values(variable):
            if row.get("value_num") is None or not row.get("visit") or not row.get("side"):
                continue
            key = (str(row["subject"]), str(row["visit"]), str(row["side"]).lower())
            values.setdefault(key, {})[column] = float(row["value_num"])
    for row in catalog.clinical_values("WOMKP*"):
        if row.get("value_num") is None or not row.get("visit"):
            continue
        name = str(row.get("variable", ""))
        side = row.get("side") or {"WOMKPR": "right", "WOMKPL": "left"}.get(name)
        if side is None:
            continue
        key = (str(row["subject"]), str(row["visit"]), str(side).lower())
        values.setdefault(key, {})["womac_pain"] = float(row["value_num"])
    records = [{"subject": s, "visit": v, "side": d, **x} for (s, v, d), x in values.items()]
    return pd.DataFrame(records, columns=[*KEYS, *KNEE_VARIABLES.values(), "womac_pain"])


def _pick(values: dict[Any, float], visit: str) -> float:
    if visit in values:
        return values[visit]
    if None in values:
        return values[None]
    dated = sorted((v, x) for v, x in values.items() if v is not None)
    return dated[0][1] if dated else math.nan


def knee_visit_table(tables: Sequence[pd.DataFrame], catalog: CatalogView | None) -> pd.DataFrame:
    """One row per knee-visit: ``subject``, ``visit``, ``side``, the results' numeric columns
    (averaged) and the catalog's clinical values (see the module docstring).

    Raises:
        InputError: a table without the knee columns, or no knee-visit at all.
    """
    import pandas as pd

    parts = [_knee_rows(t) for t in tables]
    parts = [p for p in parts if len(p)]
    results = (
        pd.concat(parts, ignore_index=True).groupby(list(KEYS), sort=True).mean().reset_index()
        if parts
        else pd.DataFrame(columns=list(KEYS))
    )
    if catalog is not None:
        clinical = _catalog_knee_values(catalog)
        overlap = [c for c in clinical.columns if c not in KEYS and c in results.columns]
        results = results.drop(columns=overlap)
        table = results.merge(clinical, on=list(KEYS), how="outer")
        age = numeric_values_by_subject(catalog, ("AGE",))
        sex = numeric_values_by_subject(catalog, ("P02SEX", "SEX"))
        bmi = numeric_values_by_subject(catalog, ("P01BMI", "BMI"))
        subjects, visits = table["subject"].tolist(), table["visit"].tolist()
        table["age_years"] = [
            _pick(age.get(s, {}), v) for s, v in zip(subjects, visits, strict=True)
        ]
        s_values = [_pick(sex.get(s, {}), v) for s, v in zip(subjects, visits, strict=True)]
        table["sex_female"] = [
            (1.0 if x == 2 else 0.0) if math.isfinite(x) else math.nan for x in s_values
        ]
        table["bmi_kg_m2"] = [
            _pick(bmi.get(s, {}), v) for s, v in zip(subjects, visits, strict=True)
        ]
    else:
        table = results
    if "mjsw_medial_mm" in table.columns and "medial_jsw_mm" not in table.columns:
        table["medial_jsw_mm"] = table["mjsw_medial_mm"]
    if table.empty:
        raise InputError(
            "no knee-visit in the results or the catalog (rows need subject, visit and side "
            "right/left); run the pipeline on knee items, or ingest the kXR clinical table"
        )
    return table.sort_values(list(KEYS), kind="mergesort").reset_index(drop=True)
