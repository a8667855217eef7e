"""Wirth-Eckstein (2008) cartilage regions and Chondrometrics quantities, on bone surfaces.

One written definition, used twice: by :mod:`kneescope.biomarkers.measure` on the bone surface
meshed from a label map, and by :mod:`kneescope.synth.region_truth` on the generator's analytic
bone surface with its imposed thickness (the exact truth). Pure numpy.

Inputs are points of one plate's subchondral bone surface in *knee coordinates*
(medial, anterior, superior; mm; the same frame for right and left knees), each with its
area (mm^2), whether cartilage covers it (cAB) and whether it belongs to the plate's total
subchondral bone area (tAB = covered + denuded bone inside the plate's footprint).

References (docs/biomarkers.md, "Wirth-Eckstein regions"):

- Wirth W, Eckstein F. A technique for regional analysis of femorotibial cartilage thickness
  based on quantitative magnetic resonance imaging. IEEE Trans Med Imaging 2008;27:737-44.
- Eckstein F, et al. Proposal for a nomenclature for MRI-based measures of articular
  cartilage in osteoarthritis. Osteoarthritis Cartilage 2006;14:974-83 (tAB, cAB, dABp,
  ThCtAB, ThCcAB, VC).

Where the papers leave a choice to the implementation, the choice is named here and in the
docs ("kneescope's choice").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

PREFIX = "we2008"
QUANTITIES = {
    "tAB_mm2": ("mm2", "total subchondral bone area (tAB)"),
    "cAB_mm2": ("mm2", "cartilage-covered subchondral bone area (cAB)"),
    "dABp_pct": ("%", "denuded subchondral bone area as a percentage of tAB (dABp)"),
    "ThCcAB_mm": ("mm", "mean cartilage thickness over cAB (ThCcAB)"),
    "ThCtAB_mm": ("mm", "mean cartilage thickness over tAB, denuded bone as 0 (ThCtAB)"),
    "VC_mm3": ("mm3", "cartilage volume (VC)"),
}
"""Column suffix -> (unit, description)."""

TIBIAL_SUBREGIONS = ("c", "e", "i", "a", "p")
"""Central, external, internal, anterior, posterior (prefix of the plate name: cMT ...)."""
FEMORAL_THIRDS = ("e", "c", "i")
"""External, central, internal thirds of the weight-bearing condyle (ecMF, ccMF, icMF)."""

PLATE_REGIONS: dict[str, tuple[str, ...]] = {
    "femoral": (
        "cMF", "cLF", "TrMF", "TrLF", "pMF", "pLF",
        "ecMF", "ccMF", "icMF", "ecLF", "ccLF", "icLF",
    ),
    "medial_tibial": ("MT", "cMT", "eMT", "iMT", "aMT", "pMT"),
    "lateral_tibial": ("LT", "cLT", "eLT", "iLT", "aLT", "pLT"),
    "patellar": ("P",),
}  # fmt: skip
"""kneescope plate -> the regions measured on it (plates first, then subregions)."""

AGGREGATES: dict[str, tuple[str, str]] = {
    "MFTC": ("MT", "cMF"),
    "LFTC": ("LT", "cLF"),
    "cMFTC": ("cMT", "ccMF"),
}
"""Femorotibial aggregates: the sum of a tibial and a femoral region (Chondrometrics
convention: thicknesses add up to a joint-space cartilage thickness; areas and volumes add)."""

TIBIAL_CENTRAL_FRACTION = 0.2
"""The central tibial ellipse holds 20 % of tAB (Wirth & Eckstein 2008)."""
FEMORAL_CENTRAL_FRACTION = 0.6
"""cMF/cLF end at 60 % of the way from the trochlear notch to the posterior cartilage end."""
EXTENT_QUANTILE = 0.005
"""Robust extents: the area-weighted 0.5 % and 99.5 % quantiles stand in for the extremes
(kneescope's choice: one stray vertex must not move a region border)."""


def column(region: str, quantity: str) -> str:
    """Column name of ``quantity`` (a key of :data:`QUANTITIES`) in ``region``."""
    return f"{PREFIX}_{region}_{quantity}"


def all_regions() -> tuple[str, ...]:
    """Every region with columns: plates and subregions, then the aggregates."""
    out: list[str] = []
    for regions in PLATE_REGIONS.values():
        out += regions
    return (*out, *AGGREGATES)


def all_columns() -> tuple[str, ...]:
    """Every we2008 column name, in a fixed order."""
    return tuple(column(r, q) for r in all_regions() for q in QUANTITIES)


def weighted_quantile(values: F64, weights: F64, q: float) -> float:
    """Quantile ``q`` in [0, 1] of ``values`` with ``weights`` (midpoint interpolation);
    NaN for no values."""
    if len(values) == 0 or float(weights.sum()) <= 0:
        return float("nan")
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cum = np.cumsum(w) - 0.5 * w
    return float(np.interp(q * float(w.sum()), cum, v))


# ---- tibia -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TibialGeometry:
    """The landmarks of one tibial plate's subregions (knee coordinates, mm).

    Attributes:
        centre: (medial, anterior) area centroid of tAB: the ellipse's centre.
        box_lo, box_hi: (medial, anterior) corners of the rectangle bounding tAB (robust
            extents, :data:`EXTENT_QUANTILE`).
        rho2_cut: the central ellipse is ``((m - cm) / hw)^2 + ((a - ca) / hh)^2 <= rho2_cut``
            with ``hw, hh`` the rectangle's half-sides; it holds 20 % of tAB.
    """

    centre: tuple[float, float]
    box_lo: tuple[float, float]
    box_hi: tuple[float, float]
    rho2_cut: float


def tibial_geometry(knee_pts: F64, area: F64, tab: Mask) -> TibialGeometry | None:
    """Fit :class:`TibialGeometry` to the tAB points of one plate (None without tAB)."""
    if not tab.any():
        return None
    m, a, w = knee_pts[tab, 0], knee_pts[tab, 1], area[tab]
    lo = (
        weighted_quantile(m, w, EXTENT_QUANTILE),
        weighted_quantile(a, w, EXTENT_QUANTILE),
    )
    hi = (
        weighted_quantile(m, w, 1.0 - EXTENT_QUANTILE),
        weighted_quantile(a, w, 1.0 - EXTENT_QUANTILE),
    )
    cm, ca = float(np.average(m, weights=w)), float(np.average(a, weights=w))
    hw, hh = max(0.5 * (hi[0] - lo[0]), 1e-6), max(0.5 * (hi[1] - lo[1]), 1e-6)
    rho2 = ((m - cm) / hw) ** 2 + ((a - ca) / hh) ** 2
    cut = weighted_quantile(rho2, w, TIBIAL_CENTRAL_FRACTION)
    return TibialGeometry((cm, ca), lo, hi, cut)


def tibial_region_masks(
    knee_pts: F64, area: F64, covered: Mask, tab: Mask, plate: str
) -> dict[str, Mask]:
    """Masks of the plate (``MT``/``LT`` = tAB) and its five subregions over the points.

    Central (``cMT``): the ellipse around tAB's centroid holding 20 % of tAB, axes along the
    medial-lateral and anterior-posterior directions in the proportions of the rectangle
    bounding tAB. The rest of tAB is split by that rectangle's diagonals into anterior,
    posterior, internal (towards the other plate) and external.
    """
    code = "MT" if plate == "medial_tibial" else "LT"
    names = PLATE_REGIONS[plate]
    geo = tibial_geometry(knee_pts, area, tab)
    if geo is None:
        return {name: np.zeros(len(knee_pts), bool) for name in names}
    m, a = knee_pts[:, 0], knee_pts[:, 1]
    hw = max(0.5 * (geo.box_hi[0] - geo.box_lo[0]), 1e-6)
    hh = max(0.5 * (geo.box_hi[1] - geo.box_lo[1]), 1e-6)
    central = tab & (
        ((m - geo.centre[0]) / hw) ** 2 + ((a - geo.centre[1]) / hh) ** 2 <= geo.rho2_cut
    )
    u = (m - 0.5 * (geo.box_lo[0] + geo.box_hi[0])) / hw
    v = (a - 0.5 * (geo.box_lo[1] + geo.box_hi[1])) / hh
    towards_other = -u if plate == "medial_tibial" else u  # medial plate: other is lateral
    rest = tab & ~central
    ap = np.abs(v) >= np.abs(u)
    return {
        code: tab.copy(),
        f"c{code}": central,
        f"e{code}": rest & ~ap & (towards_other < 0),
        f"i{code}": rest & ~ap & (towards_other >= 0),
        f"a{code}": rest & ap & (v >= 0),
        f"p{code}": rest & ap & (v < 0),
    }


# ---- femur -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SagittalCircle:
    """Circle fitted to the femoral bone-cartilage interface in the (anterior, superior) plane."""

    anterior_mm: float
    superior_mm: float
    radius_mm: float

    def angle_deg(self, knee_pts: F64) -> F64:
        """Angle of each point around the circle centre: 0 inferior, +90 anterior, degrees."""
        da = knee_pts[:, 1] - self.anterior_mm
        ds = knee_pts[:, 2] - self.superior_mm
        return np.degrees(np.arctan2(da, -ds))


def fit_sagittal_circle(knee_pts: F64, weights: F64) -> SagittalCircle:
    """Weighted algebraic (Kasa) circle fit to points (N, 3) projected on (anterior, superior).

    Falls back to the weighted centroid with radius 20 mm when the fit is degenerate.
    """
    a, s = knee_pts[:, 1], knee_pts[:, 2]
    w = weights / max(float(weights.sum()), 1e-12)
    design = np.stack([a, s, np.ones_like(a)], axis=1)
    rhs = a**2 + s**2
    sw = np.sqrt(w)
    try:
        sol, *_ = np.linalg.lstsq(design * sw[:, None], rhs * sw, rcond=None)
        a0, s0 = sol[0] / 2.0, sol[1] / 2.0
        r2 = sol[2] + a0**2 + s0**2
        if r2 > 1.0 and np.isfinite(r2):
            return SagittalCircle(float(a0), float(s0), float(np.sqrt(r2)))
    except np.linalg.LinAlgError:  # pragma: no cover - lstsq rarely fails
        pass
    return SagittalCircle(float(np.sum(w * a)), float(np.sum(w * s)) + 20.0, 20.0)


@dataclass(frozen=True)
class FemoralGeometry:
    """The landmarks of the femoral regions (knee coordinates; angles in degrees around
    :attr:`circle`, 0 inferior, positive anterior).

    Attributes:
        circle: the condyles' sagittal circle (fitted to the covered interface).
        notch_medial_mm: medial-lateral position of the intercondylar notch's centre line:
            medial femur (MF) on its medial side, lateral (LF) on the other.
        notch_deg: the trochlear notch (anterior end of the intercondylar notch).
        posterior_deg: (medial, lateral) posterior end of each condyle's cartilage.
        border_deg: (medial, lateral) border between cMF/cLF and pMF/pLF, 60 % of the way
            from the notch to the posterior end.
        thirds_mm: (medial, lateral) (lo, hi) medial-lateral extent of cMF and cLF: centre
            +- sqrt(3) x the area-weighted standard deviation of the medial-lateral position
            (the extent of a region of constant width; kneescope's choice, robust to the
            cartilage's ragged edges).
    """

    circle: SagittalCircle
    notch_medial_mm: float
    notch_deg: float
    posterior_deg: tuple[float, float]
    border_deg: tuple[float, float]
    thirds_mm: tuple[tuple[float, float], tuple[float, float]]


NOTCH_STRIP_MM = 2.0
"""Half-width of the strip along the notch's centre line searched for the trochlear notch."""
DISTAL_ZONE_DEG = (-45.0, 0.0)
"""Angles where the intercondylar notch is certainly open (to find its centre line)."""


def _notch_centre(m: F64, w: F64) -> float:
    """Medial-lateral centre (mm) of the gap between the condyles' cartilage (points of the
    distal zone): the widest empty run of a 0.5 mm histogram within 25 mm of the origin,
    refined to the midpoint of the two condyles' inner edges (robust quantiles)."""
    edges = np.arange(-25.0, 25.0 + 0.5, 0.5)
    hist, _ = np.histogram(m, bins=edges, weights=w)
    empty = hist <= 0.02 * max(float(hist.max(initial=0.0)), 1e-12)
    best, best_len, start = 0.0, 0, None
    for i, e in enumerate([*empty, False]):
        if e and start is None:
            start = i
        elif not e and start is not None:
            if i - start > best_len and start > 0 and i < len(empty):
                best_len, best = i - start, 0.5 * (edges[start] + edges[i])
            start = None
    if best_len == 0:
        return 0.0
    med, lat = m > best, m <= best
    if not med.any() or not lat.any():
        return best
    inner_med = weighted_quantile(m[med], w[med], 0.01)
    inner_lat = weighted_quantile(m[lat], w[lat], 0.99)
    return 0.5 * (inner_med + inner_lat)


def _onset_deg(theta: F64, w: F64) -> float:
    """Where covered area starts along increasing angle: the cumulative area between its
    5 % and 30 % points fitted by a line and extrapolated to zero (sub-degree, robust to a
    few stray points, unlike the minimum)."""
    order = np.argsort(theta, kind="stable")
    t, cw = theta[order], np.cumsum(w[order])
    total = float(cw[-1])
    sel = (cw >= 0.05 * total) & (cw <= 0.30 * total)
    if sel.sum() < 3:
        return float(t[0])
    slope, icpt = np.polyfit(t[sel], cw[sel], 1)
    if slope <= 0:
        return float(t[0])
    return float(-icpt / slope)


def femoral_geometry(knee_pts: F64, area: F64, covered: Mask, tab: Mask) -> FemoralGeometry | None:
    """Fit :class:`FemoralGeometry` to the femoral plate (None when it has no cartilage).

    - circle: fitted to the covered interface (cAB), area-weighted;
    - notch centre line: the middle of the gap between the condyles' cartilage where the
      notch is surely open (:data:`DISTAL_ZONE_DEG`);
    - trochlear notch: along that line (+-:data:`NOTCH_STRIP_MM`), where the cartilage in
      front of the notch begins;
    - posterior end of each condyle: the robust minimum angle of its tAB behind the notch.
    """
    if covered.sum() < 10:
        return None
    circle = fit_sagittal_circle(knee_pts[covered], area[covered])
    theta = circle.angle_deg(knee_pts)
    m = knee_pts[:, 0]
    distal = covered & (theta >= DISTAL_ZONE_DEG[0]) & (theta <= DISTAL_ZONE_DEG[1])
    notch_m = _notch_centre(m[distal], area[distal]) if distal.any() else 0.0
    strip = covered & (np.abs(m - notch_m) <= NOTCH_STRIP_MM) & (theta > DISTAL_ZONE_DEG[1] - 30)
    notch_deg = _onset_deg(theta[strip], area[strip]) if strip.sum() >= 3 else 30.0
    post, border, thirds = [], [], []
    for medial in (True, False):
        side = tab & ((m > notch_m) if medial else (m <= notch_m)) & (theta < notch_deg)
        if not side.any():
            post.append(notch_deg - 90.0)
            border.append(notch_deg - 54.0)
            thirds.append((notch_m, notch_m))
            continue
        p = weighted_quantile(theta[side], area[side], EXTENT_QUANTILE)
        b = notch_deg + FEMORAL_CENTRAL_FRACTION * (p - notch_deg)
        post.append(p)
        border.append(b)
        cen = side & (theta >= b)
        if cen.any():
            # width from the spread, not the extremes: sqrt(12) x the area-weighted standard
            # deviation equals the width of a region of constant width, and the ragged,
            # partial-volumed cartilage edges barely move it
            centre = float(np.average(m[cen], weights=area[cen]))
            sd = float(np.sqrt(np.average((m[cen] - centre) ** 2, weights=area[cen])))
            half = float(np.sqrt(3.0)) * sd
            thirds.append((centre - half, centre + half))
        else:
            thirds.append((notch_m, notch_m))
    return FemoralGeometry(
        circle,
        notch_m,
        notch_deg,
        (post[0], post[1]),
        (border[0], border[1]),
        (thirds[0], thirds[1]),
    )


def femoral_region_masks(knee_pts: F64, area: F64, covered: Mask, tab: Mask) -> dict[str, Mask]:
    """Masks of the femoral regions over the points (all within tAB).

    Trochlea (TrMF/TrLF): in front of the trochlear notch; weight-bearing cMF/cLF: from the
    notch back to 60 % of the way to the posterior end of the condyle's cartilage; posterior
    (pMF/pLF): behind that; medial/lateral on either side of the notch's centre line. cMF and
    cLF are split into external, central and internal thirds of their medial-lateral width
    (internal = towards the notch).
    """
    names = PLATE_REGIONS["femoral"]
    geo = femoral_geometry(knee_pts, area, covered, tab)
    if geo is None:
        return {name: np.zeros(len(knee_pts), bool) for name in names}
    theta = geo.circle.angle_deg(knee_pts)
    m = knee_pts[:, 0]
    out: dict[str, Mask] = {}
    for i, (code, side) in enumerate(
        (("M", m > geo.notch_medial_mm), ("L", m <= geo.notch_medial_mm))
    ):
        s = tab & side
        troch = s & (theta >= geo.notch_deg)
        central = s & (theta < geo.notch_deg) & (theta >= geo.border_deg[i])
        out[f"Tr{code}F"] = troch
        out[f"c{code}F"] = central
        out[f"p{code}F"] = s & (theta < geo.border_deg[i])
        lo, hi = geo.thirds_mm[i]
        third = (hi - lo) / 3.0
        inner = (m < lo + third) if code == "M" else (m > hi - third)
        outer = (m > hi - third) if code == "M" else (m < lo + third)
        out[f"ic{code}F"] = central & inner
        out[f"ec{code}F"] = central & outer & ~inner
        out[f"cc{code}F"] = central & ~inner & ~outer
    return {name: out[name] for name in names}


def region_masks(plate: str, knee_pts: F64, area: F64, covered: Mask, tab: Mask) -> dict[str, Mask]:
    """Region name -> mask over the points, for every region of ``plate``
    (:data:`PLATE_REGIONS`)."""
    if plate == "femoral":
        return femoral_region_masks(knee_pts, area, covered, tab)
    if plate in ("medial_tibial", "lateral_tibial"):
        return tibial_region_masks(knee_pts, area, covered, tab, plate)
    return {"P": tab.copy()}


# ---- quantities ------------------------------------------------------------------------------
def region_quantities(
    masks: Mapping[str, Mask],
    area: F64,
    covered: Mask,
    thickness_mm: F64,
    volume_mm3: F64,
) -> dict[str, float]:
    """Every :data:`QUANTITIES` column of every region in ``masks``.

    Args:
        masks: region -> bool (N,) over the points (within tAB).
        area: (N,) area of each point, mm^2.
        covered: (N,) bool, cartilage over the point (cAB).
        thickness_mm: (N,) thickness at covered points (ignored elsewhere).
        volume_mm3: (N,) cartilage volume assigned to each point (VC of a region is the sum).

    Returns:
        column name -> value; thickness and dABp NaN where the region has no area.
    """
    th = np.where(covered, np.nan_to_num(thickness_mm), 0.0)
    out: dict[str, float] = {}
    for region, mask in masks.items():
        t_ab = float(area[mask].sum())
        cov = mask & covered
        c_ab = float(area[cov].sum())
        integral = float((area * th)[cov].sum())
        out[column(region, "tAB_mm2")] = t_ab
        out[column(region, "cAB_mm2")] = c_ab
        out[column(region, "dABp_pct")] = 100.0 * (t_ab - c_ab) / t_ab if t_ab > 0 else np.nan
        out[column(region, "ThCcAB_mm")] = integral / c_ab if c_ab > 0 else np.nan
        out[column(region, "ThCtAB_mm")] = integral / t_ab if t_ab > 0 else np.nan
        out[column(region, "VC_mm3")] = float(volume_mm3[mask].sum())
    return out


def nan_quantities(regions: tuple[str, ...]) -> dict[str, float]:
    """NaN for every quantity of ``regions`` (a plate that could not be measured)."""
    return {column(r, q): float("nan") for r in regions for q in QUANTITIES}


def aggregate_quantities(values: Mapping[str, float]) -> dict[str, float]:
    """The :data:`AGGREGATES` columns from their parts' columns in ``values``.

    Thicknesses (ThCtAB, ThCcAB) are the sum of the parts' (a joint-space thickness), areas
    and volumes sums, dABp from the summed areas; NaN when a part is NaN.
    """
    out: dict[str, float] = {}
    for name, parts in AGGREGATES.items():
        for q in ("ThCtAB_mm", "ThCcAB_mm", "tAB_mm2", "cAB_mm2", "VC_mm3"):
            out[column(name, q)] = float(sum(values[column(p, q)] for p in parts))
        t_ab, c_ab = out[column(name, "tAB_mm2")], out[column(name, "cAB_mm2")]
        out[column(name, "dABp_pct")] = 100.0 * (t_ab - c_ab) / t_ab if t_ab > 0 else float("nan")
    return {column(name, q): out[column(name, q)] for name in AGGREGATES for q in QUANTITIES}
