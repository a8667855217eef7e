"""Bone-marrow lesions and meniscal tears in the synthetic knee: where they are, how often
they are drawn, and that the label map and truth stay exactly what they were."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from kneescope.core import tissues as tt
from kneescope.synth.anatomy import KneeShape
from kneescope.synth.knee import KneeSample, render_knee
from kneescope.synth.params import (
    SMALL,
    KneeParams,
    MarrowLesion,
    MeniscalTear,
    sample_knee_params,
)

LESIONS = (
    MarrowLesion(bone="femur", centre_mm=(-25.0, 0.0), radius_mm=8.0),
    MarrowLesion(bone="tibia", centre_mm=(-19.0, 2.0), radius_mm=7.0),
)
TEARS = (
    MeniscalTear(medial=True, kind="horizontal", angle_deg=-130.0, length_mm=15.0, depth=0.8),
    MeniscalTear(medial=True, kind="radial", angle_deg=170.0, depth=0.7),
    MeniscalTear(medial=False, kind="maceration", angle_deg=-170.0, length_mm=14.0, depth=0.9),
)


def _grid(lo: tuple[float, float, float], hi: tuple[float, float, float], step: float) -> tuple:  # type: ignore[type-arg]
    axes = [np.arange(a, b, step, dtype=np.float32) for a, b in zip(lo, hi, strict=True)]
    return tuple(np.meshgrid(*axes, indexing="ij"))


def test_absent_without_parameters() -> None:
    shape = KneeShape.from_params(KneeParams())
    x, y, z = _grid((-40.0, -30.0, -20.0), (40.0, 30.0, 20.0), 2.0)
    for bone in ("femur", "tibia"):
        assert float(shape.marrow_lesion_sdf(x, y, z, bone).min()) == 100.0  # type: ignore[arg-type]
    for medial in (True, False):
        assert float(shape.meniscus_tear_sdf(x, y, z, medial).min()) == 100.0


@pytest.mark.parametrize("lesion", LESIONS, ids=lambda m: m.bone)
def test_marrow_lesion_is_subchondral_in_its_bone(lesion: MarrowLesion) -> None:
    """Most of the lesion lies inside its bone and it reaches the subchondral surface."""
    shape = KneeShape.from_params(KneeParams(marrow_lesions=(lesion,)))
    cx, cy = lesion.centre_mm
    x, y, z = _grid((cx - 12, cy - 12, -25.0), (cx + 12, cy + 12, 35.0), 0.25)
    inside = shape.marrow_lesion_sdf(x, y, z, lesion.bone) < 0
    bone_sdf = shape.femur_sdf if lesion.bone == "femur" else shape.tibia_sdf
    other = shape.tibia_sdf if lesion.bone == "femur" else shape.femur_sdf
    d = bone_sdf(x[inside], y[inside], z[inside])
    volume = float(inside.sum()) * 0.25**3
    nominal = 4.0 / 3.0 * np.pi * 0.7 * lesion.radius_mm**3
    assert volume == pytest.approx(nominal, rel=0.3)
    assert float((d < 0).mean()) > 0.6
    assert float(d[d < 0].max()) > -0.3  # abuts the bone surface (the subchondral plate)
    assert float(other(x[inside], y[inside], z[inside]).min()) > 0.0  # not in the other bone


@pytest.mark.parametrize("tear", TEARS, ids=lambda t: t.kind)
def test_meniscal_tear_lies_within_its_meniscus(tear: MeniscalTear) -> None:
    shape = KneeShape.from_params(KneeParams(meniscal_tears=(tear,)))
    x, y, z = _grid((-45.0, -30.0, -3.0), (45.0, 30.0, 10.0), 0.2)
    torn = shape.meniscus_tear_sdf(x, y, z, tear.medial) < 0
    assert int(torn.sum()) > 50
    assert float(shape.meniscus_sdf(x[torn], y[torn], z[torn], tear.medial).max()) <= 0.0
    # the other meniscus is untouched
    assert not (shape.meniscus_tear_sdf(x, y, z, not tear.medial) < 0).any()
    if tear.kind == "horizontal":  # a thin cleft: at most 0.7 mm (+ a sample) per column
        assert float(torn.sum(axis=2).max()) * 0.2 <= 0.9
    if tear.kind == "radial":  # a thin cleft across the C: at most ~0.8 mm wide in any row
        assert float(torn.any(axis=2).sum(axis=1).max()) * 0.2 <= 2.0


@pytest.fixture(scope="module")
def pair() -> tuple[KneeSample, KneeSample]:
    base = sample_knee_params(np.random.default_rng(5), klg=1)
    plain = KneeParams.model_validate({**base.model_dump(), "noise_sigma": 0.0})
    sick = KneeParams.model_validate(
        {**plain.model_dump(), "marrow_lesions": LESIONS, "meniscal_tears": TEARS}
    )
    return render_knee(plain, SMALL), render_knee(sick, SMALL)


def test_lesions_and_tears_leave_labels_and_truth_exactly_unchanged(
    pair: tuple[KneeSample, KneeSample],
) -> None:
    plain, sick = pair
    assert np.array_equal(plain.labels.array, sick.labels.array)
    assert plain.truth == sick.truth


def test_lesion_and_tear_tissue_is_drawn_inside_its_structure(
    pair: tuple[KneeSample, KneeSample],
) -> None:
    plain, sick = pair
    tis, lab = sick.tissues.array, sick.labels.array
    for tissue, label in (
        (tt.FEMUR_LESION, 1),
        (tt.TIBIA_LESION, 3),
        (tt.LATERAL_MENISCUS_TEAR, 9),
    ):
        here = tis == tissue
        assert int(here.sum()) > 0, tt.TISSUES[tissue]
        assert np.all(lab[here] == label), tt.TISSUES[tissue]
    assert not np.isin(plain.tissues.array, list(range(tt.FEMUR_LESION, 26))).any()
    # the image changes only in (or at the partial-volume edge of) the femur, the tibia and
    # the menisci (a thin cleft or a meniscus's thin free edge may change a voxel whose largest
    # share is a neighbour)
    changed = plain.image.array != sick.image.array
    hosts = ndimage.binary_dilation(np.isin(lab, (1, 3, 8, 9)), np.ones((3, 3, 3), bool))
    assert int(changed.sum()) > int((np.isin(tis, list(range(tt.FEMUR_LESION, 26)))).sum())
    assert not (changed & ~hosts).any()


@pytest.mark.parametrize("klg", [0, 1])
def test_no_lesions_or_tears_below_kl2(klg: int) -> None:
    for seed in range(40):
        p = sample_knee_params(np.random.default_rng(seed), klg=klg)
        assert p.marrow_lesions == () and p.meniscal_tears == ()


@pytest.mark.parametrize(
    ("klg", "lo", "hi"), [(2, 0.3, 0.7), pytest.param(4, 0.7, 0.97, marks=pytest.mark.slow)]
)
def test_sampled_frequency_grows_with_kl_grade(klg: int, lo: float, hi: float) -> None:
    draws = [sample_knee_params(np.random.default_rng(s), klg=klg) for s in range(150)]
    bml = np.mean([bool(p.marrow_lesions) for p in draws])
    tear = np.mean([bool(p.meniscal_tears) for p in draws])
    assert lo < bml < hi
    assert lo - 0.05 < tear < hi
    medial = np.mean([t.medial for p in draws for t in p.meniscal_tears])
    assert medial > 0.6  # mostly the medial meniscus
    for p in draws[:20]:  # every sampled lesion sits under its bone's load-bearing surface
        shape = KneeShape.from_params(p)
        for m in p.marrow_lesions:
            cx, cy = (c * shape.s for c in m.centre_mm)
            x, y, z = _grid((cx - 3, cy - 3, -30.0), (cx + 3, cy + 3, 40.0), 0.5)
            inside = shape.marrow_lesion_sdf(x, y, z, m.bone) < 0
            bone_sdf = shape.femur_sdf if m.bone == "femur" else shape.tibia_sdf
            assert float((bone_sdf(x[inside], y[inside], z[inside]) < 0).mean()) > 0.5
