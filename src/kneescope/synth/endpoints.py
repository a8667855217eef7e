"""The fast endpoint table of a synthetic cohort: no rendering, thousands of knees a second.

What trial simulations, the prediction benchmark and the pain benchmark use in place of a
rendered and measured cohort. :func:`endpoint_table` plans the cohort
(:func:`kneescope.synth.cohort.plan_cohort`, the same draws as ``kneescope synth``) and gives,
per knee x visit, the clinical state and the cartilage endpoints named as the columns of
``kneescope measure`` (``we2008_<region>_ThCtAB_mm``) and the radiographic minimum joint space
widths, each with a noise-free twin ``true_<name>``:

- ``true_*``: an analytic approximation of the generator's exact truth
  (:func:`kneescope.synth.region_truth.we2008_truth` of the knee's parameters; bone gap of
  :func:`kneescope.synth.truth.bone_gap` for the JSW): per region ``ThCtAB = cart x (a + b
  loss + c L)``, ``cart`` the plate's mean-thickness parameter (mm, including the visit's
  biological fluctuation), ``loss`` the compartment's weight-bearing loss fraction, ``L =
  r^2 h(depth)`` the focal lesion's removed volume per unit thickness (``h(x) = x`` for ``x <=
  1``, ``1 + ln x`` beyond: the integral of ``min(x g, 1)`` over a Gaussian ``g`` of width
  ``r``), with the coefficients of :data:`THICKNESS_COEF` fitted to the exact truth
  (docs/synth.md, "Disease model and its variance", calibration);
- measured: ``true + N(0, MEASUREMENT_SD_MM[name])`` per part region (aggregates ``MFTC = MT
  + cMF``, ``cMFTC = cMT + ccMF``, ``LFTC = LT + cLF`` are sums of their measured parts), from
  a random stream per knee x visit (``SeedSequence([seed, index, side, NOISE_STREAM,
  months])``), so a knee-visit's noise does not depend on which other visits are planned.

Also: :func:`simulate_future` (fresh post-baseline futures of given baseline knees: the
prediction oracle's Monte Carlo) and :func:`true_treatment_effect` (the generator's true
mean treatment effect on the change from baseline).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from kneescope.errors import InputError
from kneescope.synth.cohort import CohortSpec, SubjectPlan, plan_cohort
from kneescope.synth.disease import (
    draw_fluctuation,
    klg_of_severity,
    loss_of_severity,
    simulate_severity,
)

F64 = npt.NDArray[np.float64]

NOISE_STREAM = 0x4E01
"""Fourth word of the seed of a knee-visit's measurement-noise stream."""

PART_REGIONS = ("MT", "cMT", "cMF", "ccMF", "LT", "cLF")
"""Regions whose thickness is modelled (and measured with noise) directly."""

AGGREGATES = {"MFTC": ("MT", "cMF"), "cMFTC": ("cMT", "ccMF"), "LFTC": ("LT", "cLF")}
"""Femorotibial aggregates: sums of their parts (as :data:`kneescope.core.we2008.AGGREGATES`)."""

REGIONS = (*PART_REGIONS, *AGGREGATES)

THICKNESS_COEF: dict[str, tuple[float, float, float]] = {
    "MT": (0.9574, -0.4862, -0.0047),
    "cMT": (1.1745, -0.9038, -0.0132),
    "cMF": (1.0401, -0.4819, -0.0028),
    "ccMF": (1.1355, -0.5799, -0.0047),
    "LT": (0.9546, -0.5347, -0.0041),
    "cLF": (1.0497, -0.5989, 0.0001),
}
"""Region -> (a, b, c) of ``ThCtAB = cart (a + b loss + c L)`` (fitted, see module doc)."""

JSW_COEF: dict[str, tuple[float, float, float, float, float]] = {
    "medial": (-0.3659, 1.1179, 1.1782, -0.8863, -0.8974),
    "lateral": (-0.5077, 1.1788, 1.2442, -0.9243, -1.1385),
}
"""Compartment -> (c0, cf, ct, cfl, ctl) of ``JSW = c0 + cf F + ct T + cfl F loss + ctl T loss``
(``F``, ``T``: femoral and tibial cartilage parameters, mm): the bone gap of the seated knee."""

