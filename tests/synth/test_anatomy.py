"""The synthetic knee's anatomy: loaded contact, meniscal horns, cartilage outlines,
metaphysis, vessels and Hoffa's fat pad (continuous shape and small fine-grid renders)."""

from __future__ import annotations

import numpy as np
import pytest
from synth_thickness_check import measured_plate_thickness

from kneescope.synth.anatomy import THIN_MM, KneeShape
from kneescope.synth.knee import render_knee
from kneescope.synth.params import KneeParams, SizeSpec, sample_knee_params
from kneescope.synth.truth import plate_bone_triangles


def _shapes() -> list[KneeShape]:
    return [
        KneeShape.from_params(KneeParams()),
        KneeShape.from_params(sample_knee_params(np.random.default_rng(11), klg=2)),
    ]


@pytest.fixture(scope="module")
def shapes() -> list[KneeShape]:
    return _shapes()


def _cartilage_gap(shape: KneeShape, medial: bool) -> tuple[np.ndarray, float]:
    """Vertical gap (mm) between femoral cartilage underside and tibial cartilage top over
    the condyle's columns, and the area (mm^2) of one column."""
    xr = shape.x_med if medial else shape.x_lat
    plate = "medial_tibial" if medial else "lateral_tibial"
    gx, gy, bottom = shape.femur_underside(xr, step_mm=0.01)
    t_fem = shape.femoral_thickness(gx, gy, bottom)
    floor = shape.plateau_height(gx, gy)
    top = floor + shape.thickness(plate, gx, gy, floor)
    cell = float((gx[1, 0] - gx[0, 0]) * (gy[0, 1] - gy[0, 0]))
    return bottom - t_fem - top, cell


@pytest.mark.parametrize("medial", [True, False])
def test_loaded_contact_touches_over_a_patch_without_overlap(
    shapes: list[KneeShape], medial: bool
) -> None:
    """Default knees are in loaded contact: the cartilage surfaces meet (no fluid gap, no
    overlap) over a contact patch of >= 50 mm^2 in each compartment."""
    for shape in shapes:
        gap, cell = _cartilage_gap(shape, medial)
        assert float(gap.min()) == pytest.approx(0.0, abs=0.03)
        assert float((gap < 0.05).sum()) * cell >= 50.0


def test_joint_gap_still_gives_an_unloaded_gap() -> None:
    shape = KneeShape.from_params(KneeParams(joint_gap=0.4))
    assert shape.contact_boxes == ()
    for medial in (True, False):
        gap, _ = _cartilage_gap(shape, medial)
        assert float(gap.min()) == pytest.approx(0.4, abs=0.03)


def test_contact_renders_cartilage_on_cartilage_and_thickness_truth_holds() -> None:
    """A 0.25 mm grid through the medial contact patch: in the patch every column passes
    from femoral to tibial cartilage with no voxel of anything else between them, and the
    measured tibial thickness there agrees with truth (the compressed plate) within 3 %."""
    shape = KneeShape.from_params(KneeParams())
    x0, x1, y0, y1 = shape.contact_boxes[0]
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    size = SizeSpec(name="contact", shape=(48, 64, 48), spacing_mm=(0.25, 0.25, 0.25))
    params = KneeParams(offset_mm=(cx, cy, 2.0 - 10.0), noise_sigma=0.0)
    sample = render_knee(params, size)
    lab = sample.labels.array  # axes: i -> x (lateral), j -> -z (inferior), k -> y (anterior)
    touching = seam = 0
    for i in range(8, 40):
        for k in range(8, 40):
            col = lab[i, :, k]
            fem = np.flatnonzero(col == 2)
            tib = np.flatnonzero(col == 4)
            if fem.size == 0 or tib.size == 0:
                continue
            between = col[fem.max() + 1 : tib.min()]
            if between.size == 0:
                touching += 1
            else:
                seam += 1
    assert touching > 300  # of 32 x 32 columns around the patch centre (8 x 8 mm)
    assert seam < 0.1 * touching
    got = measured_plate_thickness(lab, 4, 3, size.spacing_mm)
    assert got > 0.5
    # thickness of the imposed (compressed) field under the same voxels
    tib_cols = (lab == 4).any(axis=1)
    ii, kk = np.nonzero(tib_cols)
    pts = np.stack([ii, np.zeros_like(ii), kk, np.ones_like(ii)]).astype(np.float64)
    canon = (sample.to_canonical @ pts)[:3].astype(np.float32)
    floor = shape.plateau_height(canon[0], canon[1])
    imposed = shape.thickness("medial_tibial", canon[0], canon[1], floor)
    assert got == pytest.approx(float(imposed.mean()), rel=0.05)


