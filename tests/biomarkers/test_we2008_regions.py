"""The Wirth-Eckstein (2008) region definitions (kneescope.core.we2008) on bone surfaces of
known geometry: a flat elliptical tibial plate and a cylindrical femur with a notch, where
every landmark and border is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kneescope.core import we2008

STEP = 0.25  # mm


def tibial_plate(
    centre: tuple[float, float] = (20.0, 0.0), axes: tuple[float, float] = (15.0, 25.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 3) on a flat elliptical plate (knee coordinates) and their areas."""
    m, a = np.meshgrid(
        np.arange(centre[0] - axes[0], centre[0] + axes[0], STEP) + STEP / 2,
        np.arange(centre[1] - axes[1], centre[1] + axes[1], STEP) + STEP / 2,
        indexing="ij",
    )
    inside = ((m - centre[0]) / axes[0]) ** 2 + ((a - centre[1]) / axes[1]) ** 2 <= 1.0
    pts = np.stack([m[inside], a[inside], np.zeros(int(inside.sum()))], axis=1)
    return pts, np.full(len(pts), STEP * STEP)


NOTCH_DEG, POSTERIOR_DEG, RADIUS = 40.0, -110.0, 25.0


def cylindrical_femur() -> tuple[np.ndarray, np.ndarray]:
    """Points on a cylinder (axis medial-lateral, radius 25 mm, centre 25 mm up): condyles
    at 5-35 mm either side of the notch (centre line at 0) from -110 deg to the trochlear
    notch at +40 deg, and a trochlea across the notch from there to +120 deg."""
    dtheta = STEP / RADIUS
    theta = np.arange(math.radians(POSTERIOR_DEG), math.radians(120.0), dtheta) + dtheta / 2
    m_all = np.arange(-35.0, 35.0, STEP) + STEP / 2
    mm, tt = np.meshgrid(m_all, theta, indexing="ij")
    keep = (np.abs(mm) >= 5.0) | (tt >= math.radians(NOTCH_DEG))
    m, t = mm[keep], tt[keep]
    pts = np.stack([m, RADIUS * np.sin(t), RADIUS - RADIUS * np.cos(t)], axis=1)
    return pts, np.full(len(pts), STEP * STEP)


def test_tibial_central_ellipse_holds_a_fifth_and_diagonals_split_the_rest() -> None:
    pts, area = tibial_plate()
    tab = np.ones(len(pts), bool)
    masks = we2008.tibial_region_masks(pts, area, tab, tab, "medial_tibial")
    total = area.sum()
    assert area[masks["cMT"]].sum() / total == pytest.approx(0.2, abs=0.002)
    # the five subregions partition the plate
    stacked = np.stack([masks[f"{s}MT"] for s in we2008.TIBIAL_SUBREGIONS])
    assert (stacked.sum(axis=0) == 1).all()
    assert masks["MT"].all()

    def region_of(m: float, a: float) -> str:
        i = int(np.argmin(np.hypot(pts[:, 0] - m, pts[:, 1] - a)))
        return next(s for s in we2008.TIBIAL_SUBREGIONS if masks[f"{s}MT"][i])

    assert region_of(20.0, 0.0) == "c"
    assert region_of(20.0, 22.0) == "a"
    assert region_of(20.0, -22.0) == "p"
    # medial plate: internal is towards the lateral plate (smaller medial coordinate)
    assert region_of(7.0, 0.0) == "i"
    assert region_of(33.0, 0.0) == "e"
    lateral = we2008.tibial_region_masks(pts, area, tab, tab, "lateral_tibial")
    i = int(np.argmin(np.hypot(pts[:, 0] - 33.0, pts[:, 1])))
    assert lateral["iLT"][i]  # lateral plate: internal is the medial side


def test_tibial_borders_ignore_a_stray_vertex() -> None:
    pts, area = tibial_plate()
    tab = np.ones(len(pts), bool)
    before = we2008.tibial_region_masks(pts, area, tab, tab, "medial_tibial")
    stray = np.vstack([pts, [[60.0, 40.0, 0.0]]])
    area2 = np.append(area, 0.1)
    tab2 = np.ones(len(stray), bool)
    after = we2008.tibial_region_masks(stray, area2, tab2, tab2, "medial_tibial")
    for name, mask in before.items():
        changed = float(area[mask != after[name][:-1]].sum())
        assert changed <= 0.002 * area.sum(), name


