"""Logging: ``-v/--verbose``, ``-q/--quiet`` and ``RUN/run.log`` (every session, every worker).

The runs read one NIfTI file whose JSON sidecar is damaged: the reader logs a warning in the
process that runs the item (the driver for the local executor, a worker process for Dask).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cohort_helpers import write_toml_config

from kneescope.cli.app import main
from kneescope.cohort.pipeline_config import ExecutorConfig
from kneescope.core.volume import Volume
from kneescope.io import write_volume


def _config(tmp_path: Path, executor: ExecutorConfig) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    write_volume(Volume(np.ones((4, 5, 6), np.float32), np.eye(4)), data / "knee.nii.gz")
    (data / "knee.json").write_text("{ not json", encoding="utf-8")
    (data / "items.csv").write_text(
        "item_id,subject,visit,side,series,path\nS1-V00-R,S1,V00,right,DESS,knee.nii.gz\n",
        encoding="utf-8",
    )
    return write_toml_config(
        tmp_path / "run.toml",
        "logged",
        data / "items.csv",
        executor,
        [("load_array", {}), ("array_stats", {})],
    )


def test_run_log_keeps_every_session_and_the_console_follows_v_and_q(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, ExecutorConfig())
    ws = tmp_path / "ws"
    assert main(["-q", "run", "-w", str(ws), "--config", str(config), "--json"]) == 0
    err = capsys.readouterr().err
    assert "knee.json" not in err  # -q: no warnings on the console
    log = ws / "runs" / "logged" / "run.log"
    text = log.read_text(encoding="utf-8")
    assert (
        "WARNING" in text
        and "ignoring" in text
        and "knee.json" in text
        and "not readable JSON" in text
    )
    assert text.count("session started") == 1 and "session ended" in text
    assert "run logged: 1 done, 0 failed" in text  # the runner's INFO summary, whatever -q says

    # a second session (changed input, so the item runs again) appends; default console
    # level shows the warning as one line
    (tmp_path / "data" / "knee.json").write_text("{ still not json", encoding="utf-8")
    write_volume(
        Volume(np.full((4, 5, 6), 2, np.float32), np.eye(4)), tmp_path / "data" / "knee.nii.gz"
    )
    assert main(["run", "-w", str(ws), "--config", str(config), "--json"]) == 0
    err = capsys.readouterr().err
    assert any(
        line.startswith("warning: ignoring") and "knee.json" in line for line in err.splitlines()
    ), err
    text = log.read_text(encoding="utf-8")
    assert text.count("session started") == 2 and text.count("not readable JSON") == 2

    # -v adds kneescope's progress messages on the console
    assert main(["-v", "run", "-w", str(ws), "--config", str(config), "--json"]) == 0
    err = capsys.readouterr().err
    assert any(line.startswith("info: run logged:") for line in err.splitlines()), err
    assert log.read_text(encoding="utf-8").count("session started") == 3


@pytest.mark.parametrize("kind", ["dask", pytest.param("slurm", marks=pytest.mark.integration)])
def test_dask_workers_messages_reach_the_run_log(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """A warning logged inside a Dask worker process (on this machine, or in a Slurm job) is
    in RUN/run.log: the workers forward it to the driver."""
    from slurm_helpers import cancel_slurm_jobs, slurm_job_name

    job_name = slurm_job_name()
    if kind == "dask":
        executor = ExecutorConfig(kind="dask", workers=1, threads_per_worker=1)
    else:
        request.getfixturevalue("slurm_available")
        executor = ExecutorConfig(
            kind="slurm",
            workers=1,
            cores=1,
            memory="2GB",
            queue="debug",
            walltime="00:10:00",
            host="127.0.0.1",
            worker_timeout_s=90,
            job_name=job_name,
        )
    config = _config(tmp_path, executor)
    ws = tmp_path / "ws"
    try:
        assert main(["-q", "run", "-w", str(ws), "--config", str(config), "--json"]) == 0
    finally:
        if kind == "slurm":
            cancel_slurm_jobs(job_name)
    text = (ws / "runs" / "logged" / "run.log").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if "not readable JSON" in line]
    assert lines, text
    assert "knee.json" in lines[0]


def test_verbose_and_quiet_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-v", "-q", "status"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: give -v/--verbose or -q/--quiet, not both; see `kneescope --help`"]


def test_an_error_escaping_the_run_is_in_its_log_with_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The console gets one line (the CLI's); the run log gets the traceback."""
    from kneescope.cohort.run_log import run_log, write_to_run_log

    def buggy_step() -> float:
        return 1 / 0

    def session() -> None:
        with run_log(tmp_path / "run") as opened:
            assert write_to_run_log("item S1: step 'x' has a bug", ValueError("boom")) == opened
            buggy_step()

    with pytest.raises(ZeroDivisionError):
        session()
    path = tmp_path / "run" / "run.log"
    text = path.read_text(encoding="utf-8")
    assert "item S1: step 'x' has a bug" in text and "ValueError: boom" in text
    assert "Traceback (most recent call last)" in text and "in buggy_step" in text
    assert "ZeroDivisionError: division by zero" in text
    assert capsys.readouterr().err == ""  # nothing of it on the console
    assert write_to_run_log("no run open") is None
