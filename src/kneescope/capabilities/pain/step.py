"""The ``pain`` and ``phenotypes`` cohort-level steps.

Registered under ``kneescope.cohort_steps``; in a pipeline config::

    [[cohort_steps]]
    name = "pain"
    options = { biomarkers = ["we2008_cMFTC_ThCtAB_mm"], method = "both" }

    [[cohort_steps]]
    name = "phenotypes"
    options = { features = ["we2008_cMFTC_ThCtAB_mm", "we2008_LFTC_ThCtAB_mm"], resamples = 50 }

``pain`` joins the run's knee-visits with the catalog's WOMAC knee pain (``WOMKPR``/``L``),
KL grade (``XRKL``) and BMI (``P01BMI``) and fits a random-intercept model per subject
(:mod:`~kneescope.capabilities.pain.association`); files in ``RUN/cohort/pain/``:
``pain_coefficients.csv`` (every model's coefficients with 95 % CIs), ``pain_table.csv``
(the knee-visit rows analysed), ``pain_summary.json``, ``pain_forest.png``.

``phenotypes`` summarises each knee by its baseline values and slopes of the feature
columns and finds Gaussian-mixture phenotypes (:mod:`~kneescope.capabilities.pain.phenotypes`);
files in ``RUN/cohort/phenotypes/``: ``phenotypes.csv`` (each knee's features, phenotype and
its probability), ``phenotype_means.csv``, ``phenotype_bic.csv``, ``phenotype_summary.json``,
``phenotypes.png`` (the knees' two first slopes, coloured by phenotype).
Where the catalog has baseline KL grades, the summary cross-tabulates phenotypes by grade.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

from kneescope.capabilities.pain.config import PainConfig, PhenotypeConfig
from kneescope.cohort.cohort_steps import CohortContext, CohortStepResult
from kneescope.errors import ConfigError, InputError
from kneescope.io.folder_writer import json_ready

if TYPE_CHECKING:
    import pandas as pd


def _options(model: type[Any], name: str, options: dict[str, Any]) -> Any:
    try:
        return model(**options)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg", "")).removeprefix("Value error, ")
        raise ConfigError(
            f"{name} options: {where + ': ' if where else ''}{message}; see docs/pain.md"
        ) from None


def _write_csv(context: CohortContext, name: str, rows: list[dict[str, Any]]) -> str:
    from kneescope.io.csv_table import write_csv_table

    return context.write_output(name, lambda tmp: write_csv_table(tmp, rows))


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict(orient="records")]


class Pain:
    """Cohort step ``pain``: WOMAC knee pain on KL grade, BMI and biomarkers, random
    intercept per subject (options: :class:`~kneescope.capabilities.pain.config.PainConfig`)."""

    name: ClassVar[str] = "pain"
    version: ClassVar[str] = "1"

    def __init__(self, **options: Any) -> None:
        self.config: PainConfig = _options(PainConfig, "pain", options)

    def setup(self) -> None:
        """Nothing to prepare."""

    def run(self, results: pd.DataFrame, context: CohortContext) -> CohortStepResult:
        """Fit the pain model on the run's knee-visits; write its files."""
        from kneescope.capabilities.pain.association import pain_association
        from kneescope.capabilities.pain.data import (
            add_clinical,
            joined_results,
            knee_visits,
            matching,
        )
        from kneescope.capabilities.pain.figures import save_forest

        cfg = self.config
        results = joined_results(results, context.run_dir, cfg.join_runs, context.catalog)
        biomarkers = matching([str(c) for c in results.columns], cfg.biomarkers)
        if cfg.biomarkers and not biomarkers:
            raise InputError(
                f"no results column matches biomarkers {list(cfg.biomarkers)}; the run's "
                f"columns are {', '.join(map(str, results.columns))}"
            )
        kv = knee_visits(results, biomarkers)
        table = add_clinical(
            kv.table,
            context.catalog,
            pain_variable=cfg.pain_variable,
            klg_variable=cfg.klg_variable,
            bmi_variables=cfg.bmi_variables,
        )
        if cfg.visits is not None:
            table = table.loc[table["visit"].isin(cfg.visits)]
        if table["pain"].notna().sum() == 0:
            raise InputError(
                f"no knee-visit of the run has a pain score ({cfg.pain_variable}R/"
                f"{cfg.pain_variable}L) in the catalog; ingest the clinical table with WOMAC"
            )
        predictors = [
            *(["klg"] if cfg.klg else []),
            *(["bmi"] if cfg.bmi else []),
            *biomarkers,
        ]
        found = pain_association(table, predictors, method=cfg.method, score_range=cfg.score_range)
        summary = json_ready({**found.summary(), "predictors": predictors})
        files = {
            "coefficients": _write_csv(context, "pain_coefficients.csv", found.coefficient_rows()),
            "table": _write_csv(
                context,
                "pain_table.csv",
                _records(table.loc[:, ["subject", "visit", "side", "months", "pain", *predictors]]),
            ),
            "summary": context.write_output(
                "pain_summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n"
            ),
        }
        rows = found.coefficient_rows()
        title = f"WOMAC knee pain: {found.knee_visits} knee-visits of {found.subjects} subjects"
        files["forest"] = context.write_output(
            "pain_forest.png", lambda tmp: save_forest(rows, tmp, title)
        )
        values = {**summary, "rows_without_knee": kv.rows_without_knee}
        return CohortStepResult(values=values, files=files)


