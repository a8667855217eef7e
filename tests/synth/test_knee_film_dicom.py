"""`kneescope synth` knee films as DICOM: varied photometric and spacing tags, ImageLaterality
B, and the truth table's columns for each film."""

from __future__ import annotations

import csv
from pathlib import Path

import pydicom
import pytest

from kneescope.io import read_dicom_radiograph
from kneescope.synth.cohort import CohortSpec
from kneescope.synth.generate import generate_cohort
from kneescope.synth.subject_writer import knee_film_format


def test_film_formats_vary_across_films() -> None:
    formats = {knee_film_format(7, f"90000{i:02d}", v) for i in range(12) for v in ("V00", "V01")}
    assert {p for p, _ in formats} == {"MONOCHROME1", "MONOCHROME2"}
    assert {s for _, s in formats} == {True, False}
    assert knee_film_format(7, "9000001", "V00") == knee_film_format(7, "9000001", "V00")


def test_synth_knee_films_say_how_they_are_stored(tmp_path: Path) -> None:
    out = tmp_path / "c"
    # seed 3: its two films are stored differently (one without PixelSpacing); the knee
    # films only (kneescope synth without the MRI and the full-leg films)
    spec = CohortSpec(subjects=2, visits=("V00",), seed=3, mri=False, full_leg=False)
    generate_cohort(spec, out, jobs=1)
    with (out / "truth" / "xray_truth.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    seen = set()
    for row in rows:
        path = out / row["Folder"] / "001"
        ds = pydicom.dcmread(path)
        assert ds.PhotometricInterpretation == row["Photometric"]
        assert ds.ImageLaterality == "B"
        assert ("PixelSpacing" in ds) == (row["SpacingTag"] == "PixelSpacing")
        vol = read_dicom_radiograph(path)
        assert vol.metadata["spacing_source"] == row["SpacingTag"]
        assert vol.spacing_mm == pytest.approx((0.2, 0.2))
        # bone bright whatever the photometric: the knee centre's column, 10 mm below the
        # joint centre (tibia) is brighter than the same row between the legs
        r, c = round(float(row["CentreRow"])), round(float(row["CentreCol"]))
        a = vol.array.astype(float)
        assert a[r + 50, c] > a[r + 50, vol.shape[1] // 2] + 300
        for key in ("JSN_M", "TibiaMedialCol", "JSW_M_0250_mm", "Rotation_deg", "Implant"):
            assert row[key] != ""
        seen.add((row["Photometric"], row["SpacingTag"]))
    assert len(seen) == 2
