"""Options of the ``pain`` and ``phenotypes`` cohort steps (frozen pydantic models; unknown
options are refused)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from kneescope.config import FROZEN


def _run_names(value: tuple[str, ...]) -> tuple[str, ...]:
    from kneescope.cohort.pipeline_config import is_run_name

    bad = [r for r in value if not is_run_name(r)]
    if bad:
        raise ValueError(f"{bad} are not run names")
    return value


DEFAULT_PHENOTYPE_FEATURES: tuple[str, ...] = (
    "we2008_cMFTC_ThCtAB_mm",
    "we2008_LFTC_ThCtAB_mm",
)
"""Results columns whose baseline value and slope describe a knee for phenotyping: central
medial and lateral femorotibial cartilage thickness (Wirth-Eckstein 2008 ThCtAB, mm)."""


class PainConfig(BaseModel):
    """Options of the ``pain`` cohort step.

    Attributes:
        pain_variable: the catalog's person-level pain variable stem: ``WOMKP`` reads
            ``WOMKPR`` for right knees and ``WOMKPL`` for left knees (WOMAC knee pain, 0-20).
        klg_variable: the catalog's knee-level KL grade variable (a predictor, per grade).
        bmi_variables: subject-level BMI variables, the first one present used (kg/m^2).
        biomarkers: results columns (``fnmatch`` patterns) added as predictors, e.g. an
            effusion volume or a cartilage thickness; each in its own unit.
        klg, bmi: include the KL grade / BMI as predictors.
        visits: visit codes used (None: every visit with pain).
        score_range: the pain score's floor and ceiling (WOMAC knee pain: 0, 20).
        method: ``censored`` (interval-censored ML: the floor, ceiling and rounding modelled),
            ``linear`` (statsmodels MixedLM) or ``both`` (the headline is the censored fit).
        join_runs: other runs of the workspace whose results columns join this run's by
            knee-visit (e.g. a radiograph run's ``mjsw_medial_mm`` or ``kl_expected_grade``
            as a score predictor).
    """

    model_config = FROZEN

    pain_variable: str = Field("WOMKP", min_length=1)
    klg_variable: str = Field("XRKL", min_length=1)
    bmi_variables: tuple[str, ...] = ("P01BMI", "BMI")
    biomarkers: tuple[str, ...] = ()
    klg: bool = True
    bmi: bool = True
    visits: tuple[str, ...] | None = None
    score_range: tuple[float, float] = (0.0, 20.0)
    method: Literal["censored", "linear", "both"] = "both"
    join_runs: tuple[str, ...] = ()

    @field_validator("join_runs")
    @classmethod
    def _run_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _run_names(value)

    @model_validator(mode="after")
    def _some_predictor(self) -> PainConfig:
        if not (self.klg or self.bmi or self.biomarkers):
            raise ValueError("no predictors: keep klg or bmi, or name biomarkers")
        if self.score_range[1] <= self.score_range[0]:
            raise ValueError(f"score_range {self.score_range} must be (floor, ceiling)")
        return self


class PhenotypeConfig(BaseModel):
    """Options of the ``phenotypes`` cohort step.

    Attributes:
        features: results columns (``fnmatch`` patterns) describing each knee.
        baseline_values: use each feature's value at the knee's first visit.
        slopes: use each feature's least-squares slope over the knee's visits (per year).
        min_visits: knees with fewer visits are left out when slopes are used.
        k_range: numbers of clusters tried (the lowest BIC chosen).
        resamples: bootstrap resamples (subjects with replacement) for the stability ARI.
        reselect_k: choose k by BIC again in every resample (the number of phenotypes is
            part of what must be stable).
        seed: random seed of the fits and the bootstrap.
        join_runs: other runs of the workspace whose results columns join this run's by
            knee-visit.
    """

    model_config = FROZEN

    features: tuple[str, ...] = DEFAULT_PHENOTYPE_FEATURES
    baseline_values: bool = True
    slopes: bool = True
    min_visits: int = Field(2, ge=2)
    k_range: tuple[int, ...] = (1, 2, 3, 4, 5)
    resamples: int = Field(50, ge=2, le=2000)
    reselect_k: bool = False
    seed: int = Field(0, ge=0)
    join_runs: tuple[str, ...] = ()

    @field_validator("join_runs")
    @classmethod
    def _run_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _run_names(value)

    @model_validator(mode="after")
    def _something(self) -> PhenotypeConfig:
        if not (self.baseline_values or self.slopes):
            raise ValueError("keep baseline_values or slopes (or both)")
        if not self.features:
            raise ValueError("name at least one feature column")
        if not self.k_range or min(self.k_range) < 1:
            raise ValueError(f"k_range {self.k_range} must hold numbers of clusters >= 1")
        return self
