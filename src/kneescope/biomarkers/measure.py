"""All image biomarkers of one knee from its label map: :func:`measure_knee`.

One pass, cropped to each structure's bounding box plus a margin. The result is a flat mapping
``biomarker name -> value`` with units in the names (``..._mm``, ``..._mm2``, ``..._mm3``,
``..._pct``), QC flags (``qc_...``) and optional 2D thickness maps. See docs/biomarkers.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from kneescope.biomarkers.crop import Box, cropped_affine, expand_box
from kneescope.biomarkers.flattening import (
    SagittalCircle,
    facing_plate,
    fit_sagittal_circle,
    flat_coords,
)
from kneescope.biomarkers.footprint import denuded_mask
from kneescope.biomarkers.frame import KneeFrame, knee_frame, with_superior
from kneescope.biomarkers.maps import ThicknessMap, thickness_map
from kneescope.biomarkers.measure_config import MeasureConfig
from kneescope.biomarkers.menisci import (
    MENISCI,
    PlateSummary,
    extrusion_columns,
    measure_meniscus,
)
from kneescope.biomarkers.qc import (
    cartilage_contacts,
    component_count,
    finish_qc,
    qc_flags,
    unmeasured,
)
from kneescope.biomarkers.subregions import plate_region_values, voxel_volume_per_vertex
from kneescope.biomarkers.thickness import PlateSurfaces, plate_surfaces
from kneescope.core import Volume, we2008
from kneescope.core.geometry import spacing_from_affine, validate_affine
from kneescope.core.labels import CARTILAGE_PLATES, KNEE_LABELS
from kneescope.core.volume import label_map_problem
from kneescope.errors import InputError
from kneescope.types import Affine, Side

log = logging.getLogger(__name__)
F64 = npt.NDArray[np.float64]
SideArg = Literal["right", "left", "auto"]
NAN = float("nan")

PLATES = tuple(CARTILAGE_PLATES)  # femoral, medial_tibial, lateral_tibial, patellar
BONES = ("femur", "tibia", "patella")
"""Bones whose volume is measured (``<bone>_bone_volume_mm3``: voxel count x voxel volume of
the bone's label, the part of the bone inside the field of view)."""
FACING_COS_MIN = 0.3
"""Bone surface counts as facing a plate within ~72 deg of the joint direction."""


@dataclass(frozen=True)
class KneeMeasurements:
    """Biomarkers of one knee.

    ``qc["qc_unmeasured_values"]`` and ``qc["qc_ok"]`` are (re)computed from ``values`` when
    the object is made (:func:`~kneescope.biomarkers.qc.finish_qc`), so a NaN biomarker always
    fails ``qc_ok``, whichever code produced it, unless a raised ``qc_not_labelled_...`` flag
    explains it (a structure the label scheme does not label, see
    :mod:`~kneescope.biomarkers.label_schemes`).

    Attributes:
        values: biomarker name -> value (float; NaN when it could not be measured).
        qc: QC flag name -> bool or count.
        side: the side the knee was measured as.
        side_from_anatomy: the side the anatomy tells (None without a patella, or when the
            file does not state its orientation).
        maps: plate -> :class:`ThicknessMap` (empty when maps were not asked for).
        reasons: raised QC flag -> why, in words (also the row's ``qc_reasons`` text).
    """

    values: dict[str, float]
    qc: dict[str, bool | int]
    side: Side
    side_from_anatomy: Side | None
    maps: dict[str, ThicknessMap] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        qc = finish_qc(self.values, self.qc)
        reasons = dict(self.reasons)
        missing = unmeasured(self.values, qc)
        if missing:
            reasons["qc_unmeasured_values"] = "not measured: " + ", ".join(missing)
        object.__setattr__(self, "qc", qc)
        object.__setattr__(self, "reasons", reasons)

    def as_row(self) -> dict[str, Any]:
        """One flat row: side, every biomarker, every QC flag, and ``qc_reasons`` (the raised
        flags' reasons in words, "; "-separated; empty when there are none)."""
        return {
            "side": self.side,
            "side_from_anatomy": self.side_from_anatomy or "",
            **self.values,
            **self.qc,
            "qc_reasons": "; ".join(f"{k[3:]}: {v}" for k, v in self.reasons.items()),
        }


def weighted_quantile(values: F64, weights: F64, q: float) -> float:
    """Quantile ``q`` in [0, 1] of ``values`` with ``weights`` (midpoint interpolation)."""
    if len(values) == 0:
        return NAN
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cum = np.cumsum(w) - 0.5 * w
    return float(np.interp(q * float(w.sum()), cum, v))


def _resolve_side(labels: Volume | tuple[Any, Any], side: SideArg | None) -> Side | None:
    if side in ("right", "left"):
        return side
    if side not in (None, "auto"):
        raise InputError(f"side must be 'right', 'left' or 'auto', got {side!r}")
    if isinstance(labels, Volume):
        return labels.side
    return None


def measure_knee(
    labels: Volume | tuple[npt.ArrayLike, npt.ArrayLike],
    side: SideArg | None = "auto",
    config: MeasureConfig | None = None,
    *,
    with_maps: bool = True,
) -> KneeMeasurements:
    """Measure every biomarker of one knee.

    Args:
        labels: a label-map :class:`Volume` (kneescope labels, see
            :data:`kneescope.core.labels.KNEE_LABELS`) or ``(array, affine_ras)`` with an
            integer (I, J, K) array and a 4x4 voxel -> RAS+ mm affine.
        side: "right", "left", or "auto" (the Volume's :attr:`~Volume.side` if recorded,
            else the side the anatomy tells).
        config: measurement options; defaults when omitted.
        with_maps: also build the 2D thickness maps.

    Returns:
        :class:`KneeMeasurements`.

    Raises:
        InputError: the label map is not a 3D array of kneescope labels (0..9; see
            :func:`kneescope.core.volume.label_map_problem`), or lacks what is needed to
            orient the knee (femur, tibia, a medial/lateral pair, and a patella or a side).
    """
    cfg = config or MeasureConfig()
    declared = _resolve_side(labels, side)
    orientation_unknown = isinstance(labels, Volume) and _orientation_unknown(labels)
    if isinstance(labels, Volume):
        arr, affine = labels.array, labels.affine_ras
    else:
        arr, affine = np.asarray(labels[0]), validate_affine(labels[1])
    problem = label_map_problem(arr)
    if arr.ndim != 3 or problem is not None:
        raise InputError(
            f"a label map must be a 3D array of integer labels, got a {arr.ndim}D {arr.dtype} "
            f"array that {problem or 'is not 3D'}; pass a segmentation, not an image"
        )
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))

    objects = ndimage.find_objects(arr, max_label=9)
    boxes: dict[int, Box] = {}
    counts: dict[int, int] = {}
    centroids: dict[int, F64] = {}
    components: dict[int, int] = {}
    for value in KNEE_LABELS.labels:
        found = objects[value - 1]
        if found is None:
            counts[value] = 0
            continue
        box: Box = (found[0], found[1], found[2])
        mask = arr[box] == value
        idx = np.nonzero(mask)
        counts[value] = len(idx[0])
        boxes[value] = box
        start = np.array([sl.start for sl in box], dtype=np.float64)
        centre_ijk = np.array([i.mean() for i in idx]) + start
        centroids[value] = affine[:3, :3] @ centre_ijk + affine[:3, 3]
        components[value] = component_count(mask, cfg.min_component_voxels)

    reasons: dict[str, str] = {}
    anatomy = _anatomy_flags(arr, boxes, centroids, counts, orientation_unknown, reasons)
    found = {plate: _plate_surfaces(plate, arr, affine, boxes, cfg) for plate in PLATES}
    frame = knee_frame(centroids, declared)
    plateau_up = _plateau_normal([found["medial_tibial"], found["lateral_tibial"]])
    if plateau_up is not None:
        frame = with_superior(frame, plateau_up)
    values: dict[str, float] = {
        f"{bone}_bone_volume_mm3": counts[KNEE_LABELS.value_of(bone)] * voxel_mm3 for bone in BONES
    }
    maps: dict[str, ThicknessMap] = {}
    plates: dict[str, PlateSummary] = {}
    for plate in PLATES:
        cart_label, _ = CARTILAGE_PLATES[plate]
        values[f"{plate}_cartilage_volume_mm3"] = counts[cart_label] * voxel_mm3
        summary = _measure_plate(plate, found[plate], frame, cfg, values, maps, with_maps)
        if summary is not None:
            plates[plate] = summary
    values.update(we2008.aggregate_quantities(values))

    extrusion_grid = _extrusion_grid_problem(affine, frame, cfg)
    for name, (men_label, plate) in MENISCI.items():
        values[f"{name}_meniscus_volume_mm3"] = counts[men_label] * voxel_mm3
        measure_meniscus(
            name, men_label, plate, arr, affine, boxes, frame, plates.get(plate), cfg, values
        )
        if extrusion_grid is not None:
            for key in extrusion_columns(name):
                values[key] = NAN  # refused: see the flag's reason

    side_from_anatomy = None if orientation_unknown else frame.side_from_anatomy
    flags = qc_flags(counts, components, values, declared, side_from_anatomy, cfg)
    flags.update(anatomy)
    flags["qc_orientation_unknown"] = orientation_unknown
    if orientation_unknown:
        reasons["qc_orientation_unknown"] = (
            "the file states no orientation (e.g. a NIfTI without sform and qform): the "
            "side and the superior direction cannot be checked"
        )
    flags["qc_extrusion_grid_too_coarse"] = extrusion_grid is not None
    if extrusion_grid is not None:
        reasons["qc_extrusion_grid_too_coarse"] = extrusion_grid
    log.debug("measured knee: side=%s, %d values", frame.side, len(values))
    return KneeMeasurements(values, flags, frame.side, side_from_anatomy, maps, reasons)


