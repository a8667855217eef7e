"""Synthetic radiographs: geometry, KL-grade appearance, joint-space and HKA truth."""

from __future__ import annotations

import numpy as np
import pytest

from kneescope.synth.params import KneeParams
from kneescope.synth.radiograph import KNEE_PIXEL_MM, render_knee_radiograph


@pytest.fixture(scope="module")
def knees() -> tuple[np.ndarray, list]:  # type: ignore[type-arg]
    healthy = KneeParams(side="right")
    narrowed = KneeParams(side="left", loss_medial=0.6, loss_lateral=0.1)
    vol, truths = render_knee_radiograph(
        {"right": (healthy, 0, 0, True), "left": (narrowed, 4, 3, True)}, seed=1
    )
    return vol, truths


def test_knee_radiograph_geometry(knees: tuple) -> None:  # type: ignore[type-arg]
    vol, _ = knees
    assert vol.array.dtype == np.uint16
    assert vol.spacing_mm == pytest.approx((KNEE_PIXEL_MM, KNEE_PIXEL_MM))
    # rows run Inferior, columns to the patient's Left (right knee on the viewer's left)
    assert vol.affine_ras[2, 0] < 0 and vol.affine_ras[0, 1] < 0
    col_right = (vol.affine_ras[0, 3] - 100.0) / KNEE_PIXEL_MM
    col_left = (vol.affine_ras[0, 3] + 100.0) / KNEE_PIXEL_MM
    a = vol.array.astype(float)
    mid = int((vol.affine_ras[2, 3] - (-450.0)) / KNEE_PIXEL_MM)  # row of the plateau level
    assert a[mid - 150, int(col_right)] > a[mid - 150, int((col_right + col_left) / 2)] + 500
    assert a[mid - 150, int(col_left)] > a[mid - 150, int((col_right + col_left) / 2)] + 500


def test_joint_space_narrows_with_cartilage_loss(knees: tuple) -> None:  # type: ignore[type-arg]
    _, truths = knees
    healthy, narrowed = truths
    assert healthy.side == "right" and narrowed.side == "left"
    # healthy fixed-flexion mJSW ~4-6 mm medial; rendered in extension, in loaded contact
    # (cartilage compressed 0.4 mm, no fluid film) and measured to the plateau's highest
    # projected point: 2.3-5.5 accepted
    assert 2.3 < healthy.mjsw_medial_mm < 6.0
    assert 3.5 < healthy.mjsw_lateral_mm < 7.0
    assert narrowed.mjsw_medial_mm < healthy.mjsw_medial_mm - 1.0
    assert narrowed.mjsw_medial_mm < narrowed.mjsw_lateral_mm


def test_osteophytes_make_the_margins_denser(knees: tuple) -> None:  # type: ignore[type-arg]
    vol, _ = knees
    a = vol.array.astype(float)
    # compare the tissue just outside the tibial plateau rim of both knees (mirror columns)
    plateau_row = int((vol.affine_ras[2, 3] - (-450.0) + 1.5) / KNEE_PIXEL_MM)
    rows = slice(plateau_row - 10, plateau_row + 10)
    centre_r = (vol.affine_ras[0, 3] - 100.0) / KNEE_PIXEL_MM
    centre_l = (vol.affine_ras[0, 3] + 100.0) / KNEE_PIXEL_MM
    # medial rim: right knee medial is towards larger columns; left knee towards smaller
    off = int(40.0 / KNEE_PIXEL_MM)
    band_r = a[rows, int(centre_r) + off - 15 : int(centre_r) + off + 15].mean()
    band_l = a[rows, int(centre_l) - off - 15 : int(centre_l) - off + 15].mean()
    assert band_l > band_r + 50
