"""The ``prediction`` cohort-level step: predict incident OA and progression from baseline.

Registered under ``kneescope.cohort_steps``; in a pipeline config::

    [[cohort_steps]]
    name = "prediction"
    [cohort_steps.options]
    outcomes = ["incident_oa", "kl_progression"]
    kl_horizon_months = 24
    join_runs = ["xray"]

It joins the run's results (and those of ``join_runs``, other runs of the same workspace) with
the catalog's clinical values into a knee x visit table (:mod:`~.data`), takes the outcomes
from the later visits (:mod:`~.outcomes`), fits every model with grouped cross-validation and
evaluates it (:mod:`~.evaluate`), and writes its files into ``RUN/cohort/prediction/``
(:mod:`~.outputs`). Its values in ``cohort_results.json``: per outcome the counts, the
definition and per model AUC / AP with 95 % CIs, Brier, ECE (and the Cox C-index).
Every option of :class:`~.config.PredictionConfig` is an option of the step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from kneescope.capabilities.prediction.config import PredictionConfig
from kneescope.cohort.cohort_steps import CohortContext, CohortStepResult
from kneescope.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

VALUE_KEYS = ("definition", "knees", "events", "subjects", "skipped", "folds", "notes", "metrics")
"""What of each outcome's summary goes into the step's values in ``cohort_results.json``."""


class Prediction:
    """Cohort step ``prediction`` (options: those of :class:`PredictionConfig`, and
    ``join_runs``: other runs of the workspace whose results are joined by knee-visit)."""

    name: ClassVar[str] = "prediction"
    version: ClassVar[str] = "1"

    def __init__(self, join_runs: list[str] | None = None, **options: Any) -> None:
        from kneescope.cohort.pipeline_config import is_run_name
        from kneescope.config import validate_config

        lists = {k: tuple(v) for k, v in options.items() if isinstance(v, list)}
        self.config = validate_config(
            PredictionConfig, {**options, **lists}, "prediction cohort step options"
        )
        bad = [r for r in join_runs or [] if not isinstance(r, str) or not is_run_name(r)]
        if bad:
            raise ConfigError(f"prediction: join_runs {bad} are not run names")
        self.join_runs = tuple(join_runs or ())

    def setup(self) -> None:
        """Nothing to prepare."""

    def run(self, results: pd.DataFrame, context: CohortContext) -> CohortStepResult:
        """Build the knee x visit table, predict and evaluate, write the files."""
        from kneescope.capabilities.prediction.data import knee_visit_table
        from kneescope.capabilities.prediction.evaluate import predict_outcomes
        from kneescope.capabilities.prediction.outputs import write_outputs
        from kneescope.cohort.results_table import read_reviewed_run
        from kneescope.io.folder_writer import json_ready

        tables = [results]
        for other in self.join_runs:
            tables.append(read_reviewed_run(context.run_dir.parent / other, context.catalog))
        table = knee_visit_table(tables, context.catalog)
        result = predict_outcomes(table, self.config)
        files = write_outputs(result, context.write_output)
        values = json_ready(
            {
                name: {k: v for k, v in outcome.to_json().items() if k in VALUE_KEYS}
                for name, outcome in result.outcomes.items()
            }
        )
        return CohortStepResult(values={"outcomes": values}, files=files)
