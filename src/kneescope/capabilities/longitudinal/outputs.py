"""The files of a longitudinal analysis (the step's ``RUN/cohort/longitudinal/``):

* ``longitudinal_changes.parquet``: one row per knee x visit x biomarker
  (:data:`~.change.CHANGE_COLUMNS`: value, baseline value, change in the biomarker's unit and
  in %, months since baseline and their source, annualised rate per year, SDC95 and whether
  the change exceeds it, the knee's baseline KL grade, item QC, longitudinal QC flag);
* ``longitudinal_summary.csv``: one row per biomarker x follow-up visit x group (all knees,
  then by baseline KL grade): n, mean change with 95 % CI, SD, SRM with 95 % CI, mean %
  change, mean annualised rate, share of knees increasing and beyond the SDC95
  (:data:`~.change.SUMMARY_COLUMNS`);
* ``longitudinal_qc.csv``: one row per flag of the longitudinal QC (:data:`~.qc.QC_COLUMNS`),
  the reason in words;
* ``longitudinal_change.png`` (when there is a follow-up): mean change with its 95 % CI
  against months, per headline biomarker (:data:`~.service.HEADLINE`, else the first ones)
  and group (:mod:`~.figures`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from kneescope.capabilities.longitudinal.change import CHANGE_COLUMNS, SUMMARY_COLUMNS
from kneescope.capabilities.longitudinal.qc import QC_COLUMNS
from kneescope.capabilities.longitudinal.service import HEADLINE, LongitudinalResult

CHANGES_FILE = "longitudinal_changes.parquet"
SUMMARY_FILE = "longitudinal_summary.csv"
QC_FILE = "longitudinal_qc.csv"
FIGURE_FILE = "longitudinal_change.png"

Writer = Callable[[str, str | bytes | Callable[[Path], object]], str]
"""``write(filename, content)`` -> absolute path (``CohortContext.write_output``)."""


def _records(frame: Any) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def write_outputs(result: LongitudinalResult, write: Writer) -> dict[str, str]:
    """Write the files (see the module), each atomically; returns name -> path."""
    from kneescope.io.csv_table import write_csv_table
    from kneescope.io.parquet_table import TableColumn, write_parquet_table

    columns = [TableColumn(name, kind, unit) for name, kind, unit in CHANGE_COLUMNS]  # type: ignore[arg-type]
    # NaN floats go to Parquet as they are (pandas reads them back as NaN): no per-cell pass
    changes = cast(
        "list[dict[str, Any]]",
        result.changes.loc[:, [c for c, _, _ in CHANGE_COLUMNS]].to_dict("records"),
    )
    summary = _records(result.summary.loc[:, list(SUMMARY_COLUMNS)])
    flags = _records(result.qc.loc[:, list(QC_COLUMNS)])
    files = {
        "changes": write(CHANGES_FILE, lambda tmp: write_parquet_table(tmp, changes, columns)),
        "summary": write(
            SUMMARY_FILE, lambda tmp: write_csv_table(tmp, summary, list(SUMMARY_COLUMNS))
        ),
        "qc": write(QC_FILE, lambda tmp: write_csv_table(tmp, flags, list(QC_COLUMNS))),
    }
    if not result.summary.empty:
        from kneescope.capabilities.longitudinal.figures import (
            figure_biomarkers,
            save_change_figure,
        )

        shown = figure_biomarkers(result.summary, HEADLINE)
        files["figure"] = write(
            FIGURE_FILE, lambda tmp: save_change_figure(result.summary, shown, tmp)
        )
    return files
