"""Meniscal extrusion and tibial coverage.

Extrusion (mm, positive = beyond the rim) is measured from the **osteophyte-free tibial
plateau rim** of the compartment (:func:`osteophyte_free_rim`): the rim is found on rays
from the plate's centre (:func:`rim_on_rays`: on each ray's strip, the outermost tibial
bone within ``rim_depth_mm`` below the plateau's edge height there, so a flaring
metaphysis and the plateau's slope do not move it) and a smooth curve is fitted to it that
leaves out the rays a marginal osteophyte moved outwards (:func:`fit_rim`).

- mid-coronal (``<m>_meniscus_extrusion_mm``): in the coronal slab (``half_width_mm``
  either side) through the centre of the compartment's tibial plate, the outermost point
  of the meniscus minus the outermost point of the fitted rim; "outer" is medial for the
  medial meniscus and lateral for the lateral one;
- 3D over the meniscal body (``..._max_mm``, ``..._mean_mm``): along the rim's outward
  normal (in the axial plane), at rim points whose normal lies within
  ``extrusion_body_deg`` of the outward axis (:func:`extrusion_profile`); the maximum, and
  the mean weighted by rim arc length.

Meniscus and tibia come from sub-voxel surfaces (see :mod:`kneescope.biomarkers.surfaces`),
not voxel centres. ``MeasureConfig.extrusion_rim = "outermost-bone"`` gives the earlier
mid-coronal method instead (:func:`tibial_rim`: the outermost tibial bone in the slab,
which a spur in the slab moves), for comparison.

Coverage (%): the share of the tibial plate's projected area (interface and denuded bone,
seen from above, weighted by projected area) that the meniscus covers; the meniscus is
projected as its voxel centres plus its sub-voxel surface, so that its outline is not pulled
half a voxel inwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from kneescope.biomarkers.crop import Box, cropped_affine, expand_box, union_box
from kneescope.biomarkers.footprint import covered_fraction
from kneescope.biomarkers.frame import KneeFrame
from kneescope.biomarkers.measure_config import MeasureConfig
from kneescope.biomarkers.surfaces import iso_surface, smoothed_indicator
from kneescope.core.geometry import spacing_from_affine
from kneescope.core.labels import CARTILAGE_PLATES
from kneescope.types import Affine

F64 = npt.NDArray[np.float64]
NAN = float("nan")
MENISCI = {"medial": (8, "medial_tibial"), "lateral": (9, "lateral_tibial")}
"""Meniscus name -> (label, tibial plate it lies on)."""


def extrusion_columns(name: str) -> tuple[str, str, str]:
    """The extrusion columns of meniscus ``name``: mid-coronal, 3D maximum, 3D mean (mm)."""
    return (
        f"{name}_meniscus_extrusion_mm",
        f"{name}_meniscus_extrusion_max_mm",
        f"{name}_meniscus_extrusion_mean_mm",
    )


@dataclass
class PlateSummary:
    """What the meniscus measurements need of a tibial plate (knee coordinates, mm).

    Attributes:
        centre_knee: float64 (3,) area-weighted centre of the plate's interface.
        knee_pts: float64 (N, 3) interface and denuded bone points of the plate.
        proj_weights: float64 (N,) their area projected along the superior axis (mm^2).
    """

    centre_knee: F64
    knee_pts: F64 = field(default_factory=lambda: np.zeros((0, 3)))
    proj_weights: F64 = field(default_factory=lambda: np.zeros(0))


def surface_points_knee(
    mask: npt.NDArray[np.bool_], affine: npt.NDArray[np.float64], frame: KneeFrame, sigma_vox: float
) -> F64:
    """Vertices (N, 3) of the structure's sub-voxel surface in knee coordinates (mm)."""
    if not mask.any():
        return np.zeros((0, 3))
    mesh = iso_surface(smoothed_indicator(mask, sigma_vox), affine)
    return frame.to_knee(mesh.vertices_mm) if len(mesh.vertices_mm) else np.zeros((0, 3))