MEASUREMENT_SD_MM: dict[str, float] = {
    "MT": 0.03,
    "cMT": 0.05,
    "cMF": 0.04,
    "ccMF": 0.05,
    "LT": 0.03,
    "cLF": 0.04,
    "medial_jsw_mm": 0.14,
    "lateral_jsw_mm": 0.23,
}
"""Test-retest SD (mm) of one measurement: part regions' ThCtAB and the radiographic JSWs
(references in docs/synth.md, "Disease model and its variance")."""


def thickness_column(region: str) -> str:
    """The ``kneescope measure`` column of a region's ThCtAB, e.g. ``we2008_MT_ThCtAB_mm``."""
    return f"we2008_{region}_ThCtAB_mm"


ENDPOINTS: tuple[str, ...] = (
    *(thickness_column(r) for r in REGIONS),
    "medial_jsw_mm",
    "lateral_jsw_mm",
)
"""The endpoint columns of :func:`endpoint_table` (each with a ``true_`` twin)."""


def _lesion_h(depth: F64) -> F64:
    d = np.maximum(depth, 1e-12)
    return np.asarray(np.where(d <= 1.0, d, 1.0 + np.log(d)))


def lesion_depth(d: npt.ArrayLike) -> F64:
    """Depth of the predominant compartment's tibial focal lesion at severity ``d`` (0 where
    the generator draws none: depth <= 0.05); the femoral one is 0.8 x this deep."""
    depth = np.clip((np.asarray(d, np.float64) - 2.3) * 0.8, 0.0, 1.6)
    return np.asarray(np.where(depth > 0.05, depth, 0.0))


def true_endpoints(
    severity: npt.ArrayLike,
    medial: npt.ArrayLike,
    cart_femoral: npt.ArrayLike,
    cart_medial_tibial: npt.ArrayLike,
    cart_lateral_tibial: npt.ArrayLike,
    lesion_radius_mm: npt.ArrayLike,
    fluctuation: npt.ArrayLike = 0.0,
) -> dict[str, F64]:
    """Noise-free endpoints (mm) of knees at latent ``severity`` (any broadcastable shapes).

    Args:
        severity: latent D; medial: medial-predominant (bool).
        cart_femoral, cart_medial_tibial, cart_lateral_tibial: the knee's cartilage
            parameters (mm) without fluctuation.
        lesion_radius_mm: radius of the tibial focal lesion (the femoral one is 0.9 x).
        fluctuation: relative biological fluctuation of all plates at that visit.

    Returns:
        ``{endpoint name: float64 array}`` for every name of :data:`ENDPOINTS`.
    """
    d = np.asarray(severity, np.float64)
    med = np.asarray(medial, bool)
    scale = 1.0 + np.asarray(fluctuation, np.float64)
    cf = np.asarray(cart_femoral, np.float64) * scale
    cmt = np.asarray(cart_medial_tibial, np.float64) * scale
    clt = np.asarray(cart_lateral_tibial, np.float64) * scale
    loss = loss_of_severity(d)
    loss_m = np.where(med, loss, 0.3 * loss)
    loss_l = np.where(med, 0.3 * loss, loss)
    depth = lesion_depth(d)
    r = np.asarray(lesion_radius_mm, np.float64)
    l_tib = r**2 * _lesion_h(depth)
    l_fem = (0.9 * r) ** 2 * _lesion_h(0.8 * depth)
    zero = np.zeros_like(l_tib)
    plate = {
        "MT": (cmt, loss_m, np.where(med, l_tib, zero)),
        "cMT": (cmt, loss_m, np.where(med, l_tib, zero)),
        "cMF": (cf, loss_m, np.where(med, l_fem, zero)),
        "ccMF": (cf, loss_m, np.where(med, l_fem, zero)),
        "LT": (clt, loss_l, np.where(med, zero, l_tib)),
        "cLF": (cf, loss_l, np.where(med, zero, l_fem)),
    }
    out: dict[str, F64] = {}
    for region, (cart, ls, lesion) in plate.items():
        a, b, c = THICKNESS_COEF[region]
        out[thickness_column(region)] = np.maximum(cart * (a + b * ls + c * lesion), 0.0)
    for name, parts in AGGREGATES.items():
        out[thickness_column(name)] = sum(  # type: ignore[assignment]
            (out[thickness_column(p)] for p in parts), np.zeros_like(out[thickness_column("MT")])
        )
    for comp, t, ls in (("medial", cmt, loss_m), ("lateral", clt, loss_l)):
        c0, k_f, k_t, k_fl, k_tl = JSW_COEF[comp]
        jsw = c0 + k_f * cf + k_t * t + k_fl * cf * ls + k_tl * t * ls
        out[f"{comp}_jsw_mm"] = np.maximum(jsw, 0.0)
    return out


