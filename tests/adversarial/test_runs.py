"""Attacks on cohort runs: a run named ``..``, a damaged manifest,
a dry run naming ``subprocess:Popen``, outputs deleted or corrupted after a run, and two
records of one item in the results table. Real files, real SQLite, the real CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kneescope.cli.app import main


def _cohort(folder: Path, n: int = 3) -> dict[str, float]:
    """``n`` .npy volumes (value 10 * i + 0.5) and items.csv; returns the mean per item."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["item_id,subject,visit,side,series,path"]
    truth = {}
    for i in range(n):
        np.save(folder / f"v{i}.npy", np.full((4, 5, 6), 10.0 * i + 0.5, dtype=np.float32))
        lines.append(f"S{i}-V00,S{i},V00,right,DESS-{i},v{i}.npy")
        truth[f"S{i}-V00"] = 10.0 * i + 0.5
    (folder / "items.csv").write_text("\n".join(lines) + "\n")
    return truth


def _config(folder: Path, name: str, steps: str, items: str = 'list = "data/items.csv"') -> Path:
    path = folder / f"{name.strip('.').replace('/', '_') or 'dots'}.toml"
    path.write_text(f'name = "{name}"\noutput_format = "csv"\n[items]\n{items}\n{steps}')
    return path


STATS_STEPS = (
    '[[steps]]\nname = "load_array"\n'
    '[[steps]]\nname = "array_stats"\noptions = { write_json = true }\n'
)


def _one_error_line(err: str) -> str:
    """The one line a failed command writes to stderr (no traceback, no empty lines)."""
    assert "Traceback" not in err
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    return err.rstrip("\n")


def test_a_run_named_dotdot_writes_nothing_outside_its_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _cohort(tmp_path / "data")
    ws = tmp_path / "ws"
    for name in ("..", ".", ".hidden", "a/b"):
        config = _config(tmp_path, name, STATS_STEPS)
        assert main(["run", "-w", str(ws), "-c", str(config)]) == 2, name
        assert "not a run name" in _one_error_line(capsys.readouterr().err)
    assert not (ws / "manifest.sqlite").exists()
    assert not (ws / "runs" / "manifest.sqlite").exists()
    assert main(["status", "-w", str(ws), "--run", ".."]) == 2
    assert "not a run name" in _one_error_line(capsys.readouterr().err)


