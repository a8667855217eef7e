"""`--executor slurm/pbs` without dask-jobqueue names the extra to install."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from kneescope.cli.app import main


def _config(tmp_path: Path) -> Path:
    np.save(tmp_path / "a.npy", np.zeros((4, 5, 6), dtype=np.float32))
    config = tmp_path / "run.toml"
    config.write_text(
        'name = "cluster"\n[items]\nglob = "*.npy"\n'
        '[[steps]]\nname = "load_array"\n[[steps]]\nname = "array_stats"\n'
        '[executor]\nkind = "local"\n'
    )
    return config


@pytest.mark.parametrize("executor", ["slurm", "pbs"])
@pytest.mark.parametrize("dry_run", [True, False])
def test_missing_dask_jobqueue_names_the_extra(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    executor: str,
    dry_run: bool,
) -> None:
    # dask-jobqueue is installed in the dev environment; make it absent (import fails) as in a
    # plain `pip install kneescope`.
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    argv = ["run", "-c", str(_config(tmp_path)), "--executor", executor]
    argv += ["-w", str(tmp_path / "ws"), *(["--dry-run"] if dry_run else [])]
    assert main(argv) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "dask-jobqueue" in lines[0] and "pip install 'kneescope[cluster]'" in lines[0]
