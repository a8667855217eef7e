"""Options of outcome prediction: a frozen pydantic model (``config.FROZEN``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from kneescope.config import FROZEN

OutcomeName = Literal["incident_oa", "kl_progression", "jsw_loss", "thickness_loss"]
ModelName = Literal["logistic", "gbm", "cox"]

OUTCOMES: tuple[OutcomeName, ...] = ("incident_oa", "kl_progression", "jsw_loss", "thickness_loss")
MODELS: tuple[ModelName, ...] = ("logistic", "gbm", "cox")

DEFAULT_FEATURES: tuple[str, ...] = (
    "age_years",
    "sex_female",
    "bmi_kg_m2",
    "klg",
    "jsn_medial",
    "jsn_lateral",
    "medial_jsw_mm",
    "lateral_jsw_mm",
    "mjsw_*_mm",
    "we2008_*_ThCtAB_mm",
    "*_cartilage_thickness_mean_mm",
    "kl_probability_*",
    "pain",
    "womac_pain",
)
"""Baseline feature name patterns (``fnmatch`` globs) used when none are given: clinical
covariates, the reader's KL and JSN grades, radiographic JSW, cartilage thickness, WOMAC pain.
Columns that hold the generator's hidden truth (``true_*``, ``severity``, ``rate``) are never
features, whatever the patterns say (:data:`HIDDEN`)."""

HIDDEN: tuple[str, ...] = (
    "true_*",
    "latent_*",
    "severity",
    "rate",
    "effusion",
    "medial_predominant",
    "subject_index",
    "oracle*",
)
"""Column patterns never used as features: the synthetic generator's latent truth."""

SDC_CMFTC_MM = 0.196
"""Default smallest detectable change (95 %) of the central medial femorotibial cartilage
thickness cMFTC ThCtAB (mm) for the ``thickness_loss`` outcome: ``1.96 * sqrt(2) * SD`` with
the test-retest SD of one cMFTC measurement ``sqrt(0.05^2 + 0.05^2) = 0.071 mm`` (cMT and
ccMF, the published precisions the synthetic generator uses:
``kneescope.synth.endpoints.MEASUREMENT_SD_MM``, references in docs/synth.md). Give the SDC of
your own reader or segmentation for real data."""


class PredictionConfig(BaseModel):
    """What to predict from what, and how it is evaluated.

    Attributes:
        outcomes: which outcomes (``incident_oa``: KL 0-1 at baseline -> KL >= 2 at a visit
            within ``kl_horizon_months``; ``kl_progression``: KL 0-3 at baseline -> a higher
            KL within ``kl_horizon_months``; ``jsw_loss``: medial minimum JSW at
            ``jsw_horizon_months`` minus baseline <= -``jsw_loss_mm``; ``thickness_loss``:
            ``thickness_column`` at ``thickness_horizon_months`` minus baseline <=
            -``thickness_sdc_mm``).
        models: ``logistic`` (L2 logistic regression on standardised, median-imputed
            features), ``gbm`` (scikit-learn histogram gradient boosting), ``cox`` (lifelines
            Cox proportional hazards, time to the first visit meeting the outcome).
        features: baseline feature name patterns.
        contralateral: add the other knee's baseline features (``contra_<name>``).
        baseline_visit: the baseline visit code (default: each knee's first visit).
        kl_column, jsw_column, thickness_column: where the outcomes come from.
        folds: grouped (by subject) cross-validation folds.
        n_boot: bootstrap replicates of the CIs. seed: folds' and bootstrap's seed.
        min_events: an outcome with fewer events (or non-events) is reported, not modelled.
    """

    model_config = FROZEN

    outcomes: tuple[OutcomeName, ...] = OUTCOMES
    models: tuple[ModelName, ...] = MODELS
    features: tuple[str, ...] = DEFAULT_FEATURES
    contralateral: bool = True
    baseline_visit: str | None = None
    kl_column: str = "klg"
    jsw_column: str = "medial_jsw_mm"
    thickness_column: str = "we2008_cMFTC_ThCtAB_mm"
    kl_horizon_months: int = Field(48, ge=1, le=240)
    jsw_horizon_months: int = Field(48, ge=1, le=240)
    thickness_horizon_months: int = Field(24, ge=1, le=240)
    jsw_loss_mm: float = Field(0.7, gt=0.0)
    thickness_sdc_mm: float = Field(SDC_CMFTC_MM, gt=0.0)
    folds: int = Field(5, ge=2, le=50)
    n_boot: int = Field(1000, ge=0, le=100_000)
    seed: int = Field(0, ge=0)
    min_events: int = Field(10, ge=2)

    @model_validator(mode="after")
    def _non_empty(self) -> PredictionConfig:
        if not self.outcomes:
            raise ValueError("give at least one outcome")
        if not self.models:
            raise ValueError("give at least one model")
        if not self.features:
            raise ValueError("give at least one feature pattern")
        return self
