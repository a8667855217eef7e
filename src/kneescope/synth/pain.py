"""The synthetic cohort's WOMAC knee pain: one formula, used by the generator and by the
analyses that check against it.

Per knee and visit (WOMAC knee pain subscale, 0-20, an integer)::

    latent = propensity + 1.2 KLG + 4.0 effusion + 0.1 (BMI - 27) + noise
    pain   = clip(round(latent), 0, 20)

- ``propensity``: one draw per subject, ``Normal(2.0, 1.5)`` (shared by both knees and all
  visits: the subject random intercept a mixed model estimates);
- ``KLG``: Kellgren-Lawrence grade 0..4 at that visit;
- ``effusion``: the MRI effusion fraction 0..1 (``KneeParams.effusion``) at that visit;
- ``BMI``: kg/m^2, the subject's baseline BMI (constant over visits);
- ``noise``: one draw per knee x visit, ``Normal(0, 1.5)``.

The coefficients are the truth that the pain association analysis
(``kneescope.capabilities.pain``) must recover. ``round`` is half-to-even (numpy's and
Python's), as the generator has always rounded.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

PAIN_PROPENSITY_MEAN = 2.0
"""Mean of the subject pain propensity (WOMAC points)."""
PAIN_PROPENSITY_SD = 1.5
"""SD of the subject pain propensity (WOMAC points): the subject random-intercept SD."""
PAIN_PER_KLG = 1.2
"""WOMAC pain points per KL grade."""
PAIN_PER_EFFUSION = 4.0
"""WOMAC pain points per unit effusion fraction (0..1)."""
PAIN_PER_BMI = 0.1
"""WOMAC pain points per kg/m^2 of BMI."""
PAIN_BMI_CENTRE = 27.0
"""BMI (kg/m^2) at which the BMI term is zero."""
PAIN_NOISE_SD = 1.5
"""SD of the knee x visit residual (WOMAC points)."""
PAIN_RANGE = (0, 20)
"""WOMAC knee pain subscale range (points)."""


def draw_pain_propensity(rng: np.random.Generator) -> float:
    """One subject's pain propensity, ``Normal(PAIN_PROPENSITY_MEAN, PAIN_PROPENSITY_SD)``
    (one draw from ``rng``, WOMAC points)."""
    return float(rng.normal(PAIN_PROPENSITY_MEAN, PAIN_PROPENSITY_SD))


def draw_pain_noise(rng: np.random.Generator) -> float:
    """One knee-visit residual, ``Normal(0, PAIN_NOISE_SD)`` (one draw, WOMAC points)."""
    return float(rng.normal(0.0, PAIN_NOISE_SD))


def womac_pain_latent(
    propensity: ArrayLike,
    klg: ArrayLike,
    effusion: ArrayLike,
    bmi: ArrayLike,
    noise: ArrayLike,
) -> NDArray[np.float64]:
    """The unrounded, unclipped pain (WOMAC points), broadcast over the inputs.

    Args:
        propensity: subject pain propensity (points), any shape broadcastable with the rest.
        klg: KL grade 0..4; effusion: effusion fraction 0..1; bmi: kg/m^2;
        noise: knee-visit residual (points).

    Returns:
        float64 array of the broadcast shape.
    """
    return (
        np.asarray(propensity, dtype=np.float64)
        + PAIN_PER_KLG * np.asarray(klg, dtype=np.float64)
        + PAIN_PER_EFFUSION * np.asarray(effusion, dtype=np.float64)
        + PAIN_PER_BMI * (np.asarray(bmi, dtype=np.float64) - PAIN_BMI_CENTRE)
        + np.asarray(noise, dtype=np.float64)
    )


def womac_pain(
    propensity: ArrayLike,
    klg: ArrayLike,
    effusion: ArrayLike,
    bmi: ArrayLike,
    noise: ArrayLike,
) -> NDArray[np.int64]:
    """WOMAC knee pain as the generator records it: ``clip(round(latent), 0, 20)``.

    Same arguments as :func:`womac_pain_latent`. Returns an int64 array of the broadcast
    shape (0-d for scalar inputs: ``int(womac_pain(...))`` gives a Python int).
    """
    latent = womac_pain_latent(propensity, klg, effusion, bmi, noise)
    return np.clip(np.round(latent), PAIN_RANGE[0], PAIN_RANGE[1]).astype(np.int64)