def measurement_noise_draws(rng: np.random.Generator, n: int) -> dict[str, F64]:
    """Measurement errors (mm) of ``n`` knee-visits for every :data:`MEASUREMENT_SD_MM` name
    (region names for the thicknesses), drawn in that order (shape (n,) each)."""
    return {name: rng.normal(0.0, sd, n) for name, sd in MEASUREMENT_SD_MM.items()}


def add_measurement_noise(true: dict[str, F64], noise: dict[str, F64]) -> dict[str, F64]:
    """Measured endpoints from ``true`` ones and ``noise`` (:func:`measurement_noise_draws`):
    parts plus their error, aggregates the sum of their measured parts."""
    out: dict[str, F64] = {}
    for region in PART_REGIONS:
        col = thickness_column(region)
        out[col] = np.maximum(true[col] + noise[region], 0.0)
    for name, parts in AGGREGATES.items():
        out[thickness_column(name)] = (
            out[thickness_column(parts[0])] + out[thickness_column(parts[1])]
        )
    for col in ("medial_jsw_mm", "lateral_jsw_mm"):
        out[col] = np.maximum(true[col] + noise[col], 0.0)
    return out


def _knee_noise(seed: int, index: int, side_index: int, months: int) -> dict[str, float]:
    rng = np.random.default_rng(
        np.random.SeedSequence([seed, index, side_index, NOISE_STREAM, months])
    )
    return {k: float(v[0]) for k, v in measurement_noise_draws(rng, 1).items()}


def endpoint_table(
    spec: CohortSpec,
    plans: Sequence[SubjectPlan] | None = None,
    *,
    measurement_noise: bool = True,
) -> pd.DataFrame:
    """One row per knee x visit of the cohort ``spec`` (``plans``: already planned subjects of
    ``spec``, default all of them).

    Columns: ``subject`` (participant id, str), ``subject_index``, ``side`` (right/left),
    ``visit`` (OAI code), ``months``, ``arm`` (control/treatment), ``age``, ``sex`` (1 male, 2
    female), ``bmi``, ``klg``, ``jsn_medial``, ``jsn_lateral``, ``severity``, ``effusion``,
    ``pain`` (WOMAC 0-20), ``rate`` (initial rate, severity units / year),
    ``baseline_klg``, ``medial_predominant``, ``progression`` (non-progressor / typical /
    fast: :data:`~kneescope.synth.cohort.PROGRESSION_CLASSES`; also as the booleans
    ``non_progressor`` and ``fast_progressor``); every name of
    :data:`ENDPOINTS` (mm; with measurement noise unless ``measurement_noise`` is False) and
    ``true_<name>``; latent
    columns for :func:`simulate_future`: ``latent_d0``, ``latent_cart_femoral_mm``,
    ``latent_cart_medial_tibial_mm``, ``latent_cart_lateral_tibial_mm``,
    ``latent_lesion_radius_mm``, ``latent_fluctuation``.
    """
    plans = plan_cohort(spec) if plans is None else plans
    cols: dict[str, list[object]] = {}

    def put(name: str, value: object) -> None:
        cols.setdefault(name, []).append(value)

    for plan in plans:
        for side_index, side in enumerate(("right", "left")):
            states = plan.knees[side]
            base = states[0].params
            for state in states:
                p = state.params
                put("subject", plan.participant_id)
                put("subject_index", plan.index)
                put("side", side)
                put("visit", state.visit)
                put("months", state.months)
                put("arm", plan.arm)
                put("age", plan.age)
                put("sex", plan.sex)
                put("bmi", plan.bmi)
                put("klg", state.klg)
                put("jsn_medial", state.jsn_medial)
                put("jsn_lateral", state.jsn_lateral)
                put("severity", state.severity)
                put("effusion", p.effusion)
                put("pain", state.pain)
                put("rate", plan.rate[side])
                put("baseline_klg", plan.baseline_klg[side])
                put("medial_predominant", plan.medial_predominant[side])
                put("progression", plan.progression[side])
                put("non_progressor", plan.progression[side] == "non-progressor")
                put("fast_progressor", plan.progression[side] == "fast")
                put("latent_d0", states[0].severity)
                put("latent_cart_femoral_mm", base.cart_femoral)
                put("latent_cart_medial_tibial_mm", base.cart_medial_tibial)
                put("latent_cart_lateral_tibial_mm", base.cart_lateral_tibial)
                put("latent_lesion_radius_mm", plan.lesion_radius_mm[side])
                put("latent_fluctuation", p.cart_medial_tibial / base.cart_medial_tibial - 1.0)
                if measurement_noise:
                    for k, v in _knee_noise(
                        spec.seed, plan.index, side_index, state.months
                    ).items():
                        put(f"_noise_{k}", v)
    df = pd.DataFrame(cols)
    if df.empty:
        raise InputError("the cohort has no knees; give at least one subject and one visit")
    true = _true_from_frame(df, df["severity"].to_numpy(np.float64))
    if measurement_noise:
        noise = {k: df.pop(f"_noise_{k}").to_numpy(np.float64) for k in MEASUREMENT_SD_MM}
        measured = add_measurement_noise(true, noise)
    else:
        measured = true
    for name in ENDPOINTS:
        df[name] = measured[name]
    for name in ENDPOINTS:
        df[f"true_{name}"] = true[name]
    return df


