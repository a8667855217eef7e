"""Exact MRI-findings truth of a synthetic knee, per tibiofemoral compartment.

The same definitions as the detector (:mod:`kneescope.biomarkers.findings`), evaluated on
the generator's analytic knee (:class:`~kneescope.synth.anatomy.KneeShape`) and its drawn
parameters, not on a label map. Compartments: ``medial`` and ``lateral`` tibiofemoral
(canonical x < 0 is medial).

- Full-thickness cartilage defect (``ftd``): denuded subchondral bone of the compartment's
  weight-bearing plates, the tibial plate (Wirth-Eckstein ``MT``/``LT``) and the central,
  weight-bearing femoral condyle (``cMF``/``cLF``): ``defect_<c>_area_mm2`` = the sum of
  ``tAB x dABp / 100`` over those two regions (exact :mod:`~kneescope.synth.region_truth`
  values); present (``finding_ftd_<c>`` = 1) at ``>= DEFECT_MIN_MM2`` (10 mm^2). Size grade
  (MOAKS style) = the largest denuded share of any Wirth-Eckstein subregion of the
  compartment (tibia ``c, e, i, a, p``; femur ``ec, cc, ic``): 1 < 33 %, 2 33-66 %, 3 > 66 %
  (0 when not present).
- Bone-marrow lesion (``bml``): present when the knee has a lesion (``marrow_lesions``) in
  the compartment; ``bml_<c>_volume_mm3`` = the lesion volume inside the marrow (the part of
  the lesion ellipsoid more than the cortex thickness inside the bone, as the renderer
  draws it; sampled on a 0.5 mm grid). Size grade = that volume as a share of the
  compartment's subchondral subregion, defined as the 10 mm deep bone slab under the
  compartment's weight-bearing plates (``(tAB_tibia + tAB_cF) x 10 mm``).
- Meniscal tear (``tear``): the knee has a tear/maceration (``meniscal_tears``) in that
  compartment's meniscus.
- Meniscal extrusion (``extrusion``): the exact mid-coronal extrusion
  (``<c>_meniscus_extrusion_mm``, :mod:`~kneescope.synth.extrusion_truth`) > 3 mm.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from kneescope.synth.anatomy import KneeShape
from kneescope.synth.params import KneeParams

COMPARTMENTS = ("medial", "lateral")
DEFECT_MIN_MM2 = 10.0
"""Smallest full-thickness defect area (mm^2) that counts as present."""
EXTRUSION_MIN_MM = 3.0
"""Meniscal extrusion (mm, mid-coronal) above which it counts as present."""
SUBCHONDRAL_DEPTH_MM = 10.0
"""Depth of the subchondral bone slab that is a BML's subregion."""
GRADE_EDGES = (1.0 / 3.0, 2.0 / 3.0)
"""MOAKS size-grade borders: share of the subregion (< 33 % grade 1, 33-66 % 2, > 66 % 3)."""
CORTEX_MM = 1.2
"""Cortex thickness of the renderer (``synth.render.CORTEX_MM``): lesions lie in the marrow."""
STEP_MM = 0.5


def region_codes(compartment: str) -> tuple[str, str, tuple[str, ...]]:
    """(tibial region, femoral region, subregions) of Wirth-Eckstein codes of a compartment."""
    m = "M" if compartment == "medial" else "L"
    subregions = tuple(f"{s}{m}T" for s in ("c", "e", "i", "a", "p")) + tuple(
        f"{s}c{m}F" for s in ("e", "c", "i")
    )
    return f"{m}T", f"c{m}F", subregions


def size_grade(share: float) -> int:
    """MOAKS-style size grade 1..3 of a finding covering ``share`` (0..1) of its subregion."""
    return 1 + int(np.searchsorted(GRADE_EDGES, share, side="right"))


def defect_values(biomarkers: Mapping[str, float], compartment: str) -> tuple[float, int]:
    """(denuded area mm^2, size grade 0..3) of a compartment from ``we2008_*`` values (truth
    or measured: the same column names)."""
    tib, fem, subs = region_codes(compartment)
    area = 0.0
    for region in (tib, fem):
        tab = float(biomarkers.get(f"we2008_{region}_tAB_mm2", np.nan))
        pct = float(biomarkers.get(f"we2008_{region}_dABp_pct", np.nan))
        if np.isfinite(tab) and np.isfinite(pct):
            area += tab * pct / 100.0
    if area < DEFECT_MIN_MM2:
        return area, 0
    shares = [float(biomarkers.get(f"we2008_{s}_dABp_pct", np.nan)) / 100.0 for s in subs]
    share = max((v for v in shares if np.isfinite(v)), default=0.0)
    return area, size_grade(share)


