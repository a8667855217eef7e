"""The oracle of a synthetic cohort: the best any baseline model could do, from the generator.

For knees of :func:`kneescope.synth.endpoints.endpoint_table`, the generator knows each knee's
whole latent baseline state (latent severity ``d0``, cartilage-thickness parameters, lesion
size, predominant compartment, BMI, arm). Two reference scores per outcome, both Monte Carlo
over the generator's own post-baseline model (:mod:`kneescope.synth.disease`):

* ``oracle``: ``P(event | the knee's latent baseline state and its measured baseline
  values)``: ``draws`` fresh futures of every knee (:func:`~kneescope.synth.endpoints.
  simulate_future`: rate factors, non-progression, rate drift, biological fluctuation and
  measurement noise at the follow-up visits all drawn anew), the outcome evaluated on each
  future exactly as on the real one (a change outcome against the knee's *measured* baseline
  value, which a model sees too), averaged. This is the Bayes-optimal risk given everything
  the knee is at baseline: no model of baseline data can rank knees better in expectation,
  so its AUC is the ceiling of baseline prediction.
* ``oracle_rate``: the same with the knee's true initial progression rate (the ``rate``
  column: its rate factors and non-progressor status) known, only the later rate drift,
  fluctuation and measurement noise drawn: an upper bound no baseline model reaches (the
  rate is not visible at baseline), showing how much of the outcome is decided after
  baseline.

The AUC of a model and of ``oracle`` are computed on the same knees; the gap and its paired
subject-bootstrap CI come from :func:`kneescope.stats.discrimination.bootstrap_difference`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from kneescope.capabilities.prediction.config import OutcomeName, PredictionConfig
from kneescope.capabilities.prediction.outcomes import KNEE, knee_outcome, prepare
from kneescope.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

F64 = npt.NDArray[np.float64]

DEFAULT_DRAWS = 200
"""Monte Carlo futures per knee (the probability's standard error is at most 0.035; the
AUC of the averaged probability is far more precise than that)."""

ORACLE_NAMES = ("oracle", "oracle_rate")

BATCH = 25
"""Monte Carlo futures simulated in one pass (memory: knees x BATCH x visits rows)."""


def _simulate_known_rate(
    baseline: pd.DataFrame, months: Sequence[int], rng: np.random.Generator
) -> pd.DataFrame:
    """:func:`~kneescope.synth.endpoints.simulate_future` with each knee's initial rate
    (``rate`` column) fixed: only the rate drift, the fluctuation and the measurement noise
    are drawn."""
    import pandas as pd

    from kneescope.synth.cohort import jsn_grade
    from kneescope.synth.disease import (
        draw_fluctuation,
        draw_progression,
        klg_of_severity,
        loss_of_severity,
        severity_path,
    )
    from kneescope.synth.endpoints import (
        ENDPOINTS,
        add_measurement_noise,
        measurement_noise_draws,
        true_endpoints,
    )

    n, m = len(baseline), len(months)
    mo = np.asarray(months, dtype=np.float64)
    draws = draw_progression(n, rng)
    sev = severity_path(
        baseline["latent_d0"].to_numpy(np.float64),
        baseline["rate"].to_numpy(np.float64),
        draws,
        mo,
    )
    fluct = draw_fluctuation(n, mo, rng)
    rep = baseline.loc[baseline.index.repeat(m)].reset_index(drop=True)
    d = sev.reshape(-1)
    true = true_endpoints(
        d,
        rep["medial_predominant"].to_numpy(bool),
        rep["latent_cart_femoral_mm"].to_numpy(np.float64),
        rep["latent_cart_medial_tibial_mm"].to_numpy(np.float64),
        rep["latent_cart_lateral_tibial_mm"].to_numpy(np.float64),
        rep["latent_lesion_radius_mm"].to_numpy(np.float64),
        fluct.reshape(-1),
    )
    measured = add_measurement_noise(true, measurement_noise_draws(rng, n * m))
    medial = rep["medial_predominant"].to_numpy(bool)
    loss = loss_of_severity(d)
    out = pd.DataFrame(
        {
            "row": np.repeat(np.arange(n), m),
            "months": np.tile(np.asarray(months, dtype=np.int64), n),
            "severity": d,
            "klg": klg_of_severity(d),
            "jsn_medial": [jsn_grade(x) for x in np.where(medial, loss, 0.3 * loss)],
            "jsn_lateral": [jsn_grade(x) for x in np.where(medial, 0.3 * loss, loss)],
        }
    )
    for name in ENDPOINTS:
        out[name] = measured[name]
    return out


def oracle_probabilities(
    table: pd.DataFrame,
    config: PredictionConfig,
    *,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    treatment_effect: float = 0.0,
    known_rate: bool = False,
) -> dict[OutcomeName, pd.Series]:
    """Per outcome of ``config``: each knee's oracle probability of the event (see the module
    docstring), a Series indexed by (subject, side) over the knees at risk.

    Args:
        table: an :func:`~kneescope.synth.endpoints.endpoint_table` (with its latent columns).
        config: the outcomes' definitions (the same as the models').
        draws: Monte Carlo futures per knee.
        seed: the Monte Carlo's seed.
        treatment_effect: the cohort's treatment effect (treated knees progress slower).
        known_rate: ``oracle_rate`` (the knee's true initial rate fixed) instead of ``oracle``.

    Raises:
        InputError: a table without the generator's latent columns.
    """
    import pandas as pd

    from kneescope.synth.endpoints import simulate_future

    needed = ("latent_d0", "latent_cart_femoral_mm", "baseline_klg", "rate", "arm")
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputError(
            f"the oracle needs the synthetic generator's latent columns ({', '.join(missing)} "
            "missing): give an endpoint_table of kneescope.synth.endpoints"
        )
    frame = prepare(table, config)
    baseline = frame.loc[frame["baseline_months"] == 0.0].reset_index(drop=True)
    follow = sorted({int(m) for m in frame["baseline_months"] if m > 0})
    if not follow:
        raise InputError("the table has no follow-up visit: nothing to predict")
    outcomes = {name: knee_outcome(frame, name, config) for name in config.outcomes}
    at_risk = {
        name: pd.MultiIndex.from_frame(o.knees.loc[:, list(KNEE)]) for name, o in outcomes.items()
    }
    base_index = pd.MultiIndex.from_frame(baseline.loc[:, list(KNEE)])
    counts = {name: np.zeros(len(baseline)) for name in config.outcomes}
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0AC1E]))
    columns = [
        c
        for c in dict.fromkeys((config.kl_column, config.jsw_column, config.thickness_column))
        if c in baseline.columns
    ]
    n = len(baseline)
    done = 0
    while done < draws:
        # a batch of futures at once: the baseline knees repeated, each copy a knee of its own
        # (subject "<id>#<copy>"), so one simulation and one outcome pass serve the batch
        batch = min(BATCH, draws - done)
        done += batch
        copy = np.repeat(np.arange(batch), n)
        knee = np.tile(np.arange(n), batch)
        rep = baseline.iloc[knee].reset_index(drop=True)
        rep["subject"] = rep["subject"].astype(str) + "#" + copy.astype(str)
        if known_rate:
            future = _simulate_known_rate(rep, follow, rng)
        else:
            future = simulate_future(
                rep, follow, rng, treatment_effect=treatment_effect, measurement_noise=True
            )
        rows = future["row"].to_numpy()
        observed = rep.loc[:, [*KNEE, *columns]].assign(baseline_months=0.0)
        sim = rep.loc[:, list(KNEE)].iloc[rows].reset_index(drop=True)
        sim["baseline_months"] = future["months"].to_numpy(np.float64)
        for column in columns:
            if column in future.columns:
                sim[column] = future[column].to_numpy()
        both = pd.concat([observed, sim], ignore_index=True)
        position = pd.Series(knee, index=pd.MultiIndex.from_frame(rep.loc[:, list(KNEE)]))
        for name in config.outcomes:
            o = knee_outcome(both, name, config)
            events = o.knees.loc[o.knees["event"] == 1, list(KNEE)]
            hit = position.reindex(pd.MultiIndex.from_frame(events)).to_numpy()
            counts[name] += np.bincount(hit.astype(np.int64), minlength=n)
    out: dict[OutcomeName, pd.Series] = {}
    for name in config.outcomes:
        p = pd.Series(counts[name] / draws, index=base_index)
        out[name] = p.loc[at_risk[name]]
    return out
