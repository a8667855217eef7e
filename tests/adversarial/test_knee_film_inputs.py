"""Knee-film generator inputs that make no sense are refused with one clear InputError."""

from __future__ import annotations

import pytest

from kneescope.errors import InputError
from kneescope.synth.knee_film_set import bad_input_film, knee_film, knee_films


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kl_weights": [1, 1]}, "kl_weights"),
        ({"kl_weights": [0, 0, 0, 0, 0]}, "kl_weights"),
        ({"kl_weights": [1, -1, 1, 1, 1]}, "kl_weights"),
        ({"kl_weights": [1, float("nan"), 1, 1, 1]}, "kl_weights"),
        ({"implant_rate": 1.5}, "implant_rate"),
        ({"pixel_mm": 0.0}, "pixel_mm"),
        ({"pixel_mm": -0.2}, "pixel_mm"),
        ({"pixel_mm": 5.0}, "pixel_mm"),
        ({"sides": ()}, "sides"),
        ({"sides": ("right", "right")}, "sides"),
        ({"sides": ("middle",)}, "sides"),
    ],
)
def test_bad_film_requests_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        knee_film(1, 0, **kwargs)  # type: ignore[arg-type]


def test_film_sets_refuse_at_the_call_not_at_the_first_film() -> None:
    with pytest.raises(InputError, match="n and start"):
        knee_films(-1, 3)
    with pytest.raises(InputError, match="kl_weights"):
        knee_films(2, 3, kl_weights=[1, 2, 3])
    with pytest.raises(InputError, match=">= 0"):
        knee_film(-4, 0)


def test_unknown_bad_input_kind_is_refused() -> None:
    with pytest.raises(InputError, match="one_knee, no_knee, lateral, implant"):
        bad_input_film("sideways", 0)  # type: ignore[arg-type]
