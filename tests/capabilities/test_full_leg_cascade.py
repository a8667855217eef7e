"""The full-leg cascade's geometry: block averaging, coarse grids, fine crops (exact truth)."""

from __future__ import annotations

import numpy as np
import pytest

from kneescope.capabilities.landmarks.full_leg import (
    COARSE_SHAPE,
    COARSE_SPACING_MM,
    FINE_SHAPE,
    FINE_SPACING_MM,
    Overview,
    block_average,
    coarse_examples,
    coarse_image,
    coarse_to_film_mm,
    crop_to_film_mm,
    film_overview,
    film_to_coarse_mm,
    film_to_crop_mm,
    fine_crop,
    fine_examples,
    midline_mm,
)
from kneescope.core import Volume
from kneescope.synth.full_leg import full_leg_films


def test_block_average_in_bands_equals_the_whole_mean() -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 4096, size=(203, 97), dtype=np.uint16)
    out = block_average(array, (4, 3), band_rows=7)  # bands that do not divide the rows
    expected = array[:200, :96].astype(np.float64).reshape(50, 4, 32, 3).mean(axis=(1, 3))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.mark.parametrize("side", ["right", "left"])
def test_coarse_grid_maps_back_and_shows_a_point_where_it_is(side: str) -> None:
    """A bright square on a film lands on the coarse grid where the mapping says."""
    px = 0.3
    film = np.zeros((3600, 1200), dtype=np.uint16)
    midline = 180.0  # mm
    point = np.array([600.0, 130.0 if side == "right" else 230.0])  # film mm
    r, c = (round(float(v) / px) for v in point)
    film[r - 25 : r + 26, c - 25 : c + 26] = 3000  # 15 mm square centred on the point
    vol = Volume(film, np.diag([px, px, 1.0, 1.0]), {})
    overview = film_overview(vol)
    assert overview.factor == (16, 16)
    image = coarse_image(overview, side, midline)
    assert image.shape == COARSE_SHAPE
    expected = film_to_coarse_mm(side, midline, point[None])[0] / COARSE_SPACING_MM
    peak = np.unravel_index(np.argmax(image), image.shape)
    assert abs(peak[0] - expected[0]) <= 1 and abs(peak[1] - expected[1]) <= 1
    weights = np.clip(image - 1000.0, 0, None)
    centroid = (
        np.array([(weights.sum(axis=1) * np.arange(image.shape[0])).sum(), 0.0]) / weights.sum()
    )
    cols = (weights.sum(axis=0) * np.arange(image.shape[1])).sum() / weights.sum()
    assert centroid[0] == pytest.approx(expected[0], abs=0.3)
    assert cols == pytest.approx(expected[1], abs=0.3)
    back = coarse_to_film_mm(side, midline, film_to_coarse_mm(side, midline, point[None]))
    np.testing.assert_allclose(back[0], point, atol=1e-9)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("px", [0.15, 0.3, 0.36])
def test_fine_crop_puts_a_point_where_the_mapping_says(side: str, px: float) -> None:
    rows, cols = int(120 / px), int(100 / px)
    rr, cc = np.meshgrid(np.arange(rows) * px, np.arange(cols) * px, indexing="ij")
    point = np.array([61.3, 48.8])  # film mm
    film = 1000.0 * np.exp(-((rr - point[0]) ** 2 + (cc - point[1]) ** 2) / (2 * 2.0**2))
    centre = (67.0, 40.0)
    crop = fine_crop(film.astype(np.float32), (px, px), centre, side)
    assert crop.shape == FINE_SHAPE
    expected = film_to_crop_mm(point, centre, side) / FINE_SPACING_MM
    grid = np.indices(FINE_SHAPE).reshape(2, -1)
    w = crop.reshape(-1) ** 4
    found = (grid * w).sum(axis=1) / w.sum()
    np.testing.assert_allclose(found, expected, atol=0.1)
    back = crop_to_film_mm(film_to_crop_mm(point, centre, side), centre, side)
    np.testing.assert_allclose(back, point, atol=1e-9)
    # mirrored for the left leg: the point is 8.8 mm towards larger film columns
    assert (expected[1] > 47.5) == (side == "right")


def test_training_examples_carry_the_film_truth() -> None:
    """Coarse and fine examples cut from a rendered film: positions are the truth mapped
    through the same geometry, inside the images, and the midline is near the body's."""
    f = next(full_leg_films(1, seed=33))
    truth = {leg.side: leg.landmarks_mm() for leg in f.legs}
    overview: Overview = film_overview(f.film)
    body = np.mean([truth[s]["hip"][1] for s in truth])
    assert midline_mm(overview) == pytest.approx(body, abs=20.0)
    coarse = coarse_examples([(f.film, truth)], seed=1)
    assert coarse.images.shape == (2, *COARSE_SHAPE)
    extent = np.array(COARSE_SHAPE) * COARSE_SPACING_MM
    assert (coarse.positions_mm > 0).all() and (coarse.positions_mm < extent).all()
    fine = fine_examples([(f.film, truth)], seed=1, per_landmark=2)
    assert fine.images.shape == (12, *FINE_SHAPE)
    offsets = np.abs(fine.positions_mm[:, 0] - (np.array(FINE_SHAPE) - 1) / 2 * FINE_SPACING_MM)
    assert offsets.max() <= 14.0 + 1e-9
    assert offsets[1::2].max() <= 2.0 + 1e-9  # every second crop is near the landmark
