"""Thickness maps kept in one file per knee (``save_maps``/``load_maps``) and their figure
(matplotlib: colour bar, mm scale, orientation labels, title), on the toy knee."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kneescope.biomarkers import KneeMeasurements
from kneescope.biomarkers.knee_phantom import ToyKnee
from kneescope.biomarkers.maps import load_maps, save_maps
from kneescope.errors import InputError
from kneescope.reports.thickness_figure import (
    ORIENTATION,
    colour_scale_max_mm,
    draw_plate,
    write_knee_thickness_figure,
    write_plate_figure,
)


def test_maps_round_trip_through_one_file(toy_measured: KneeMeasurements, tmp_path: Path) -> None:
    path = tmp_path / "thickness_maps.npz"
    save_maps(toy_measured.maps, path)
    back = load_maps(path)
    assert list(back) == list(toy_measured.maps)
    for plate, original in toy_measured.maps.items():
        got = back[plate]
        assert np.array_equal(got.thickness_mm, original.thickness_mm, equal_nan=True)
        assert got.extent_mm == original.extent_mm and got.pixel_mm == original.pixel_mm
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="cannot read thickness maps"):
        load_maps(tmp_path / "bad.npz")
    with pytest.raises(InputError, match="cannot read thickness maps"):
        load_maps(tmp_path / "missing.npz")


def test_map_values_are_the_toy_knees_thickness(
    toy_knee: ToyKnee, toy_measured: KneeMeasurements
) -> None:
    # constant-thickness plates: the map's median is the truth (edges thin a few pixels)
    for plate in ("femoral", "medial_tibial", "lateral_tibial", "patellar"):
        values = toy_measured.maps[plate].thickness_mm
        truth = toy_knee.truth[f"{plate}_cartilage_thickness_mean_mm"]
        assert float(np.nanmedian(values)) == pytest.approx(truth, rel=0.06)
    assert colour_scale_max_mm(toy_measured.maps) == 4.0  # all thinner than the default top


def test_plate_figure_has_orientation_scale_bar_and_colour_bar(
    toy_measured: KneeMeasurements, tmp_path: Path
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tmap = toy_measured.maps["medial_tibial"]
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = draw_plate(ax, tmap, 4.0)
    texts = {t.get_text() for t in ax.texts}
    assert {"MEDIAL", "LATERAL", "ANTERIOR", "POSTERIOR", "10 mm"} <= texts
    assert "medial" in ax.get_xlabel() and "anterior" in ax.get_ylabel()
    assert ax.get_title() == "medial tibial cartilage"
    assert image.get_clim() == (0.0, 4.0)
    x0, x1 = ax.get_xlim()
    covered = np.isfinite(tmap.thickness_mm).any(axis=0)
    cols = np.flatnonzero(covered)
    left_mm = tmap.extent_mm[0] + cols[0] * tmap.pixel_mm
    assert x0 <= left_mm and x1 >= tmap.extent_mm[0] + (cols[-1] + 1) * tmap.pixel_mm
    assert ORIENTATION["patellar"][2:] == ("inferior", "superior")

    png = write_plate_figure(tmap, tmp_path / "mt.png", title="knee: medial tibial")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    both = write_knee_thickness_figure(toy_measured.maps, tmp_path / "all.png", title="knee")
    again = write_knee_thickness_figure(toy_measured.maps, tmp_path / "again.png", title="knee")
    assert both.read_bytes() == again.read_bytes()  # the reused figure draws the same
