"""MRI findings on degenerate inputs: never a guess, never a crash (issue 16)."""

from __future__ import annotations

import numpy as np

from kneescope.biomarkers.findings import detect_findings

AFFINE = np.diag([0.7, 0.7, 0.7, 1.0])


def _toy_labels() -> np.ndarray:
    """A block knee: femur over femoral cartilage over two tibial plates over the tibia,
    menisci at the outer edges."""
    lab = np.zeros((40, 40, 40), dtype=np.uint8)
    lab[:, 22:, :] = 1  # femur
    lab[:, 20:22, :] = 2  # femoral cartilage
    lab[:20, 18:20, :] = 4  # medial tibial plate (i < 20)
    lab[20:, 18:20, :] = 5
    lab[:, :18, :] = 3  # tibia
    lab[:3, 18:22, :] = 8
    lab[37:, 18:22, :] = 9
    return lab


def test_an_empty_image_gives_no_intensity_findings() -> None:
    lab = _toy_labels()
    found = detect_findings(np.zeros(lab.shape, np.float32), lab, AFFINE, {})
    for c in ("medial", "lateral"):
        assert np.isnan(found[f"finding_bml_{c}"]) and np.isnan(found[f"finding_tear_{c}"])
        assert np.isnan(found[f"finding_ftd_{c}"])  # no measured regions: not measurable
        assert np.isnan(found[f"finding_extrusion_{c}"])


def test_an_empty_label_map_gives_nothing_measurable() -> None:
    lab = np.zeros((20, 20, 20), dtype=np.uint8)
    image = np.random.default_rng(0).random(lab.shape).astype(np.float32)
    found = detect_findings(image, lab, AFFINE, {})
    assert all(np.isnan(v) for k, v in found.items() if k.startswith("finding_"))


def test_a_bright_block_in_one_tibial_half_is_a_bml_there_only() -> None:
    lab = _toy_labels()
    image = np.where(np.isin(lab, (2, 4, 5)), 0.55, 0.12).astype(np.float32)
    image[5:15, 8:15, 10:30] = 0.4  # lesion-bright, deep in the medial tibia
    found = detect_findings(image, lab, AFFINE, {"we2008_MT_tAB_mm2": 400.0})
    assert found["finding_bml_medial"] == 1.0 and found["finding_bml_lateral"] == 0.0
    assert found["bml_medial_volume_mm3"] > 0.5 * 10 * 7 * 20 * 0.343
    assert found["finding_tear_medial"] == 0.0 and found["finding_tear_lateral"] == 0.0
