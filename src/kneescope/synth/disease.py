"""The generator's disease model after baseline, vectorised over knees (pure numpy).

One definition used twice: by :func:`kneescope.synth.cohort.plan_subject` (one knee at a
time, its draws taken from the subject's seeded streams) and by anyone who needs fresh
futures of many knees from their baseline state (:func:`simulate_severity`; the prediction
oracle's Monte Carlo, :func:`kneescope.synth.endpoints.simulate_future`).

Per knee (parameters documented in docs/synth.md, "Disease model and its variance"):

- the latent severity ``D`` grows from its baseline ``d0`` at a rate (severity units / year)
  ``base_rate(klg0, bmi) * lognormal(0, 0.5) * lognormal(0, EXTRA_RATE_SD) * fast * (1 -
  effect if treated)``; ``fast`` = :data:`FAST_FACTOR` for a share :data:`FAST_SHARE` of
  knees; a share :data:`NON_PROGRESSOR_SHARE` of knees does not progress at all (rate 0);
- the rate varies over time: its log follows a stationary AR(1) process on a
  :data:`DRIFT_STEP_MONTHS` grid, 0 at baseline, correlation :data:`DRIFT_PHI` per step and
  standard deviation :data:`DRIFT_SD`, mean-corrected so that the expected rate stays the
  initial one: ``D(t) = d0 + rate * sum over steps of step_years * exp(x_k - var_k / 2)``;
- biological fluctuation of cartilage thickness: at every follow-up visit all cartilage
  plates of the knee are thicker or thinner by a common relative amount ~ N(0,
  :data:`FLUCTUATION_SD`) (0 at baseline, so that baseline visits are as before);
- KLG = ``min(4, floor(D))``; weight-bearing cartilage loss of the predominant compartment
  :func:`loss_of_severity`.

Shapes: ``n`` knees, ``m`` time points; arrays are float64 unless said otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]

DISEASE_STREAM = 0xD15E
"""Fourth word of the seed of a knee's post-baseline disease stream
``SeedSequence([seed, index, side, DISEASE_STREAM])`` (non-progressor, extra rate variation,
rate drift); its fluctuation at a visit comes from ``SeedSequence([seed, index, side,
DISEASE_STREAM, months])``. Apart from every other draw, so baseline visits are unchanged."""

RATE_BY_KLG = (0.035, 0.07, 0.08, 0.06, 0.05)
"""Median progression rate of the latent severity per year, by baseline KLG."""

RATE_LOGNORMAL_SD = 0.5
"""Sigma of the original between-knee lognormal rate factor (drawn in the main stream)."""

FAST_SHARE = 0.08
"""Share of fast progressors (drawn in the main stream)."""

FAST_FACTOR = 3.0
"""Rate factor of a fast progressor."""

EXTRA_RATE_SD = 0.6
"""Sigma of the additional between-knee lognormal rate factor (disease stream)."""

NON_PROGRESSOR_SHARE = 0.5
"""Share of knees that do not progress at all (rate 0; disease stream)."""

DRIFT_STEP_MONTHS = 6
"""Step of the rate's AR(1) drift grid."""

DRIFT_STEPS = 40
"""Steps of the drift grid (40 x 6 = 240 months; beyond it the rate stays at its last value)."""

DRIFT_SD = 0.6
"""Stationary standard deviation of the log-rate drift."""

DRIFT_PHI = 0.85
"""Correlation of the log-rate drift from one 6-month step to the next."""

FLUCTUATION_SD = 0.02
"""Relative SD of the per-visit biological fluctuation of cartilage thickness."""

LOSS_KNOTS = ((0.0, 1.0, 2.0, 3.0, 4.0, 5.0), (0.0, 0.02, 0.08, 0.30, 0.60, 0.85))
"""(severity, weight-bearing loss fraction) knots of :func:`loss_of_severity`."""


def loss_of_severity(d: npt.ArrayLike) -> F64:
    """Fraction of weight-bearing cartilage lost at latent severity ``d`` (piecewise linear),
    same shape as ``d``."""
    x = np.asarray(d, dtype=np.float64)
    return np.asarray(np.interp(x, LOSS_KNOTS[0], LOSS_KNOTS[1]), dtype=np.float64)


def klg_of_severity(d: npt.ArrayLike) -> I64:
    """Kellgren-Lawrence grade ``min(4, floor(d))`` (int64, same shape as ``d``)."""
    return np.minimum(4, np.floor(np.asarray(d, dtype=np.float64))).astype(np.int64)


def base_rate(klg0: npt.ArrayLike, bmi: npt.ArrayLike) -> F64:
    """Median rate (severity units / year) of knees with baseline KLG ``klg0`` and ``bmi``
    (kg/m^2): ``RATE_BY_KLG[klg0] * max(0.5, 1 + 0.03 (bmi - 27))``; shape of the broadcast."""
    k = np.asarray(klg0, dtype=np.int64)
    r = np.asarray(RATE_BY_KLG, dtype=np.float64)[k]
    return np.asarray(r * np.maximum(0.5, 1.0 + 0.03 * (np.asarray(bmi, np.float64) - 27.0)))