def test_femoral_landmarks_and_borders_on_a_cylinder() -> None:
    pts, area = cylindrical_femur()
    tab = np.ones(len(pts), bool)
    geo = we2008.femoral_geometry(pts, area, tab, tab)
    assert geo is not None
    assert geo.circle.radius_mm == pytest.approx(RADIUS, rel=1e-3)
    assert geo.notch_medial_mm == pytest.approx(0.0, abs=0.2)
    assert geo.notch_deg == pytest.approx(NOTCH_DEG, abs=0.5)
    for post, border in zip(geo.posterior_deg, geo.border_deg, strict=True):
        assert post == pytest.approx(POSTERIOR_DEG, abs=1.0)
        assert border == pytest.approx(NOTCH_DEG + 0.6 * (POSTERIOR_DEG - NOTCH_DEG), abs=1.0)
    for lo, hi in (geo.thirds_mm[0], (-geo.thirds_mm[1][1], -geo.thirds_mm[1][0])):
        assert (lo, hi) == pytest.approx((5.0, 35.0), abs=0.2)
    masks = we2008.femoral_region_masks(pts, area, tab, tab)
    plates = np.stack([masks[r] for r in ("cMF", "cLF", "TrMF", "TrLF", "pMF", "pLF")])
    assert (plates.sum(axis=0) == 1).all()
    # cMF spans 60 % of the condyle's angle behind the notch; its thirds are equally wide
    share = area[masks["cMF"]].sum() / area[masks["cMF"] | masks["pMF"]].sum()
    assert share == pytest.approx(0.6, abs=0.01)
    for code in "ML":
        thirds = [area[masks[f"{t}c{code}F"]].sum() for t in we2008.FEMORAL_THIRDS]
        assert np.ptp(thirds) / np.mean(thirds) < 0.02
    # internal = towards the notch
    i = int(np.argmin(np.hypot(pts[:, 0] - 7.0, pts[:, 2] - 0.0)))
    assert masks["icMF"][i]
    i = int(np.argmin(np.hypot(pts[:, 0] + 33.0, pts[:, 2] - 0.0)))
    assert masks["ecLF"][i]


def test_quantities_and_the_aggregate_convention() -> None:
    pts, area = tibial_plate()
    covered = np.hypot(pts[:, 0] - 20.0, pts[:, 1]) > 3.0  # a denuded disc at the centre
    tab = np.ones(len(pts), bool)
    thickness = np.where(covered, 2.0, np.nan)
    volume = np.where(covered, 2.0 * area, 0.0)
    masks = we2008.tibial_region_masks(pts, area, covered, tab, "medial_tibial")
    q = we2008.region_quantities(masks, area, covered, thickness, volume)
    disc = float(area[~covered].sum())
    assert q["we2008_MT_dABp_pct"] == pytest.approx(100 * disc / area.sum())
    assert q["we2008_MT_ThCcAB_mm"] == pytest.approx(2.0)
    assert q["we2008_MT_ThCtAB_mm"] == pytest.approx(2.0 * (1 - disc / area.sum()))
    assert q["we2008_aMT_dABp_pct"] == 0.0
    values = {c: 1.0 for c in we2008.all_columns()}
    values.update({we2008.column("MT", "ThCtAB_mm"): 1.5, we2008.column("cMF", "ThCtAB_mm"): 2.0})
    values.update({we2008.column("MT", "tAB_mm2"): 100.0, we2008.column("MT", "cAB_mm2"): 90.0})
    values.update({we2008.column("cMF", "tAB_mm2"): 300.0, we2008.column("cMF", "cAB_mm2"): 300.0})
    agg = we2008.aggregate_quantities(values)
    assert agg["we2008_MFTC_ThCtAB_mm"] == pytest.approx(3.5)  # summed, not averaged
    assert agg["we2008_MFTC_tAB_mm2"] == pytest.approx(400.0)
    assert agg["we2008_MFTC_dABp_pct"] == pytest.approx(2.5)
    values[we2008.column("ccMF", "ThCcAB_mm")] = float("nan")
    assert math.isnan(we2008.aggregate_quantities(values)["we2008_cMFTC_ThCcAB_mm"])
