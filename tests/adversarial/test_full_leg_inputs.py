"""Bad full-leg inputs: a clear error or a per-leg reason, never a made-up HKA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kneescope.capabilities.landmarks.full_leg import measure_full_leg
from kneescope.capabilities.landmarks.hka_step import read_film
from kneescope.core import Volume
from kneescope.errors import InputError
from kneescope.synth.full_leg import render_full_leg


def _film(array: np.ndarray, px: float) -> Volume:
    return Volume(array, np.diag([px, px, 1.0, 1.0]), {})


def test_a_knee_film_is_not_a_full_leg_film() -> None:
    rng = np.random.default_rng(0)
    knee_film = _film(rng.integers(0, 4000, size=(700, 1650), dtype=np.uint16), 0.2)
    legs = measure_full_leg(knee_film)
    assert [leg.side for leg in legs] == ["right", "left"]
    for leg in legs:
        assert leg.hka_deg is None
        assert leg.reason is not None and leg.reason.startswith("not a full-leg film")


def test_a_film_without_legs_gets_no_hka() -> None:
    rng = np.random.default_rng(1)
    blank = _film(rng.normal(800.0, 30.0, size=(3600, 1200)).astype(np.float32), 0.3)
    for leg in measure_full_leg(blank):
        assert leg.hka_deg is None and leg.reason is not None


def test_a_film_with_one_leg_measures_only_that_leg() -> None:
    film, truths = render_full_leg({"right": (176.0, 1.0)}, seed=12)
    right, left = measure_full_leg(film)
    assert right.reason is None and right.hka_deg == pytest.approx(truths[0].hka_deg, abs=2.5)
    assert left.hka_deg is None and left.reason is not None


@pytest.mark.parametrize(
    "array",
    [np.zeros((4, 300, 100), dtype=np.uint16), np.full((3600, 1200), np.nan, dtype=np.float32)],
)
def test_not_a_2d_film_or_nan_pixels_is_an_input_error(array: np.ndarray) -> None:
    with pytest.raises(InputError):
        measure_full_leg(_film(array, 0.3))


def test_a_folder_with_several_files_is_refused(tmp_path: Path) -> None:
    for name in ("a.dcm", "b.dcm"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(InputError, match="one DICOM file"):
        read_film(tmp_path)
