"""Data-parallel training: 2 ranks (gloo, CPU) follow the 1-rank loss curve at the same global
batch; the launcher stops every rank when one fails and says which in one line; the rank
variables of torchrun-style launchers and Slurm are read correctly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import distributed_helpers
import pytest
import torch

from kneescope.errors import ConfigError, InputError
from kneescope.training.distributed import World, first_host, ranks_from_env
from kneescope.training.launch import launch_local, rank_env, srun_command

HELPER = Path(__file__).with_name("distributed_helpers.py")
OPTIONS = ("batch_size=8", "lr=0.01", "checkpoint_every=3", "threads=1")


def _train(tmp_path: Path, name: str, nproc: int, *options: str) -> dict[str, Any]:
    """Train TinyTask on ``nproc`` ranks (processes) and return rank 0's JSON report."""
    out = tmp_path / f"{name}.json"
    args = [str(HELPER), str(tmp_path / name), str(out), *options]
    code = launch_local(args, nproc, program=[sys.executable], threads=1)
    assert code == 0
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _train_here(tmp_path: Path, name: str, *options: str) -> dict[str, Any]:
    """The same on one rank in this process (torch's thread count restored after)."""
    threads = torch.get_num_threads()
    out = tmp_path / f"{name}.json"
    try:
        assert distributed_helpers.main([str(tmp_path / name), str(out), *options]) == 0
    finally:
        torch.set_num_threads(threads)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.mark.slow  # default suite time; its logic is covered by faster tests
def test_two_ranks_follow_the_one_rank_loss_curve(tmp_path: Path) -> None:
    one = _train_here(tmp_path, "one", "iterations=6", *OPTIONS)
    # two ranks, stopped after 3 iterations and resumed from rank 0's checkpoint
    first = _train(tmp_path, "two", 2, "iterations=6", "stop_after=3", *OPTIONS)
    assert first["iterations_run"] == 3 and first["model"] is None
    assert (tmp_path / "two" / "checkpoint.pt").is_file()
    two = _train(tmp_path, "two", 2, "iterations=6", *OPTIONS, f"model={tmp_path / 'm.pt'}")
    assert (one["world_size"], two["world_size"], two["backend"]) == (1, 2, "gloo")
    assert (two["resumed_from"], two["iterations_run"]) == (3, 3)
    assert len(one["losses"]) == len(two["losses"]) == 6
    # same samples, same gradients, up to float32 summation order
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-5, abs=1e-6)
    assert one["losses"][-1] < one["losses"][0]  # it trained
    assert two["score"] == one["score"]
    assert two["model"] == str(tmp_path / "m.pt") and (tmp_path / "m.pt").is_file()


def test_a_different_global_batch_changes_the_curve(tmp_path: Path) -> None:
    """The equality above is not vacuous: another global batch gives another curve."""
    eight = _train_here(tmp_path, "eight", "iterations=3", *OPTIONS)
    sixteen = _train_here(tmp_path, "sixteen", "iterations=3", *OPTIONS, "batch_size=16")
    assert sixteen["losses"] != pytest.approx(eight["losses"], rel=1e-5, abs=1e-6)


_RANK_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from kneescope.training.distributed import world_from_env, all_reduce_mean
    world = world_from_env()
    all_reduce_mean(1.0, world)  # both ranks are up
    Path(sys.argv[1], f"rank{world.rank}.pid").write_text(str(os.getpid()))
    if world.rank == 1:
        sys.stderr.write("error: rank one cannot read its data; check the data folder\\n")
        sys.exit(2)
    time.sleep(300)  # rank 0 would wait here for minutes unless the launcher stops it
    """
)


def test_a_failing_rank_stops_the_others_with_one_line(tmp_path: Path) -> None:
    script = tmp_path / "rank.py"
    script.write_text(_RANK_SCRIPT)
    launcher = (
        "import sys; from kneescope.training.launch import launch_local; "
        f"sys.exit(launch_local([{str(tmp_path)!r}], 2, program=[sys.executable, {str(script)!r}]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", launcher], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: rank 1 of 2: rank one cannot read its data; check the data folder"
    ]
    rank0 = int((tmp_path / "rank0.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(rank0, 0)  # rank 0 was stopped (and reaped by the launcher)


def test_rank_variables_from_torchrun_style_and_slurm() -> None:
    assert ranks_from_env({}) == (0, 1, 0, "", 0)
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.5"}
    assert ranks_from_env({**env, "MASTER_PORT": "1234"}) == (1, 2, 1, "10.0.0.5", 1234)
    slurm = {
        "SLURM_PROCID": "3",
        "SLURM_NTASKS": "4",
        "SLURM_STEP_NUM_TASKS": "4",
        "SLURM_LOCALID": "1",
        "SLURM_STEP_ID": "0",
        "SLURM_JOB_ID": "77",
        "SLURM_STEP_NODELIST": "gpu[07-08]",
    }
    rank, size, local, addr, port = ranks_from_env(slurm)
    assert (rank, size, local, addr) == (3, 4, 1, "gpu07")
    assert 20000 <= port < 40000
    assert ranks_from_env({**slurm, "SLURM_PROCID": "0"})[4] == port  # same on every rank
    assert ranks_from_env({**slurm, "MASTER_ADDR": "h", "MASTER_PORT": "9"})[3:] == ("h", 9)
    # a one-task Slurm job is not distributed
    assert ranks_from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == (0, 1, 0, "", 0)


@pytest.mark.parametrize(
    "env",
    [
        {"RANK": "2", "WORLD_SIZE": "2"},  # rank outside [0, size)
        {"RANK": "0"},  # WORLD_SIZE missing
        {"RANK": "zero", "WORLD_SIZE": "2"},
        # a 2-task allocation entered once, without srun: would wait forever for rank 1
        {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_ID": "5"},
    ],
)
def test_inconsistent_rank_variables_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(InputError):
        ranks_from_env(env)


def test_slurm_node_lists_and_launch_commands() -> None:
    assert first_host("node[03-05,9],gpu1") == "node03"
    assert first_host("knee") == "knee"
    assert first_host("a-1,b-2") == "a-1"
    cmd = srun_command(["train", "-c", "t.toml"], 2, ["--cpus-per-task=1"])
    assert cmd[:4] == ["srun", "--ntasks=2", "--kill-on-bad-exit=1", "--cpus-per-task=1"]
    assert cmd[-4:] == ["kneescope", "train", "-c", "t.toml"]
    env = rank_env({"SLURM_PROCID": "5", "PATH": "/bin"}, 1, 2, 4242, threads=1)
    assert env["RANK"] == "1" and env["WORLD_SIZE"] == "2" and env["MASTER_PORT"] == "4242"
    assert env["OMP_NUM_THREADS"] == "1" and "SLURM_PROCID" not in env


def test_global_batch_slices() -> None:
    assert [World(rank=r, size=2).shard(8) for r in range(2)] == [(0, 4), (4, 8)]
    with pytest.raises(ConfigError, match="multiple of 3"):
        World(rank=0, size=3).shard(8)