def _true_from_frame(
    df: pd.DataFrame, severity: F64, fluctuation: F64 | None = None
) -> dict[str, F64]:
    return true_endpoints(
        severity,
        df["medial_predominant"].to_numpy(bool),
        df["latent_cart_femoral_mm"].to_numpy(np.float64),
        df["latent_cart_medial_tibial_mm"].to_numpy(np.float64),
        df["latent_cart_lateral_tibial_mm"].to_numpy(np.float64),
        df["latent_lesion_radius_mm"].to_numpy(np.float64),
        df["latent_fluctuation"].to_numpy(np.float64) if fluctuation is None else fluctuation,
    )


def _jsn_grades(loss: F64) -> npt.NDArray[np.int64]:
    """:func:`~kneescope.synth.cohort.jsn_grade` of every element of ``loss`` (vectorised:
    the same cut-offs 0.1, 0.3, 0.6)."""
    return np.searchsorted(np.array([0.1, 0.3, 0.6]), loss, side="right").astype(np.int64)


def simulate_future(
    baseline: pd.DataFrame,
    months: Sequence[int],
    rng: np.random.Generator,
    *,
    treatment_effect: float = 0.0,
    measurement_noise: bool = True,
) -> pd.DataFrame:
    """One fresh future of each baseline knee: every post-baseline draw (rate factors,
    non-progressor, drift, fluctuation, measurement noise) new from ``rng``.

    Args:
        baseline: rows of :func:`endpoint_table` at baseline (one per knee; ``severity`` =
            ``latent_d0``), with its ``latent_*``, ``baseline_klg``, ``bmi``, ``arm`` and
            ``medial_predominant`` columns.
        months: follow-up times (months after baseline), e.g. ``[12, 24, 48]``.
        treatment_effect: the arm's effect (knees with ``arm == "treatment"`` progress
            ``1 - treatment_effect`` as fast).

    Returns:
        One row per knee x month (knee-major order): ``row`` (position in ``baseline``),
        ``months``, ``severity``, ``klg``, ``jsn_medial``, ``jsn_lateral``, every name of
        :data:`ENDPOINTS` and ``true_<name>``.
    """
    n, m = len(baseline), len(months)
    mo = np.asarray(months, dtype=np.float64)
    sev = simulate_severity(
        baseline["latent_d0"].to_numpy(np.float64),
        baseline["baseline_klg"].to_numpy(np.int64),
        baseline["bmi"].to_numpy(np.float64),
        (baseline["arm"] == "treatment").to_numpy(bool),
        mo,
        treatment_effect,
        rng,
    )
    fluct = draw_fluctuation(n, mo, rng)
    rep = baseline.iloc[np.repeat(np.arange(n), m)].reset_index(drop=True)
    d = sev.reshape(-1)
    true = _true_from_frame(rep, d, fluct.reshape(-1))
    medial = rep["medial_predominant"].to_numpy(bool)
    loss = loss_of_severity(d)
    out = pd.DataFrame(
        {
            "row": np.repeat(np.arange(n), m),
            "months": np.tile(np.asarray(months, dtype=np.int64), n),
            "severity": d,
            "klg": klg_of_severity(d),
            "jsn_medial": _jsn_grades(np.where(medial, loss, 0.3 * loss)),
            "jsn_lateral": _jsn_grades(np.where(medial, 0.3 * loss, loss)),
        }
    )
    measured = (
        add_measurement_noise(true, measurement_noise_draws(rng, n * m))
        if measurement_noise
        else true
    )
    for name in ENDPOINTS:
        out[name] = measured[name]
    for name in ENDPOINTS:
        out[f"true_{name}"] = true[name]
    return out