def _orientation_unknown(volume: Volume) -> bool:
    """True when the reader says the file states no orientation (``metadata
    ["orientation_unknown"]``, e.g. a NIfTI without sform and qform): its left-right could
    be mirrored, so the anatomy cannot tell the side."""
    return bool(volume.metadata.get("orientation_unknown", False))


def voxel_extent_mm(affine: Affine, direction: F64) -> float:
    """Extent (mm) of one voxel along a world unit ``direction``: the sum over the voxel's
    edge vectors of their length along it (the spacing itself for an axis-aligned grid)."""
    return float(np.abs(direction @ affine[:3, :3]).sum())


def _extrusion_grid_problem(affine: Affine, frame: KneeFrame, cfg: MeasureConfig) -> str | None:
    """Why meniscal extrusion cannot be measured on this grid, or None when it can.

    Limits (``cfg.extrusion_max_spacing_mm`` along the knee's medial-lateral axis,
    ``cfg.extrusion_max_inplane_mm`` along its superior and anterior axes) come from
    benchmarks/extrusion_grids.py; see docs/biomarkers.md.
    """
    across = voxel_extent_mm(affine, frame.medial)
    inplane = max(voxel_extent_mm(affine, frame.superior), voxel_extent_mm(affine, frame.anterior))
    if across <= cfg.extrusion_max_spacing_mm and inplane <= cfg.extrusion_max_inplane_mm:
        return None
    return (
        f"voxels of {across:.2f} mm medial-lateral x {inplane:.2f} mm in the sagittal plane; "
        f"extrusion needs at most {cfg.extrusion_max_spacing_mm:g} x "
        f"{cfg.extrusion_max_inplane_mm:g} mm"
    )


