"""Synthetic knee films: geometry on the film, KL-grade appearance, exact joint-space truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from kneescope.core import Volume
from kneescope.synth.knee_film_geometry import build_geometry
from kneescope.synth.params import KneeParams
from kneescope.synth.radiograph import (
    KNEE_PIXEL_MM,
    KneeXrayTruth,
    render_knee_film,
    render_knee_radiograph,
)

Knees = tuple[Volume, list[KneeXrayTruth]]


def _knees(vary: bool, seed: int = 1) -> Knees:
    healthy = KneeParams(side="right")
    narrowed = KneeParams(side="left", loss_medial=0.6, loss_lateral=0.1)
    return render_knee_radiograph(
        {"right": (healthy, 0, 0, True), "left": (narrowed, 4, 3, True)}, seed=seed, vary=vary
    )


@pytest.fixture(scope="module")
def plain() -> Knees:
    return _knees(False)


@pytest.fixture(scope="module")
def varied() -> Knees:
    return _knees(True, seed=5)


def _dirs(t: KneeXrayTruth) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    """Film (d_row, d_col) unit vectors of the knee's medial and superior directions."""
    a = np.deg2rad(t.rotation_deg)
    m = 1.0 if t.side == "right" else -1.0
    medial = np.array([-np.sin(a), m * np.cos(a)])
    superior = np.array([-np.cos(a), -m * np.sin(a)])
    return medial, superior


def _profile(a: np.ndarray, start: np.ndarray, step: np.ndarray, n: int) -> np.ndarray:  # type: ignore[type-arg]
    pts = start[:, None] + step[:, None] * np.arange(n)[None, :]
    return ndimage.map_coordinates(a, pts, order=1)


def test_knee_radiograph_geometry(plain: Knees) -> None:
    vol, truths = plain
    assert vol.array.dtype == np.uint16
    assert vol.spacing_mm == pytest.approx((KNEE_PIXEL_MM, KNEE_PIXEL_MM))
    # rows run Inferior, columns to the patient's Left (right knee on the viewer's left)
    assert vol.affine_ras[2, 0] < 0 and vol.affine_ras[0, 1] < 0
    right, left = truths
    assert right.centre_rc[1] < vol.shape[1] / 2 < left.centre_rc[1]
    a = vol.array.astype(float)
    between = a[:, int(vol.shape[1] / 2)].mean()
    for t in truths:
        r, c = (round(v) for v in t.centre_rc)
        # bone 10 mm above and below the joint centre, much brighter than between the legs
        up, down = int(10 / KNEE_PIXEL_MM), int(10 / KNEE_PIXEL_MM)
        assert a[r - up, c] > between + 500 and a[r + down, c] > between + 500


def test_joint_space_width_of_the_right_size(plain: Knees) -> None:
    _, (healthy, narrowed) = plain
    assert healthy.side == "right" and narrowed.side == "left"
    # OAI non-OA knees: medial mJSW ~5 mm, lateral ~6 mm
    assert 4.5 < healthy.mjsw_medial_mm < 5.5
    assert 5.2 < healthy.mjsw_lateral_mm < 6.8
    assert narrowed.mjsw_medial_mm < healthy.mjsw_medial_mm - 2.0
    assert narrowed.mjsw_medial_mm < narrowed.mjsw_lateral_mm
    assert (healthy.jsn_medial, narrowed.jsn_medial, narrowed.jsn_lateral) == (0, 3, 1)
    for t in (healthy, narrowed):
        assert len(t.jsw_fixed_medial_mm) == len(t.jsw_fixed_lateral_mm) == 6
        # the minimum over the compartment's centre is no larger than any fixed location's
        # that falls inside it
        assert t.mjsw_medial_mm <= min(t.jsw_fixed_medial_mm) + 1e-6
        assert t.mjsw_lateral_mm <= min(t.jsw_fixed_lateral_mm) + 1e-6


