"""The radiograph steps in a cohort run: ``locate_knee -> xray_jsw`` over the
knees of a synthetic cohort's bilateral films (catalog unit ``radiograph_knee``), checked
against the cohort's truth table."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kneescope.cli.app import main
from kneescope.cohort.pipeline_config import PipelineConfig
from kneescope.cohort.runner import run_pipeline
from kneescope.workspace import Workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("xray_run") / "ws"
    ws.mkdir()
    synth = ws / "synth"
    assert main(["synth", "-o", str(synth), "-n", "1", "--visits", "V00", "--no-mri"]) == 0
    assert main(["ingest", str(synth), "-w", str(ws), "-j", "1"]) == 0
    return ws


@pytest.mark.slow  # the steps' columns and reasons are covered by faster tests
def test_locate_then_jsw_per_knee_of_each_film(workspace: Path) -> None:
    config = PipelineConfig.model_validate(
        {
            "name": "xray",
            "items": {"catalog": {"visit": "V00"}, "unit": "radiograph_knee"},
            "steps": [{"name": "locate_knee"}, {"name": "xray_jsw"}],
            "output_format": "csv",
        }
    )
    result = run_pipeline(config, Workspace.resolve(workspace))
    assert result.failed == 0 and result.total == 2
    table = pd.read_csv(result.results_path, keep_default_na=False)
    with (workspace / "synth" / "truth" / "xray_truth.csv").open(newline="") as fh:
        truth = {row["Side"]: row for row in csv.DictReader(fh)}
    assert sorted(table["side"]) == ["left", "right"]
    for row in table.itertuples():
        t = truth[row.side]
        assert row.knee_side == row.side and bool(row.knee_found) and bool(row.gradable)
        d = np.subtract(
            (row.knee_centre_row_px, row.knee_centre_col_px),
            (float(t["CentreRow"]), float(t["CentreCol"])),
        )
        assert float(np.hypot(*d)) * float(t["PixelSpacing_mm"]) <= 2.0
        tag = t.get("SpacingTag", "")
        if tag:  # the films say which spacing tag they carry
            assert row.spacing_source == tag
        assert row.jsw_reason == "" and float(row.mjsw_medial_mm) > 0
