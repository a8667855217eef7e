"""Run results in the catalog under hostile or broken conditions: a catalog that cannot be
written, a password in its URL, formula-like text, bad output paths."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kneescope.cli.app import main


def _run_config(tmp_path: Path, subjects: list[str]) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    lines = ["item_id,subject,visit,side,series,path"]
    for i, subject in enumerate(subjects):
        np.save(data / f"v{i}.npy", np.full((2, 3, 4), i + 1.0, dtype=np.float32))
        lines.append(f"i{i},{subject},V00,right,s{i},v{i}.npy")
    (data / "items.csv").write_text("\n".join(lines) + "\n")
    config = tmp_path / "run.toml"
    config.write_text(
        f'name = "adv"\n[items]\nlist = "{data / "items.csv"}"\n'
        '[[steps]]\nname = "load_array"\n[[steps]]\nname = "array_stats"\n'
        '[executor]\nkind = "local"\n'
    )
    return config


def test_a_catalog_that_cannot_be_written_fails_the_run_after_its_own_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    with sqlite3.connect(ws / "catalog.sqlite") as db:  # another program's database
        db.execute("CREATE TABLE notes (x INTEGER)")
    config = _run_config(tmp_path, ["S1", "S2"])
    assert main(["run", "-c", str(config), "-w", str(ws)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: run adv: results not stored")
    assert "not a kneescope catalog" in err and "run again" in err
    own = pd.read_parquet(ws / "runs" / "adv" / "results.parquet")
    assert list(own["item_id"]) == ["i0", "i1"]  # the run's own table is complete
    with sqlite3.connect(ws / "catalog.sqlite") as db:  # and the foreign database untouched
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master")]
    assert tables == ["notes"]

    (ws / "catalog.sqlite").unlink()
    assert main(["run", "-c", str(config), "-w", str(ws), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ran"] == 0  # stored without recomputing
    assert main(["results", "-w", str(ws), "-o", str(tmp_path / "r.csv")]) == 0
    means = pd.read_csv(tmp_path / "r.csv").query("name == 'mean'")
    assert dict(zip(means["item_id"], means["value"], strict=True)) == {"i0": 1.0, "i1": 2.0}


def test_a_catalog_password_is_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _run_config(tmp_path, ["S1"])
    url = "postgresql+psycopg://alice:s3cret-pw@127.0.0.1:1/cohort"  # nothing listens there
    code = main(["run", "-c", str(config), "-w", str(tmp_path / "ws"), "--catalog", url])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "s3cret" not in err and "alice:***@127.0.0.1" in err
    assert (tmp_path / "ws" / "runs" / "adv" / "results.parquet").is_file()


def test_formula_like_text_is_exported_inert_to_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    config = _run_config(tmp_path, ['=HYPERLINK("http://x")', "@SUM(A1)"])
    assert main(["run", "-c", str(config), "-w", str(ws)]) == 0
    out = tmp_path / "r.csv"
    for layout in ([], ["--wide"]):
        assert main(["results", "-w", str(ws), "-o", str(out), "--overwrite", *layout]) == 0
        subjects = set(pd.read_csv(out)["subject"])
        assert subjects == {'\'=HYPERLINK("http://x")', "'@SUM(A1)"}
    capsys.readouterr()


def test_bad_output_paths_are_refused_before_anything_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"  # no catalog either: the output is checked first
    cases = [
        (tmp_path / "missing" / "r.csv", "does not exist; create it first"),
        (tmp_path, "is a folder"),
        (tmp_path / "r.xlsx", "give --format"),
    ]
    for out, message in cases:
        assert main(["results", "-w", str(ws), "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "missing").exists() and not ws.exists()