def outermost_in_slab(
    knee_pts: F64, *, outward_sign: float, anterior_mm: float, half_width_mm: float
) -> float:
    """Largest ``outward_sign * medial`` coordinate (mm) of surface points (N, 3, knee
    coordinates) within the coronal slab |anterior - anterior_mm| <= half_width_mm; NaN when
    the slab misses them."""
    sel = np.abs(knee_pts[:, 1] - anterior_mm) <= half_width_mm
    if not sel.any():
        return float("nan")
    return float(np.max(outward_sign * knee_pts[sel, 0]))


def tibial_rim(
    mask: npt.NDArray[np.bool_],
    affine: npt.NDArray[np.float64],
    frame: KneeFrame,
    *,
    outward_sign: float,
    anterior_mm: float,
    half_width_mm: float,
    depth_mm: float,
    sigma_vox: float,
    edge_band_mm: float = 3.0,
) -> float:
    """Outward coordinate (mm) of the tibial plateau rim in the coronal slab; NaN if none.

    Args:
        mask: bool (I, J, K) tibia voxels of a crop around the compartment.
        affine: 4x4 voxel -> RAS+ mm of the crop.
        frame: knee frame.
        outward_sign: +1 medial compartment, -1 lateral.
        anterior_mm: anterior coordinate of the slab centre.
        half_width_mm: slab half-width.
        depth_mm: the rim is sought this far below the plateau's edge height.
        sigma_vox: blur for the sub-voxel surface.
        edge_band_mm: width of the outermost band whose highest point gives the edge height.
    """
    if not mask.any():
        return float("nan")
    mesh = iso_surface(smoothed_indicator(mask, sigma_vox), affine)
    if len(mesh.vertices_mm) == 0:
        return float("nan")
    pts = frame.to_knee(mesh.vertices_mm)
    pts = pts[np.abs(pts[:, 1] - anterior_mm) <= half_width_mm]
    if len(pts) == 0:
        return float("nan")
    out = outward_sign * pts[:, 0]
    edge_top = float(pts[out >= out.max() - edge_band_mm, 2].max())
    band = (pts[:, 2] >= edge_top - depth_mm) & (pts[:, 2] <= edge_top + 0.5)
    return float(out[band].max())


RIM_RAY_STEP_DEG = 2.0
RIM_RAY_RANGE_DEG = 80.0
"""The rim is sampled on rays every 2 deg within +-80 deg of the compartment's outward axis."""
RIM_HARMONICS = 3
"""Order of the Fourier series R(phi) fitted to the rim (7 coefficients)."""
RIM_DRAWS = 2000
"""Random 5-ray sets tried by the consensus step of :func:`fit_rim`."""
RIM_OUTLIER_MM = 0.3
"""Smallest distance (mm) beyond the fitted curve at which a ray counts as a spur."""
RIM_MAX_GAP_DEG = 30.0
"""Widest gap (deg) between kept rays for the order-3 fit (else order 2)."""
MIN_RIM_SIDE_RAYS = 4
"""The fit needs at least this many osteophyte-free rays anterior of +20 deg and posterior
of -20 deg."""
MENISCUS_REACH_MM = 12.0
"""3D extrusion looks for the meniscus no further than this inside the rim."""


