"""Steps that break their contract (from the test plug-in distribution): each stops the run
with one line and nothing marked failed, never a crash of the driver or 20 failed items."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from kneescope.cli.app import main
from kneescope.cohort.pipeline_config import StepConfig
from kneescope.cohort.step_registry import build_steps
from kneescope.errors import ConfigError


def _run(tmp_path: Path, steps: list[str]) -> tuple[int, str, Path]:
    """20 small .npy items (S000-V00-R ...) through ``steps`` (TOML tables) with kneescope run."""
    data = tmp_path / "data"
    data.mkdir()
    lines = ["item_id,path"]
    for i in range(20):
        np.save(data / f"v{i}.npy", np.full((3, 4, 5), float(i), dtype=np.float32))
        lines.append(f"S{i:03d}-V00-R,v{i}.npy")
    (data / "items.csv").write_text("\n".join(lines) + "\n")
    config = tmp_path / "run.toml"
    tables = "".join(f"\n[[steps]]\n{step}\n" for step in steps)
    config.write_text(f'name = "contract"\n[items]\nlist = "data/items.csv"\n{tables}')
    ws = tmp_path / "ws"
    code = main(["-q", "run", "-w", str(ws), "-c", str(config)])
    return code, str(ws / "runs" / "contract"), ws / "runs" / "contract" / "manifest.sqlite"


def _states(manifest: Path) -> dict[str, int]:
    with sqlite3.connect(manifest) as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM items GROUP BY state").fetchall())


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("numpy", "returned numpy.float32 3.0 for column 'size_mm', declared float; convert"),
        ("none", "returned NoneType, not a StepResult"),
    ],
)
def test_a_result_the_driver_cannot_store_stops_the_run_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str, message: str
) -> None:
    code, run_dir, manifest = _run(
        tmp_path, [f'name = "test_misdeclared"\noptions = {{ mode = "{mode}" }}']
    )
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and message in err and f"{run_dir}/run.log" in err
    assert _states(manifest) == {"pending": 20}


def test_a_multi_line_exception_is_one_line_and_the_log_has_it_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a bug on the 8th item only: the first seven are done, nothing failed, the rest pending
    code, run_dir, manifest = _run(
        tmp_path,
        ['name = "load_array"', 'name = "test_buggy"\noptions = { item_ids = ["S007-V00-R"] }'],
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "item S007-V00-R: test_buggy: ZeroDivisionError" in err
    assert _states(manifest) == {"done": 7, "pending": 13}
    assert "Traceback" in Path(run_dir, "run.log").read_text()


def test_a_registered_class_without_declarations_is_refused_when_the_pipeline_is_built() -> None:
    with pytest.raises(ConfigError, match=r"missing: capability, results.*BaseStep"):
        build_steps([StepConfig(name="test_undeclared")])
