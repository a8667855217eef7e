"""Meniscal extrusion and tibial coverage.

Extrusion (mm, positive = beyond the rim): in the coronal slab (``half_width_mm`` either side)
through the centre of the compartment's tibial plate, the outermost point of the meniscus
minus the tibial plateau rim; "outer" is medial for the medial meniscus and lateral for the
lateral one. The rim is the outermost tibial bone within ``rim_depth_mm`` below the top of the
plateau *at its edge* (the highest tibia point among the outermost 3 mm of the slab), so a
metaphysis that flares below the plateau, and the plateau's own slope, do not move it. Both
come from sub-voxel surfaces (see :mod:`kneescope.biomarkers.surfaces`), not voxel centres.

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
    """Extrusion and tibial coverage of meniscus ``name`` ("medial"/"lateral", label
    ``men_label``) over tibial ``plate`` into ``values`` (NaN when unmeasurable)."""
    values[f"{name}_meniscus_extrusion_mm"] = NAN
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
        rim = tibial_rim(
            arr[rim_box] == tib_label,
            cropped_affine(affine, rim_box),
            frame,
            outward_sign=outward,
            anterior_mm=float(summary.centre_knee[1]),
            half_width_mm=cfg.extrusion_slab_mm,
            depth_mm=cfg.rim_depth_mm,
            sigma_vox=cfg.sigma_vox,
        )
        values[f"{name}_meniscus_extrusion_mm"] = men_ext - rim
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
