"""Simulated trials with known truth for the MMRM tests (tests/stats)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest


@dataclass(frozen=True)
class SimTrial:
    """A simulated two-arm trial and the truth it was drawn from.

    ``data``: one row per subject x observed post-baseline visit: subject, visit, arm
    (control/treatment), chg (change from baseline, mm), base (baseline, mm), age (years), sex
    (F/M), site (north/south/west, no effect). Truth: ``chg = mu[v] + delta[v] treated +
    gamma[v] (base - 2) + AGE_COEF (age - 60) + SEX_COEF male + e``, ``e ~ N(0, sigma)`` over
    the visits.
    """

    data: pd.DataFrame
    complete: pd.DataFrame
    visits: tuple[str, ...]
    mu: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    sigma: np.ndarray
    age_coef: float
    sex_coef: float


AGE_COEF = 0.001
SEX_COEF = 0.01


def simulate_trial(
    seed: int,
    n_subjects: int,
    visits: Sequence[str] = ("V01", "V03", "V05", "V06"),
    *,
    dropout: str = "mar",
    intermittent: float = 0.0,
) -> SimTrial:
    """Draw a trial; ``dropout``: "none", "mcar" (15 % per visit) or "mar" (more likely
    after a large observed loss); ``intermittent``: share of single visits missing at random."""
    rng = np.random.default_rng(seed)
    T = len(visits)
    months = np.arange(1, T + 1, dtype=np.float64)
    sd = 0.05 + 0.02 * months
    corr = 0.3 + 0.6 * np.exp(-0.5 * np.abs(np.subtract.outer(months, months)))
    np.fill_diagonal(corr, 1.0)
    sigma = corr * np.outer(sd, sd)
    mu = -0.02 * months
    delta = 0.015 * months
    gamma = -0.01 * months
    treated = rng.random(n_subjects) < 0.5
    base = rng.normal(2.0, 0.3, n_subjects)
    age = rng.normal(60.0, 9.0, n_subjects)
    male = rng.random(n_subjects) < 0.45
    e = rng.multivariate_normal(np.zeros(T), sigma, size=n_subjects)
    chg = (
        mu[None, :]
        + delta[None, :] * treated[:, None]
        + gamma[None, :] * (base[:, None] - 2.0)
        + AGE_COEF * (age[:, None] - 60.0)
        + SEX_COEF * male[:, None]
        + e
    )
    observed = np.ones((n_subjects, T), dtype=bool)
    if dropout == "mcar":
        for j in range(1, T):
            observed[:, j] = observed[:, j - 1] & (rng.random(n_subjects) > 0.15)
    elif dropout == "mar":
        for j in range(1, T):
            # MAR: the chance to leave depends on the last observed change (a loss > 0.1 mm)
            p_leave = np.where(chg[:, j - 1] < mu[j - 1] - 0.05, 0.45, 0.05)
            observed[:, j] = observed[:, j - 1] & (rng.random(n_subjects) > p_leave)
    elif dropout != "none":
        raise ValueError(dropout)
    if intermittent > 0:
        hole = rng.random((n_subjects, T)) < intermittent
        hole[:, 0] = False
        observed &= ~hole
    # a three-level factor without effect, drawn last so that the draws above stay as they were
    site = rng.choice(np.array(["north", "south", "west"]), size=n_subjects)
    rows = []
    for i in range(n_subjects):
        for j, v in enumerate(visits):
            rows.append(
                {
                    "subject": f"S{i:05d}",
                    "visit": v,
                    "arm": "treatment" if treated[i] else "control",
                    "chg": chg[i, j],
                    "base": base[i],
                    "age": age[i],
                    "sex": "M" if male[i] else "F",
                    "site": site[i],
                    "observed": observed[i, j],
                }
            )
    complete = pd.DataFrame(rows)
    data = complete[complete["observed"]].drop(columns="observed").reset_index(drop=True)
    return SimTrial(
        data=data,
        complete=complete.drop(columns="observed"),
        visits=tuple(visits),
        mu=mu,
        delta=delta,
        gamma=gamma,
        sigma=sigma,
        age_coef=AGE_COEF,
        sex_coef=SEX_COEF,
    )


@pytest.fixture(scope="session")
def sim_trial() -> Callable[..., SimTrial]:
    """The simulator (a function of seed, n_subjects, visits, dropout, intermittent)."""
    return simulate_trial