class Phenotypes:
    """Cohort step ``phenotypes``: Gaussian-mixture knee phenotypes on baseline values and
    slopes, stability by bootstrap ARI (options:
    :class:`~kneescope.capabilities.pain.config.PhenotypeConfig`)."""

    name: ClassVar[str] = "phenotypes"
    version: ClassVar[str] = "1"

    def __init__(self, **options: Any) -> None:
        self.config: PhenotypeConfig = _options(PhenotypeConfig, "phenotypes", options)

    def setup(self) -> None:
        """Nothing to prepare."""

    def run(self, results: pd.DataFrame, context: CohortContext) -> CohortStepResult:
        """Find the run's knee phenotypes; write their files."""
        from kneescope.capabilities.pain.data import joined_results, knee_visits, matching
        from kneescope.capabilities.pain.figures import save_phenotype_scatter
        from kneescope.capabilities.pain.phenotypes import find_phenotypes, knee_trajectories

        cfg = self.config
        results = joined_results(results, context.run_dir, cfg.join_runs, context.catalog)
        columns = matching([str(c) for c in results.columns], cfg.features)
        if not columns:
            raise InputError(
                f"no results column matches features {list(cfg.features)}; the run's "
                f"columns are {', '.join(map(str, results.columns))}"
            )
        kv = knee_visits(results, columns)
        knees = knee_trajectories(
            kv.table,
            columns,
            baseline_values=cfg.baseline_values,
            slopes=cfg.slopes,
            min_visits=cfg.min_visits,
        )
        features = [c for c in knees.columns if c not in ("subject", "side", "visits")]
        found = find_phenotypes(knees, features, cfg)
        summary = found.summary()
        by_grade = self._by_baseline_grade(found.knees, kv.table, context)
        if by_grade is not None:
            summary["by_baseline_klg"], summary["agreement_ari"]["baseline_klg"] = by_grade
        summary = json_ready(summary)
        files = {
            "phenotypes": _write_csv(context, "phenotypes.csv", _records(found.knees)),
            "means": _write_csv(context, "phenotype_means.csv", found.means_rows()),
            "bic": _write_csv(context, "phenotype_bic.csv", found.bic_rows()),
            "summary": context.write_output(
                "phenotype_summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n"
            ),
        }
        slopes = [f for f in features if f.endswith("_slope_per_year")]
        x, y = (slopes if len(slopes) >= 2 else [*features, *features])[:2]
        title = f"{found.selection.k} phenotypes of {len(found.knees)} knees"
        files["figure"] = context.write_output(
            "phenotypes.png", lambda tmp: save_phenotype_scatter(found.knees, x, y, tmp, title)
        )
        return CohortStepResult(values=summary, files=files)

    @staticmethod
    def _by_baseline_grade(
        knees: pd.DataFrame, table: pd.DataFrame, context: CohortContext
    ) -> tuple[dict[str, dict[str, int]], float] | None:
        """``({phenotype: {KL grade: knees}}, ARI of the phenotypes with the grade)`` from
        the catalog's XRKL at each knee's first visit; None without a catalog or grades."""
        from kneescope.catalog.naming import side_from_text
        from kneescope.stats.clusters import agreement

        if context.catalog is None:
            return None
        first = table.sort_values("months").groupby(["subject", "side"]).first().reset_index()
        grades = {
            (str(r["subject"]), r.get("visit"), r.get("side")): r.get("value_num")
            for r in context.catalog.clinical_values("XRKL")
        }
        base = {
            (str(s), str(d)): grades.get((str(s), str(v), side_from_text(str(d))))
            for s, v, d in zip(first["subject"], first["visit"], first["side"], strict=True)
        }
        out: dict[str, dict[str, int]] = {}
        pairs: list[tuple[int, int]] = []
        for s, d, k in zip(knees["subject"], knees["side"], knees["phenotype"], strict=True):
            grade = base.get((str(s), str(d)))
            if grade is None:
                continue
            pairs.append((int(k), int(grade)))
            cell = out.setdefault(str(int(k)), {})
            cell[f"KL{int(grade)}"] = cell.get(f"KL{int(grade)}", 0) + 1
        if not pairs:
            return None
        labels, klg = zip(*pairs, strict=True)
        return out, agreement(list(labels), list(klg))