_BONES = (1, 3, 6)  # femur, tibia, patella


def _anatomy_flags(
    arr: npt.NDArray[Any],
    boxes: dict[int, Box],
    centroids: dict[int, F64],
    counts: dict[int, int],
    orientation_unknown: bool,
    reasons: dict[str, str],
) -> dict[str, bool | int]:
    """Flags of anatomy that cannot be right: a cartilage plate that does not lie on its own
    bone (most of its faces that touch bone touch another bone, e.g. femur and tibia labels
    swapped), and the femur not above the tibia along the patient's superior axis (world S;
    only checked when the file states its orientation)."""
    flags: dict[str, bool | int] = {}
    for plate, (cart_label, bone_label) in CARTILAGE_PLATES.items():
        off = False
        if counts[cart_label] > 0:
            contacts = cartilage_contacts(arr, boxes[cart_label], cart_label, _BONES)
            total = sum(contacts.values())
            off = contacts[bone_label] * 2 <= total
            if off:
                named = ", ".join(f"{KNEE_LABELS.labels[b]} {n}" for b, n in contacts.items() if n)
                reasons[f"qc_cartilage_off_bone_{plate}"] = (
                    f"{KNEE_LABELS.labels[cart_label]} touches "
                    f"{KNEE_LABELS.labels[bone_label]} on {contacts[bone_label]} of "
                    f"{total} bone voxel faces ({named or 'no bone'})"
                )
        flags[f"qc_cartilage_off_bone_{plate}"] = off
    below = False
    if not orientation_unknown and 1 in centroids and 3 in centroids:
        rise = float(centroids[1][2] - centroids[3][2])
        below = rise <= 0.0
        if below:
            reasons["qc_femur_below_tibia"] = (
                f"the femur's centre lies {-rise:.1f} mm below the tibia's along the patient's "
                "superior axis: labels swapped or a wrong orientation in the header"
            )
    flags["qc_femur_below_tibia"] = below
    return flags


_STATS = ("mean", "median", "p5", "p95", "max")


def _nan_plate(plate: str, values: dict[str, float]) -> None:
    pre = f"{plate}_cartilage"
    for stat in _STATS:
        values[f"{pre}_thickness_{stat}_mm"] = NAN
    values[f"{pre}_articular_area_mm2"] = NAN
    values[f"{plate}_subchondral_bone_area_mm2"] = NAN
    values[f"{plate}_denuded_bone_area_mm2"] = NAN
    values.update(we2008.nan_quantities(we2008.PLATE_REGIONS[plate]))


