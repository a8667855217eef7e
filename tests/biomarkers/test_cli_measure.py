"""`kneescope measure` end to end: NIfTI label maps in, JSON/CSV/maps out."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from kneescope.biomarkers.knee_phantom import ToyKnee
from kneescope.cli.app import main
from kneescope.io import write_volume


def test_measure_writes_json_csv_and_maps(
    toy_knee: ToyKnee, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_volume(toy_knee.labels, tmp_path / "knee_R.nii.gz")
    table = tmp_path / "out" / "biomarkers.csv"
    table.parent.mkdir()
    maps = tmp_path / "maps"
    code = main(["measure", str(path), "--json", "--out", str(table), "--maps", str(maps)])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1
    row = rows[0]
    assert row["side"] == "right"
    assert row["medial_meniscus_extrusion_mm"] == pytest.approx(0.8, abs=0.5)
    with table.open(encoding="utf-8") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert float(csv_rows[0]["femoral_cartilage_thickness_mean_mm"]) == pytest.approx(
        row["femoral_cartilage_thickness_mean_mm"]
    )
    for plate in ("femoral", "medial_tibial", "lateral_tibial", "patellar"):
        png = maps / f"knee_R_{plate}_thickness.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        arr = np.load(maps / f"knee_R_{plate}_thickness.npy")
        assert np.isfinite(arr).sum() > 50


def test_measure_table_and_clean_errors(
    toy_knee: ToyKnee,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    path = write_volume(toy_knee.labels, tmp_path / "knee.nii.gz")
    assert main(["measure", str(path), "--side", "left"]) == 0
    out = capsys.readouterr().out
    assert "knee.nii.gz" in out and "side_mismatch" in out
    assert main(["measure", str(path), "--side", "up"]) == 2
    assert "--side 'up' is not one of" in capsys.readouterr().err
    image = write_volume(
        toy_knee.labels.with_array(toy_knee.labels.array.astype(np.float32)),
        tmp_path / "image.nii.gz",
    )
    assert main(["measure", str(image)]) == 2
    assert "label map" in capsys.readouterr().err
