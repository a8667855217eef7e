from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kneescope.catalog.clinical import import_clinical_table, parse_side, parse_value
from kneescope.catalog.database import Catalog
from kneescope.catalog.queries import clinical_values, summarize
from kneescope.errors import InputError

OAI_TABLE = """ID|SIDE|VERSION|V00XRKL|V00XRJSM|V01XRKL|AGE
9000099|1|1.6|2: definite osteophytes, possible narrowing|1: 1|3: moderate|61
9000099|2|1.6|0: none|.: Missing Form/Incomplete Workbook||61
9000296|2: Left|1.6|4: severe|0.5|.A: Not Expected|70
"""

MOST_TABLE = """MOSTID,V0XLKL,V0XRKL,V5XRKL,SEX
MB00001,2,3,4,1: Male
MB00002,0,,1,2: Female
"""


def test_parse_value_codes_and_missing() -> None:
    assert parse_value("2: definite osteophytes") == ("2: definite osteophytes", 2.0)
    assert parse_value(" 1.5 ") == ("1.5", 1.5)
    assert parse_value("-3") == ("-3", -3.0)
    assert parse_value(".5") == (".5", 0.5)
    assert parse_value("abc") == ("abc", None)
    for missing in ("", " ", ".", ".: Missing Form", ".A: Not Expected"):
        assert parse_value(missing) is None


@given(st.integers(0, 4), st.text(alphabet="abcdefgh ,;", max_size=30))
def test_parse_value_klg_property(grade: int, label: str) -> None:
    text = f"{grade}: {label}"
    assert parse_value(text) == (text.strip(), float(grade))


def test_parse_side_codes() -> None:
    assert parse_side("1") == "right"
    assert parse_side("2: Left") == "left"
    assert parse_side("R") == "right"
    assert parse_side("left") == "left"
    assert parse_side("") is None
    with pytest.raises(ValueError, match="not 1"):
        parse_side("3")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_oai_table_long_format(catalog: Catalog, tmp_path: Path) -> None:
    result = import_clinical_table(catalog, _write(tmp_path, "kxr.txt", OAI_TABLE))
    assert (result.cohort, result.subjects) == ("oai", 2)
    values = {
        (v["subject"], v["visit"], v["side"], v["variable"]): (v["value_text"], v["value_num"])
        for v in clinical_values(catalog)
    }
    assert values[("9000099", "V00", "right", "XRKL")] == (
        "2: definite osteophytes, possible narrowing",
        2.0,
    )
    assert values[("9000099", "V00", "left", "XRKL")] == ("0: none", 0.0)
    assert values[("9000099", "V01", "right", "XRKL")][1] == 3.0
    assert values[("9000296", "V00", "left", "XRKL")][1] == 4.0
    assert values[("9000296", "V00", "left", "XRJSM")][1] == 0.5
    assert values[("9000099", "V00", "right", "XRJSM")][1] == 1.0
    assert ("9000099", "V00", "left", "XRJSM") not in values  # missing code skipped
    assert ("9000296", "V01", "left", "XRKL") not in values
    assert ("9000099", None, "right", "AGE") in values
    assert not any(k[3] == "VERSION" for k in values)
    assert result.values_added == len(values) == 9


def test_most_table_sides_from_names(catalog: Catalog, tmp_path: Path) -> None:
    result = import_clinical_table(catalog, _write(tmp_path, "most.csv", MOST_TABLE))
    assert result.cohort == "most"
    kl = {
        (v["subject"], v["visit"], v["side"]): v["value_num"]
        for v in clinical_values(catalog, variable="XRKL")
    }
    assert kl == {
        ("MB00001", "V00", "left"): 2.0,
        ("MB00001", "V00", "right"): 3.0,
        ("MB00001", "V05", "right"): 4.0,
        ("MB00002", "V00", "left"): 0.0,
        ("MB00002", "V05", "right"): 1.0,
    }
    sex = clinical_values(catalog, subject="MB00002", variable="sex")
    assert [(s["visit"], s["side"], s["value_num"]) for s in sex] == [(None, None, 2.0)]


def test_reimport_is_idempotent_and_updates_changes(catalog: Catalog, tmp_path: Path) -> None:
    path = _write(tmp_path, "most.csv", MOST_TABLE)
    first = import_clinical_table(catalog, path)
    again = import_clinical_table(catalog, path)
    assert (again.values_added, again.values_updated) == (0, 0)
    assert again.values_unchanged == first.values_added
    path.write_text(MOST_TABLE.replace("MB00001,2,3,4", "MB00001,2,3,2"), encoding="utf-8")
    changed = import_clinical_table(catalog, path)
    assert (changed.values_added, changed.values_updated) == (0, 1)
    assert summarize(catalog).clinical_values == first.values_added


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("ID\n1\n", "one column"),
        ("NAME,V00XRKL\nx,2\n", "no subject column"),
        ("ID,SIDE,V00XRKL\n9000001,3,2\n", "line 2: side"),
        ("ID,V00XRKL\n9000001,2,extra\n", "line 2: 3 fields, expected 2"),
        ("ID,ID,V00XRKL\n9000001,2,1\n", "duplicate column"),
    ],
)
def test_bad_tables_write_nothing(
    sqlite_catalog: Catalog, tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        import_clinical_table(sqlite_catalog, _write(tmp_path, "bad.csv", text))
    assert summarize(sqlite_catalog).clinical_values == 0
    assert summarize(sqlite_catalog).subjects == 0


def test_unreadable_and_binary_tables(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no such table|cannot read"):
        import_clinical_table(catalog, tmp_path / "missing.csv")
    binary = tmp_path / "x.csv"
    binary.write_bytes(b"ID,V\x00\x01\x02")
    with pytest.raises(InputError, match="binary"):
        import_clinical_table(catalog, binary)