def subchondral_volume_mm3(biomarkers: Mapping[str, float], compartment: str) -> float:
    """The BML subregion's volume (mm^3): tAB of the weight-bearing plates x 10 mm."""
    tib, fem, _ = region_codes(compartment)
    total = 0.0
    for region in (tib, fem):
        v = float(biomarkers.get(f"we2008_{region}_tAB_mm2", np.nan))
        total += v if np.isfinite(v) else 0.0
    return total * SUBCHONDRAL_DEPTH_MM


def marrow_lesion_volumes(shape: KneeShape) -> dict[str, float]:
    """Lesion volume (mm^3) inside the marrow, per compartment (0.5 mm sampling)."""
    out = dict.fromkeys(COMPARTMENTS, 0.0)
    s = shape.s
    for lesion in shape.p.marrow_lesions:
        r = lesion.radius_mm * s
        cx, cy = lesion.centre_mm[0] * s, lesion.centre_mm[1] * s
        zc = 0.0 if lesion.bone == "tibia" else 0.5 * (shape.zb_med + shape.zb_lat)
        axes = [
            np.arange(cx - r - 2.0, cx + r + 2.0, STEP_MM, dtype=np.float32),
            np.arange(cy - r - 2.0, cy + r + 2.0, STEP_MM, dtype=np.float32),
            np.arange(zc - 2.0 * r - 4.0, zc + 2.0 * r + 4.0, STEP_MM, dtype=np.float32),
        ]
        x, y, z = (a.ravel() for a in np.meshgrid(*axes, indexing="ij"))
        inside = shape.marrow_lesion_sdf(x, y, z, lesion.bone) < 0
        x, y, z = x[inside], y[inside], z[inside]
        bone = shape.tibia_sdf(x, y, z) if lesion.bone == "tibia" else shape.femur_sdf(x, y, z)
        marrow = bone < -CORTEX_MM
        out["medial"] += float(np.count_nonzero(marrow & (x < 0))) * STEP_MM**3
        out["lateral"] += float(np.count_nonzero(marrow & (x >= 0))) * STEP_MM**3
    return out


def findings_truth(params: KneeParams, biomarkers: Mapping[str, float]) -> dict[str, float]:
    """Every findings truth value of one knee (names as the ``mri_findings`` step's columns).

    Args:
        params: the knee's parameters (its ``marrow_lesions``, ``meniscal_tears``).
        biomarkers: the knee's exact ``KneeTruth.biomarkers`` (``we2008_*`` and extrusion).
    """
    shape = KneeShape.from_params(params)
    bml_volume = marrow_lesion_volumes(shape)
    out: dict[str, float] = {}
    for c in COMPARTMENTS:
        area, grade = defect_values(biomarkers, c)
        out[f"finding_ftd_{c}"] = float(area >= DEFECT_MIN_MM2)
        out[f"finding_ftd_{c}_grade"] = float(grade)
        out[f"defect_{c}_area_mm2"] = area
        present = any((m.centre_mm[0] < 0) == (c == "medial") for m in params.marrow_lesions)
        volume = bml_volume[c]
        sub = subchondral_volume_mm3(biomarkers, c)
        out[f"finding_bml_{c}"] = float(present)
        out[f"finding_bml_{c}_grade"] = float(size_grade(volume / sub) if present else 0)
        out[f"bml_{c}_volume_mm3"] = volume
        out[f"finding_tear_{c}"] = float(
            any(t.medial == (c == "medial") for t in params.meniscal_tears)
        )
        extrusion = float(biomarkers[f"{c}_meniscus_extrusion_mm"])
        out[f"finding_extrusion_{c}"] = float(extrusion > EXTRUSION_MIN_MM)
        out[f"{c}_meniscus_extrusion_mm"] = extrusion
    return out


def findings_truth_row(params: KneeParams, biomarkers: Mapping[str, float]) -> dict[str, str]:
    """:func:`findings_truth` as ``truth/knee_truth.csv`` text: presence and grades as
    integers, sizes (mm, mm^2, mm^3) with 4 decimals."""
    return {
        name: f"{value:.4f}" if name.endswith(("_mm", "_mm2", "_mm3")) else str(int(value))
        for name, value in findings_truth(params, biomarkers).items()
    }
