"""Seeded knee-film sets and bad-input films (kneescope.synth.knee_film_set)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kneescope.errors import InputError
from kneescope.synth.knee_film_set import KneeFilm, bad_input_film, knee_film, knee_films

PX = 0.4  # coarse films: the set's logic, quickly


def _joint_brightness(f: KneeFilm) -> list[float]:
    """99th percentile of each knee's joint region (30 x 40 mm), as a fraction of the film's
    range of values."""
    a = f.image.array.astype(float)
    lo, hi = a.min(), a.max()
    out = []
    for k in f.knees:
        r, c = (round(v) for v in k.centre_rc)
        h, w = round(15 / k.pixel_mm), round(20 / k.pixel_mm)
        out.append((np.percentile(a[r - h : r + h, c - w : c + w], 99) - lo) / (hi - lo))
    return out


def test_film_sets_are_seeded_by_set_and_index() -> None:
    first = list(knee_films(2, seed=3, pixel_mm=PX))
    again = knee_film(3, 1, pixel_mm=PX)
    assert np.array_equal(first[1].image.array, again.image.array)
    assert first[1].knees == again.knees
    assert not np.array_equal(first[0].image.array, first[1].image.array)
    # film 0 of set 3 carries a burned-in annotation line: at the display's top value
    ((r0, r1, c0, c1),) = first[0].film.annotations
    a = first[0].image.array
    assert a[r0:r1, c0:c1].max() >= a.max() - 60
    for f in first:
        assert f.film.view == "pa_bilateral" and [k.side for k in f.knees] == ["right", "left"]
        right, left = f.knees
        assert right.centre_rc[1] < left.centre_rc[1]
        assert f.image.array.dtype == np.uint16 and f.image.array.max() <= 4095


def test_kl_weights_choose_the_grades_and_implants_are_flagged() -> None:
    f = knee_film(5, 0, kl_weights=[0, 0, 0, 0, 1], implant_rate=0.0, pixel_mm=PX)
    assert [k.klg for k in f.knees] == [4, 4]
    assert all(k.osteophyte_grade == 3 for k in f.knees)
    assert all(max(k.jsn_medial, k.jsn_lateral) >= 2 for k in f.knees)
    healthy = knee_film(5, 0, kl_weights=[1, 0, 0, 0, 0], implant_rate=0.0, pixel_mm=PX)
    assert all(k.klg == 0 and k.jsn_medial == 0 for k in healthy.knees)
    assert all(4.0 < k.mjsw_medial_mm < 6.2 for k in healthy.knees)
    replaced = knee_film(5, 0, kl_weights=[1, 0, 0, 0, 0], implant_rate=1.0, pixel_mm=PX)
    for k in replaced.knees:
        assert k.implant and k.klg == -1 and k.jsn_medial == -1
        assert math.isnan(k.mjsw_medial_mm) and all(math.isnan(v) for v in k.jsw_fixed_lateral_mm)
    # metal: the joint region near the film's top value; bone well below it
    assert min(_joint_brightness(replaced)) > 0.93
    assert max(_joint_brightness(healthy)) < 0.85


@pytest.mark.parametrize("weights", [[1, 1], [0, 0, 0, 0, 0], [1, -1, 1, 1, 1]])
def test_bad_kl_weights_are_refused(weights: list[float]) -> None:
    with pytest.raises(InputError, match="kl_weights"):
        knee_film(1, 0, kl_weights=weights, pixel_mm=PX)


def test_bad_input_films() -> None:
    one = bad_input_film("one_knee", 0, pixel_mm=PX)
    assert one.film.view == "pa_one_knee" and len(one.knees) == 1
    assert one.film.sides == (one.knees[0].side,)
    for seed in range(3):  # the three kinds of film without a knee
        none = bad_input_film("no_knee", seed, pixel_mm=PX)
        assert none.film.view == "no_knee" and none.knees == [] and none.film.sides == ()
    lateral = bad_input_film("lateral", 1, pixel_mm=PX)
    assert lateral.film.view == "lateral" and lateral.knees == []
    implant = bad_input_film("implant", 2, pixel_mm=PX)
    assert implant.film.view == "pa_bilateral" and any(k.implant for k in implant.knees)
    assert np.array_equal(
        bad_input_film("lateral", 1, pixel_mm=PX).image.array, lateral.image.array
    )


def test_film_looks_and_placements_vary() -> None:
    """Across films: collimation or not, 0/1/2 lead markers, grid lines, annotation text,
    exposure, rotation up to +-8 deg (+ a little per knee), the right knee left of the left."""
    from kneescope.synth.radiograph import place_knees, sample_film_look

    looks, rotations = [], []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        looks.append(sample_film_look(rng, (700, 1650), 0.2))
        places, phi = place_knees(rng, ("right", "left"), (700, 1650), 0.2)
        rotations.append(phi)
        assert places["right"].centre_rc[1] < places["left"].centre_rc[1]
        assert places["right"].rotation_deg == pytest.approx(phi, abs=6.0)
        assert places["left"].rotation_deg == pytest.approx(-phi, abs=6.0)
    assert {look.collimation is None for look in looks} == {True, False}
    assert {len(look.markers) for look in looks} == {0, 1, 2}
    assert any(look.labels for look in looks) and any(look.grid[0] > 0 for look in looks)
    photons = [look.photons for look in looks]
    assert max(photons) > 4 * min(photons)
    assert max(np.abs(rotations)) <= 8.0 and max(np.abs(rotations)) > 6.0
