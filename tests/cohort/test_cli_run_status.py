"""``kneescope run`` and ``kneescope status`` end to end (real files, real runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cohort_helpers import write_cohort, write_toml_config

from kneescope.cli.app import main
from kneescope.cohort.pipeline_config import ExecutorConfig


def _config(tmp_path: Path, executor: ExecutorConfig | None = None) -> Path:
    truth = write_cohort(tmp_path / "data", 4, corrupt=(3,))
    assert len(truth) == 3
    return write_toml_config(
        tmp_path / "run.toml",
        "cli",
        tmp_path / "data" / "items.csv",
        executor or ExecutorConfig(),
        [("load_array", {}), ("array_stats", {})],
    )


def test_run_json_then_status_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    ws = str(tmp_path / "ws")
    assert main(["run", "-w", ws, "--config", str(config), "--json"]) == 1  # one item failed
    out = json.loads(capsys.readouterr().out)
    assert (out["done"], out["failed"], out["ran"]) == (3, 1, 4)
    assert set(out["mean_phase_s"]) >= {"read", "measure"}
    assert "InputError" in out["failures"][0]["reason"]
    assert len(pd.read_parquet(out["results"])) == 3

    assert main(["status", "-w", ws, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["name"] == "cli" and status["state"] == "finished"
    assert status["counts"] == {"pending": 0, "running": 0, "done": 3, "failed": 1}
    assert status["throughput_per_h"] > 0

    assert main(["run", "-w", ws, "--config", str(config), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert (plan["done"], plan["retry"], plan["to_run"], plan["new"]) == (3, 1, 1, 0)


def test_run_and_status_render_for_people(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    ws = str(tmp_path / "ws")
    main(["run", "-w", ws, "--config", str(config)])
    out = capsys.readouterr().out
    assert "3 done, 1 failed" in out and "step array_stats" in out and "results:" in out
    assert main(["status", "-w", ws, "--run", "cli"]) == 0
    assert "failed S003-V00-R" in capsys.readouterr().out


def test_dry_run_prints_the_slurm_job_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, ExecutorConfig(kind="slurm", queue="debug", account="proj"))
    code = main(["run", "-w", str(tmp_path / "ws"), "--config", str(config), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert "#SBATCH -p debug" in out and "#SBATCH -A proj" in out and "4 to run" in out
    assert not (tmp_path / "ws" / "runs" / "cli").exists()  # nothing ran, nothing written


def test_bad_input_is_one_line_and_an_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "-w", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: no runs in") and err.count("\n") == 1
    assert main(["run", "-w", str(tmp_path), "--config", str(tmp_path / "none.toml")]) == 2
    assert (
        main(
            [
                "run",
                "-w",
                str(tmp_path),
                "--config",
                str(_config(tmp_path)),
                "--executor",
                "kubernetes",
            ]
        )
        == 2
    )
    assert "--executor 'kubernetes' is not one of" in capsys.readouterr().err
