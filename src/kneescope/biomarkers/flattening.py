"""Per-plate 2D coordinates ("flattening") and which bone surface belongs to a plate.

All in knee coordinates (medial, anterior, superior; see :mod:`kneescope.biomarkers.frame`),
so left knees land in the same frame as right ones (x grows laterally for both sides).

- tibial plates: seen from above, x = lateral, y = anterior (mm from the knee origin);
- patella: seen from behind, x = lateral, y = superior (mm from the plate's centroid);
- femur: unrolled around a medial-lateral axis through the centre of the circle fitted to the
  condyles in the sagittal plane: x = lateral, y = arc length in mm, 0 = straight inferior,
  positive towards anterior (trochlea), negative towards posterior.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kneescope.core.we2008 import SagittalCircle, fit_sagittal_circle

__all__ = ["SagittalCircle", "facing_plate", "fit_sagittal_circle", "flat_coords"]

F64 = npt.NDArray[np.float64]


def flat_coords(
    plate: str, knee_pts: F64, circle: SagittalCircle | None, centre: F64
) -> tuple[F64, F64]:
    """2D map coordinates (x, y) in mm of knee points (N, 3) for ``plate``.

    Args:
        plate: "femoral", "medial_tibial", "lateral_tibial" or "patellar".
        knee_pts: (N, 3) knee coordinates (medial, anterior, superior) mm.
        circle: the femoral sagittal circle (femoral plate only).
        centre: (3,) knee-coordinate centre of the plate (patella: map origin).
    """
    x = -knee_pts[:, 0]
    if plate == "femoral" and circle is not None:
        y = np.radians(circle.angle_deg(knee_pts)) * circle.radius_mm
    elif plate == "patellar":
        x = x + centre[0]
        y = knee_pts[:, 2] - centre[2]
    else:
        y = knee_pts[:, 1]
    return x, y


def facing_plate(
    plate: str, knee_pts: F64, knee_normals: F64, circle: SagittalCircle | None, cos_min: float
) -> npt.NDArray[np.bool_]:
    """True for bone surface points whose outward normal faces the plate's joint space.

    Tibia: upward; patella: backward; femur: away from the condyle circle's axis.
    """
    if plate == "femoral" and circle is not None:
        radial = np.stack(
            [
                np.zeros(len(knee_pts)),
                knee_pts[:, 1] - circle.anterior_mm,
                knee_pts[:, 2] - circle.superior_mm,
            ],
            axis=1,
        )
        radial /= np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-9)
        cos = np.einsum("nd,nd->n", radial, knee_normals)
    elif plate == "patellar":
        cos = -knee_normals[:, 1]
    else:
        cos = knee_normals[:, 2]
    return cos >= cos_min
