"""The ``oa_score`` cohort-level step: fit the holistic OA score on the whole run, score every
knee-visit.

Registered under ``kneescope.cohort_steps``; in a pipeline config::

    [[cohort_steps]]
    name = "oa_score"
    options = { join_runs = ["xray"], clinical = false, folds = 5 }

It reads the run's results table (and those of ``join_runs``, other runs of the same
workspace, joined by knee-visit: e.g. the radiograph run's KL probabilities and JSW beside
this run's MRI biomarkers), the reader's KL grades from the catalog, fits (or, with
``model``, applies a saved score model), writes its files into ``RUN/cohort/oa_score/``
(:mod:`~kneescope.capabilities.oa_score.outputs`) and stores the per-knee values in the
catalog as run ``<run>.oa_score``. Its values in ``cohort_results.json`` are the summary
figures and the coefficients.

A re-run skips it when this run's results, its options and the catalog values it read are
unchanged: a change in a joined run alone does not re-run it (change an option, or use
``kneescope score``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from kneescope.capabilities.oa_score.features import DEFAULT_FEATURES
from kneescope.capabilities.oa_score.score import DEFAULT_C, ScoreOptions
from kneescope.cohort.cohort_steps import CohortContext, CohortStepResult
from kneescope.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd


class OaScore:
    """Cohort step ``oa_score`` (options: ``features`` name patterns, ``clinical`` covariates,
    ``folds``, ``c`` inverse L2 strength, ``model`` a saved score model to apply instead of
    fitting (a path relative to the workspace, or absolute), ``join_runs`` other runs to join
    by knee-visit, ``store`` values in the catalog)."""

    name: ClassVar[str] = "oa_score"
    version: ClassVar[str] = "2"

    def __init__(
        self,
        features: list[str] | None = None,
        clinical: bool = False,
        folds: int = 5,
        c: float = DEFAULT_C,
        model: str | None = None,
        join_runs: list[str] | None = None,
        store: bool = True,
    ) -> None:
        from kneescope.cohort.pipeline_config import is_run_name
        from kneescope.errors import InputError

        try:
            self.options = ScoreOptions(
                features=tuple(features) if features else DEFAULT_FEATURES,
                clinical=bool(clinical),
                folds=int(folds),
                c=float(c),
            )
        except InputError as exc:
            raise ConfigError(f"oa_score: {exc}") from None
        bad = [r for r in join_runs or [] if not isinstance(r, str) or not is_run_name(r)]
        if bad:
            raise ConfigError(f"oa_score: join_runs {bad} are not run names")
        self.model = model
        self.join_runs = tuple(join_runs or ())
        self.store = bool(store)

    def setup(self) -> None:
        """Nothing to prepare (the model, if any, is read in :meth:`run`)."""

    def run(self, results: pd.DataFrame, context: CohortContext) -> CohortStepResult:
        """Fit or apply the score on the run's (and joined runs') results."""
        from kneescope.capabilities.oa_score.model_file import load_model, model_digest
        from kneescope.capabilities.oa_score.service import score_runs
        from kneescope.cohort.results_table import read_reviewed_run

        tables = [results]
        for other in self.join_runs:
            tables.append(read_reviewed_run(context.run_dir.parent / other, context.catalog))
        model = None
        model_hash = ""
        if self.model is not None:
            path = Path(self.model)
            if not path.is_absolute():  # relative to the workspace (WS/runs/<run>/..)
                path = context.run_dir.parent.parent / path
            model = load_model(path)
            model_hash = model_digest(path)
        outcome = score_runs(
            tables,
            context.catalog,
            context.write_output,
            run="+".join((context.run_dir.name, *self.join_runs)),
            run_dir=context.output_dir,
            options=self.options,
            model=model,
            model_hash=model_hash,
            store=self.store,
        )
        values = outcome.to_json()
        files = values.pop("files")
        return CohortStepResult(values=values, files=files)
