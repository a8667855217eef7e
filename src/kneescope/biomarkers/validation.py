"""Reference values that the synthetic knees' truth does not carry, computed from the
continuous phantom (kneescope.synth's implicit shape), for validating biomarkers.

Meniscal coverage: the share of the tibial plate's footprint (bone where the lesion-free
imposed cartilage thickness exceeds the synth's bare threshold, seen from above) that lies
under the meniscus (any height above the plateau), on a 0.2 mm grid in the canonical frame.
"""

from __future__ import annotations

import numpy as np

from kneescope.synth.anatomy import THIN_MM, KneeShape

STEP_MM = 0.2


def synth_tibial_coverage_pct(shape: KneeShape, medial: bool) -> float:
    """Exact-shape meniscal coverage (%) of the medial or lateral tibial plate."""
    if medial:
        cx, cy, ax, ay = shape.cxm, shape.cym, shape.axm, shape.aym
        plate = "medial_tibial"
    else:
        cx, cy, ax, ay = shape.cxl, shape.cyl, shape.axl, shape.ayl
        plate = "lateral_tibial"
    xs = np.arange(cx - ax - 2.0, cx + ax + 2.0, STEP_MM, dtype=np.float32)
    ys = np.arange(cy - ay - 2.0, cy + ay + 2.0, STEP_MM, dtype=np.float32)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    z0 = shape.plateau_height(gx, gy)
    footprint = shape.thickness(plate, gx, gy, z0, lesions=False) > THIN_MM
    under = np.zeros(gx.shape, bool)
    for dz in np.arange(0.0, 12.0, 0.25, dtype=np.float32):
        under |= shape.meniscus_sdf(gx, gy, z0 + dz, medial) < 0
    total = int(footprint.sum())
    return 100.0 * int((footprint & under).sum()) / total if total else float("nan")
