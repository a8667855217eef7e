"""``kneescope train`` with wrong or partial rank variables: one line and an exit code, never
a torch traceback and never a wait without end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.distributed as dist

from kneescope.cli.app import main

CONFIG = """\
task = "classification"
name = "bars"
iterations = 2
batch_size = 4
threads = 1
[data]
source = "synthetic"
train = 8
validation = 4
"""

_RANK_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_STEP_NUM_TASKS",
    "SLURM_STEP_ID",
    "SLURM_LOCALID",
    "KNEESCOPE_DIST_TIMEOUT_S",
)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in _RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "bars.toml"
    path.write_text(CONFIG)
    return path


def _train(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["train", "-c", str(config), "-w", str(config.parent / "ws"), "--json"])
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing trained, no report
    return code, captured.err.splitlines()


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"RANK": "3", "WORLD_SIZE": "2"}, "rank 3 of world size 2"),
        ({"RANK": "1"}, "only one of RANK and WORLD_SIZE is set"),
        ({"RANK": "0", "WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a whole number"),
        (
            {"SLURM_PROCID": "0", "SLURM_NTASKS": "2"},
            "this Slurm job has 2 tasks but kneescope was started once, not by srun",
        ),
        (
            {"RANK": "0", "WORLD_SIZE": "2", "KNEESCOPE_DIST_TIMEOUT_S": "soon"},
            "KNEESCOPE_DIST_TIMEOUT_S='soon' is not a positive number of seconds",
        ),
    ],
)
def test_inconsistent_rank_variables_are_one_line(
    config: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    says: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, err = _train(config, capsys)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0]


def test_a_rank_whose_peers_never_come_stops_with_one_line(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kneescope.training.launch import free_port

    port = free_port()
    env = {"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": str(port)}
    for name, value in {**env, "KNEESCOPE_DIST_TIMEOUT_S": "2"}.items():
        monkeypatch.setenv(name, value)
    code, err = _train(config, capsys)
    assert code == 1
    assert len(err) == 1
    assert err[0].startswith(f"error: rank 0 of 2 could not join the others at 127.0.0.1:{port}")
    assert err[0].endswith("check MASTER_ADDR and MASTER_PORT")
    assert not dist.is_initialized()
