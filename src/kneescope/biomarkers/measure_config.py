"""Options of :func:`kneescope.biomarkers.measure_knee` (a frozen pydantic model)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from kneescope.config import FROZEN


class PlausibleRange(BaseModel):
    """Inclusive range of plausible values; outside it a QC flag is raised."""

    model_config = FROZEN

    low: float
    high: float


def _volume_ranges() -> dict[str, PlausibleRange]:
    # adult knees, generous (mm^3): flags gross segmentation failures, not disease
    return {
        "femoral_cartilage": PlausibleRange(low=3000.0, high=40000.0),
        "medial_tibial_cartilage": PlausibleRange(low=500.0, high=8000.0),
        "lateral_tibial_cartilage": PlausibleRange(low=500.0, high=8000.0),
        "patellar_cartilage": PlausibleRange(low=800.0, high=12000.0),
        "medial_meniscus": PlausibleRange(low=500.0, high=8000.0),
        "lateral_meniscus": PlausibleRange(low=500.0, high=8000.0),
    }


class MeasureConfig(BaseModel):
    """How biomarkers are measured.

    Attributes:
        sigma_vox: Gaussian width (voxels, each axis) for sub-voxel surfaces.
        thickness_method: ``"normal"`` (default): thickness along the bone normal, covered
            where >= 0.15 mm; ``"nearest"``: kneescope's earlier nearest-surface thickness,
            for comparison (kneescope.biomarkers.thickness, docs/biomarkers.md).
        cover_threshold: ``thickness_method="nearest"`` only: blurred cartilage value above
            which bone counts as covered.
        crop_margin_mm: margin around each structure's bounding box before any filtering.
        normal_cos_min: ``thickness_method="nearest"`` only: it pairs a bone point only
            with articular points whose normal makes less than acos(this) with its normal.
        thickness_smoothing_mm: Gaussian width (mm) of the mean-preserving smoothing of
            thickness over the interface, which removes the terraces of grid-aligned surfaces
            without moving plate means (0: none).
        footprint_pixel_mm: pixel of the 2D rasters for denuded bone and coverage.
        map_pixel_mm: pixel of the 2D thickness maps.
        extrusion_slab_mm: half-width of the coronal slab through the plateau centre.
        rim_depth_mm: the tibial rim is the outermost tibial bone within this depth below
            the plateau's edge (see :mod:`kneescope.biomarkers.menisci`).
        extrusion_rim: ``"osteophyte-free"`` (default): extrusion is measured from the
            osteophyte-free plateau rim fitted around the compartment;
            ``"outermost-bone"``: from the outermost tibial bone in the coronal slab (the
            method before issue 14, which a marginal osteophyte in the slab moves; kept for
            comparison; 3D extrusion is then NaN).
        extrusion_body_deg: 3D extrusion (max, mean) is taken over the meniscal body: the
            part of the osteophyte-free tibial rim whose outward normal lies within this
            angle of the compartment's outward (medial or lateral) axis.
        extrusion_max_spacing_mm: largest voxel extent (mm) along the knee's medial-lateral
            axis on which meniscal extrusion is measured; on coarser grids it is refused (NaN
            and ``qc_extrusion_grid_too_coarse``). From benchmarks/extrusion_grids.py: within
            0.55 mm of the truth on every grid inside both limits, worst errors of 0.5-3.1 mm
            outside (docs/biomarkers.md, "Meniscal extrusion: which grids").
        extrusion_max_inplane_mm: the same along the knee's superior and anterior axes.
        min_component_voxels: smaller connected components are ignored by QC.
        thickness_mean_range_mm: plausible plate mean thickness.
        thickness_max_mm: plausible maximum thickness.
        volume_ranges_mm3: plausible volumes per structure.
    """

    model_config = FROZEN

    sigma_vox: float = Field(1.2, gt=0.3, le=3.0)
    thickness_method: Literal["normal", "nearest"] = "normal"
    cover_threshold: float = Field(0.25, gt=0.0, lt=0.5)
    crop_margin_mm: float = Field(4.0, ge=1.0)
    normal_cos_min: float = Field(0.7, ge=-1.0, le=1.0)
    thickness_smoothing_mm: float = Field(1.5, ge=0.0, le=5.0)
    footprint_pixel_mm: float = Field(0.25, gt=0.0)
    map_pixel_mm: float = Field(1.0, gt=0.0)
    extrusion_slab_mm: float = Field(1.0, gt=0.0)
    rim_depth_mm: float = Field(1.5, gt=0.0)
    extrusion_rim: Literal["osteophyte-free", "outermost-bone"] = "osteophyte-free"
    extrusion_body_deg: float = Field(30.0, gt=0.0, le=75.0)
    extrusion_max_spacing_mm: float = Field(1.0, gt=0.0)
    extrusion_max_inplane_mm: float = Field(0.75, gt=0.0)
    min_component_voxels: int = Field(50, ge=1)
    thickness_mean_range_mm: PlausibleRange = PlausibleRange(low=0.5, high=5.0)
    thickness_max_mm: float = 10.0
    volume_ranges_mm3: dict[str, PlausibleRange] = Field(default_factory=_volume_ranges)
