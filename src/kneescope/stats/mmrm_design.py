"""The trial analysis design for an MMRM, and LS-means as ``emmeans`` computes them.

:func:`build_design` turns a tidy table (one row per subject x post-baseline visit) into the
design of the R formula::

    response ~ visit * arm + visit * baseline + covariate_1 + covariate_2 + ...

with R's treatment contrasts (the first visit and the control arm are the reference levels)
and R's column order and names: ``(Intercept)``, the visit dummies, the arm dummy, the baseline,
the covariates, then ``visit:arm`` and ``visit:baseline`` interactions (e.g. ``visitV24``,
``armtreatment``, ``visitV24:armtreatment``). Numeric covariates enter as they are; non-numeric
ones (strings, categories) are factors with sorted levels, the first the reference; booleans
are 0/1 numbers.

:func:`lsmeans` gives the least-squares means per visit x arm and the treatment - control
difference per visit as ``emmeans(fit, ~ arm | visit)`` and ``pairs(..., reverse = TRUE)`` do
for a gls fit: numeric covariates (the baseline included) at their mean over the rows the model
used (rows, not subjects: a subject with more visits weighs more, as in emmeans), factor
covariates averaged with equal weight per level, Satterthwaite degrees of freedom.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from kneescope.errors import InputError
from kneescope.stats.mmrm import FloatArray, MmrmFit, fit_mmrm


@dataclass(frozen=True)
class MmrmDesign:
    """An MMRM design built from a tidy table.

    Attributes:
        y: ``(n,)`` float64 response.
        X: ``(n, p)`` float64 design matrix (R's ``model.matrix`` of the formula above).
        names: the ``p`` column names, as R names them.
        subject: ``(n,)`` subject labels; visit: ``(n,)`` int visit codes into ``visits``.
        visits: the visit levels in order; arms: ``(control, treatment)`` labels.
        response, visit_column, arm_column, baseline, covariates: the column names used.
        numeric_means: mean over the used rows of each numeric term (baseline, covariates).
        factor_levels: levels of each factor covariate (first = reference).
        data: the rows used (a copy), in the order of ``y``.
    """

    y: FloatArray
    X: FloatArray
    names: tuple[str, ...]
    subject: NDArray[np.object_]
    visit: NDArray[np.intp]
    visits: tuple[str, ...]
    arms: tuple[str, str]
    response: str
    visit_column: str
    arm_column: str
    baseline: str | None
    covariates: tuple[str, ...]
    numeric_means: dict[str, float]
    factor_levels: dict[str, tuple[str, ...]]
    data: pd.DataFrame

    def row(
        self,
        visit: str,
        arm: str,
        numeric: dict[str, float] | None = None,
        factors: dict[str, dict[str, float]] | None = None,
    ) -> FloatArray:
        """``(p,)`` design row for one visit x arm.

        Args:
            visit, arm: levels of ``visits`` and ``arms``.
            numeric: value of each numeric term (default: ``numeric_means``).
            factors: per factor covariate, the weight of each level (default: equal weights).
        """
        if visit not in self.visits:
            raise InputError(f"unknown visit {visit!r}; the design has {list(self.visits)}")
        if arm not in self.arms:
            raise InputError(f"unknown arm {arm!r}; the design has {list(self.arms)}")
        num = dict(self.numeric_means)
        if numeric:
            num.update(numeric)
        values: dict[str, float] = {"(Intercept)": 1.0}
        vdum = {f"{self.visit_column}{v}": float(v == visit) for v in self.visits[1:]}
        arm_name = f"{self.arm_column}{self.arms[1]}"
        adum = float(arm == self.arms[1])
        values.update(vdum)
        values[arm_name] = adum
        if self.baseline is not None:
            values[self.baseline] = num[self.baseline]
        for cov in self.covariates:
            if cov in self.factor_levels:
                levels = self.factor_levels[cov]
                weights = (factors or {}).get(cov, {lv: 1.0 / len(levels) for lv in levels})
                for lv in levels[1:]:
                    values[f"{cov}{lv}"] = float(weights.get(lv, 0.0))
            else:
                values[cov] = num[cov]
        for vname, vd in vdum.items():
            values[f"{vname}:{arm_name}"] = vd * adum
            if self.baseline is not None:
                values[f"{vname}:{self.baseline}"] = vd * num[self.baseline]
        return np.array([values[name] for name in self.names], dtype=np.float64)


@dataclass(frozen=True)
class LsMeans:
    """LS-means of an MMRM trial analysis.

    Attributes:
        means: one row per visit x arm: visit, arm, estimate, se, df, lower, upper.
        differences: one row per visit: visit, contrast ("treatment - control" labels),
            estimate, se, df, t, p, lower, upper.
        level: confidence level of the intervals.
    """

    means: pd.DataFrame
    differences: pd.DataFrame
    level: float


def _is_numeric(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series)) and not pd.api.types.is_bool_dtype(series)


def build_design(
    data: pd.DataFrame,
    *,
    response: str,
    visit: str,
    visits: Sequence[str],
    arm: str,
    arms: tuple[str, str],
    subject: str = "subject",
    baseline: str | None = None,
    covariates: Sequence[str] = (),
) -> MmrmDesign:
    """The MMRM design ``response ~ visit * arm + visit * baseline + covariates``.

    Args:
        data: tidy table, one row per subject x visit.
        response: the response column (e.g. change from baseline, in its unit).
        visit: the visit column; its values are compared as strings with ``visits``.
        visits: the visit levels in order (the first is the reference); rows at other visits
            are dropped.
        arm: the arm column; values compared as strings with ``arms``.
        arms: ``(control, treatment)`` labels; rows in other arms are dropped.
        subject: the subject column.
        baseline: the baseline-value column (numeric), or None for no baseline adjustment.
        covariates: further columns (numeric, boolean or categorical), main effects only.

    Returns:
        The design; rows with a missing response, baseline or covariate are dropped (as R's
        ``na.omit``).

    Raises:
        InputError: a missing column, repeated names, fewer than two arms with data, a visit
            level without data, or a non-numeric response / baseline.
    """
    visits_t = tuple(str(v) for v in visits)
    arms_t = (str(arms[0]), str(arms[1]))
    covs = tuple(covariates)
    needed = [subject, visit, arm, response, *([baseline] if baseline else []), *covs]
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise InputError(
            f"column(s) {missing} not in the table; it has {sorted(map(str, data.columns))}"
        )
    if len(set(needed)) != len(needed):
        raise InputError(f"the columns of the design must be distinct, got {needed}")
    if not visits_t:
        raise InputError("no visits given")
    if len(set(visits_t)) != len(visits_t):
        raise InputError(f"visits repeat a level: {list(visits_t)}")
    if arms_t[0] == arms_t[1]:
        raise InputError(f"the control and treatment arms must differ, got {arms_t}")
    for col in [response, *([baseline] if baseline else [])]:
        if not _is_numeric(data[col]):
            raise InputError(f"column {col!r} must be numeric, got dtype {data[col].dtype}")

    df = data[needed].copy()
    df[visit] = df[visit].astype(str)
    df[arm] = df[arm].astype(str)
    df = df[df[visit].isin(visits_t) & df[arm].isin(arms_t)]
    df = df.dropna(subset=[c for c in needed if c not in (visit, arm, subject)])
    df = df[df[subject].notna()]
    if df.empty:
        raise InputError(
            f"no rows left with a {response!r} value at visits {list(visits_t)} in arms "
            f"{list(arms_t)}"
        )
    for a in arms_t:
        if not (df[arm] == a).any():
            raise InputError(
                f"arm {a!r} has no rows with data; the arms present are {sorted(df[arm].unique())}"
            )
    empty = [v for v in visits_t if not (df[visit] == v).any()]
    if empty:
        raise InputError(f"visit(s) {empty} have no rows with data: drop them from visits")
    dup = df.duplicated([subject, visit])
    if dup.any():
        first = df[dup].iloc[0]
        raise InputError(
            f"subject {first[subject]!r} has more than one row at visit {first[visit]!r} "
            f"({int(dup.sum())} repeated subject x visit rows): an MMRM takes one value per "
            "subject and visit (e.g. one knee per subject)"
        )
    arms_per_subject = df.groupby(subject)[arm].nunique()
    mixed = arms_per_subject[arms_per_subject > 1]
    if len(mixed):
        raise InputError(
            f"subject {mixed.index[0]!r} is in both arms ({len(mixed)} such subjects): a "
            "subject's arm must be the same at every visit"
        )

    visit_code = {v: i for i, v in enumerate(visits_t)}
    codes = np.asarray(df[visit].map(visit_code), dtype=np.intp)
    order = np.lexsort((codes, pd.factorize(df[subject], sort=True)[0]))
    df = df.iloc[order].reset_index(drop=True)
    codes = np.asarray(codes[order], dtype=np.intp)

    n = len(df)
    cols: list[FloatArray] = [np.ones(n)]
    names: list[str] = ["(Intercept)"]
    vdums: list[tuple[str, FloatArray]] = [
        (f"{visit}{v}", (codes == i).astype(np.float64)) for i, v in enumerate(visits_t)
    ][1:]
    for vname, vcol in vdums:
        names.append(vname)
        cols.append(vcol)
    arm_name = f"{arm}{arms_t[1]}"
    arm_col = np.asarray(df[arm] == arms_t[1], dtype=np.float64)
    names.append(arm_name)
    cols.append(arm_col)
    numeric_means: dict[str, float] = {}
    base_col: FloatArray | None = None
    if baseline is not None:
        base_col = df[baseline].to_numpy(dtype=np.float64)
        names.append(baseline)
        cols.append(base_col)
        numeric_means[baseline] = float(np.mean(base_col))
    factor_levels: dict[str, tuple[str, ...]] = {}
    for cov in covs:
        series = df[cov]
        if pd.api.types.is_bool_dtype(series) or _is_numeric(series):
            num_col: FloatArray = series.to_numpy(dtype=np.float64)
            names.append(cov)
            cols.append(num_col)
            numeric_means[cov] = float(np.mean(num_col))
        else:
            values = series.astype(str)
            levels = tuple(sorted(values.unique()))
            factor_levels[cov] = levels
            for lv in levels[1:]:
                names.append(f"{cov}{lv}")
                cols.append((values == lv).to_numpy(dtype=np.float64))
    for vname, vcol in vdums:
        names.append(f"{vname}:{arm_name}")
        cols.append(vcol * arm_col)
    if base_col is not None:
        for vname, vcol in vdums:
            names.append(f"{vname}:{baseline}")
            cols.append(vcol * base_col)
    return MmrmDesign(
        y=df[response].to_numpy(dtype=np.float64),
        X=np.column_stack(cols),
        names=tuple(names),
        subject=df[subject].to_numpy(dtype=object),
        visit=codes,
        visits=visits_t,
        arms=arms_t,
        response=response,
        visit_column=visit,
        arm_column=arm,
        baseline=baseline,
        covariates=covs,
        numeric_means=numeric_means,
        factor_levels=factor_levels,
        data=df,
    )


def fit_design(design: MmrmDesign) -> MmrmFit:
    """Fit the MMRM of ``design`` (REML, unstructured covariance over ``design.visits``)."""
    return fit_mmrm(
        design.y,
        design.X,
        design.subject,
        design.visit,
        design.names,
        n_visits=len(design.visits),
    )


def lsmeans(
    fit: MmrmFit, design: MmrmDesign, *, level: float = 0.95, method: str = "satterthwaite"
) -> LsMeans:
    """LS-means per visit x arm and treatment - control differences per visit (as emmeans).

    Args:
        fit: the fit of ``design`` (:func:`fit_design`).
        design: the design the fit was made on.
        level: confidence level of the intervals.
        method: ``"satterthwaite"`` (as emmeans on a gls fit) or ``"kenward-roger"``
            (adjusted SEs and df; see :meth:`kneescope.stats.mmrm.MmrmFit.contrast`).

    Returns:
        :class:`LsMeans`; estimates in the response's unit.
    """
    if tuple(fit.names) != tuple(design.names):
        raise InputError("the fit was not made on this design (its fixed effects differ)")
    rows, keys = [], []
    for v in design.visits:
        for a in design.arms:
            rows.append(design.row(v, a))
            keys.append((v, a))
    L = np.asarray(rows)
    c = fit.contrast(L, level=level, method=method)
    means = pd.DataFrame(
        {
            "visit": [k[0] for k in keys],
            "arm": [k[1] for k in keys],
            "estimate": c.estimate,
            "se": c.se,
            "df": c.df,
            "lower": c.lower,
            "upper": c.upper,
        }
    )
    D = np.asarray([L[2 * i + 1] - L[2 * i] for i in range(len(design.visits))])
    d = fit.contrast(D, level=level, method=method)
    differences = pd.DataFrame(
        {
            "visit": list(design.visits),
            "contrast": [f"{design.arms[1]} - {design.arms[0]}"] * len(design.visits),
            "estimate": d.estimate,
            "se": d.se,
            "df": d.df,
            "t": d.t,
            "p": d.p,
            "lower": d.lower,
            "upper": d.upper,
        }
    )
    return LsMeans(means=means, differences=differences, level=level)
