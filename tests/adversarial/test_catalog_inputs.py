"""Adversarial inputs to the catalog: clinical tables and catalog URLs.

Each case must end in one line on stderr, a non-zero exit and nothing written: never rows
merged by an unbalanced quote, a duplicate silently keeping its last value, infinity stored
as a number, a traceback (or a password) for a bad URL, or a foreign database written into.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from kneescope.cli.app import main


def _ingest(table: Path, workspace: Path) -> int:
    return main(["ingest", str(table), "--kind", "clinical", "-w", str(workspace)])


def _one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("body", "line"),
    [
        # the quote opened on line 2 closes on line 3: one merged row with the right width
        ('ID,V00XRKL,V00AGE\n9000001,"2,50\n9000002",3,60\n', 2),
        # never closed: it would swallow every following row into one cell
        ('ID,V00XRKL,V00AGE\n9000001,2,"50\n9000002,3,60\n9000003,1,70\n', 2),
        ('ID,V00XRKL,V00AGE\n9000001,2,50\n9000002,3,"6"0\n', 3),
    ],
)
def test_unbalanced_quote_fails_naming_file_and_line(
    tmp_path: Path, workspace_dir: Path, capsys: pytest.CaptureFixture[str], body: str, line: int
) -> None:
    table = tmp_path / "AllClinical.csv"
    table.write_text(body, encoding="utf-8")
    assert _ingest(table, workspace_dir) == 2
    err = _one_line(capsys.readouterr().err)
    assert f"AllClinical.csv, line {line}" in err
    assert "quot" in err
    assert not (workspace_dir / "catalog.sqlite").exists()


@pytest.mark.parametrize(
    ("body", "key", "lines"),
    [
        ("ID,V00XRKL\n9000001,2\n9000002,1\n9000001,3\n", "subject 9000001, visit V00", (4, 2)),
        (
            "ID,SIDE,V00XRKL\n9000001,1,2\n9000001,2,0\n9000001,1,2\n",
            "subject 9000001, visit V00, side right, variable XRKL",
            (4, 2),
        ),
    ],
)
def test_duplicate_key_is_an_error_naming_the_key(
    tmp_path: Path,
    workspace_dir: Path,
    capsys: pytest.CaptureFixture[str],
    body: str,
    key: str,
    lines: tuple[int, int],
) -> None:
    table = tmp_path / "kXR.csv"
    table.write_text(body, encoding="utf-8")
    assert _ingest(table, workspace_dir) == 2
    err = _one_line(capsys.readouterr().err)
    assert key in err
    assert f"line {lines[0]}" in err
    assert f"line {lines[1]}" in err
    assert not (workspace_dir / "catalog.sqlite").exists()


def test_conflicting_values_across_tables_of_one_import(
    tmp_path: Path, workspace_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "clinical"
    folder.mkdir()
    (folder / "a.csv").write_text("ID,V00AGE\n9000001,61\n", encoding="utf-8")
    (folder / "b.csv").write_text("ID,V00AGE\n9000001,62\n", encoding="utf-8")
    assert _ingest(folder, workspace_dir) == 2
    err = _one_line(capsys.readouterr().err)
    assert "subject 9000001, visit V00, variable AGE" in err
    assert "a.csv" in err
    assert "b.csv" in err


@pytest.mark.parametrize("cell", ["-1e400", "1e999: huge", "nan", "NaN", "-inf", "Infinity"])
def test_non_finite_values_are_refused(
    tmp_path: Path, workspace_dir: Path, capsys: pytest.CaptureFixture[str], cell: str
) -> None:
    table = tmp_path / "AllClinical.csv"
    table.write_text(f"ID,V00AGE,V00WOMKPR\n9000001,61,3\n9000002,70,{cell}\n", encoding="utf-8")
    assert _ingest(table, workspace_dir) == 2
    err = _one_line(capsys.readouterr().err)
    assert "AllClinical.csv, line 3, column V00WOMKPR" in err
    assert repr(cell) in err
    assert not (workspace_dir / "catalog.sqlite").exists()


def test_huge_but_finite_numbers_are_kept(
    tmp_path: Path, workspace_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "AllClinical.csv"
    table.write_text("ID,V00AGE\n9000001,-1e300\n", encoding="utf-8")
    assert _ingest(table, workspace_dir) == 0
    capsys.readouterr()
    rows = sqlite3.connect(workspace_dir / "catalog.sqlite").execute(
        "SELECT value_text, value_num FROM clinical_values"
    )
    assert rows.fetchall() == [("-1e300", -1e300)]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://alice:s3cret-pw@db.example:notaport/cohort",
        "://alice:s3cret-pw@db.example/cohort",
        "postgresql://alice:s3cret-pw@db.example:99999999999999999999/cohort",
    ],
)
def test_unparsable_catalog_url_is_one_line_without_the_password(
    workspace_dir: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    assert main(["catalog", "--catalog", url, "-w", str(workspace_dir)]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "s3cret-pw" not in err
    assert "alice:***@db.example" in err
    assert "not a database URL" in err


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_foreign_sqlite_with_a_series_table_is_not_written_into(
    tmp_path: Path, workspace_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "lab.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE series (id INTEGER PRIMARY KEY, title TEXT)")
        conn.execute("INSERT INTO series (title) VALUES ('season 1')")
    conn.close()
    before = _digest(foreign)
    url = f"sqlite:///{foreign}"
    table = tmp_path / "kXR.csv"
    table.write_text("ID,SIDE,V00XRKL\n9000001,1,2\n", encoding="utf-8")
    for argv in (
        ["catalog", "--catalog", url],
        ["catalog", "--summary", "--catalog", url],
        ["ingest", str(table), "--catalog", url],
    ):
        assert main([*argv, "-w", str(workspace_dir)]) == 1
        err = _one_line(capsys.readouterr().err)
        assert "not a kneescope catalog" in err
        assert "series" in err
    assert _digest(foreign) == before
    with sqlite3.connect(foreign) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    conn.close()
    assert names == ["series"]


def test_sqlite_file_of_another_program_is_refused(
    tmp_path: Path, workspace_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "notes.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.close()
    before = _digest(other)
    assert main(["catalog", "--json", "--catalog", f"sqlite:///{other}"]) == 1
    assert "not a kneescope catalog (it holds other tables: notes)" in capsys.readouterr().err
    assert _digest(other) == before
    # an empty file is a new database: the catalog is created in it
    empty = tmp_path / "new.sqlite"
    empty.touch()
    assert main(["catalog", "--json", "--catalog", f"sqlite:///{empty}"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_duplicate_from_two_reading_projects_names_them_and_the_true_lines(
    tmp_path: Path, workspace_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """OAI kXR tables hold one row per knee and reading project (READPRJ): the catalog keeps
    one value per key, so two projects' rows are refused, naming both and the file's lines."""
    table = tmp_path / "kxr_sq_bu00.txt"
    table.write_text(
        "ID|SIDE|READPRJ|V00XRKL\n9000001|1|15|2\n\n9000001|2|15|0\n9000001|1|37|3\n",
        encoding="utf-8",
    )
    assert _ingest(table, workspace_dir) == 2
    err = _one_line(capsys.readouterr().err)
    assert "line 5: a second value of subject 9000001, visit V00, side right" in err
    assert "(the first is on line 2)" in err
    assert "READPRJ '37' and '15'" in err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://alice:s3cret@db/cohort", "postgresql+psycopg://alice:***@db/cohort"),
        ("postgresql://alice:s3cret@db:port/cohort", "postgresql://alice:***@db:port/cohort"),
        (
            "postgresql://alice@db/cohort?password=s3cret",
            "postgresql://alice@db/cohort?password=***",
        ),
        (f"sqlite:///{Path('/data/catalog.sqlite')}", "sqlite:////data/catalog.sqlite"),
    ],
)
def test_printed_catalog_urls_hide_the_password(url: str, shown: str) -> None:
    from kneescope.catalog.database import display_url

    assert display_url(url) == shown
