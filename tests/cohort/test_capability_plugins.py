"""Capabilities plug in: a capability from an installed distribution (tests/plugin_pkg) runs
through ``kneescope run`` with no edit to kneescope, its values checked against its declared
columns and stored with their units; a bug in a step stops the run (traceback in RUN/run.log,
nothing marked failed) while bad input still fails only its item."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cohort_helpers import pipeline, write_cohort, write_toml_config

from kneescope.cli.app import main
from kneescope.cohort.pipeline_config import ExecutorConfig, StepConfig
from kneescope.cohort.runner import run_pipeline
from kneescope.cohort.step_registry import build_steps, declared_columns, registered_steps
from kneescope.core import Volume
from kneescope.errors import ConfigError, RunError
from kneescope.io import write_nifti
from kneescope.workspace import Workspace

SPACING_MM = (0.5, 1.0, 2.0)


def _label_maps(folder: Path, n: int) -> dict[str, int]:
    """``n`` label maps with a block of label 2 of known size; an items.csv. Returns the true
    voxel count of label 2 per item id (voxel volume 1 mm3)."""
    folder.mkdir(parents=True, exist_ok=True)
    truth: dict[str, int] = {}
    lines = ["item_id,subject,visit,side,series,path"]
    for i in range(n):
        labels = np.zeros((10, 12, 8), dtype=np.uint8)
        labels[1:3, 2:5, 1 : 2 + i] = 2  # 2 x 3 x (1 + i) voxels
        labels[6:9, 6:9, 5:7] = 1
        path = write_nifti(
            Volume(labels, np.diag([*SPACING_MM, 1.0])), folder / f"labels{i}.nii.gz"
        )
        item_id = f"S{i:03d}-V00-R"
        truth[item_id] = 6 * (1 + i)
        lines.append(f"{item_id},S{i:03d},V00,right,DESS-{i},{path.name}")
    (folder / "items.csv").write_text("\n".join(lines) + "\n")
    return truth


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _states(run_dir: Path) -> dict[str, int]:
    with sqlite3.connect(run_dir / "manifest.sqlite") as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM items GROUP BY state").fetchall())


def test_a_plugged_in_capability_runs_through_kneescope_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert registered_steps()["label_volume"].value.startswith("kneescope_test_steps.")
    truth = _label_maps(tmp_path / "data", 3)
    config = write_toml_config(
        tmp_path / "run.toml",
        "volumes",
        tmp_path / "data" / "items.csv",
        ExecutorConfig(),
        [("load_labels", {}), ("label_volume", {"label": 2})],
    )
    ws = tmp_path / "ws"
    assert main(["-q", "run", "-w", str(ws), "-c", str(config)]) == 0
    table = pd.read_parquet(ws / "runs" / "volumes" / "results.parquet")
    assert dict(zip(table["item_id"], table["label_voxels"], strict=True)) == truth
    np.testing.assert_allclose(
        table["label_volume_mm3"], table["label_voxels"] * float(np.prod(SPACING_MM))
    )
    # stored in the catalog under the plug-in's capability, with the declared units
    out = tmp_path / "values.csv"
    assert main(["results", "-w", str(ws), "--run", "volumes", "-o", str(out)]) == 0
    capsys.readouterr()
    values = pd.read_csv(out)
    mine = values[values["capability"] == "label_volume"]
    assert dict(zip(mine["name"], mine["unit"], strict=False)) == {
        "label_voxels": "1",
        "label_volume_mm3": "mm3",
    }
    assert len(mine) == 2 * len(truth)


def test_a_bug_in_a_step_stops_the_run_with_the_traceback_in_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_cohort(tmp_path / "data", 24)
    config = write_toml_config(
        tmp_path / "run.toml",
        "buggy",
        tmp_path / "data" / "items.csv",
        ExecutorConfig(),
        [("load_array", {}), ("test_buggy", {})],
    )
    ws = tmp_path / "ws"
    code = main(["-q", "run", "-w", str(ws), "-c", str(config)])
    line = _one_line(capsys.readouterr().err)
    assert code == 1
    run_dir = ws / "runs" / "buggy"
    assert "test_buggy" in line and "ZeroDivisionError" in line
    assert str(run_dir / "run.log") in line
    # the run stopped at the first item: nothing failed, nothing ran after it
    assert _states(run_dir) == {"pending": 24}
    log = (run_dir / "run.log").read_text()
    assert "Traceback (most recent call last)" in log
    assert "1.0 / _zero()" in log and "ZeroDivisionError: float division by zero" in log


def test_bad_input_still_fails_only_its_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = write_cohort(tmp_path / "data", 21, corrupt=(4, 17))
    config = pipeline("inputs", tmp_path / "data", ExecutorConfig())
    result = run_pipeline(config, Workspace.resolve(tmp_path / "ws"))
    assert (result.done, result.failed) == (19, 2)
    table = pd.read_parquet(result.results_path)
    assert dict(zip(table["item_id"], table["mean"], strict=True)) == truth


def test_a_bug_on_dask_workers_stops_the_run_and_returns_items_to_pending(
    tmp_path: Path,
) -> None:
    write_cohort(tmp_path / "data", 24)
    steps = [
        {"name": "load_array"},
        {"name": "sleep", "options": {"seconds": 0.05}},
        {"name": "test_buggy", "options": {"item_ids": ["S005-V00-R"]}},
    ]
    executor = ExecutorConfig(kind="dask", workers=2, threads_per_worker=1)
    config = pipeline("dask-bug", tmp_path / "data", executor, steps=steps)
    with pytest.raises(RunError, match="S005-V00-R: test_buggy: ZeroDivisionError") as info:
        run_pipeline(config, Workspace.resolve(tmp_path / "ws"))
    run_dir = tmp_path / "ws" / "runs" / "dask-bug"
    assert str(run_dir / "run.log") in str(info.value)
    states = _states(run_dir)
    assert "failed" not in states and "running" not in states
    assert states.get("done", 0) < 24 and states["pending"] >= 1
    assert "ZeroDivisionError: float division by zero" in (run_dir / "run.log").read_text()


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("undeclared", "returned column 'size_cm', which it does not declare"),
        ("kind", "returned str '3 mm' for column 'size_mm', declared float"),
    ],
)
def test_a_value_the_step_does_not_declare_is_a_bug(
    tmp_path: Path, mode: str, message: str
) -> None:
    write_cohort(tmp_path / "data", 3)
    steps = [{"name": "test_misdeclared", "options": {"mode": mode}}]
    config = pipeline("declared", tmp_path / "data", ExecutorConfig(), steps=steps)
    with pytest.raises(RunError, match=message):
        run_pipeline(config, Workspace.resolve(tmp_path / "ws"))
    assert _states(tmp_path / "ws" / "runs" / "declared") == {"pending": 3}


def test_steps_declare_their_columns_once_per_pipeline() -> None:
    twice = [
        StepConfig(name="load_labels"),
        StepConfig(name="label_volume", options={"label": 1}),
        StepConfig(name="label_volume", options={"label": 2}),
    ]
    with pytest.raises(ConfigError, match="both declare the column 'label_voxels'"):
        build_steps(twice)
    units = {c.name: c.unit for c in declared_columns(StepConfig(name="measure"))}
    assert units["femoral_cartilage_thickness_mean_mm"] == "mm"
    assert units["medial_tibial_coverage_pct"] == "%"
    assert units["patellar_cartilage_volume_mm3"] == "mm3"


def test_steps_that_cannot_be_set_up_stop_the_run_before_any_item_fails(tmp_path: Path) -> None:
    write_cohort(tmp_path / "data", 3)
    model = tmp_path / "broken.pt"
    model.write_bytes(b"not a model file")
    steps = [{"name": "load_volume"}, {"name": "segment", "options": {"model": str(model)}}]
    config = pipeline("setup", tmp_path / "data", ExecutorConfig(), steps=steps)
    with pytest.raises(RunError, match="the steps could not be set up: ModelError"):
        run_pipeline(config, Workspace.resolve(tmp_path / "ws"))
    assert _states(tmp_path / "ws" / "runs" / "setup") == {"pending": 3}
