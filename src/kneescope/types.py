"""Shared type aliases. Shapes and dtypes are stated in the alias docstrings."""

from __future__ import annotations

from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.floating]
"""Any floating-point array."""

IntArray: TypeAlias = npt.NDArray[np.integer]
"""Any integer array (label maps, indices)."""

Affine: TypeAlias = npt.NDArray[np.float64]
"""A 4x4 float64 homogeneous matrix mapping voxel indices (i, j, k, 1) to millimetres."""

Side: TypeAlias = Literal["right", "left"]
"""Knee side, as written in catalog rows and result tables."""

Shape3: TypeAlias = tuple[int, int, int]
"""A 3D shape in voxels (i, j, k)."""
