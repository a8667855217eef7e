"""Series-layout reordering keeps every voxel at the same world position."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kneescope.core import Volume
from kneescope.core.geometry import voxel_to_world
from kneescope.synth.knee import acquisition_affine
from kneescope.synth.layout import to_series_layout
from kneescope.synth.params import SMALL, KneeParams


@settings(max_examples=25, deadline=None)
@given(
    side=st.sampled_from(["right", "left"]),
    angles=st.tuples(*[st.floats(-8.0, 8.0)] * 3),
    ijk=st.tuples(st.integers(0, 47), st.integers(0, 127), st.integers(0, 127)),
)
def test_same_world_position(
    side: str, angles: tuple[float, float, float], ijk: tuple[int, int, int]
) -> None:
    params = KneeParams(side=side, obliquity_deg=angles)  # type: ignore[arg-type]
    affine = acquisition_affine(params, SMALL)
    array = np.arange(np.prod(SMALL.shape), dtype=np.int32).reshape(SMALL.shape)
    vol = Volume(array, affine)
    out = to_series_layout(vol)
    assert np.linalg.det(out.affine_ras[:3, :3]) > 0
    value = array[ijk]
    where = np.argwhere(out.array == value)[0]
    assert np.allclose(
        voxel_to_world(affine, ijk), voxel_to_world(out.affine_ras, where), atol=1e-6
    )