def _meniscus_profile(shape: KneeShape, medial: bool, angle: float) -> tuple[float, float]:
    """(largest height, radial width) of the meniscus along the ray at ``angle`` (rad, 0
    towards the notch, +-pi the periphery) from the compartment centre."""
    p = shape.p
    if medial:
        cx, cy, inward = shape.cxm - p.extrusion_medial, shape.cym, 1.0
    else:
        cx, cy, inward = shape.cxl + p.extrusion_lateral, shape.cyl, -1.0
    r = np.arange(0.0, 40.0, 0.05, dtype=np.float32)
    zs = np.arange(-4.0, 12.0, 0.05, dtype=np.float32)
    rr, zz = np.meshgrid(r, zs, indexing="ij")
    x = (cx + inward * rr * np.cos(angle)).astype(np.float32)
    y = (cy + rr * np.sin(angle)).astype(np.float32)
    inside = shape.meniscus_sdf(x, y, zz, medial) < 0
    height = inside.sum(axis=1) * 0.05
    covered = height > 0
    return float(height.max()), float(covered.sum() * 0.05)


@pytest.mark.parametrize("medial", [True, False])
def test_meniscal_horns_are_narrower_and_lower_than_the_body(medial: bool) -> None:
    shape = KneeShape.from_params(KneeParams())
    gap = 0.55 if medial else 0.3
    body_h, body_w = _meniscus_profile(shape, medial, np.pi)
    for horn in (gap + 0.3, -(gap + 0.3)):  # anterior and posterior horn near their tips
        horn_h, horn_w = _meniscus_profile(shape, medial, horn)
        assert horn_h < 0.85 * body_h
        assert horn_w < 0.9 * body_w
    assert body_h == pytest.approx(shape.p.meniscus_height * shape.s, rel=0.05)


def _covered_points(shape: KneeShape, plate: str) -> tuple[np.ndarray, np.ndarray]:
    tri = plate_bone_triangles(plate, shape)
    c = tri.mean(axis=1).astype(np.float32)
    t = shape.thickness(plate, c[:, 0], c[:, 1], c[:, 2], lesions=False)
    return c, t > THIN_MM


def _front_y(shape: KneeShape, c: np.ndarray, cov: np.ndarray, x_mm: float) -> float:
    """Most distal-posterior y (mm) of covered femoral bone in front of the condyle bottoms
    at |x| = ``x_mm``."""
    band = cov & (np.abs(np.abs(c[:, 0]) - x_mm) < 1.0) & (c[:, 1] > shape.yd)
    return float(c[band, 1].min())


def test_trochlear_cartilage_tapers_to_the_notch(shapes: list[KneeShape]) -> None:
    """The notch ends anteriorly in a rounded apex: the trochlear cartilage reaches less far
    distally in the midline than beside it (today's footprint had a straight edge)."""
    for shape in shapes:
        c, cov = _covered_points(shape, "femoral")
        hn = 0.5 * shape.p.notch_width * shape.s
        assert _front_y(shape, c, cov, 0.0) > _front_y(shape, c, cov, 0.8 * hn) + 4.0


def _posterior_top(
    shape: KneeShape, c: np.ndarray, cov: np.ndarray, x_mm: float, half: float
) -> float:
    """Highest covered z (mm) on the posterior condyle at |x - condyle centre| = ``half``."""
    band = cov & (np.abs(np.abs(c[:, 0] - x_mm) - half) < 1.0) & (c[:, 1] < shape.yd - 5.0)
    return float(c[band, 2].max())


def test_condylar_plates_have_rounded_posterior_ends(shapes: list[KneeShape]) -> None:
    for shape in shapes:
        c, cov = _covered_points(shape, "femoral")
        for xr in (shape.x_med, shape.x_lat):
            mid, half = 0.5 * (xr[0] + xr[1]), 0.5 * (xr[1] - xr[0])
            centre = _posterior_top(shape, c, cov, mid, 0.0)
            assert centre > _posterior_top(shape, c, cov, mid, 0.6 * half) + 1.0


