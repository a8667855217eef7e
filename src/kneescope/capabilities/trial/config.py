"""The trial analysis' configuration: ``trial.toml``, a frozen pydantic model.

.. code-block:: toml

    name = "forward-like"                   # names the output folder (default: the file's stem)

    [data]
    run = "mri"                             # WORKSPACE/runs/mri/results.parquet + the catalog
    # table = "trial_table.csv"             # or a tidy table (csv/parquet; relative to this file)

    [arms]
    variable = "TRTARM"                     # clinical variable (run) or table column
    control = "0"
    treatment = "1"

    [analysis]
    endpoints = ["we2008_cMFTC_ThCtAB_mm", "we2008_MT_ThCtAB_mm"]   # names, * ? patterns
    visits = ["V00", "V01", "V03"]          # baseline first; default: every visit in the data
    covariates = ["P01BMI"]                 # baseline covariates (the endpoint's baseline is in)
    knee = "index"                          # index (the worse knee at baseline) | right | left
    index_by = "XRKL"                       # what "worse" means: the higher baseline value
    alpha = 0.05

    [[responders]]
    endpoint = "we2008_cMFTC_ThCtAB_mm"
    threshold = -0.1                        # change from baseline, in the endpoint's unit
    direction = "above"                     # responder: change above (or "below") the threshold

    [power]
    target_effects = { we2008_cMFTC_ThCtAB_mm = 0.05 }   # FORWARD: +0.05 mm over 2 years
    power = [0.8, 0.9]

Every field is described on its model below; unknown keys are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from kneescope.config import FROZEN, load_config
from kneescope.errors import ConfigError


class DataConfig(BaseModel):
    """Where the knees' values come from: a run of the workspace or a table file.

    Attributes:
        run: a run's name: ``WORKSPACE/runs/RUN/results.parquet`` (one row per knee-visit);
            arms and clinical covariates come from the catalog's clinical values.
        table: a tidy table (csv or parquet), one row per knee-visit with columns
            ``subject``, ``side`` (right/left), ``visit`` (V00...), the endpoints, the arm
            variable and the covariates; an optional ``months`` column gives the visit's time.
            A relative path is relative to the config file.
    """

    model_config = FROZEN

    run: str | None = None
    table: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.run is None) == (self.table is None):
            raise ValueError("give exactly one of run (a run name) and table (a file)")
        return self


class ArmsConfig(BaseModel):
    """Which subjects are controls and which treated.

    Attributes:
        variable: the clinical variable (data from a run: subject-level in the catalog, e.g.
            the synthetic cohorts' ``TRTARM``) or the table column holding the arm.
        control, treatment: the variable's values of the two arms (compared as text; a
            number's text form too: ``0`` matches ``0.0``).
    """

    model_config = FROZEN

    variable: str = "TRTARM"
    control: str = "0"
    treatment: str = "1"

    @field_validator("control", "treatment", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )

    @model_validator(mode="after")
    def _distinct(self) -> ArmsConfig:
        if self.control == self.treatment:
            raise ValueError("control and treatment must be different values")
        return self


KneeChoice = Literal["index", "right", "left"]


class AnalysisConfig(BaseModel):
    """What is analysed.

    Attributes:
        endpoints: results columns (or ``*``/``?`` patterns of them) analysed one by one.
        visits: visit codes, baseline first (default: every visit in the data, in time order).
        primary_visit: the visit of the responder, power and headline figures (default: the
            last visit).
        covariates: baseline covariates added to every model (numbers; a run's clinical
            variables are looked up subject-level, then at the baseline visit, then for the
            knee at the baseline visit). The endpoint's own baseline value is always in.
        knee: ``index``: per subject the worse knee at baseline (the higher ``index_by``; a
            tie, or no value for either knee, goes to the right knee: the generator's
            ``synth.endpoints.index_knees`` rule); ``right``/``left``: that knee.
        index_by: the baseline variable that defines the worse knee (a clinical knee variable
            such as ``XRKL`` or a table/results column).
        alpha: two-sided significance level of every test and 1 - CI level.
    """

    model_config = FROZEN

    endpoints: tuple[str, ...] = Field(min_length=1)
    visits: tuple[str, ...] | None = None
    primary_visit: str | None = None
    covariates: tuple[str, ...] = ()
    knee: KneeChoice = "index"
    index_by: str = "XRKL"
    alpha: float = Field(0.05, gt=0.0, lt=0.5)

    @field_validator("visits")
    @classmethod
    def _two_visits(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            if len(value) < 2:
                raise ValueError("a trial needs the baseline visit and at least one more")
            if len(set(value)) != len(value):
                raise ValueError("a visit is listed twice")
        return value


class ResponderConfig(BaseModel):
    """One responder definition: a knee responds when its change from baseline at ``visit``
    lies beyond ``threshold``.

    Attributes:
        endpoint: the endpoint (one of the analysed ones).
        threshold: the change from baseline (endpoint unit, e.g. mm) that separates responders.
        direction: ``above``: responder when change > threshold (e.g. cartilage that does not
            lose more than 0.1 mm: ``threshold = -0.1``); ``below``: change < threshold.
        visit: default the analysis' primary visit.
    """

    model_config = FROZEN

    endpoint: str
    threshold: float
    direction: Literal["above", "below"] = "above"
    visit: str | None = None


class PowerConfig(BaseModel):
    """Sample size and power for target effects.

    Attributes:
        target_effects: endpoint -> the treatment difference to detect at the primary visit
            (endpoint unit; e.g. the FORWARD trial's +0.05 mm of femorotibial thickness over
            2 years). Endpoints without one get the difference estimated in this trial.
        power: the wanted power(s): the sample size per arm is reported for each.
        ratio: treated subjects per control subject in the planned trial.
    """

    model_config = FROZEN

    target_effects: dict[str, float] = Field(default_factory=dict)
    power: tuple[float, ...] = (0.8, 0.9)
    ratio: float = Field(1.0, gt=0.0)

    @field_validator("power")
    @classmethod
    def _powers(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0.0 < p < 1.0 for p in value):
            raise ValueError("power values must be between 0 and 1")
        return value


class TrialConfig(BaseModel):
    """A whole ``trial.toml`` (see the module docstring)."""

    model_config = FROZEN

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    data: DataConfig
    arms: ArmsConfig = ArmsConfig()
    analysis: AnalysisConfig
    responders: tuple[ResponderConfig, ...] = ()
    power: PowerConfig = PowerConfig()


def load_trial_config(path: Path) -> TrialConfig:
    """Read ``trial.toml`` (or .json); a relative ``data.table`` becomes relative to the file.

    Raises:
        ConfigError: missing/unreadable file, bad TOML, an unknown key or a bad value.
    """
    config = load_config(TrialConfig, path)
    table = config.data.table
    if table is not None and not table.is_absolute():
        data = config.data.model_copy(update={"table": path.parent / table})
        config = config.model_copy(update={"data": data})
    return config


def trial_name(config: TrialConfig, path: Path) -> str:
    """The trial's name: ``name`` or the config file's stem."""
    if config.name:
        return config.name
    stem = path.stem
    if not stem or stem.startswith("."):
        raise ConfigError(f'{path}: give the trial a name (name = "...")')
    return stem