def test_a_damaged_manifest_is_one_line_saying_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _cohort(tmp_path / "data")
    ws = str(tmp_path / "ws")
    config = _config(tmp_path, "r1", STATS_STEPS)
    assert main(["run", "-w", ws, "-c", str(config), "--json"]) == 0
    capsys.readouterr()
    manifest = tmp_path / "ws" / "runs" / "r1" / "manifest.sqlite"
    for leftover in manifest.parent.glob("manifest.sqlite-*"):
        leftover.unlink()
    manifest.write_bytes(b"not a database, just garbage " * 200)
    for argv in (
        ["status", "-w", ws],
        ["status", "-w", ws, "--run", "r1", "--json"],
        ["run", "-w", ws, "-c", str(config), "--dry-run"],
        ["run", "-w", ws, "-c", str(config)],
    ):
        assert main(argv) == 1, argv
        line = _one_error_line(capsys.readouterr().err)
        assert str(manifest) in line and "move it aside" in line, line
    # Doing what it says works: the run is rebuilt from its inputs.
    manifest.rename(manifest.with_name("damaged.sqlite"))
    assert main(["run", "-w", ws, "-c", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["done"] == 3


def test_a_dry_run_imports_and_builds_no_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _cohort(tmp_path / "data")
    ws = str(tmp_path / "ws")
    pwned = tmp_path / "PWNED"
    popen = f'[[steps]]\nname = "subprocess:Popen"\noptions = {{ args = ["touch", "{pwned}"] }}\n'
    config = _config(tmp_path, "evil", popen)
    for argv in (["--dry-run"], []):
        assert main(["run", "-w", ws, "-c", str(config), *argv]) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert "unknown step 'subprocess:Popen'" in line and "kneescope.steps" in line
        assert not pwned.exists()
    # A registered step is not instantiated by a dry run either (it marks when built).
    marks = '[[steps]]\nname = "test_marks_on_init"\noptions = { marker = "built.txt" }\n'
    config = _config(tmp_path, "marks", marks)
    assert main(["run", "-w", ws, "-c", str(config), "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["plan"]["to_run"] == 3
    assert not (tmp_path / "built.txt").exists()
    assert main(["run", "-w", ws, "-c", str(config), "--json"]) == 0
    assert (tmp_path / "built.txt").exists()  # the real run does build it


def test_deleted_or_corrupted_outputs_do_not_count_as_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = _cohort(tmp_path / "data", 4)
    ws = str(tmp_path / "ws")
    config = _config(tmp_path, "out", STATS_STEPS)
    assert main(["run", "-w", ws, "-c", str(config), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    table = pd.read_csv(first["results"]).set_index("item_id")
    files = table["file_array_stats_stats"]
    original = {k: Path(v).read_bytes() for k, v in files.items()}

    Path(files["S0-V00"]).unlink()  # deleted
    same_size = bytearray(original["S1-V00"])  # corrupted, same size, new mtime
    same_size[3] ^= 0x01
    written_ns = os.stat(files["S1-V00"]).st_mtime_ns
    Path(files["S1-V00"]).write_bytes(bytes(same_size))
    os.utime(files["S1-V00"], ns=(written_ns + 10**9, written_ns + 10**9))
    Path(files["S2-V00"]).write_text("{}")  # truncated
    os.utime(files["S3-V00"], ns=(1, 1))  # only touched: content intact

    assert main(["run", "-w", ws, "-c", str(config), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert (plan["changed"], plan["done"], plan["to_run"]) == (3, 1, 3)

    assert main(["run", "-w", ws, "-c", str(config), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["ran"], again["done"]) == (3, 4)
    table = pd.read_csv(again["results"]).set_index("item_id")
    for item_id, mean in truth.items():
        path = Path(table.loc[item_id, "file_array_stats_stats"])
        assert path.read_bytes() == original[item_id]
        assert json.loads(path.read_text())["mean"] == pytest.approx(mean)
    assert main(["run", "-w", ws, "-c", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ran"] == 0


def test_a_results_table_never_holds_two_rows_for_one_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same knee-visit series listed twice under two item ids (as a copied workspace
    re-ingested under new ids produced): one row, from the latest finished record."""
    data = tmp_path / "data"
    _cohort(data, 2)
    copy = tmp_path / "copy"
    copy.mkdir()
    rows = (data / "items.csv").read_text().splitlines()
    for i in range(2):
        (copy / f"v{i}.npy").write_bytes((data / f"v{i}.npy").read_bytes())
        rows.append(f"S{i}-V00-again,S{i},V00,right,DESS-{i},../copy/v{i}.npy")
    (data / "items.csv").write_text("\n".join(rows) + "\n")
    ws = str(tmp_path / "ws")
    config = _config(tmp_path, "dup", STATS_STEPS)
    assert main(["run", "-w", ws, "-c", str(config), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["done"] == 4  # four records in the manifest ...
    table = pd.read_csv(out["results"])
    assert len(table) == 2  # ... one row per knee-visit series
    assert not table.duplicated(["subject", "visit", "side", "series"]).any()
    assert sorted(table["item_id"]) == ["S0-V00-again", "S1-V00-again"]  # the later records


def test_a_rerun_of_items_with_nan_results_and_output_files_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Results holding NaN (an unmeasurable biomarker) are stored as JSON with ``NaN``; the
    resume check of output files must still read them (SQLite's json_extract rejects NaN,
    which broke every second `kneescope demo`)."""
    data = tmp_path / "data"
    _cohort(data, 2)
    np.save(data / "v1.npy", np.full((4, 5, 6), np.nan, dtype=np.float32))
    ws = str(tmp_path / "ws")
    config = _config(tmp_path, "nan", STATS_STEPS)
    assert main(["run", "-w", ws, "-c", str(config), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["ran"] == 2
    table = pd.read_csv(first["results"]).set_index("item_id")
    assert np.isnan(table.loc["S1-V00"].filter(like="mean").astype(float)).any()
    assert main(["run", "-w", ws, "-c", str(config), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["ran"], again["done"]) == (0, 2)
