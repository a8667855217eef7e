"""`kneescope measure`: one bad input does not lose the others, the table
format follows the output's name or is refused, an MR image is refused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from kneescope.biomarkers.knee_phantom import ToyKnee, render_compact_toy_knee
from kneescope.cli.app import main
from kneescope.io import write_volume


@pytest.fixture(scope="module")
def toy() -> ToyKnee:
    return render_compact_toy_knee()


@pytest.fixture(scope="module")
def knees(toy: ToyKnee, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two readable label maps, a corrupt file and an integer MR-like image."""
    folder = tmp_path_factory.mktemp("measure_inputs")
    a = write_volume(toy.labels, folder / "a.nii.gz")
    c = write_volume(toy.labels, folder / "c.nii.gz")
    bad = folder / "b.nii.gz"
    bad.write_bytes(b"\x1f\x8b this is not a gzip stream" * 10)
    rng = np.random.default_rng(0)
    intensity = np.array([0, 900, 300, 850, 320, 330, 880, 310, 150, 160], dtype=np.int16)
    image = intensity[toy.labels.array] + rng.integers(0, 40, toy.labels.shape).astype(np.int16)
    mr = write_volume(toy.labels.with_array(image), folder / "mr.nii.gz")
    return {"a": a, "b": bad, "c": c, "mr": mr}


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_one_unreadable_input_keeps_the_others(
    knees: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "meas.csv"
    args = [str(knees[k]) for k in ("a", "b", "mr", "c")]
    code = main(["measure", *args, "--out", str(table), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    rows = json.loads(captured.out)
    assert [Path(r["labelmap"]).name for r in rows] == ["a.nii.gz", "c.nii.gz"]
    with table.open(encoding="utf-8", newline="") as fh:
        written = list(csv.DictReader(fh))
    assert [Path(r["labelmap"]).name for r in written] == ["a.nii.gz", "c.nii.gz"]
    # each failure on one line naming the file and why, then one summary line
    failed = [line for line in captured.err.splitlines() if line.startswith("failed")]
    assert len(failed) == 2
    assert "b.nii.gz" in failed[0] and "not a readable NIfTI" in failed[0]
    assert "mr.nii.gz" in failed[1] and "not a 3D label map" in failed[1]
    (summary,) = _error_lines(captured.err)
    assert "2 of 4" in summary and "b.nii.gz" in summary and "mr.nii.gz" in summary


def test_mr_image_is_refused(knees: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["measure", str(knees["mr"])]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "mr.nii.gz" in line and "not a 3D label map" in line and "0..9" in line


def test_unknown_table_format_is_refused_before_measuring(
    knees: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "meas.xlsx"
    assert main(["measure", str(knees["a"]), "--out", str(target)]) == 2
    captured = capsys.readouterr()
    (line,) = _error_lines(captured.err)
    assert ".xlsx" in line and ".csv" in line and ".parquet" in line and ".json" in line
    assert "measured" not in captured.err  # refused before any work
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_tables_follow_the_output_name(
    knees: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    assert main(["measure", str(knees["a"]), "--json", "--out", str(tmp_path / "m.csv")]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    raw = (tmp_path / "m.csv").read_bytes()
    assert b"\r\n" not in raw and raw.count(b"\n") == 2  # header and one row, LF endings
    assert main(["measure", str(knees["a"]), "--out", str(tmp_path / "m.parquet")]) == 0
    frame = pd.read_parquet(tmp_path / "m.parquet")
    assert len(frame) == 1
    key = "femoral_cartilage_thickness_mean_mm"
    assert frame[key].iloc[0] == pytest.approx(row[key])
    assert bool(frame["qc_ok"].iloc[0]) is row["qc_ok"]
    assert main(["measure", str(knees["a"]), "--out", str(tmp_path / "m.json")]) == 0

    def strict(text: str) -> None:
        raise ValueError(f"not JSON: {text}")

    rows = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"), parse_constant=strict)
    assert rows[0][key] == pytest.approx(row[key])


def test_outputs_never_replaced_or_folders_invented(
    knees: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nonexistent" / "meas.csv"
    assert main(["measure", str(knees["a"]), "-o", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not missing.parent.exists()
    table = tmp_path / "meas.csv"
    table.write_text("earlier results\n", encoding="utf-8")
    assert main(["measure", str(knees["a"]), "-o", str(table)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert table.read_text(encoding="utf-8") == "earlier results\n"
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "a_femoral_thickness.png").write_bytes(b"earlier map")
    assert main(["measure", str(knees["a"]), "--maps", str(maps)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (maps / "a_femoral_thickness.png").read_bytes() == b"earlier map"
    args = ["measure", str(knees["a"]), "-o", str(table), "--maps", str(maps), "--overwrite"]
    assert main(args) == 0
    assert table.read_text(encoding="utf-8").startswith("labelmap,")
    assert (maps / "a_femoral_thickness.png").read_bytes()[:4] == b"\x89PNG"