@dataclass(frozen=True)
class RimCurve:
    """The osteophyte-free tibial plateau rim of one compartment in the knee's axial plane.

    Polar about ``centre`` (knee coordinates medial, anterior; mm): angle ``phi`` from the
    compartment's outward axis (``outward_sign`` x medial), positive towards anterior;
    ``R(phi) = design(phi) @ coef``.

    Attributes:
        centre: float64 (2,) medial and anterior coordinate of the pole (the plate centre).
        outward_sign: +1 medial compartment, -1 lateral.
        coef: float64 (2 * RIM_HARMONICS + 1,) Fourier coefficients (mm).
        phi: float64 (K,) the sampled ray angles (rad).
        raw_mm: float64 (K,) the rim found on each ray (NaN where the ray met no bone).
        inlier: bool (K,) rays the fit kept (the others reach beyond it: osteophytes).
    """

    centre: F64
    outward_sign: float
    coef: F64
    phi: F64
    raw_mm: F64
    inlier: npt.NDArray[np.bool_]

    def radius(self, phi: F64) -> F64:
        """Fitted rim distance (mm) from the centre along the rays ``phi`` (rad)."""
        return _rim_design(phi) @ self.coef

    def points(self, phi: F64) -> tuple[F64, F64, F64]:
        """Rim points, unit tangents (towards +phi) and unit outward normals at ``phi``, each
        float64 (K, 2) in the polar frame's (outward, anterior) coordinates (mm)."""
        r = self.radius(phi)
        dr = _rim_design_derivative(phi) @ self.coef
        d = np.stack([np.cos(phi), np.sin(phi)], axis=1)
        d_perp = np.stack([-np.sin(phi), np.cos(phi)], axis=1)
        pts = r[:, None] * d
        tan = dr[:, None] * d + r[:, None] * d_perp
        tan /= np.linalg.norm(tan, axis=1, keepdims=True)
        normal = np.stack([tan[:, 1], -tan[:, 0]], axis=1)
        return pts, tan, normal

    def to_uv(self, knee_pts: F64) -> F64:
        """Knee coordinates (N, >= 2) -> (N, 2) (outward, anterior) mm about the centre."""
        u = self.outward_sign * (knee_pts[:, 0] - self.centre[0])
        return np.stack([u, knee_pts[:, 1] - self.centre[1]], axis=1)


def _rim_design(phi: F64) -> F64:
    cols = [np.ones_like(phi)]
    for k in range(1, RIM_HARMONICS + 1):
        cols += [np.cos(k * phi), np.sin(k * phi)]
    return np.stack(cols, axis=1)


def _rim_design_derivative(phi: F64) -> F64:
    cols = [np.zeros_like(phi)]
    for k in range(1, RIM_HARMONICS + 1):
        cols += [-k * np.sin(k * phi), k * np.cos(k * phi)]
    return np.stack(cols, axis=1)


def rim_on_rays(
    tibia_knee: F64,
    centre: F64,
    outward_sign: float,
    phi: F64,
    *,
    half_width_mm: float,
    depth_mm: float,
    edge_band_mm: float = 3.0,
) -> F64:
    """The tibial rim on each ray from ``centre`` (mm along the ray; NaN where none).

    On the strip of ``half_width_mm`` either side of the ray, as :func:`tibial_rim` does in
    the coronal slab: the edge height is the highest tibia point among the strip's outermost
    ``edge_band_mm``; the rim is the outermost point within ``depth_mm`` below it (and 0.5 mm
    above). A spur on the rim moves it outwards: :func:`fit_rim` removes those rays.

    Args:
        tibia_knee: float64 (N, 3) tibial bone surface points, knee coordinates (mm).
        centre: (>= 2,) medial and anterior coordinate of the rays' origin.
        outward_sign: +1 medial compartment, -1 lateral.
        phi: float64 (K,) ray angles (rad) from the outward axis, positive anterior.
    """
    u = outward_sign * (tibia_knee[:, 0] - centre[0])
    v = tibia_knee[:, 1] - centre[1]
    z = tibia_knee[:, 2]
    keep = u > -half_width_mm
    u, v, z = u[keep], v[keep], z[keep]
    out = np.full(len(phi), NAN)
    for k, angle in enumerate(phi):
        c, s = float(np.cos(angle)), float(np.sin(angle))
        along = u * c + v * s
        sel = (np.abs(v * c - u * s) <= half_width_mm) & (along > 0)
        if not sel.any():
            continue
        a, h = along[sel], z[sel]
        edge_top = float(h[a >= a.max() - edge_band_mm].max())
        band = (h >= edge_top - depth_mm) & (h <= edge_top + 0.5)
        out[k] = float(a[band].max())
    return out


