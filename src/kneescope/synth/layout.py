"""Array layout conversion between the renderer and the DICOM series convention.

:func:`kneescope.synth.knee.render_knee` returns arrays ``[slice, row, column]`` (160 x 384 x
384 for OAI DESS). kneescope's DICOM reader returns ``[column, row, slice]`` with the slice
axis along the right-handed slice normal (see :mod:`kneescope.io.dicom_series`).
:func:`to_series_layout` gives the same voxels and world geometry in that layout, so that a
written series (and the label NIfTI written next to it) reads back voxel for voxel.
"""

from __future__ import annotations

import numpy as np

from kneescope.core import Volume


def to_series_layout(volume: Volume) -> Volume:
    """Reorder a ``[slice, row, column]`` Volume to ``[column, row, slice]``, right-handed.

    The world position of every voxel is unchanged; only the index order changes (the slice
    axis is reversed when needed so that ``det(affine[:3, :3]) > 0``).
    """
    array = np.transpose(volume.array, (2, 1, 0))
    affine = volume.affine_ras[:, [2, 1, 0, 3]].copy()
    if np.linalg.det(affine[:3, :3]) < 0:
        n_k = array.shape[2]
        array = array[:, :, ::-1]
        affine[:3, 3] = affine[:3, 3] + affine[:3, 2] * (n_k - 1)
        affine[:3, 2] = -affine[:3, 2]
    return Volume(np.ascontiguousarray(array), affine, dict(volume.metadata))