@dataclass(frozen=True)
class ProgressionDraws:
    """The post-baseline randomness of ``n`` knees.

    Attributes:
        rate_lognormal: (n,) the original lognormal(0, 0.5) rate factor.
        fast: (n,) bool, fast progressor (rate x :data:`FAST_FACTOR`).
        extra_lognormal: (n,) the additional lognormal(0, EXTRA_RATE_SD) rate factor.
        non_progressor: (n,) bool, rate 0.
        drift: (n, DRIFT_STEPS) log-rate drift on the 6-month grid (step k covers months
            6k .. 6(k+1)); step 0 is 0.
    """

    rate_lognormal: F64
    fast: B
    extra_lognormal: F64
    non_progressor: B
    drift: F64


def draw_stream_part(n: int, rng: np.random.Generator) -> tuple[F64, B, F64]:
    """(extra_lognormal, non_progressor, drift) of ``n`` knees from ``rng`` (the disease
    stream; a fixed number of draws per knee: 2 + DRIFT_STEPS - 1)."""
    u = rng.random(n)
    extra = rng.lognormal(0.0, EXTRA_RATE_SD, n)
    eps = rng.normal(size=(n, DRIFT_STEPS - 1))
    drift = np.zeros((n, DRIFT_STEPS))
    innov = DRIFT_SD * np.sqrt(1.0 - DRIFT_PHI**2)
    # x_k = phi x_(k-1) + innov eps_k, x_0 = 0 (an AR(1) recursion as a linear filter)
    drift[:, 1:] = lfilter([innov], [1.0, -DRIFT_PHI], eps, axis=1)
    return extra, u < NON_PROGRESSOR_SHARE, drift


def draw_progression(n: int, rng: np.random.Generator) -> ProgressionDraws:
    """Fresh post-baseline draws of ``n`` knees (all of :class:`ProgressionDraws`) from
    ``rng``: the distribution :func:`kneescope.synth.cohort.plan_subject` draws from."""
    ln = rng.lognormal(0.0, RATE_LOGNORMAL_SD, n)
    fast = rng.random(n) < FAST_SHARE
    extra, non_prog, drift = draw_stream_part(n, rng)
    return ProgressionDraws(ln, fast, extra, non_prog, drift)


def knee_rate(
    klg0: npt.ArrayLike,
    bmi: npt.ArrayLike,
    draws: ProgressionDraws,
    treated: npt.ArrayLike,
    treatment_effect: float,
) -> F64:
    """Initial rate (severity units / year), (n,): base rate x factors, 0 for
    non-progressors, x (1 - treatment_effect) where ``treated``."""
    r = base_rate(klg0, bmi) * draws.rate_lognormal
    r = r * np.where(draws.fast, FAST_FACTOR, 1.0) * draws.extra_lognormal
    r = np.where(draws.non_progressor, 0.0, r)
    return np.asarray(r * np.where(np.asarray(treated, bool), 1.0 - treatment_effect, 1.0))


def _drift_variance() -> F64:
    k = np.arange(DRIFT_STEPS)
    return np.asarray(DRIFT_SD**2 * (1.0 - DRIFT_PHI ** (2 * k)))


def effective_years(drift: F64, months: npt.ArrayLike) -> F64:
    """Progression time (years at the initial rate) elapsed by ``months`` (m,) under the
    drift (n, DRIFT_STEPS): ``integral_0^t exp(x(s) - var(s) / 2) ds``; shape (n, m)."""
    mult = np.exp(drift - 0.5 * _drift_variance()[None, :])  # (n, K)
    step_y = DRIFT_STEP_MONTHS / 12.0
    cum = np.concatenate([np.zeros((len(drift), 1)), np.cumsum(mult * step_y, axis=1)], axis=1)
    t = np.asarray(months, dtype=np.float64) / DRIFT_STEP_MONTHS  # in steps
    k = np.clip(np.floor(t).astype(np.int64), 0, DRIFT_STEPS - 1)
    frac = t - k
    return np.asarray(cum[:, k] + mult[:, k] * frac[None, :] * step_y)


def severity_path(
    d0: npt.ArrayLike, rate: npt.ArrayLike, draws: ProgressionDraws, months: npt.ArrayLike
) -> F64:
    """Latent severity at ``months`` (m,): ``d0 + rate * effective_years``; shape (n, m)."""
    d0 = np.asarray(d0, dtype=np.float64)
    rate = np.asarray(rate, dtype=np.float64)
    return np.asarray(d0[:, None] + rate[:, None] * effective_years(draws.drift, months))


def draw_fluctuation(n: int, months: npt.ArrayLike, rng: np.random.Generator) -> F64:
    """Relative thickness fluctuation of ``n`` knees at ``months`` (m,), (n, m): N(0,
    FLUCTUATION_SD), 0 where months == 0."""
    m = np.asarray(months, dtype=np.float64)
    f = rng.normal(0.0, FLUCTUATION_SD, size=(n, len(m)))
    return np.asarray(np.where(m[None, :] > 0, f, 0.0))


def simulate_severity(
    d0: npt.ArrayLike,
    klg0: npt.ArrayLike,
    bmi: npt.ArrayLike,
    treated: npt.ArrayLike,
    months: npt.ArrayLike,
    treatment_effect: float,
    rng: np.random.Generator,
) -> F64:
    """Latent severity (n, m) of ``n`` knees at ``months`` from their baseline state (``d0``,
    ``klg0``, ``bmi``, ``treated``; each (n,)), every post-baseline draw fresh from ``rng``
    (:func:`draw_progression`): one Monte Carlo future per knee."""
    d0 = np.asarray(d0, dtype=np.float64)
    draws = draw_progression(len(d0), rng)
    rate = knee_rate(klg0, bmi, draws, treated, treatment_effect)
    return severity_path(d0, rate, draws, months)