def fit_rim(phi: F64, raw_mm: F64) -> tuple[F64, npt.NDArray[np.bool_]] | None:
    """Fit the osteophyte-free rim R(phi) to the rim found on each ray; None when it cannot.

    Osteophytes only ever move the rim outwards, over a stretch of rays each. (1)
    Consensus: order-2 Fourier series through :data:`RIM_DRAWS` random sets of 5 rays
    (fixed seed: the result is reproducible; other seeds moved the slab rim by <= 0.03 mm
    on synthetic knees); the curve with the lowest MSAC cost wins (each ray's squared
    distance to it, capped at :data:`RIM_OUTLIER_MM` squared; a ray more than 1 mm
    *inside* the curve, i.e. the curve beyond bone, impossible for the rim, costs 3 caps
    more). (2) Refinement: ordinary
    least squares on the rays no more than max(3 robust SDs, :data:`RIM_OUTLIER_MM`)
    beyond the curve, repeated until they no longer change; order
    :data:`RIM_HARMONICS` when the kept rays leave no gap wider than
    :data:`RIM_MAX_GAP_DEG`, else order 2. None when fewer than :data:`MIN_RIM_SIDE_RAYS`
    kept rays lie beyond +20 deg or beyond -20 deg, fewer than 40 % of the rays are kept,
    or the curve passes more than 1 mm beyond a ray's rim.

    Returns:
        (coefficients float64 (2 * RIM_HARMONICS + 1,), kept rays bool (K,)).
    """
    ok = np.isfinite(raw_mm)
    if ok.sum() < 2 * RIM_HARMONICS + 1 + 4:
        return None
    p, y = phi[ok], raw_mm[ok]
    a2 = _rim_design(p)[:, :5]
    rng = np.random.default_rng(0)
    idx = np.argsort(rng.random((RIM_DRAWS, len(y))), axis=1)[:, :5]  # 5 distinct rays
    sets = a2[idx]  # (D, 5, 5)
    good = np.abs(np.linalg.det(sets)) > 1e-9
    coefs = np.linalg.solve(sets[good], y[idx[good]][:, :, None])[:, :, 0]  # (D, 5)
    res = y[:, None] - a2 @ coefs.T  # (K, D)
    # MSAC: truncated squared residuals, rays far beyond the bone cost 3 outliers each
    tol2 = RIM_OUTLIER_MM**2
    cost = np.minimum(res * res, tol2).sum(axis=0) + 3.0 * tol2 * (res < -1.0).sum(axis=0)
    res = res[:, int(np.argmin(cost))]
    keep = np.abs(res) <= RIM_OUTLIER_MM
    coef = np.zeros(2 * RIM_HARMONICS + 1)
    for _ in range(10):
        kept = np.sort(p[keep])
        gap = float(np.rad2deg(np.diff(kept).max(initial=0.0)))
        n_coef = 2 * RIM_HARMONICS + 1 if gap <= RIM_MAX_GAP_DEG else 5
        if keep.sum() < n_coef + 2:
            return None
        a = _rim_design(p)[:, :n_coef]
        coef[:] = 0.0
        coef[:n_coef] = np.linalg.lstsq(a[keep], y[keep], rcond=None)[0]
        res = y - a @ coef[:n_coef]
        sd = max(1.4826 * float(np.median(np.abs(res[keep]))), 0.05)
        new = res <= max(3.0 * sd, RIM_OUTLIER_MM)
        if np.array_equal(new, keep):
            break
        keep = new
    inlier = np.zeros(len(phi), dtype=bool)
    inlier[np.flatnonzero(ok)[keep]] = True
    side = np.deg2rad(20.0)
    if (
        inlier.sum() < 0.4 * ok.sum()
        or (inlier & (phi > side)).sum() < MIN_RIM_SIDE_RAYS
        or (inlier & (phi < -side)).sum() < MIN_RIM_SIDE_RAYS
        or float(np.max(-res)) > 1.0
    ):
        return None
    return coef, inlier


