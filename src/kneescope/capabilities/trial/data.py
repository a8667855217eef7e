"""The trial's data: one knee per subject, its arm, baseline covariates and endpoint values.

Two sources (``[data]`` of ``trial.toml``):

* a **run** of a workspace: ``RUN/results.parquet`` (one row per knee-visit: ``subject``,
  ``visit``, ``side`` and the biomarker columns) joined with the catalog's clinical values:
  the arm variable (``TRTARM`` in the synthetic cohorts), covariates and ``index_by`` (e.g.
  the reader's ``XRKL``). A clinical variable is looked up for the knee at the baseline visit,
  else the person at the baseline visit, else the subject (``P02SEX``, ``TRTARM``); a results
  column of the same name is taken from the knee's baseline row first.
* a **table** (csv or parquet), tidy: one row per knee-visit with ``subject``, ``side``,
  ``visit``, the endpoints, the arm column and the covariates (baseline covariates are taken
  from the knee's baseline row); an optional ``months`` column.

:func:`assemble` turns either into a :class:`TrialData`: the chosen knee of every randomised
subject (``knee = "index"``: the worse knee at baseline, see
:class:`~.config.AnalysisConfig`), at the configured visits, with the visit's months
(``months`` column, else the OAI visit code's months), ``arm`` as ``control``/``treatment``
and each covariate as a number. Subjects without an arm value of either arm are left out and
counted; nothing is imputed.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kneescope.capabilities.trial.config import TrialConfig
from kneescope.cohort.results_table import drop_rejected_knees
from kneescope.core.oai_layout import VISIT_MONTHS
from kneescope.errors import InputError, NotFoundError

if TYPE_CHECKING:
    from kneescope.catalog.view import CatalogView

KEYS = ("subject", "side", "visit")
ARMS = ("control", "treatment")
SIDES = ("right", "left")


@dataclass(frozen=True)
class TrialData:
    """The knees a trial analyses.

    Attributes:
        frame: one row per (subject, visit) of the chosen knee: ``subject`` (str), ``side``
            (right/left), ``visit`` (code), ``months`` (float, since baseline), ``arm``
            (control/treatment), one float column per covariate (the baseline value, repeated
            on every visit) and one float column per endpoint (NaN where not measured).
        endpoints: the endpoint columns, in config order (patterns expanded).
        covariates: the covariate columns.
        visits: the visit codes, baseline first.
        months: visit -> months since baseline.
        excluded: reason -> number of subjects left out (no arm, unknown arm value, no
            baseline row of any knee).
        source: ``run <name>`` or the table's path.
    """

    frame: pd.DataFrame
    endpoints: tuple[str, ...]
    covariates: tuple[str, ...]
    visits: tuple[str, ...]
    months: dict[str, float]
    excluded: dict[str, int] = field(default_factory=dict)
    source: str = ""

    @property
    def baseline(self) -> str:
        return self.visits[0]

    def subjects(self, arm: str) -> int:
        """Randomised subjects of ``arm`` (whatever they measured)."""
        return int(self.frame.loc[self.frame["arm"] == arm, "subject"].nunique())


def read_results(run_dir: Path) -> pd.DataFrame:
    """A run's results table (``RUN/results.parquet`` or ``.csv``).

    Raises:
        NotFoundError: no such run, or it has no results table yet.
        InputError: the table cannot be read.
    """
    for name in ("results.parquet", "results.csv"):
        path = run_dir / name
        if path.is_file():
            return read_table_file(path)
    if not run_dir.is_dir():
        raise NotFoundError(
            f"run {run_dir.name!r} not found ({run_dir} does not exist); see `kneescope status`"
        )
    raise NotFoundError(
        f"run {run_dir.name!r} has no results table in {run_dir}; finish it with "
        "`kneescope run` first"
    )


def read_table_file(path: Path) -> pd.DataFrame:
    """A csv or parquet table with ``subject``/``side``/``visit`` read as text.

    Raises:
        NotFoundError: no such file. InputError: unreadable or another format.
    """
    if not path.is_file():
        raise NotFoundError(f"table {path} not found; check data.table in the trial config")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype={k: str for k in KEYS})
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path} ({type(exc).__name__}: {exc})") from None
    raise InputError(f"table {path} is neither .csv nor .parquet; give a tidy csv or parquet")


def expand_endpoints(patterns: Sequence[str], columns: Sequence[str]) -> tuple[str, ...]:
    """Config endpoints (names or ``*``/``?`` patterns) -> columns, in order, no repeats.

    Raises:
        InputError: a name or pattern that matches no column.
    """
    out: list[str] = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            hits = [c for c in columns if fnmatch.fnmatchcase(c, pattern)]
        else:
            hits = [pattern] if pattern in columns else []
        if not hits:
            near = [c for c in columns if pattern.split("*")[0].lower() in c.lower()][:3]
            hint = f" (similar: {', '.join(near)})" if near else ""
            raise InputError(
                f"endpoint {pattern!r} matches no column of the data{hint}; "
                "name a results column in analysis.endpoints"
            )
        out.extend(h for h in hits if h not in out)
    return tuple(out)


def _knee_rows(table: pd.DataFrame, source: str) -> pd.DataFrame:
    """Rows with subject/side/visit as clean codes; rows without a knee side dropped."""
    from kneescope.catalog.naming import normalize_visit, side_from_text

    missing = [k for k in KEYS if k not in table.columns]
    if missing:
        raise InputError(
            f"{source} has no {', '.join(missing)} column(s); a trial table needs subject, "
            "side and visit per row"
        )
    out = table.copy()
    out["subject"] = out["subject"].astype(str)
    sides = {s: side_from_text(s) if isinstance(s, str) else None for s in out["side"].unique()}
    out["side"] = out["side"].map(sides)
    out = out[out["side"].isin(SIDES)]

    def visit_code(text: Any) -> str | None:
        try:
            return normalize_visit(str(text))
        except ValueError:
            return None

    out["visit"] = out["visit"].map({v: visit_code(v) for v in out["visit"].unique()})
    out = out[out["visit"].notna()]
    duplicated = out.duplicated(list(KEYS), keep=False)
    if duplicated.any():
        first = out.loc[duplicated].iloc[0]
        raise InputError(
            f"{source} has {int(duplicated.sum())} rows for knee-visits given twice (e.g. "
            f"subject {first['subject']} {first['side']} {first['visit']}); give one row per "
            "knee and visit"
        )
    return out.reset_index(drop=True)


def _visits(config: TrialConfig, present: Sequence[str]) -> tuple[str, ...]:
    if config.analysis.visits is not None:
        visits = tuple(config.analysis.visits)
        unknown = [v for v in visits if v not in present]
        if unknown:
            raise InputError(
                f"visit(s) {', '.join(unknown)} of analysis.visits are not in the data (it "
                f"has {', '.join(present) or 'none'})"
            )
        return visits
    ordered = sorted(set(present), key=lambda v: (VISIT_MONTHS.get(v, 10_000), v))
    if len(ordered) < 2:
        raise InputError(
            f"the data hold only visit(s) {', '.join(ordered) or 'none'}; a trial needs a "
            "baseline and at least one later visit"
        )
    return tuple(ordered)


def _months(table: pd.DataFrame, visits: Sequence[str]) -> dict[str, float]:
    months: dict[str, float] = {}
    for visit in visits:
        if "months" in table.columns:
            values = pd.to_numeric(table.loc[table["visit"] == visit, "months"], errors="coerce")
            if values.notna().any():
                months[visit] = float(values.median())
                continue
        if visit not in VISIT_MONTHS:
            raise InputError(
                f"visit {visit} is no OAI visit code with known months; add a months column"
            )
        months[visit] = float(VISIT_MONTHS[visit])
    return months


def _arm_of(value: Any, config: TrialConfig) -> str | None:
    """``control``/``treatment`` for a value of the arm variable (text or number)."""
    if _missing(value):
        return None
    for arm, wanted in (("control", config.arms.control), ("treatment", config.arms.treatment)):
        if str(value) == wanted:
            return arm
        try:
            if float(value) == float(wanted):
                return arm
        except (TypeError, ValueError):
            pass
    return ""


def _clinical_lookup(
    view: CatalogView, variable: str, baseline: str
) -> dict[tuple[str, str | None], Any]:
    """(subject, side or None) -> the variable's value at baseline (see the module doc)."""
    ranked: dict[tuple[str, str | None], tuple[int, Any]] = {}
    for row in view.clinical_values(variable):
        visit, side = row["visit"], row["side"]
        value = row["value_num"] if row["value_num"] is not None else row["value_text"]
        if visit is None and side is None:
            rank = 0
        elif visit == baseline and side is None:
            rank = 1
        elif visit == baseline and side in SIDES:
            rank = 2
        else:
            continue
        key = (str(row["subject"]), side if rank == 2 else None)
        if key not in ranked or ranked[key][0] < rank:
            ranked[key] = (rank, value)
    return {k: v for k, (_, v) in ranked.items()}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def assemble(
    table: pd.DataFrame,
    config: TrialConfig,
    *,
    view: CatalogView | None = None,
    source: str = "table",
) -> TrialData:
    """The trial's knees from a results/tidy ``table`` (and, for a run, the catalog ``view``).

    Args:
        table: one row per knee-visit (``subject``, ``side``, ``visit``, endpoint columns...).
        config: the trial config.
        view: the workspace catalog: arm, covariates and ``index_by`` not in ``table`` come
            from its clinical values (None: everything must be in ``table``).
        source: how messages name the data.

    Raises:
        InputError: keys or endpoints missing, a visit not in the data, the arm variable,
            a covariate or ``index_by`` found nowhere, an arm without subjects.
    """
    rows = _knee_rows(table, source)
    endpoints = expand_endpoints(config.analysis.endpoints, list(rows.columns))
    visits = _visits(config, sorted(set(rows["visit"])))
    baseline = visits[0]
    rows = rows[rows["visit"].isin(visits)]
    for name in endpoints:
        rows[name] = pd.to_numeric(rows[name], errors="coerce")
    base_rows = rows[rows["visit"] == baseline].set_index(["subject", "side"])

    def lookup(variable: str, what: str) -> dict[tuple[str, str], Any]:
        """(subject, side) -> baseline value of ``variable`` for every knee in the data."""
        knees = list(dict.fromkeys(zip(rows["subject"], rows["side"], strict=True)))
        if variable in rows.columns:
            found = base_rows[variable].to_dict() if variable in base_rows.columns else {}
            return {k: found.get(k) for k in knees}
        if view is None:
            raise InputError(
                f"{what} {variable!r} is not a column of {source}; add the column or name "
                "one that is there"
            )
        clinical = _clinical_lookup(view, variable, baseline)
        if not clinical:
            raise InputError(
                f"{what} {variable!r} is neither a column of {source} nor a clinical variable "
                "of the catalog (at the baseline visit or subject-level); check the name "
                "(`kneescope catalog clinical`)"
            )
        return {k: clinical.get(k, clinical.get((k[0], None))) for k in knees}

    arm_values = lookup(config.arms.variable, "arm variable")
    if config.arms.variable in rows.columns:  # a knee without a baseline row: any visit's arm
        known = rows.dropna(subset=[config.arms.variable]).drop_duplicates(["subject", "side"])
        later = dict(
            zip(
                zip(known["subject"], known["side"], strict=True),
                known[config.arms.variable],
                strict=True,
            )
        )
        arm_values = {k: later.get(k) if _missing(v) else v for k, v in arm_values.items()}
    arms = {key: _arm_of(value, config) for key, value in arm_values.items()}
    covariates = tuple(config.analysis.covariates)
    cov_values = {c: lookup(c, "covariate") for c in covariates}
    index_values = (
        lookup(config.analysis.index_by, "index_by") if config.analysis.knee == "index" else {}
    )
    excluded: dict[str, int] = {}
    chosen: list[tuple[str, str]] = []
    arm_of_subject: dict[str, str | None] = {}
    by_subject: dict[str, list[str]] = {}
    for subject, side in arms:
        by_subject.setdefault(subject, []).append(side)
    for subject, sides in by_subject.items():
        subject_arms = {arms[(subject, s)] for s in sides} - {None}
        reason = (
            "no arm value"
            if not subject_arms
            else "arm value of neither arm"
            if "" in subject_arms
            else "knees in different arms"
            if len(subject_arms) > 1
            else ""
        )
        if reason:
            excluded[reason] = excluded.get(reason, 0) + 1
            continue
        arm_of_subject[subject] = subject_arms.pop()
        with_base = [s for s in sides if (subject, s) in base_rows.index]
        if config.analysis.knee != "index":
            side = config.analysis.knee
            if side not in sides:
                excluded[f"no {side} knee"] = excluded.get(f"no {side} knee", 0) + 1
                continue
        elif not with_base:
            excluded["no baseline visit"] = excluded.get("no baseline visit", 0) + 1
            continue
        else:

            def worse(s: str, subject: str = subject) -> tuple[float, int]:
                grade = _number(index_values.get((subject, s)))
                return (-grade if math.isfinite(grade) else math.inf, SIDES.index(s))

            side = min(with_base, key=worse)
        chosen.append((subject, side))
    if not chosen:
        raise InputError(
            f"no subject of {source} has an arm value {config.arms.control!r} or "
            f"{config.arms.treatment!r} in {config.arms.variable!r}; check [arms]"
        )
    keep = pd.DataFrame(chosen, columns=["subject", "side"])
    frame = keep.merge(rows, on=["subject", "side"], how="left")
    months = _months(rows, visits)
    frame = frame.assign(
        months=frame["visit"].map(months).astype(float),
        arm=frame["subject"].map(arm_of_subject),
    )
    for name in covariates:
        values = cov_values[name]
        numbers = [
            _number(values.get((s, k)))
            for s, k in zip(frame["subject"], frame["side"], strict=True)
        ]
        if not np.isfinite(numbers).any():
            raise InputError(f"covariate {name!r} has no numeric baseline value; drop it")
        frame[name] = numbers
    frame = frame.loc[:, ["subject", "side", "visit", "months", "arm", *covariates, *endpoints]]
    frame = frame.sort_values(["subject", "months"], kind="stable").reset_index(drop=True)
    data = TrialData(
        frame=frame,
        endpoints=endpoints,
        covariates=covariates,
        visits=visits,
        months=months,
        excluded=excluded,
        source=source,
    )
    for arm in ARMS:
        if data.subjects(arm) < 2:
            raise InputError(
                f"the {arm} arm has {data.subjects(arm)} subject(s) in {source}; a trial "
                f"needs 2 or more per arm (check [arms] of the config)"
            )
    return data


def load_data(config: TrialConfig, workspace_root: Path, view: CatalogView | None) -> TrialData:
    """:func:`assemble` for the config's source: the run's results (+ catalog) or the table.

    Raises:
        NotFoundError: the run or table does not exist.
        InputError: see :func:`assemble`.
    """
    if config.data.table is not None:
        table = read_table_file(config.data.table)
        return assemble(table, config, view=None, source=str(config.data.table))
    run = str(config.data.run)
    results = read_results(workspace_root / "runs" / run)
    kept = drop_rejected_knees(results, view.rejected_knees() if view is not None else ())
    source = f"run {run}"
    if len(kept) < len(results):
        source += f" ({len(results) - len(kept)} rows of knees rejected in QC review left out)"
    return assemble(kept, config, view=view, source=source)