def _gap_edges(p: np.ndarray) -> tuple[float, float]:  # type: ignore[type-arg]
    """Sub-sample positions of the tibial and femoral margins on a profile that runs up from
    inside the tibia, across the joint space, into the femur: where the profile crosses
    half-way between the gap's floor and the cortex peak next to it."""
    n = p.size
    core = slice(n // 8, n - n // 8)
    i_g = core.start + int(np.argmin(p[core]))
    g = float(p[i_g])
    thr = g + 0.3 * (float(p.max()) - g)
    below = p < thr
    a = i_g
    while a > 0 and below[a - 1]:
        a -= 1
    b = i_g
    while b < n - 1 and below[b + 1]:
        b += 1
    w = max(4, (b - a) // 2)
    i_pt = max(0, a - 4 * w) + int(np.argmax(p[max(0, a - 4 * w) : a + 1]))
    i_pf = b + int(np.argmax(p[b : min(n, b + 4 * w + 1)]))
    lt, lf = 0.5 * (g + p[i_pt]), 0.5 * (g + p[i_pf])
    k = i_pt + int(np.flatnonzero(p[i_pt : i_g + 1] >= lt)[-1])
    tib = k + (p[k] - lt) / (p[k] - p[k + 1])
    m = i_g + int(np.flatnonzero(p[i_g : i_pf + 1] >= lf)[0])
    fem = m - 1 + (lf - p[m - 1]) / (p[m] - p[m - 1])
    return float(tib), float(fem)


def _fixed_location_errors(a: np.ndarray, t: KneeXrayTruth, smooth: float) -> np.ndarray:  # type: ignore[type-arg]
    """Measured minus true JSW (mm) at the 12 fixed locations, walking perpendicular to the
    plateau line from 8 mm below the tibial margin point's level."""
    medial, superior = _dirs(t)
    width_px = t.tibial_width_mm / t.pixel_mm
    step = 0.05  # pixels per sample
    errors = []
    for edge_rc, sign, fixed in (
        (t.tibia_medial_rc, 1.0, t.jsw_fixed_medial_mm),
        (t.tibia_lateral_rc, -1.0, t.jsw_fixed_lateral_mm),
    ):
        for frac, jsw in zip((0.175, 0.2, 0.225, 0.25, 0.275, 0.3), fixed, strict=True):
            base = np.asarray(edge_rc) - sign * medial * frac * width_px
            start = base - superior * 8.0 / t.pixel_mm
            n = int((8.0 + jsw + 12.0) / t.pixel_mm / step)
            offsets = range(-4, 5) if smooth else range(1)
            p = np.mean(
                [_profile(a, start + medial * k * 0.5, superior * step, n) for k in offsets], axis=0
            )
            if smooth:
                p = ndimage.gaussian_filter1d(p, smooth / step)
            tib, fem = _gap_edges(p)
            errors.append((fem - tib) * step * t.pixel_mm - jsw)
    return np.asarray(errors)


def test_truth_jsw_is_exactly_the_drawn_bone_margins() -> None:
    """The bone margins the renderer draws (the zero levels of its femur and tibia distance
    fields, found along the film walk) are the truth's JSW apart at every fixed location."""
    from kneescope.synth import radiograph as rg
    from kneescope.synth.knee_film_render import _film_to_knee, femur_sd, tibia_sd

    for seed, side in ((5, "right"), (6, "left"), (7, "right")):
        rng = np.random.default_rng(seed)
        places, _ = rg.place_knees(rng, (side,), (700, 900), 0.2)
        fp, scl = rg.film_params_from_knee(KneeParams(side=side, loss_medial=0.3), 2, 1, True, rng)
        geom = build_geometry(fp)
        knee = rg.KneeOnFilm(
            geom, places[side], rg.sample_knee_look(rng, 1.0, scl), fp, 2, 1, (1, 0)
        )
        t = rg.knee_truth(knee, 0.2)
        medial, superior = _dirs(t)
        width_px = t.tibial_width_mm / t.pixel_mm
        for edge_rc, sign, fixed in (
            (t.tibia_medial_rc, 1.0, t.jsw_fixed_medial_mm),
            (t.tibia_lateral_rc, -1.0, t.jsw_fixed_lateral_mm),
        ):
            for frac, jsw in zip((0.175, 0.2, 0.225, 0.25, 0.275, 0.3), fixed, strict=True):
                base = np.asarray(edge_rc) - sign * medial * frac * width_px
                k = np.arange(-8.0, 20.0, 0.001) / t.pixel_mm
                pts = base[:, None] + superior[:, None] * k[None, :]
                x, z = _film_to_knee(
                    geom, places[side], 0.2, pts[0].astype(np.float32), pts[1].astype(np.float32)
                )
                in_tibia = tibia_sd(geom, x, z) <= 0
                in_femur = femur_sd(geom, x, z) <= 0
                tib_top = k[np.flatnonzero(in_tibia)[-1]]
                fem_low = k[np.flatnonzero(in_femur)[0]]
                assert (fem_low - tib_top) * t.pixel_mm == pytest.approx(jsw, abs=0.005)


@pytest.mark.parametrize("which", ["plain", "varied"])
def test_truth_jsw_is_what_the_film_shows(which: str, request: pytest.FixtureRequest) -> None:
    """The same walk on the finished film (noise, blur, display curve): within 0.3 mm."""
    vol, truths = request.getfixturevalue(which)
    for t in truths:
        errors = _fixed_location_errors(vol.array.astype(float), t, 0.3)
        assert np.max(np.abs(errors)) < 0.3, (t.side, np.round(errors, 3))


def test_tibial_margins_and_centre(varied: Knees) -> None:
    vol, truths = varied
    a = ndimage.gaussian_filter(vol.array.astype(float), 1.0)
    for t in truths:
        medial, superior = _dirs(t)
        for edge, out in ((t.tibia_medial_rc, medial), (t.tibia_lateral_rc, -medial)):
            if t.osteophyte_grade > 0:
                break  # spurs grow beyond the margins
            below = np.asarray(edge) - superior * 2.0 / t.pixel_mm
            inside = ndimage.map_coordinates(a, (below - out * 2.0 / t.pixel_mm)[:, None], order=1)
            outside = ndimage.map_coordinates(a, (below + out * 2.5 / t.pixel_mm)[:, None], order=1)
            assert inside[0] > outside[0] + 100
        width = np.hypot(*(np.subtract(t.tibia_lateral_rc, t.tibia_medial_rc))) * t.pixel_mm
        assert width == pytest.approx(t.tibial_width_mm, abs=1e-6)
        # the centre: in the notch's column above the tibial spines (bone 8 mm below it),
        # between the tibial margins
        c = np.asarray(t.centre_rc)
        v = [
            ndimage.map_coordinates(a, (c + k * superior * 8.0 / t.pixel_mm)[:, None], order=1)[0]
            for k in (-1, 0)
        ]
        assert v[1] < v[0] - 100
        along = np.dot(c - np.asarray(t.tibia_lateral_rc), medial) * t.pixel_mm
        assert 0.3 < along / t.tibial_width_mm < 0.7


def test_osteophytes_make_the_margins_denser(plain: Knees) -> None:
    vol, (healthy, narrowed) = plain
    a = vol.array.astype(float)

    def outside_margin(t: KneeXrayTruth) -> float:
        medial, superior = _dirs(t)
        p = np.asarray(t.tibia_medial_rc) + medial * 2.0 / t.pixel_mm - superior * 1.5 / t.pixel_mm
        r, c = int(p[0]), int(p[1])
        return float(a[r - 5 : r + 6, c - 5 : c + 6].mean())

    assert outside_margin(narrowed) > outside_margin(healthy) + 100


def test_films_are_seeded_and_varied(varied: Knees) -> None:
    again = _knees(True, seed=5)
    assert np.array_equal(again[0].array, varied[0].array) and again[1] == varied[1]
    other = render_knee_radiograph({"right": (KneeParams(side="right"), 0, 0, True)}, seed=6)
    assert other[1][0].rotation_deg != varied[1][0].rotation_deg


def test_film_truth_markers_and_sides() -> None:
    vol, truths, film = render_knee_film(
        {"right": (KneeParams(side="right"), 1, 0, True)}, seed=2, vary=False
    )
    assert film.view == "pa_one_knee" and film.sides == ("right",) and len(truths) == 1
    a = vol.array.astype(float)
    letters = dict((m[0], m[1:]) for m in film.markers)
    assert set(letters) == {"R", "L"} and letters["R"][1] < letters["L"][1]
    for r, c in letters.values():
        assert a[int(r) - 3 : int(r) + 4, int(c) - 12 : int(c) + 13].max() > 3500  # lead