def osteophyte_free_rim(
    tibia_knee: F64, centre: F64, outward_sign: float, cfg: MeasureConfig
) -> RimCurve | None:
    """The osteophyte-free rim of one compartment (:func:`rim_on_rays` + :func:`fit_rim`)."""
    phi = np.deg2rad(
        np.arange(-RIM_RAY_RANGE_DEG, RIM_RAY_RANGE_DEG + 0.5 * RIM_RAY_STEP_DEG, RIM_RAY_STEP_DEG)
    )
    raw = rim_on_rays(
        tibia_knee,
        centre,
        outward_sign,
        phi,
        half_width_mm=cfg.extrusion_slab_mm,
        depth_mm=cfg.rim_depth_mm,
    )
    fitted = fit_rim(phi, raw)
    if fitted is None:
        return None
    coef, inlier = fitted
    return RimCurve(np.asarray(centre[:2], dtype=np.float64), outward_sign, coef, phi, raw, inlier)


def slab_rim(rim: RimCurve, half_width_mm: float) -> float:
    """Outward coordinate (mm, from the rim's centre) of the fitted rim in the coronal slab
    |anterior - centre| <= ``half_width_mm``: its largest value there (0.05 deg samples)."""
    phi = np.deg2rad(np.arange(-30.0, 30.0 + 1e-9, 0.05))
    pts, _, _ = rim.points(phi)
    sel = np.abs(pts[:, 1]) <= half_width_mm
    return float(pts[sel, 0].max())


def extrusion_profile(
    rim: RimCurve, meniscus_knee: F64, *, body_deg: float, half_width_mm: float
) -> tuple[F64, F64]:
    """Extrusion along the rim's outward normal over the meniscal body.

    The body is the part of the rim whose outward normal lies within ``body_deg`` of the
    compartment's outward axis. At each of its points (rays every 0.5 deg), the extrusion is
    the largest distance along the normal from the rim to meniscus surface points within
    ``half_width_mm`` of the normal line (and at most :data:`MENISCUS_REACH_MM` inside the
    rim); NaN where there are none.

    Returns:
        (extrusion mm float64 (K,), rim arc length per point mm float64 (K,)).
    """
    phi = np.deg2rad(np.arange(-RIM_RAY_RANGE_DEG, RIM_RAY_RANGE_DEG + 1e-9, 0.5))
    pts, tan, normal = rim.points(phi)
    body = np.abs(np.arctan2(normal[:, 1], normal[:, 0])) <= np.deg2rad(body_deg)
    pts, tan, normal, phi = pts[body], tan[body], normal[body], phi[body]
    dr = _rim_design_derivative(phi) @ rim.coef
    r = rim.radius(phi)
    arc = np.sqrt(r * r + dr * dr) * np.deg2rad(0.5)
    men = rim.to_uv(meniscus_knee)
    # only points that can lie on a normal line within reach of the body's rim
    near = np.hypot(men[:, 0], men[:, 1]) >= float(r.min()) - MENISCUS_REACH_MM - half_width_mm
    men = men[near & (men[:, 0] > 0.0)]
    out = np.full(len(phi), NAN)
    for k in range(len(phi)):
        rel = men - pts[k]
        along = rel @ normal[k]
        sel = (np.abs(rel @ tan[k]) <= half_width_mm) & (along >= -MENISCUS_REACH_MM)
        if sel.any():
            out[k] = float(along[sel].max())
    return out, arc