def index_knees(table: pd.DataFrame) -> pd.Series:
    """Boolean mask of the rows of each subject's index knee: the knee with the higher
    baseline KLG (ties: the right knee)."""
    base = table.loc[table["months"] == table["months"].min(), ["subject_index", "side", "klg"]]
    base = base.assign(right=(base["side"] == "right").astype(int))
    best = base.sort_values(["subject_index", "klg", "right"]).groupby("subject_index").tail(1)
    key = set(zip(best["subject_index"], best["side"], strict=True))
    return pd.Series(
        [(i, s) in key for i, s in zip(table["subject_index"], table["side"], strict=True)],
        index=table.index,
    )


def true_treatment_effect(
    spec: CohortSpec,
    endpoint: str,
    visit: str,
    knees: int = 20_000,
    *,
    select: Callable[[pd.DataFrame], pd.Series] | None = None,
) -> float:
    """The generator's true mean effect of treatment on the change from baseline of
    ``endpoint`` at ``visit``: the same knees planned from ``spec`` (its seed, visits, ...;
    ``subjects`` = ``ceil(knees / 2)``), each once untreated and once treated (its severity
    path progressing ``1 - spec.treatment_effect`` as fast, every other draw the same);
    mean over knees of (treated - untreated) change, noise-free (mm; > 0 = less loss).

    ``select``: which knees count (a boolean mask over the rows of the noise-free
    :func:`endpoint_table`, e.g. :func:`index_knees`); default every knee.

    Raises:
        InputError: unknown endpoint, or a visit not in ``spec.visits``.
    """
    if endpoint not in ENDPOINTS:
        raise InputError(f"unknown endpoint {endpoint!r}; choose one of {', '.join(ENDPOINTS)}")
    if visit not in spec.visits:
        raise InputError(f"visit {visit} is not one of the spec's visits {', '.join(spec.visits)}")
    untreated = spec.model_copy(
        update={"subjects": math.ceil(knees / 2), "treatment_effect": 0.0, "randomise": False}
    )
    df = endpoint_table(untreated, measurement_noise=False)
    if select is not None:
        df = df[select(df).to_numpy(bool)]
    at = df[df["visit"] == visit]
    d = at["severity"].to_numpy(np.float64)
    d0 = at["latent_d0"].to_numpy(np.float64)
    d_treated = d0 + (1.0 - spec.treatment_effect) * (d - d0)
    control = _true_from_frame(at, d)[endpoint]
    treated = _true_from_frame(at, d_treated)[endpoint]
    return float(np.mean(treated - control))


__all__ = [
    "ENDPOINTS",
    "MEASUREMENT_SD_MM",
    "endpoint_table",
    "index_knees",
    "simulate_future",
    "true_endpoints",
    "true_treatment_effect",
]
