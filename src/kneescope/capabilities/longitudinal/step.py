"""The ``longitudinal`` cohort-level step: every knee followed over its visits.

Registered under ``kneescope.cohort_steps``; in a pipeline config::

    [[cohort_steps]]
    name = "longitudinal"
    options = { baseline = "V00", bone_tolerance_pct = 5.0 }

It reads the run's results table (one row per item), collapses it into knee-visits
(subject, side, visit code), takes each knee's change from its baseline per biomarker
(absolute, %, annualised), checks that every visit is the same knee (side, bone size:
:mod:`~kneescope.capabilities.longitudinal.qc`), summarises the change per visit over knees
(SRM with CIs; also by baseline KL grade, from the catalog's ``XRKL``) and writes the files
of :mod:`~kneescope.capabilities.longitudinal.outputs` into ``RUN/cohort/longitudinal/``.
Its values in ``cohort_results.json``: counts, the flagged knee-visits with their reasons,
and the headline summaries (:data:`~.service.HEADLINE`).

Months since baseline come from a ``months`` column of the table, else the visits' dates in
the catalog (where the catalog view offers them), else the OAI visit codes
(:mod:`~kneescope.capabilities.longitudinal.change`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from kneescope.capabilities.longitudinal.config import LongitudinalConfig
from kneescope.cohort.cohort_steps import CohortContext, CohortStepResult
from kneescope.config import validate_config

if TYPE_CHECKING:
    import pandas as pd

    from kneescope.biomarkers.change import PrecisionTable
    from kneescope.catalog.view import CatalogView


class Longitudinal:
    """Cohort step ``longitudinal`` (options: :class:`~.config.LongitudinalConfig`)."""

    name: ClassVar[str] = "longitudinal"
    version: ClassVar[str] = "1"

    def __init__(self, **options: Any) -> None:
        self.config = validate_config(LongitudinalConfig, options, "longitudinal options")

    def setup(self) -> None:
        """Nothing to prepare (the precision table is read in :meth:`run`)."""

    def precision(self, run_dir: Path) -> PrecisionTable:
        """The precision table: the ``precision`` option (relative to the workspace) or the
        shipped one."""
        from kneescope.biomarkers.change import PrecisionTable, shipped_precision

        if self.config.precision is None:
            return shipped_precision()
        path = Path(self.config.precision)
        if not path.is_absolute():  # WS/runs/<run>/ -> WS/
            path = run_dir.parent.parent / path
        return PrecisionTable.read(path)

    def run(self, results: pd.DataFrame, context: CohortContext) -> CohortStepResult:
        """Analyse the run's results (see the module) and write the files."""
        from kneescope.capabilities.longitudinal.outputs import write_outputs
        from kneescope.capabilities.longitudinal.service import HEADLINE, analyse, catalog_klg

        catalog = context.catalog
        result = analyse(
            results,
            self.config,
            self.precision(context.run_dir),
            klg=catalog_klg(catalog, self.config.klg_variable),
            dates=visit_dates(catalog),
        )
        files = write_outputs(result, context.write_output)
        return CohortStepResult(values=result.values(HEADLINE), files=files)


def visit_dates(catalog: CatalogView | None) -> dict[tuple[str, str], str | None]:
    """(subject, visit) -> the visit's date (``YYYYMMDD``) from the catalog, where its view
    offers ``visit_dates()`` (rows with subject, visit, study_date); {} otherwise."""
    getter = getattr(catalog, "visit_dates", None)
    if getter is None:
        return {}
    return {
        (str(r["subject"]), str(r["visit"])): (str(r["study_date"]) if r["study_date"] else None)
        for r in getter()
    }
