"""The knee's anatomical frame, derived from the label map itself.

Axes come from structure centroids, so measurements do not depend on how the image axes lie
(axis order, flips, oblique acquisitions all give the same frame):

- superior: tibia centroid -> femur centroid, then (see :func:`with_superior`) the
  area-weighted normal of the tibial plateau's bone-cartilage interface, which does not
  depend on how much of the long bones the field of view holds;
- medial: lateral -> medial tibial cartilage centroid (menisci if cartilage is missing),
  made orthogonal to superior;
- anterior: the third axis, pointing to the patella (femur centroid -> patella centroid).

With all three from anatomy, the handedness of (lateral, anterior, superior) tells the side:
for a right knee lateral is the patient's right, so (lateral, anterior, superior) is a
right-handed RAS-like triad; a left knee gives a left-handed one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kneescope.errors import InputError
from kneescope.types import Side

F64 = npt.NDArray[np.float64]

FEMUR, TIBIA, PATELLA = 1, 3, 6
MEDIAL_TIBIAL, LATERAL_TIBIAL = 4, 5
MEDIAL_MENISCUS, LATERAL_MENISCUS = 8, 9


@dataclass(frozen=True)
class KneeFrame:
    """Orthonormal anatomical axes in world (RAS+) coordinates.

    Attributes:
        origin_mm: (3,) world point: midpoint of the tibial cartilage centroids (or of the
            femur/tibia centroids when those are missing).
        medial, anterior, superior: (3,) unit vectors in world mm.
        side: the side the frame was built for ("right" or "left").
        side_from_anatomy: side told by the handedness of the anatomy (None: no patella).
    """

    origin_mm: F64
    medial: F64
    anterior: F64
    superior: F64
    side: Side
    side_from_anatomy: Side | None

    @property
    def lateral(self) -> F64:
        return -self.medial

    def to_knee(self, points_mm: F64) -> F64:
        """World points (N, 3) -> knee coordinates (N, 3): (medial, anterior, superior) mm."""
        rot = np.stack([self.medial, self.anterior, self.superior])
        return (points_mm - self.origin_mm) @ rot.T

    def directions_to_knee(self, vectors: F64) -> F64:
        """World direction vectors (N, 3) -> components along (medial, anterior, superior)."""
        rot = np.stack([self.medial, self.anterior, self.superior])
        return vectors @ rot.T


def _unit(v: F64) -> F64:
    n = float(np.linalg.norm(v))
    if n < 1e-9:
        raise InputError("cannot derive the knee's axes: two structure centroids coincide")
    return v / n


def knee_frame(centroids_mm: Mapping[int, F64], side: Side | None) -> KneeFrame:
    """Build the frame from label centroids (label value -> (3,) world mm).

    Args:
        centroids_mm: centroids of the labels present in the map.
        side: side declared by the header or user, or None to take it from the anatomy.

    Raises:
        InputError: femur or tibia is missing, or neither tibial cartilage nor menisci are
            present on both sides, or ``side`` is None and the patella is missing.
    """
    if FEMUR not in centroids_mm or TIBIA not in centroids_mm:
        raise InputError(
            "label map lacks the femur (1) or tibia (3); both are needed to orient the knee"
        )
    superior = _unit(centroids_mm[FEMUR] - centroids_mm[TIBIA])
    if MEDIAL_TIBIAL in centroids_mm and LATERAL_TIBIAL in centroids_mm:
        med_pt, lat_pt = centroids_mm[MEDIAL_TIBIAL], centroids_mm[LATERAL_TIBIAL]
    elif MEDIAL_MENISCUS in centroids_mm and LATERAL_MENISCUS in centroids_mm:
        med_pt, lat_pt = centroids_mm[MEDIAL_MENISCUS], centroids_mm[LATERAL_MENISCUS]
    else:
        raise InputError(
            "label map lacks medial and lateral tibial cartilage (4, 5) and menisci (8, 9); "
            "one medial/lateral pair is needed to tell medial from lateral"
        )
    medial = med_pt - lat_pt
    medial = _unit(medial - superior * float(medial @ superior))
    origin = (med_pt + lat_pt) / 2.0
    # (lateral, anterior, superior) is right-handed for a right knee: anterior = S x Lat
    anterior_right = np.cross(superior, -medial)
    side_anatomy: Side | None = None
    if PATELLA in centroids_mm:
        towards_patella = centroids_mm[PATELLA] - centroids_mm[FEMUR]
        side_anatomy = "right" if float(towards_patella @ anterior_right) > 0 else "left"
    chosen: Side | None = side if side is not None else side_anatomy
    if chosen is None:
        raise InputError(
            "cannot tell right from left: no patella (6) in the label map; pass the side"
        )
    # the anatomy fixes anterior when it can; a declared side only stands in for a patella
    oriented = side_anatomy if side_anatomy is not None else chosen
    anterior = anterior_right if oriented == "right" else -anterior_right
    return KneeFrame(origin, medial, anterior, superior, chosen, side_anatomy)


def with_superior(frame: KneeFrame, superior: F64) -> KneeFrame:
    """The same frame re-built around a better superior axis (unit world vector); medial
    and anterior are made orthogonal to it, keeping their senses."""
    sup = _unit(np.asarray(superior, dtype=np.float64))
    if float(sup @ frame.superior) < 0:
        sup = -sup
    medial = _unit(frame.medial - sup * float(frame.medial @ sup))
    anterior = np.cross(sup, -medial)
    if float(anterior @ frame.anterior) < 0:
        anterior = -anterior
    return KneeFrame(frame.origin_mm, medial, anterior, sup, frame.side, frame.side_from_anatomy)
