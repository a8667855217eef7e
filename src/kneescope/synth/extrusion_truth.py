"""Exact meniscal extrusion of a synthetic knee, relative to the osteophyte-free tibial rim.

The same definitions as :mod:`kneescope.biomarkers.menisci`, evaluated on the analytic
shape (:class:`~kneescope.synth.anatomy.KneeShape`, canonical frame of a right knee: +x
lateral, +y anterior), not on a label map:

- the osteophyte-free rim of a compartment is its plateau outline, the ellipse
  (``cx, cy, ax, ay``) that bounds the tibial head; the osteophytes
  (:meth:`~kneescope.synth.anatomy.KneeShape.tibial_spurs`) are added to the bone outside
  it and do not move it;
- the meniscus's outer edge is the same ellipse shifted along x by the knee's extrusion
  parameter (outwards: medially for the medial meniscus, laterally for the lateral one);
  the wedge's peripheral wall is vertical, so the edge is the same at every height;
- mid-coronal extrusion (``<m>_meniscus_extrusion_mm``): outermost meniscal edge minus the
  outermost rim, in the coronal plane through the compartment's centre;
- 3D extrusion over the meniscal body: at each point of the rim whose outward normal lies
  within ``body_deg`` (default 30 deg, ``MeasureConfig.extrusion_body_deg``) of the
  compartment's outward axis, the distance along that normal from the rim to the
  meniscus's outer edge (negative inside the rim); ``<m>_meniscus_extrusion_max_mm`` its
  maximum, ``<m>_meniscus_extrusion_mean_mm`` its mean weighted by rim arc length.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kneescope.synth.anatomy import KneeShape

F64 = npt.NDArray[np.float64]
BODY_DEG = 30.0
"""Default half-angle of the meniscal body (``MeasureConfig.extrusion_body_deg``)."""


def _ellipse(shape: KneeShape, medial: bool) -> tuple[float, float, float, float, float, float]:
    """(cx, cy, ax, ay, shift, outward) of one compartment (mm; outward = -1 medial, +1 lateral
    along canonical x)."""
    if medial:
        return shape.cxm, shape.cym, shape.axm, shape.aym, -shape.p.extrusion_medial, -1.0
    return shape.cxl, shape.cyl, shape.axl, shape.ayl, shape.p.extrusion_lateral, 1.0


def body_extrusion_profile(
    shape: KneeShape, medial: bool, body_deg: float = BODY_DEG, samples: int = 20001
) -> tuple[F64, F64]:
    """Extrusion (mm) along the rim's outward normal at points of the meniscal body, and the
    rim arc length (mm) each point stands for; both float64 (K,)."""
    cx, cy, ax, ay, shift, out = _ellipse(shape, medial)
    t = np.linspace(-0.5 * np.pi, 0.5 * np.pi, samples)  # 0 = outermost point
    px = cx + out * ax * np.cos(t)
    py = cy + ay * np.sin(t)
    nx = out * np.cos(t) / ax
    ny = np.sin(t) / ay
    norm = np.hypot(nx, ny)
    nx, ny = nx / norm, ny / norm
    body = np.abs(np.arctan2(ny, out * nx)) <= np.deg2rad(body_deg)
    px, py, nx, ny, t = px[body], py[body], nx[body], ny[body], t[body]
    # outer crossing of p + e n with the meniscus's outline (the rim ellipse shifted by
    # ``shift`` along x): the larger root of a quadratic in e
    mx = cx + shift
    qa = (nx / ax) ** 2 + (ny / ay) ** 2
    qb = 2.0 * ((px - mx) * nx / ax**2 + (py - cy) * ny / ay**2)
    qc = ((px - mx) / ax) ** 2 + ((py - cy) / ay) ** 2 - 1.0
    e = (-qb + np.sqrt(np.maximum(qb * qb - 4.0 * qa * qc, 0.0))) / (2.0 * qa)
    dt = float(np.pi / (samples - 1))
    arc = np.hypot(ax * np.sin(t), ay * np.cos(t)) * dt
    return e, arc


def extrusion_truth(shape: KneeShape, body_deg: float = BODY_DEG) -> dict[str, float]:
    """Exact extrusion columns of both menisci (mm), named like ``measure_knee``'s values:
    ``{medial,lateral}_meniscus_extrusion_mm`` (mid-coronal) and ``..._max_mm``,
    ``..._mean_mm`` (3D, over the body); see the module docstring."""
    out: dict[str, float] = {}
    for name, medial in (("medial", True), ("lateral", False)):
        cx, _, ax, _, shift, sign = _ellipse(shape, medial)
        # in the coronal plane through the centre both outlines are at their outermost
        rim = sign * cx + ax
        edge = sign * (cx + shift) + ax
        e, arc = body_extrusion_profile(shape, medial, body_deg)
        out[f"{name}_meniscus_extrusion_mm"] = float(edge - rim)
        out[f"{name}_meniscus_extrusion_max_mm"] = float(e.max())
        out[f"{name}_meniscus_extrusion_mean_mm"] = float(np.average(e, weights=arc))
    return out
