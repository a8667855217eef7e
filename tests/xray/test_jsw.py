"""Joint space width (kneescope.xray.jsw) against exact truth: an analytic knee phantom whose
JSW is known at every column, the xray_jsw step, and the QC reasons for ROIs without a knee."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from kneescope.capabilities.radiographs.jsw_step import (
    JSW_RESULTS,
    XrayJsw,
    fixed_column,
    jsw_values,
)
from kneescope.cohort.item import Item
from kneescope.cohort.step import StepContext
from kneescope.cohort.step_registry import step_class
from kneescope.errors import InputError
from kneescope.xray.jsw import FIXED_FRACTIONS, measure_jsw

PX = 0.2  # mm per ROI pixel
N = 700


@dataclass(frozen=True)
class Phantom:
    """A knee drawn in the knee frame (plateau horizontal), then turned by ``angle_deg``."""

    roi: np.ndarray
    mjsw_medial_mm: float
    mjsw_lateral_mm: float
    fixed_medial_mm: tuple[float, ...]
    fixed_lateral_mm: tuple[float, ...]
    tibial_width_mm: float


def _phantom(
    *,
    mjsw_medial: float,
    mjsw_lateral: float,
    angle_deg: float,
    seed: int,
    half_width_mm: float = 38.0,
    notch_offset_mm: float = 1.5,
    curvature: float = 0.004,  # JSW rises by curvature * (x - x0)^2 (mm, x in mm)
    noise: float = 0.02,
) -> Phantom:
    """A knee phantom on the standard ROI grid (0.2 mm, right frame: medial = larger column).

    Knee frame, mm from the ROI centre (x to larger columns, z to larger rows): tibial plateau
    at z = 0 between the lateral margin x = -w and the medial margin x = +w (+ the notch
    offset), tibial spines at the notch; femoral condyles above with
    JSW(x) = mJSW + curvature * (x - x0)^2 in each compartment, x0 at the middle of the
    compartment; the intercondylar notch (no femur below z = -12 mm) 8 mm wide. Bone 1.0,
    soft tissue 0.35, Gaussian blur 0.25 mm, noise; then turned about the ROI's centre.
    """
    rng = np.random.default_rng(seed)
    up = 2  # supersampling
    n = N * up
    coords = (np.arange(n) - (n - 1) / 2.0) * PX / up
    z, x = np.meshgrid(coords, coords, indexing="ij")
    notch = notch_offset_mm
    lat, med = -half_width_mm + notch, half_width_mm + notch
    x0m, x0l = 0.5 * (notch + med), 0.5 * (notch + lat)

    def jsw_at(xv: np.ndarray) -> np.ndarray:
        m = mjsw_medial + curvature * (xv - x0m) ** 2
        lt = mjsw_lateral + curvature * (xv - x0l) ** 2
        return np.where(xv >= notch, m, lt)

    tibia = (z >= 0.0) & (x >= lat) & (x <= med)
    spines = (np.abs(x - notch) < 4.0) & (z >= -3.0 + np.abs(x - notch) * 0.75)
    femur_bottom = -jsw_at(x)
    femur = (z <= femur_bottom) & (x >= lat + 1.0) & (x <= med - 1.0)
    femur &= ~((np.abs(x - notch) < 4.0) & (z > -12.0))
    img = np.where(tibia | femur | spines, 1.0, 0.35)
    img = img.reshape(N, up, N, up).mean(axis=(1, 3))
    img = ndimage.gaussian_filter(img, 0.25 / PX)
    img = ndimage.rotate(img, angle_deg, reshape=False, order=1, mode="nearest")
    img = img + rng.normal(0.0, noise, img.shape)
    width = med - lat
    fixed_m = tuple(float(jsw_at(np.array(med - f * width))) for f in FIXED_FRACTIONS)
    fixed_l = tuple(float(jsw_at(np.array(lat + f * width))) for f in FIXED_FRACTIONS)
    # mJSW over the central 60 % of each compartment: x0 lies in it, so the minimum is mJSW
    return Phantom(
        roi=img.astype(np.float32),
        mjsw_medial_mm=mjsw_medial,
        mjsw_lateral_mm=mjsw_lateral,
        fixed_medial_mm=fixed_m,
        fixed_lateral_mm=fixed_l,
        tibial_width_mm=width,
    )


@pytest.mark.parametrize(
    ("mjsw_medial", "mjsw_lateral", "angle_deg"),
    [(4.6, 6.2, 0.0), (2.0, 5.5, 6.0), (1.0, 3.0, -7.0)],
)
def test_measure_jsw_matches_the_phantom(
    mjsw_medial: float, mjsw_lateral: float, angle_deg: float
) -> None:
    ph = _phantom(mjsw_medial=mjsw_medial, mjsw_lateral=mjsw_lateral, angle_deg=angle_deg, seed=3)
    res = measure_jsw(ph.roi, PX)
    assert res.reason is None
    assert res.mjsw_medial_mm == pytest.approx(ph.mjsw_medial_mm, abs=0.15)
    assert res.mjsw_lateral_mm == pytest.approx(ph.mjsw_lateral_mm, abs=0.15)
    assert res.tibial_width_mm == pytest.approx(ph.tibial_width_mm, abs=0.6)
    # the image was turned by angle_deg counter-clockwise on screen: the plateau rises medially
    assert res.plateau_angle_deg == pytest.approx(angle_deg, abs=0.3)
    np.testing.assert_allclose(res.jsw_fixed_medial_mm, ph.fixed_medial_mm, atol=0.2)
    np.testing.assert_allclose(res.jsw_fixed_lateral_mm, ph.fixed_lateral_mm, atol=0.2)


def test_measure_jsw_mirrored_roi_swaps_the_compartments() -> None:
    ph = _phantom(mjsw_medial=2.5, mjsw_lateral=5.0, angle_deg=3.0, seed=5)
    res = measure_jsw(ph.roi[:, ::-1].copy(), PX)
    assert res.reason is None
    assert res.mjsw_medial_mm == pytest.approx(5.0, abs=0.15)
    assert res.mjsw_lateral_mm == pytest.approx(2.5, abs=0.15)
    assert res.plateau_angle_deg == pytest.approx(-3.0, abs=0.3)


def test_measure_jsw_scales_with_the_pixel_spacing() -> None:
    """The same ROI read at 0.25 mm per pixel measures 1.25 times as wide a joint space."""
    ph = _phantom(mjsw_medial=3.0, mjsw_lateral=4.0, angle_deg=0.0, seed=7)
    res = measure_jsw(ph.roi, 0.25)
    assert res.mjsw_medial_mm == pytest.approx(3.0 * 1.25, abs=0.2)
    assert res.mjsw_lateral_mm == pytest.approx(4.0 * 1.25, abs=0.2)


@pytest.mark.parametrize(
    "kind",
    ["noise", "flat", "bone only", "soft tissue only"],
)
def test_no_knee_gives_a_reason_not_a_number(kind: str) -> None:
    rng = np.random.default_rng(1)
    if kind == "noise":
        roi = rng.normal(100.0, 10.0, (N, N))
    elif kind == "flat":
        roi = np.full((N, N), 7.0)
    elif kind == "bone only":
        roi = 1.0 + rng.normal(0.0, 0.02, (N, N))
        roi[:, :100] = 0.3
    else:
        roi = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (N, N)), 20.0)
    res = measure_jsw(roi.astype(np.float32), PX)
    assert res.reason
    assert math.isnan(res.mjsw_medial_mm)
    assert math.isnan(res.mjsw_lateral_mm)
    assert all(math.isnan(v) for v in res.jsw_fixed_medial_mm + res.jsw_fixed_lateral_mm)


@pytest.mark.parametrize(
    ("roi", "spacing"),
    [
        (np.zeros((N, N, 3)), PX),
        (np.zeros((40, 40)), PX),
        (np.full((N, N), np.nan), PX),
        (np.zeros((N, N)), 0.0),
        (np.array([["a"] * 3] * 3), PX),
    ],
)
def test_measure_jsw_refuses_what_is_not_a_knee_roi(roi: np.ndarray, spacing: float) -> None:
    with pytest.raises(InputError):
        measure_jsw(roi, spacing)


def test_xray_jsw_step_is_registered_and_fills_its_columns(tmp_path: Path) -> None:
    cls = step_class("xray_jsw")
    assert cls is XrayJsw
    ph = _phantom(mjsw_medial=3.5, mjsw_lateral=5.0, angle_deg=-4.0, seed=11)
    step = XrayJsw()
    result = step.run(Item("knee", side="left"), StepContext(tmp_path, data={"knee_roi": ph.roi}))
    values = result.values
    assert set(values) == {c.name for c in JSW_RESULTS}
    assert values["jsw_reason"] == ""
    assert values["mjsw_medial_mm"] == pytest.approx(3.5, abs=0.15)
    assert values["mjsw_lateral_mm"] == pytest.approx(5.0, abs=0.15)
    medial_0225 = values[fixed_column("medial", 0.225)]
    assert isinstance(medial_0225, float)
    assert medial_0225 == pytest.approx(ph.fixed_medial_mm[2], abs=0.2)
    assert values["jsn_medial"] in (0, 1, 2, 3)


def test_xray_jsw_step_without_a_roi_gives_the_reason(tmp_path: Path) -> None:
    values = XrayJsw().run(Item("knee"), StepContext(tmp_path, data={"knee_roi": None})).values
    assert values["jsw_reason"]
    assert values["mjsw_medial_mm"] is None
    assert values["jsn_lateral"] is None


def test_xray_jsw_step_refuses_a_roi_of_the_wrong_size() -> None:
    with pytest.raises(InputError, match="700 x 700"):
        jsw_values(np.zeros((224, 224), dtype=np.float32))


def test_measure_jsw_on_a_synthetic_film_against_its_truth() -> None:
    """A fixed-flexion film (kneescope.synth): each knee's ROI cut around its true centre;
    mJSW and the fixed-location JSW against the film's exact truth."""
    from kneescope.synth.knee_film_set import knee_film
    from kneescope.xray.roi import extract_roi

    film = knee_film(2026, 0, kl_weights=[1.0, 1.0, 1.0, 0.0, 0.0], implant_rate=0.0)
    for t in film.knees:
        roi = extract_roi(
            film.image.array, (t.pixel_mm, t.pixel_mm), t.centre_rc, mirror=t.side == "left"
        )
        res = measure_jsw(roi)
        assert res.reason is None
        assert res.mjsw_medial_mm == pytest.approx(t.mjsw_medial_mm, abs=0.3)
        assert res.mjsw_lateral_mm == pytest.approx(t.mjsw_lateral_mm, abs=0.3)
        err_m = np.subtract(res.jsw_fixed_medial_mm, t.jsw_fixed_medial_mm)
        err_l = np.subtract(res.jsw_fixed_lateral_mm, t.jsw_fixed_lateral_mm)
        assert float(np.mean(np.abs(err_m))) < 0.5
        assert float(np.mean(np.abs(err_l))) < 0.5
        assert res.tibial_width_mm == pytest.approx(t.tibial_width_mm, abs=3.0)