def _extrusions(
    name: str,
    rim: RimCurve,
    men_ext: float,
    men_surface: F64,
    cfg: MeasureConfig,
    values: dict[str, float],
) -> None:
    """Mid-coronal, 3D maximum and 3D mean extrusion of meniscus ``name`` from ``rim``."""
    rim_out = rim.outward_sign * float(rim.centre[0]) + slab_rim(rim, cfg.extrusion_slab_mm)
    values[f"{name}_meniscus_extrusion_mm"] = men_ext - rim_out
    ext, arc = extrusion_profile(
        rim, men_surface, body_deg=cfg.extrusion_body_deg, half_width_mm=cfg.extrusion_slab_mm
    )
    found = np.isfinite(ext)
    if found.any():
        values[f"{name}_meniscus_extrusion_max_mm"] = float(ext[found].max())
        values[f"{name}_meniscus_extrusion_mean_mm"] = float(
            np.average(ext[found], weights=arc[found])
        )


def measure_meniscus(
    name: str,
    men_label: int,
    plate: str,
    arr: npt.NDArray[Any],
    affine: Affine,
    boxes: dict[int, Box],
    frame: KneeFrame,
    summary: PlateSummary | None,
    cfg: MeasureConfig,
    values: dict[str, float],
) -> None:
    """Extrusion (mid-coronal, 3D max and mean) and tibial coverage of meniscus ``name``
    ("medial"/"lateral", label ``men_label``) over tibial ``plate`` into ``values`` (NaN
    when unmeasurable), all from the osteophyte-free rim (:func:`osteophyte_free_rim`)."""
    for key in extrusion_columns(name):
        values[key] = NAN
    values[f"{name}_tibial_coverage_pct"] = NAN
    if men_label not in boxes or summary is None:
        return
    spacing = spacing_from_affine(affine)
    outward = 1.0 if name == "medial" else -1.0
    men_box = expand_box(boxes[men_label], cfg.crop_margin_mm, spacing, arr.shape)
    men_mask = arr[men_box] == men_label
    men_crop_affine = cropped_affine(affine, men_box)
    men_surface = surface_points_knee(men_mask, men_crop_affine, frame, cfg.sigma_vox)
    men_ext = outermost_in_slab(
        men_surface,
        outward_sign=outward,
        anterior_mm=float(summary.centre_knee[1]),
        half_width_mm=cfg.extrusion_slab_mm,
    )
    tib_label = CARTILAGE_PLATES[plate][1]
    if tib_label in boxes:
        plate_label = CARTILAGE_PLATES[plate][0]
        around = union_box(boxes[men_label], boxes[plate_label])
        rim_box = expand_box(around, 3.0 * cfg.crop_margin_mm, spacing, arr.shape)
        tib_mask = arr[rim_box] == tib_label
        rim_affine = cropped_affine(affine, rim_box)
        if cfg.extrusion_rim == "outermost-bone":  # the old method, for comparison only
            rim_old = tibial_rim(
                tib_mask,
                rim_affine,
                frame,
                outward_sign=outward,
                anterior_mm=float(summary.centre_knee[1]),
                half_width_mm=cfg.extrusion_slab_mm,
                depth_mm=cfg.rim_depth_mm,
                sigma_vox=cfg.sigma_vox,
            )
            values[f"{name}_meniscus_extrusion_mm"] = men_ext - rim_old
        else:
            tibia = surface_points_knee(tib_mask, rim_affine, frame, cfg.sigma_vox)
            rim = osteophyte_free_rim(tibia, summary.centre_knee, outward, cfg)
            if rim is not None:
                _extrusions(name, rim, men_ext, men_surface, cfg, values)
    vox = np.argwhere(men_mask).astype(np.float64)
    men_pts = np.concatenate(
        [frame.to_knee(vox @ men_crop_affine[:3, :3].T + men_crop_affine[:3, 3]), men_surface]
    )
    frac = covered_fraction(
        summary.knee_pts[:, 0],
        summary.knee_pts[:, 1],
        summary.proj_weights,
        men_pts[:, 0],
        men_pts[:, 1],
        pixel_mm=cfg.footprint_pixel_mm,
    )
    values[f"{name}_tibial_coverage_pct"] = 100.0 * frac