def test_patellar_cartilage_is_oval(shapes: list[KneeShape]) -> None:
    """Covered along its axes at 80 % of its half-extent, bare at 85 % in the corners."""
    for shape in shapes:
        c, cov = _covered_points(shape, "patellar")
        px, _, pz = shape.pc
        dx, dz = c[cov, 0] - px, c[cov, 2] - pz
        hx, hz = 0.8 * float(np.abs(dx).max()), 0.8 * float(np.abs(dz).max())

        def at(u: float, v: float, dx: np.ndarray = dx, dz: np.ndarray = dz) -> bool:
            return bool(((np.abs(dx - u) < 1.0) & (np.abs(dz - v) < 1.0)).any())

        assert at(0.0, hz) or at(0.0, -hz)
        assert at(hx, 0.0) or at(-hx, 0.0)
        for sx in (-1, 1):
            for sz in (-1, 1):
                assert not at(sx * hx * 0.85 / 0.8, sz * hz * 0.85 / 0.8)


def _femur_width(shape: KneeShape, z: float) -> float:
    """Mediolateral extent (mm) of the femur at height ``z`` behind the trochlea."""
    xs = np.arange(-70.0, 70.0, 0.1, dtype=np.float32)
    ys = np.arange(shape.yd - 30.0, shape.yd + 8.0, 0.5, dtype=np.float32)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    inside = (shape.femur_sdf(gx, gy, np.full_like(gx, z)) < 0).any(axis=1)
    return float(xs[inside].max() - xs[inside].min())


def test_femoral_metaphysis_flares_smoothly_into_the_shaft(shapes: list[KneeShape]) -> None:
    """Coronal width every 0.1 az: the full condylar width up to the epicondyles (today the
    condyle tops were cut flat into shoulders under a roof-shaped taper), then narrowing
    monotonically without a kink (bounded second difference) and concavely (a flare) into
    the shaft."""
    for shape in shapes:
        zb = 0.5 * (shape.zb_med + shape.zb_lat)
        span = shape.x_lat[1] - shape.x_med[0]
        zs = zb + shape.az * np.linspace(1.0, 3.6, 27)
        w = np.array([_femur_width(shape, float(z)) for z in zs])
        assert w[7] >= 0.95 * span  # 1.7 az above the condyle bottoms
        assert np.all(np.diff(w) <= 0.3)
        assert float(np.abs(np.diff(w, 2)).max()) <= 5.0
        assert w[-1] == pytest.approx(28.0 * shape.s, abs=2.0)
        upper = w[zs > zb + 2.4 * shape.az]
        assert np.all(np.diff(upper, 2) >= -0.3)  # concave flare near the shaft


def test_vessels_run_behind_the_joint_outside_the_bones(shapes: list[KneeShape]) -> None:
    for shape in shapes:
        g = np.arange(-70.0, 90.0, 1.0, dtype=np.float32)
        x, y, z = np.meshgrid(g, g, g, indexing="ij")
        v = shape.vessel_sdf(x, y, z) < 0
        assert 3_000 < int(v.sum()) < 20_000  # ~ two 3-4 mm-radius tubes over 160 mm, mm^3
        xv, yv, zv = x[v], y[v], z[v]
        assert float(shape.femur_sdf(xv, yv, zv).min()) > 2.0
        assert float(shape.tibia_sdf(xv, yv, zv).min()) > 2.0
        assert float(shape.leg_sdf(xv, yv, zv).max()) < -3.0
        joint = np.abs(zv) < 5.0
        assert float(yv[joint].max()) < shape.yd - shape.ay  # behind the posterior condyles


def test_fat_pad_sits_behind_the_tendon_below_the_patella(shapes: list[KneeShape]) -> None:
    for shape in shapes:
        g = np.arange(-40.0, 60.0, 0.5, dtype=np.float32)
        x, y, z = np.meshgrid(g, g, g, indexing="ij")
        pad = shape.fat_pad_sdf(x, y, z) < 0
        xv, yv, zv = x[pad], y[pad], z[pad]
        volume = float(pad.sum()) * 0.125
        assert 3_000.0 < volume < 15_000.0
        assert float(shape.patellar_tendon_sdf(xv, yv, zv).min()) > 0.0
        assert float(zv.mean()) < shape.pc[2] - shape.pr[2]  # below the patella's centre - half
        assert float(yv.mean()) > 15.0  # anterior, in front of the plateau centre
        bone = (
            (shape.femur_sdf(xv, yv, zv) < 0)
            | (shape.tibia_sdf(xv, yv, zv) < 0)
            | (shape.patella_sdf(xv, yv, zv) < 0)
        )
        assert float(bone.mean()) < 0.25
