"""Knee localisation on bilateral PA films against the generator's exact truth: the knee
centre in mm, the side, the joint angle, the right-frame ROI (left knees mirrored), other
pixel spacings, and the side from the film's column direction."""

from __future__ import annotations

import numpy as np
import pytest

from kneescope.core import Volume
from kneescope.synth.knee_film_set import KneeFilm, knee_film
from kneescope.synth.params import KneeParams
from kneescope.synth.radiograph import KneeXrayTruth, render_knee_film
from kneescope.xray.locate import KneeLocation, locate_knees
from kneescope.xray.roi import ROI_PIXEL_MM, ROI_PIXELS, extract_roi, roi_to_film

MAX_CENTRE_ERROR_MM = 2.0


def _centre_error_mm(knee: KneeLocation, truth: KneeXrayTruth) -> float:
    assert knee.centre_rc is not None
    d = np.subtract(knee.centre_rc, truth.centre_rc) * truth.pixel_mm
    return float(np.hypot(*d))


@pytest.fixture(scope="module")
def films() -> list[KneeFilm]:
    """Three varied films (rotation, scale, exposure, collimation, markers, KL 0-4)."""
    return [knee_film(seed=11, index=i, implant_rate=0.0) for i in range(3)]


def test_both_knees_found_within_2_mm_of_the_true_centre(films: list[KneeFilm]) -> None:
    errors = []
    for film in films:
        located = locate_knees(film.image)
        assert located.view == "PA" and located.reason is None
        for truth in film.knees:
            knee = located.knee(truth.side)
            assert knee.side == truth.side and knee.gradable, knee.reason
            errors.append(_centre_error_mm(knee, truth))
            # the joint line's angle on the film: the plateau's medial end is higher by
            # rotation_deg; medial is towards larger columns for the right knee
            sign = -1.0 if truth.side == "right" else 1.0
            assert knee.joint_angle_deg == pytest.approx(sign * truth.rotation_deg, abs=2.5)
            assert knee.roi is not None and knee.roi.shape == (ROI_PIXELS, ROI_PIXELS)
            assert knee.roi.dtype == np.float32
    assert max(errors) <= MAX_CENTRE_ERROR_MM, errors
    assert float(np.mean(errors)) <= 1.2, errors


def _film_to_roi(
    rc: tuple[float, float], knee: KneeLocation, spacing: float
) -> tuple[float, float]:
    """ROI (row, col) of a film point (inverse of roi_to_film)."""
    assert knee.centre_rc is not None
    half = (ROI_PIXELS - 1) / 2.0
    mirror = -1.0 if knee.side == "left" else 1.0
    return (
        half + (rc[0] - knee.centre_rc[0]) * spacing / ROI_PIXEL_MM,
        half + mirror * (rc[1] - knee.centre_rc[1]) * spacing / ROI_PIXEL_MM,
    )


def test_rois_are_in_the_right_frame(films: list[KneeFilm]) -> None:
    """Medial is at larger ROI columns for both knees: the left knee's ROI is mirrored."""
    film = films[0]
    located = locate_knees(film.image)
    for truth in film.knees:
        knee = located.knee(truth.side)
        medial = _film_to_roi(truth.tibia_medial_rc, knee, truth.pixel_mm)
        lateral = _film_to_roi(truth.tibia_lateral_rc, knee, truth.pixel_mm)
        assert medial[1] > ROI_PIXELS / 2 > lateral[1], (truth.side, medial, lateral)
        # the mapping back to the film is exact
        assert knee.centre_rc is not None
        back = roi_to_film(
            medial, (truth.pixel_mm,) * 2, knee.centre_rc, mirror=knee.side == "left"
        )
        assert back == pytest.approx(truth.tibia_medial_rc, abs=1e-6)


def test_mirror_symmetric_film_gives_the_same_roi_for_both_knees() -> None:
    """Identical knees drawn without variation: the two right-frame ROIs agree."""
    knees = {side: (KneeParams(side=side), 1, 0, True) for side in ("right", "left")}
    image, truths, _ = render_knee_film(knees, seed=3, vary=False)
    located = locate_knees(image)
    right, left = located.right, located.left
    assert right.roi is not None and left.roi is not None
    inner = (slice(150, 550), slice(150, 550))  # the knee, without the film's L/R markers
    same = np.corrcoef(right.roi[inner].ravel(), left.roi[inner].ravel())[0, 1]
    flipped = np.corrcoef(right.roi[inner].ravel(), left.roi[inner][:, ::-1].ravel())[0, 1]
    assert same > 0.97 and same > flipped + 0.02
    for knee, truth in zip(located, truths, strict=True):
        assert _centre_error_mm(knee, truth) <= MAX_CENTRE_ERROR_MM


def test_other_pixel_spacing_gives_the_same_standard_roi() -> None:
    film = knee_film(seed=12, index=0, implant_rate=0.0, pixel_mm=0.15)
    located = locate_knees(film.image)
    assert located.spacing_mm == pytest.approx((0.15, 0.15))
    assert located.spacing_source == "affine"  # not read from DICOM
    for truth in film.knees:
        knee = located.knee(truth.side)
        assert _centre_error_mm(knee, truth) <= MAX_CENTRE_ERROR_MM
        assert knee.roi is not None and knee.roi.shape == (ROI_PIXELS, ROI_PIXELS)


def test_side_follows_the_film_column_direction(films: list[KneeFilm]) -> None:
    """The same film stored mirrored, with columns running to the patient's right: the knee
    on the viewer's left is now the left knee, and its centre is found there."""
    film = films[1]
    image = film.image
    flipped_affine = image.affine_ras.copy()
    flipped_affine[:3, 1] *= -1.0  # columns now run to the patient's right
    mirrored = Volume(image.array[:, ::-1].copy(), flipped_affine)
    located = locate_knees(mirrored)
    n_cols = image.shape[1]
    for truth in film.knees:
        knee = located.knee(truth.side)
        assert knee.side == truth.side and knee.centre_rc is not None
        expected = (truth.centre_rc[0], n_cols - 1 - truth.centre_rc[1])
        d = np.subtract(knee.centre_rc, expected) * truth.pixel_mm
        assert float(np.hypot(*d)) <= MAX_CENTRE_ERROR_MM
    # the right knee is on the viewer's right of this film
    assert located.right.centre_rc is not None and located.left.centre_rc is not None
    assert located.right.centre_rc[1] > located.left.centre_rc[1]


def test_extract_roi_samples_the_film_exactly() -> None:
    """Bilinear sampling is exact on a linear ramp: every ROI pixel holds the film's value at
    its position, mirrored for a left knee, and a fill value off the film."""
    rows, cols = np.mgrid[0:900, 0:1200].astype(np.float32)
    film = 3.0 * rows + 0.5 * cols
    spacing = (0.25, 0.25)
    centre = (400.3, 600.7)
    roi = extract_roi(film, spacing, centre, mirror=False, size_mm=40.0, fill=-1.0)
    assert roi.shape == (200, 200)
    for i, j in ((0, 0), (99, 150), (199, 199)):
        r, c = roi_to_film((i, j), spacing, centre, mirror=False, size_mm=40.0)
        assert roi[i, j] == pytest.approx(3.0 * r + 0.5 * c, abs=1e-2)
    mirrored = extract_roi(film, spacing, centre, mirror=True, size_mm=40.0, fill=-1.0)
    np.testing.assert_allclose(mirrored, roi[:, ::-1], atol=1e-3)
    off = extract_roi(film, spacing, (5.0, 5.0), mirror=False, size_mm=40.0, fill=-1.0)
    assert off[0, 0] == -1.0 and off[-1, -1] > 0
