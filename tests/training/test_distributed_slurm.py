"""Data-parallel training under Slurm (one-node cluster from scripts/services.sh): a 2-task
``srun`` step is one world of 2 ranks that trains, checkpoints and resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import distributed_helpers
import pytest
import torch

pytestmark = pytest.mark.integration

HELPER = Path(__file__).with_name("distributed_helpers.py")
OPTIONS = ("iterations=6", "batch_size=8", "lr=0.01", "checkpoint_every=3", "threads=1")


def _srun(tmp_path: Path, job: str, *options: str) -> dict[str, Any]:
    out = tmp_path / "rank0.json"
    out.unlink(missing_ok=True)
    cmd = [
        "srun",
        "--ntasks=2",
        "--cpus-per-task=1",
        "--mem=1500M",
        "--time=10",
        "--kill-on-bad-exit=1",
        f"--job-name={job}",
        sys.executable,
        str(HELPER),
        str(tmp_path / "run"),
        str(out),
        *options,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_a_two_task_slurm_job_trains_and_checkpoints(tmp_path: Path, slurm_available: bool) -> None:
    job = f"kneescope-ddp-{uuid.uuid4().hex[:8]}"
    try:
        first = _srun(tmp_path, job, *OPTIONS, "stop_after=3")
        assert (first["world_size"], first["backend"]) == (2, "gloo")
        assert first["iterations_run"] == 3
        assert (tmp_path / "run" / "checkpoint.pt").is_file()
        model = tmp_path / "tiny.pt"
        second = _srun(tmp_path, job, *OPTIONS, f"model={model}")
    finally:
        subprocess.run(["scancel", "--name", job], check=False, capture_output=True)
    assert (second["resumed_from"], second["iterations_run"]) == (3, 3)
    assert second["model"] == str(model) and model.is_file()
    losses = second["losses"]
    assert len(losses) == 6 and losses[-1] < losses[0]
    # the same curve as one rank in this process
    threads = torch.get_num_threads()
    try:
        distributed_helpers.main([str(tmp_path / "one"), str(tmp_path / "one.json"), *OPTIONS])
    finally:
        torch.set_num_threads(threads)
    one = json.loads((tmp_path / "one.json").read_text())
    assert losses == pytest.approx(one["losses"], rel=1e-5, abs=1e-6)


@pytest.mark.slow  # ~15 s; the 2-task Slurm job above covers training under Slurm
def test_train_launcher_slurm_runs_one_task_per_rank(tmp_path: Path, slurm_available: bool) -> None:
    """``kneescope train --launcher slurm --nproc 2``: srun starts the 2 ranks; rank 0 reports."""
    from test_distributed_cli import CONFIG

    config = tmp_path / "bars.toml"
    config.write_text(CONFIG)
    job = f"kneescope-ddp-{uuid.uuid4().hex[:8]}"
    # srun reads its options from these input variables
    env = {
        **os.environ,
        "SLURM_JOB_NAME": job,
        "SLURM_MEM_PER_NODE": "3000",
        "SLURM_TIMELIMIT": "10",
    }
    ws = tmp_path / "ws"
    args = ["train", "-c", str(config), "-w", str(ws), "--launcher", "slurm", "--nproc", "2"]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "kneescope", *args, "--json"],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            cwd=tmp_path,
        )
    finally:
        subprocess.run(["scancel", "--name", job], check=False, capture_output=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)  # one report: rank 1 prints nothing
    assert report["iterations_run"] == 4
    assert (
        report["model"] == str(ws / "models" / "bars.pt") and (ws / "models" / "bars.pt").is_file()
    )
    assert (ws / "runs" / "train-bars" / "checkpoint.pt").is_file()
