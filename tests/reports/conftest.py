"""Fixtures of the report tests: one small finished run with known truth, built once per
test session (:mod:`report_run_builder`)."""

from __future__ import annotations

import pytest
from report_run_builder import ReportRun, build_report_run


@pytest.fixture(scope="session")
def report_run(tmp_path_factory: pytest.TempPathFactory) -> ReportRun:
    """A finished ``load_labels -> measure`` run of 4 toy knee-visits (one QC-flagged, one
    with a hostile series description; see :mod:`report_run_builder`). Read-only."""
    return build_report_run(tmp_path_factory)
