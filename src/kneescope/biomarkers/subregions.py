"""Cartilage subregions in the spirit of the Wirth-Eckstein scheme.

Femur: medial / lateral (split at the knee origin, the midpoint between the tibial plates)
times trochlear / central / posterior, from the angle around the condyles' sagittal circle
(0 = straight inferior): trochlear above +40 deg (anterior), posterior below -30 deg, central
(weight-bearing) between. Wirth and Eckstein place these borders with landmarks (trochlear
notch, 60 % of the notch-to-posterior distance); fixed angles are a simpler, reproducible
stand-in.

Tibia, per plate: central = the ellipse around the plate's area-weighted centre holding 20 % of
the plate's interface area (axes along medial-lateral and anterior-posterior, scaled by the
plate's extent); the rest split by the diagonals into anterior, posterior, internal (towards
the other plate) and external. Cartilage voxels take the subregion of their own position
(seen from above for the tibia, by angle for the femur).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kneescope.biomarkers.flattening import SagittalCircle

F64 = npt.NDArray[np.float64]

FEMORAL_REGIONS = (
    "medial_trochlear",
    "medial_central",
    "medial_posterior",
    "lateral_trochlear",
    "lateral_central",
    "lateral_posterior",
)
TIBIAL_REGIONS = ("anterior", "central", "posterior", "internal", "external")
TROCHLEAR_FROM_DEG = 40.0
POSTERIOR_BELOW_DEG = -30.0
TIBIAL_CENTRAL_AREA_FRACTION = 0.2


def femoral_regions(knee_pts: F64, circle: SagittalCircle) -> npt.NDArray[np.int64]:
    """Index into :data:`FEMORAL_REGIONS` for each knee point (N, 3)."""
    angle = circle.angle_deg(knee_pts)
    part = np.where(angle > TROCHLEAR_FROM_DEG, 0, np.where(angle < POSTERIOR_BELOW_DEG, 2, 1))
    lateral = knee_pts[:, 0] < 0.0
    return (part + 3 * lateral).astype(np.int64)


@dataclass(frozen=True)
class TibialRegionModel:
    """A tibial plate's subregion geometry, fitted to its interface (knee coordinates, mm).

    Attributes:
        medial_mm, anterior_mm: area-weighted centre of the plate.
        half_medial_mm, half_anterior_mm: plate semi-extents (2 x standard deviation).
        central_rho2: squared normalised radius of the central ellipse (20 % of the area).
        medial_plate: True for the medial plate (internal = towards lateral).
    """

    medial_mm: float
    anterior_mm: float
    half_medial_mm: float
    half_anterior_mm: float
    central_rho2: float
    medial_plate: bool

    def classify(self, knee_pts: F64) -> npt.NDArray[np.int64]:
        """Index into :data:`TIBIAL_REGIONS` for points (N, 3) seen from above."""
        u = (knee_pts[:, 0] - self.medial_mm) / self.half_medial_mm
        v = (knee_pts[:, 1] - self.anterior_mm) / self.half_anterior_mm
        towards_other = -u if self.medial_plate else u
        region = np.where(
            np.abs(v) >= np.abs(u),
            np.where(v >= 0, 0, 2),
            np.where(towards_other >= 0, 3, 4),
        )
        return np.where(u**2 + v**2 <= self.central_rho2, 1, region).astype(np.int64)


def fit_tibial_regions(knee_pts: F64, weights: F64, medial_plate: bool) -> TibialRegionModel:
    """Fit :class:`TibialRegionModel` to a plate's interface points (N, 3) with area
    weights (N,) in mm^2 (N >= 1)."""
    w = weights / max(float(weights.sum()), 1e-12)
    m0 = float(np.sum(w * knee_pts[:, 0]))
    a0 = float(np.sum(w * knee_pts[:, 1]))
    # a uniform ellipse of semi-axis r has standard deviation r / 2 along that axis
    rm = 2.0 * np.sqrt(max(float(np.sum(w * (knee_pts[:, 0] - m0) ** 2)), 1e-6))
    ra = 2.0 * np.sqrt(max(float(np.sum(w * (knee_pts[:, 1] - a0) ** 2)), 1e-6))
    rho2 = ((knee_pts[:, 0] - m0) / rm) ** 2 + ((knee_pts[:, 1] - a0) / ra) ** 2
    order = np.argsort(rho2)
    cum = np.cumsum(w[order])
    cut = rho2[order][min(int(np.searchsorted(cum, TIBIAL_CENTRAL_AREA_FRACTION)), len(w) - 1)]
    return TibialRegionModel(m0, a0, rm, ra, float(cut), medial_plate)


def tibial_regions(knee_pts: F64, weights: F64, medial_plate: bool) -> npt.NDArray[np.int64]:
    """Index into :data:`TIBIAL_REGIONS` for each point (N, 3) of one tibial plate's
    interface (area weights (N,) in mm^2)."""
    if len(knee_pts) == 0:
        return np.zeros(0, np.int64)
    return fit_tibial_regions(knee_pts, weights, medial_plate).classify(knee_pts)
