"""The renderer's tissue map, contrasts and loaded femorotibial contact (exact truth)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from kneescope.core import tissues as tt
from kneescope.synth.knee import KneeSample, render_knee
from kneescope.synth.params import FULL, SMALL, KneeParams, SizeSpec, sample_knee_params


def _render(contrast: str = "dess", **scan: float) -> KneeSample:
    params = sample_knee_params(np.random.default_rng(3), klg=2).model_dump()
    params.update(contrast=contrast, **scan)
    return render_knee(KneeParams.model_validate(params), SMALL)


@pytest.fixture(scope="module")
def dess() -> KneeSample:
    return _render("dess", bias_strength=0.0, noise_sigma=0.02)


def _medians(sample: KneeSample) -> dict[str, float]:
    """Median image value (relative signal, 1.0 = DESS fluid) inside each tissue: the voxels
    whose 6 face neighbours are the same tissue, so partial volume does not enter."""
    img = sample.image.array.astype(np.float64) / 1000.0
    tis = sample.tissues.array
    out = {}
    for value, name in tt.TISSUES.items():
        core = ndimage.binary_erosion(tis == value)
        if core.sum() >= 10:
            out[name] = float(np.median(img[core]))
    return out


def test_tissue_map_is_consistent_with_the_label_map(dess: KneeSample) -> None:
    tis, lab = dess.tissues.array, dess.labels.array
    assert tis.dtype == np.uint8 and tis.shape == lab.shape
    assert dess.tissues.same_grid(dess.labels)
    assert int(tis.max()) < tt.N_TISSUES
    agree = tt.tissue_label_lut()[tis] == lab
    assert agree.mean() >= 0.99
    # wherever they differ, the voxel is on a label boundary
    boundary = ndimage.grey_dilation(lab, size=3) != ndimage.grey_erosion(lab, size=3)
    assert not (~agree & ~boundary).any()
    present = set(np.unique(tis).tolist())
    for tissue in (
        tt.FEMUR_MARROW,
        tt.FEMUR_CORTEX,
        tt.TIBIA_MARROW,
        tt.TIBIA_CORTEX,
        tt.PATELLA_MARROW,
        tt.FIBULA_MARROW,
        tt.FLUID,
        tt.TENDON,
        tt.CRUCIATE,
        tt.MUSCLE,
        tt.FAT,
    ):
        assert tissue in present, tt.TISSUES[tissue]
    # the cortex is a thin shell around the marrow of each bone
    for marrow, cortex in ((tt.FEMUR_MARROW, tt.FEMUR_CORTEX), (tt.TIBIA_MARROW, tt.TIBIA_CORTEX)):
        assert (tis == cortex).sum() < 0.5 * (tis == marrow).sum()


def test_dess_tissue_signal_follows_the_contrast_table(dess: KneeSample) -> None:
    """Water-excitation DESS: fluid > cartilage > muscle > marrow ~ fat > menisci, tendon;
    every tissue's median within 0.03 + 10 % of its table value (no bias field; noise 0.02)."""
    med = _medians(dess)
    table = tt.CONTRASTS["dess"]
    for value, name in tt.TISSUES.items():
        if name in med and value != tt.BACKGROUND:
            assert med[name] == pytest.approx(float(table[value]), abs=0.03, rel=0.1), name
    marrow = med["femur_marrow"]
    assert med["fluid"] > med["femoral_cartilage"] > med["muscle"] > 2.0 * marrow
    assert med["muscle"] > 3.0 * med["subcutaneous_fat"]
    assert med["medial_meniscus"] < 0.6 * marrow and med["tendon"] < 0.6 * marrow


@pytest.mark.slow  # three full renders (~4 s); the DESS tissue order is checked by default
def test_contrast_switch_changes_the_tissue_order(dess: KneeSample) -> None:
    t1_sample = _render("t1-gre", bias_strength=0.0, noise_sigma=0.02)
    t1 = _medians(t1_sample)
    iw = _medians(_render("iw-tse-fs", bias_strength=0.0, noise_sigma=0.02))
    de = _medians(dess)
    # T1 gradient echo without fat suppression: fat and marrow bright, fluid dark
    assert t1["subcutaneous_fat"] > t1["muscle"] and de["subcutaneous_fat"] < de["muscle"]
    assert t1["femur_marrow"] > t1["femoral_cartilage"] > t1["fluid"]
    # fat-suppressed intermediate weighting: fluid brightest, fat and marrow dark
    assert iw["fluid"] > iw["femoral_cartilage"] > iw["muscle"] > iw["femur_marrow"]
    # the label map does not depend on the contrast
    assert np.array_equal(t1_sample.labels.array, dess.labels.array)
    assert np.array_equal(t1_sample.tissues.array, dess.tissues.array)
    assert t1_sample.image.metadata.get("contrast") == "t1-gre"


def bright_seam_columns(sample: KneeSample, factor: float = 1.1) -> tuple[int, int]:
    """(columns where femoral and medial tibial cartilage touch in the label map, of those the
    columns whose interface voxels are brighter than ``factor`` x the cartilage median).

    A column runs along j (inferior); "touch" = the lowest femoral cartilage voxel is directly
    above a medial tibial cartilage voxel."""
    img = sample.image.array.astype(np.float64)
    lab = sample.labels.array
    ref = float(np.median(img[ndimage.binary_erosion((lab == 2) | (lab == 4))]))
    fem_above = (lab[:, :-1, :] == 2) & (lab[:, 1:, :] == 4)
    ii, jj, kk = np.nonzero(fem_above)
    pair_max = np.maximum(img[ii, jj, kk], img[ii, jj + 1, kk])
    columns = {(i, k) for i, k in zip(ii.tolist(), kk.tolist(), strict=True)}
    bright = {
        (i, k)
        for i, k, v in zip(ii.tolist(), kk.tolist(), pair_max.tolist(), strict=True)
        if v > factor * ref
    }
    return len(columns), len(bright)


def test_no_fluid_seam_at_loaded_femorotibial_contact() -> None:
    """Where the plates touch (gap 0, loaded), the interface is cartilage, not bright fluid.

    A full-resolution (0.7 x 0.36 x 0.36 mm) crop around the medial compartment, no noise and
    no bias, so a brighter interface voxel can only be fluid rendered between the plates."""
    size = SizeSpec(name="medial-contact", shape=(32, 96, 128), spacing_mm=FULL.spacing_mm)
    params = KneeParams(
        joint_gap=0.0, noise_sigma=0.0, bias_strength=0.0, offset_mm=(-20.0, 0.0, -10.0)
    )
    touching, bright = bright_seam_columns(render_knee(params, size))
    assert touching >= 100
    assert bright <= 0.02 * touching
