"""``kneescope train --nproc N``: the same training command as N data-parallel processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from kneescope.cli.app import main

CONFIG = """\
task = "classification"
name = "bars"
iterations = 4
batch_size = 8
lr = 0.003
precision = "fp32"
threads = 1
validate_every = 100
[data]
source = "synthetic"
train = 40
validation = 16
"""


def _kneescope(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kneescope", *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow  # default suite time; its logic is covered by faster tests
def test_nproc_2_trains_like_one_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bars.toml"
    config.write_text(CONFIG)
    threads = torch.get_num_threads()
    try:
        assert main(["train", "-c", str(config), "-w", str(tmp_path / "one"), "--json"]) == 0
    finally:
        torch.set_num_threads(threads)
    one: dict[str, Any] = json.loads(capsys.readouterr().out)
    proc = _kneescope(
        "train", "-c", str(config), "-w", str(tmp_path / "two"), "--nproc", "2", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    two: dict[str, Any] = json.loads(proc.stdout)  # rank 0's report only
    assert two["model"] == str(tmp_path / "two" / "models" / "bars.pt")
    assert Path(two["model"]).is_file()
    assert two["iterations_run"] == one["iterations_run"] == 4
    assert two["final_loss"] == pytest.approx(one["final_loss"], rel=1e-5)
    assert two["validation"]["confusion"] == one["validation"]["confusion"]


def test_a_batch_that_does_not_split_is_refused_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bars.toml"
    config.write_text(CONFIG)
    code = main(["train", "-c", str(config), "-w", str(tmp_path / "ws"), "--nproc", "3"])
    assert code == 2
    err = capsys.readouterr().err
    assert err == (
        "error: batch_size 8 does not split evenly over --nproc 3 processes; "
        "use a batch_size that is a multiple of 3\n"
    )
    assert not (tmp_path / "ws" / "runs").exists()


def test_nproc_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bars.toml"
    config.write_text(CONFIG)
    assert main(["train", "-c", str(config), "--nproc", "0"]) == 2
    assert capsys.readouterr().err == (
        "error: --nproc: Input should be greater than or equal to 1; see `kneescope train --help`\n"
    )