@dataclass(frozen=True)
class _FoundPlate:
    surf: PlateSurfaces
    cartilage: npt.NDArray[np.bool_]
    affine: Affine


def _plate_surfaces(
    plate: str, arr: npt.NDArray[Any], affine: Affine, boxes: dict[int, Box], cfg: MeasureConfig
) -> _FoundPlate | None:
    """Surfaces and thickness of one plate on its crop (independent of the knee frame)."""
    cart_label, bone_label = CARTILAGE_PLATES[plate]
    if cart_label not in boxes or bone_label not in boxes:
        return None
    spacing = spacing_from_affine(affine)
    box = expand_box(boxes[cart_label], cfg.crop_margin_mm, spacing, arr.shape)
    crop = arr[box]
    cart = crop == cart_label
    crop_affine = cropped_affine(affine, box)
    surf = plate_surfaces(
        cart,
        crop == bone_label,
        crop_affine,
        sigma_vox=cfg.sigma_vox,
        cover_threshold=cfg.cover_threshold,
        normal_cos_min=cfg.normal_cos_min,
        smoothing_mm=cfg.thickness_smoothing_mm,
        method=cfg.thickness_method,
    )
    if not surf.covered.any():
        return None
    return _FoundPlate(surf, cart, crop_affine)


def _plateau_normal(found: list[_FoundPlate | None]) -> F64 | None:
    """Area-weighted mean outward normal of the tibial bone-cartilage interface (world)."""
    total = np.zeros(3)
    for item in found:
        if item is not None:
            cov = item.surf.covered
            total += (item.surf.bone.normals[cov] * item.surf.bone.vertex_area_mm2[cov, None]).sum(
                axis=0
            )
    norm = float(np.linalg.norm(total))
    return total / norm if norm > 0 else None


def _measure_plate(
    plate: str,
    found: _FoundPlate | None,
    frame: KneeFrame,
    cfg: MeasureConfig,
    values: dict[str, float],
    maps: dict[str, ThicknessMap],
    with_maps: bool,
) -> PlateSummary | None:
    if found is None:
        _nan_plate(plate, values)
        return None
    surf, cart, crop_affine = found.surf, found.cartilage, found.affine
    covered = surf.covered
    pts = frame.to_knee(surf.bone.vertices_mm)
    normals = frame.directions_to_knee(surf.bone.normals)
    area = surf.bone.vertex_area_mm2
    th = surf.thickness_mm[covered]
    w = area[covered]
    pre = f"{plate}_cartilage"
    values[f"{pre}_thickness_mean_mm"] = float(np.average(th, weights=w))
    values[f"{pre}_thickness_median_mm"] = weighted_quantile(th, w, 0.5)
    values[f"{pre}_thickness_p5_mm"] = weighted_quantile(th, w, 0.05)
    values[f"{pre}_thickness_p95_mm"] = weighted_quantile(th, w, 0.95)
    values[f"{pre}_thickness_max_mm"] = float(th.max())
    values[f"{pre}_articular_area_mm2"] = surf.articular_area_mm2

    circle: SagittalCircle | None = None
    if plate == "femoral":
        circle = fit_sagittal_circle(pts[covered], w)
    centre = np.average(pts[covered], axis=0, weights=w)
    eligible = facing_plate(plate, pts, normals, circle, cos_min=FACING_COS_MIN) | covered
    x, y = flat_coords(plate, pts, circle, centre)
    denuded = denuded_mask(
        x, y, covered, eligible, pixel_mm=cfg.footprint_pixel_mm, convex=plate != "femoral"
    )
    denuded_area = float(area[denuded].sum())
    values[f"{plate}_denuded_bone_area_mm2"] = denuded_area
    values[f"{plate}_subchondral_bone_area_mm2"] = float(w.sum()) + denuded_area

    # Wirth-Eckstein regions: tAB = covered + denuded bone; each cartilage voxel's volume
    # goes to its nearest tAB vertex
    tab = covered | denuded
    vox = np.argwhere(cart).astype(np.float64)
    vox_mm = vox @ crop_affine[:3, :3].T + crop_affine[:3, 3]
    voxel_mm3 = float(abs(np.linalg.det(crop_affine[:3, :3])))
    volume = voxel_volume_per_vertex(surf.bone.vertices_mm, tab, vox_mm, voxel_mm3)
    values.update(plate_region_values(plate, pts, area, covered, tab, surf.thickness_mm, volume))
    if with_maps:
        maps[plate] = thickness_map(plate, x[covered], y[covered], th, w, cfg.map_pixel_mm)

    plate_pts = covered | denuded
    proj = area[plate_pts] * np.abs(normals[plate_pts, 2])
    return PlateSummary(
        centre_knee=centre,
        knee_pts=pts[plate_pts],
        proj_weights=proj,
    )
