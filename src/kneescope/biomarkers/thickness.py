"""Cartilage thickness along the bone normal between sub-voxel surfaces.

Method (see docs/biomarkers.md, "Cartilage thickness: method and why"): the bone-cartilage
interface (BCI) is the 0.5 level of the blurred bone indicator; the articular surface is the
0.5 level of the blurred (bone or cartilage) indicator. Both regions are thick, so blurring
does not shrink thin cartilage (blurring the cartilage mask itself would). Thickness at each
bone vertex is the distance in mm along the vertex's outward bone normal to where the blurred
(bone or cartilage) indicator falls below 0.5: the cartilage's extent along the bone normal,
the definition the Chondrometrics-style per-vertex thickness and the synthetic knees' exact
truth share. A bone vertex is covered where that thickness is at least ``min_thickness_mm``
(0.15 mm). An area-weighted, mean-preserving smoothing over the interface removes the terraces
of grid-aligned binary surfaces without moving plate means.

``method="nearest"`` keeps kneescope's earlier nearest-surface thickness (distance to the
nearest normal-compatible articular point, covered where the blurred cartilage reaches
``cover_threshold``) for comparison: it reads low wherever the articular surface slopes over
the bone (tapered plate margins) and its coverage rule drops cartilage under ~0.3 mm, so its
plate means are off the exact truth by -6 to +2 % (docs/biomarkers.md, Validation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.spatial import cKDTree

from kneescope.biomarkers.surfaces import (
    F64,
    Mesh,
    iso_surface,
    sample_field,
    smoothed_indicator,
)
from kneescope.types import Affine

MIN_COVER_MM = 0.15
"""Bone counts as cartilage-covered where the cartilage along its normal is at least this
thick (mm); the synthetic knees' truth uses the same rule (synth.anatomy.THIN_MM)."""

MAX_THICKNESS_MM = 8.0
"""Rays along the bone normal stop here (mm): thicker is not cartilage (QC flags > 10 mm)."""

RAY_STEP_MM = 0.25
"""Sampling step along the bone normal (mm); the crossing is interpolated between samples
(the blurred fields vary over >= 0.4 mm, so linear interpolation is exact to ~1 um)."""

SHOWN_WITHIN_MM = 0.5
"""Covered bone needs the cartilage mask, grown by the voxels within this distance (mm) and
interpolated, above 0.25 somewhere along its ray (:func:`_label_shows_cartilage`)."""

NORMAL_SIGMA_MM = 0.9
"""Blur (mm) of the bone indicator whose gradient gives the ray directions."""

ThicknessMethod = Literal["normal", "nearest"]


@dataclass(frozen=True)
class PlateSurfaces:
    """The bone surface under one cartilage plate, with thickness where cartilage covers it.

    Attributes:
        bone: mesh of the bone surface in the crop (world mm, outward normals).
        covered: bool (V,) bone vertex lies under cartilage (the BCI).
        thickness_mm: float64 (V,) thickness (mm; along the bone normal, or nearest-surface
            with ``method="nearest"``) at covered vertices, NaN elsewhere.
        articular_area_mm2: area of the articular (outer) cartilage surface in mm^2.
    """

    bone: Mesh
    covered: npt.NDArray[np.bool_]
    thickness_mm: F64
    articular_area_mm2: float

    @property
    def bci_area_mm2(self) -> float:
        return float(self.bone.vertex_area_mm2[self.covered].sum())


def plate_surfaces(
    cartilage: npt.NDArray[np.bool_],
    bone: npt.NDArray[np.bool_],
    affine: Affine,
    *,
    sigma_vox: float = 1.2,
    cover_threshold: float = 0.25,
    normal_cos_min: float = 0.7,
    smoothing_mm: float = 1.5,
    method: ThicknessMethod = "normal",
    min_thickness_mm: float = MIN_COVER_MM,
) -> PlateSurfaces:
    """Sub-voxel bone and articular surfaces of one plate and the thickness between them.

    Args:
        cartilage: bool (I, J, K) cartilage voxels of this plate (already cropped).
        bone: bool (I, J, K) voxels of the bone under the plate, same grid.
        affine: 4x4 voxel -> RAS+ mm of the grid.
        sigma_vox: Gaussian width in voxels along each axis used for the sub-voxel surfaces.
        cover_threshold: ``method="nearest"`` only: a bone vertex is covered when the blurred
            cartilage indicator there reaches this value.
        normal_cos_min: ``method="nearest"`` only: a bone vertex pairs with the nearest
            articular point whose outward normal has at least this cosine with its normal.
        smoothing_mm: Gaussian width (mm) of the mean-preserving smoothing of the thickness
            over the interface (0: none). Binary masks put terraces of up to half a voxel into
            both surfaces where they lie nearly parallel to the grid; averaging over ~1.5 mm
            removes most of that without blurring real thickness patterns, and the
            area-weighted plate mean is unchanged by construction (:func:`_smooth_on_grid`).
        method: ``"normal"`` (default): thickness along the bone normal; ``"nearest"``: the
            earlier nearest-surface thickness (see the module docstring).
        min_thickness_mm: ``method="normal"``: bone is covered where the thickness along its
            normal is at least this (mm).

    Returns:
        :class:`PlateSurfaces`; the bone mesh is empty when there is no bone in the grid.
    """
    bone_field = smoothed_indicator(bone, sigma_vox)
    union_field = smoothed_indicator(bone | cartilage, sigma_vox)
    cart_field = union_field - bone_field
    bone_mesh = iso_surface(bone_field, affine)
    n = len(bone_mesh.vertices_mm)
    thickness = np.full(n, np.nan)
    if n == 0 or not cartilage.any():
        return PlateSurfaces(bone_mesh, np.zeros(n, bool), thickness, 0.0)
    cart_at_bone = sample_field(cart_field, affine, bone_mesh.vertices_mm)
    near = ndimage.binary_dilation(cartilage, iterations=2)
    outer = iso_surface(union_field, affine, region=near)
    articular_area = _articular_area(outer, cart_field, bone_field, affine)
    if method == "normal":
        # candidates: any cartilage within the blur's reach (the ray decides)
        cand = np.flatnonzero(cart_at_bone > 0.01)
        directions = _smooth_normals(bone_field, affine, bone_mesh.vertices_mm[cand], sigma_vox)
        along = _normal_thickness(bone_mesh.vertices_mm[cand], directions, union_field, affine)
        covered = np.zeros(n, bool)
        near_mask = _dilate_mm(cartilage, affine, SHOWN_WITHIN_MM)
        covered[cand] = (along >= min_thickness_mm) & _label_shows_cartilage(
            near_mask, affine, bone_mesh.vertices_mm[cand], directions, along
        )
        thickness[covered] = along[covered[cand]]
    else:
        covered = cart_at_bone >= cover_threshold
        targets, target_normals = _articular_points(outer, cart_field, bone_field, affine)
        if len(targets) and covered.any():
            thickness[covered] = _paired_distance(
                bone_mesh.vertices_mm[covered],
                bone_mesh.normals[covered],
                targets,
                target_normals,
                normal_cos_min,
                0.35 * outer.median_edge_mm(),
            )
        else:
            covered[:] = False
    if smoothing_mm > 0 and covered.any():
        thickness[covered] = _smooth_on_grid(
            bone_mesh.vertices_mm[covered],
            thickness[covered],
            bone_mesh.vertex_area_mm2[covered],
            affine,
            bone.shape,
            smoothing_mm,
        )
    return PlateSurfaces(bone_mesh, covered, thickness, articular_area)


def _smooth_normals(
    bone_field: npt.NDArray[np.float32],
    affine: Affine,
    points: F64,
    sigma_vox: float,
    sigma_mm: float = NORMAL_SIGMA_MM,
) -> F64:
    """Unit outward bone normals (N, 3) at ``points``: the gradient of the bone indicator
    (``bone_field``, already blurred by ``sigma_vox`` voxels) blurred on to ``sigma_mm``.
    The mesh's own normals follow the terraces that a binary mask leaves in surfaces lying
    nearly parallel to a grid plane (tilted by up to ~25 deg), and a ray along a tilted normal
    reads 1 / cos(tilt) too thick; a surface's normal varies over centimetres, so a 0.9 mm
    blur loses nothing real."""
    if len(points) == 0:
        return np.zeros((0, 3))
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    extra = np.sqrt(np.maximum((sigma_mm / spacing) ** 2 - sigma_vox**2, 0.0))
    field = ndimage.gaussian_filter(bone_field, tuple(float(e) for e in extra), mode="nearest")
    inv = np.linalg.inv(affine)
    ijk = (points @ inv[:3, :3].T + inv[:3, 3]).T
    grad_idx = np.stack(
        [ndimage.map_coordinates(g, ijk, order=1, mode="nearest") for g in np.gradient(field)],
        axis=1,
    ).astype(np.float64)
    outward = -(grad_idx @ inv[:3, :3])  # d/d(index) -> d/d(world), pointing out of bone
    norm = np.linalg.norm(outward, axis=1, keepdims=True)
    out: F64 = outward / np.where(norm > 0, norm, 1.0)
    return out


def _dilate_mm(
    mask: npt.NDArray[np.bool_], affine: Affine, radius_mm: float
) -> npt.NDArray[np.bool_]:
    """``mask`` grown by the voxels of the 3x3x3 neighbourhood whose centres lie within
    ``radius_mm`` (world mm; on 0.7 x 0.365 mm voxels: in-plane neighbours only)."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    offsets = np.indices((3, 3, 3)).reshape(3, -1).T - 1
    within = np.linalg.norm(offsets * spacing, axis=1) <= radius_mm + 1e-3  # no rounding flips
    structure = np.zeros((3, 3, 3), bool)
    structure[tuple((offsets[within] + 1).T)] = True
    out: npt.NDArray[np.bool_] = ndimage.binary_dilation(mask, structure=structure)
    return out


def _label_shows_cartilage(
    cartilage: npt.NDArray[np.bool_], affine: Affine, points: F64, directions: F64, along: F64
) -> npt.NDArray[np.bool_]:
    """(N,) True where the (dilated) cartilage mask, trilinearly interpolated, exceeds 0.25 at
    some point of the ray between the bone and the articular surface (samples every 0.05 mm,
    at most :data:`MAX_THICKNESS_MM`): within about three quarters of a voxel of a cartilage
    voxel along each axis. The blurred union's 0.5 level runs on for about one blur width
    beyond a plate's edge (0.84 mm across 0.7 mm slices), which the thickness alone would
    count as thin covered bone; the mask ends where the segmentation ends. (Interpolation,
    not the nearest voxel, so that flipping or permuting the array axes changes nothing.)"""
    inv = np.linalg.inv(affine)
    field = cartilage.astype(np.float32)
    shown = np.zeros(len(points), bool)
    limit = np.minimum(np.nan_to_num(along), MAX_THICKNESS_MM)
    for s in np.arange(0.025, float(limit.max(initial=0.0)), 0.05):
        todo = np.flatnonzero(~shown & (limit > s))
        if len(todo) == 0:
            break
        q = points[todo] + s * directions[todo]
        ijk = (q @ inv[:3, :3].T + inv[:3, 3]).T
        value = ndimage.map_coordinates(field, ijk, order=1, mode="constant", cval=0.0)
        shown[todo[value > 0.25]] = True
    return shown


def _normal_thickness(
    points: F64, normals: F64, union_field: npt.NDArray[np.float32], affine: Affine
) -> F64:
    """Distance (N,) mm from each bone point along its unit outward normal to the first point
    where the blurred (bone or cartilage) indicator falls below 0.5 (the articular surface;
    0 over bare bone; :data:`MAX_THICKNESS_MM` when the ray stays inside)."""
    if len(points) == 0:
        return np.zeros(0)
    steps = np.arange(0.0, MAX_THICKNESS_MM + RAY_STEP_MM / 2, RAY_STEP_MM)
    inv = np.linalg.inv(affine)
    out = np.empty(len(points))
    for lo in range(0, len(points), 20000):  # bounded memory
        p, nrm = points[lo : lo + 20000], normals[lo : lo + 20000]
        q = p[:, None, :] + steps[None, :, None] * nrm[:, None, :]
        ijk = q.reshape(-1, 3) @ inv[:3, :3].T + inv[:3, 3]
        # beyond the grid nothing is known: a ray ends there (measure crops 4 mm around)
        v = ndimage.map_coordinates(union_field, ijk.T, order=1, mode="constant", cval=0.0)
        v = v.reshape(len(p), len(steps)).astype(np.float64) - 0.5
        outside = v < 0.0
        outside[:, 0] = False  # the bone point itself (0.5 level of bone <= union)
        first = np.argmax(outside, axis=1)
        first[~outside.any(axis=1)] = len(steps) - 1
        first = np.maximum(first, 1)
        rows = np.arange(len(p))
        v0, v1 = v[rows, first - 1], v[rows, first]
        frac = np.clip(v0 / np.maximum(v0 - v1, 1e-12), 0.0, 1.0)
        out[lo : lo + 20000] = steps[first - 1] + frac * RAY_STEP_MM
    return out


def _smooth_on_grid(
    points: F64,
    values: F64,
    weights: F64,
    affine: Affine,
    shape: tuple[int, ...],
    sigma_mm: float,
) -> F64:
    """Mean-preserving Gaussian smoothing of point values (N,) with weights (N,) (areas).

    With ``K`` the symmetric point-to-point kernel (splat to a coarse grid, Gaussian, gather
    with the same cells) and ``a_i = (K w)_i / max(K w)``, each value becomes
    ``(1 - a_i) v_i + a_i (K w v)_i / (K w)_i``: the normalised convolution inside the plate,
    more of its own value where fewer neighbours surround it (the plate's edge). Then
    ``sum_i w_i out_i = sum_i w_i v_i + ((w v)' K w - w' K (w v)) / max(K w)``, which is
    exactly the weighted sum of the input (K symmetric): the plate mean does not move. (A
    plain normalised convolution pulls edge values towards the interior, which raised plate
    means by up to 2 % on tapered plates.)
    """
    # splat on a grid coarsened so that each cell stays below sigma / 2 (speed only), with
    # trilinear weights, and gather with the same weights (the adjoint: K stays symmetric,
    # and no point jumps between cells when the world is rotated by a rounding error)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    step = np.maximum(1, np.floor(sigma_mm / (2.0 * spacing))).astype(np.int64)
    inv = np.linalg.inv(affine)
    ijk = (points @ inv[:3, :3].T + inv[:3, 3]) / step
    coarse = tuple(int(n) + 2 for n in (np.array(shape) + step - 1) // step)
    ijk = np.clip(ijk, 0.0, np.array(coarse, dtype=np.float64) - 2.0)
    base = np.floor(ijk).astype(np.int64)
    frac = ijk - base
    corners = []
    for corner in np.ndindex(2, 2, 2):
        off = np.array(corner)
        weight = np.prod(np.where(off == 1, frac, 1.0 - frac), axis=1)
        idx = base + off
        corners.append((np.ravel_multi_index((idx[:, 0], idx[:, 1], idx[:, 2]), coarse), weight))
    size = int(np.prod(coarse))
    num = np.zeros(size)
    den = np.zeros(size)
    for flat, weight in corners:
        num += np.bincount(flat, weights=weight * weights * values, minlength=size)
        den += np.bincount(flat, weights=weight * weights, minlength=size)
    sigma_vox = tuple(float(sigma_mm / (s * n)) for s, n in zip(spacing, step, strict=True))
    num_g = ndimage.gaussian_filter(num.reshape(coarse), sigma_vox, mode="constant").ravel()
    den_g = ndimage.gaussian_filter(den.reshape(coarse), sigma_vox, mode="constant").ravel()
    num_s = sum(weight * num_g[flat] for flat, weight in corners)
    den_s = sum(weight * den_g[flat] for flat, weight in corners)
    top = float(den_s.max(initial=0.0))
    if top <= 0.0:
        return values.copy()
    a = den_s / top
    out: F64 = values * (1.0 - a) + num_s / top
    return out


def _is_cartilage_side(
    points: F64,
    cart_field: npt.NDArray[np.float32],
    bone_field: npt.NDArray[np.float32],
    affine: Affine,
) -> npt.NDArray[np.bool_]:
    """True where the outer surface at ``points`` bounds cartilage rather than bare bone:
    more cartilage than bone beneath, and the bone (blurred) no nearer than at a quarter level,
    so bare bone next to a plate's edge does not count as articular surface."""
    bone_here = sample_field(bone_field, affine, points)
    return (sample_field(cart_field, affine, points) > bone_here) & (bone_here < 0.25)


def _paired_distance(
    points: F64,
    normals: F64,
    targets: F64,
    target_normals: F64,
    cos_min: float,
    disc_radius_mm: float,
) -> F64:
    """Distance from each point to its nearest normal-compatible target, (N,) mm.

    Looks at the nearest target, then the 16 and 256 nearest for points still unpaired; a
    point with no compatible target among those takes the nearest target. The distance is
    taken to the target's tangent disc (radius ``disc_radius_mm``: 0.35 x the median edge,
    about half the vertex spacing) rather than to the vertex itself, which removes the
    ~0.01 mm overestimate of measuring to a sampled surface.
    """
    tree = cKDTree(targets)
    chosen = np.zeros(len(points), np.int64)
    todo = np.arange(len(points))
    for k in (1, 16, 256):
        k = min(k, len(targets))
        _, idx = tree.query(points[todo], k=k)
        idx = idx.reshape(len(todo), k)
        ok = np.einsum("nkd,nd->nk", target_normals[idx], normals[todo]) >= cos_min
        found = ok.any(axis=1)
        first = np.argmax(ok, axis=1)
        chosen[todo[found]] = idx[found, first[found]]
        todo = todo[~found]
        if k == len(targets) or len(todo) == 0:
            break
    if len(todo):
        chosen[todo] = tree.query(points[todo], k=1)[1]
    offset = targets[chosen] - points
    normal_part = np.abs(np.einsum("nd,nd->n", offset, target_normals[chosen]))
    tangential = np.sqrt(np.maximum(np.einsum("nd,nd->n", offset, offset) - normal_part**2, 0))
    return np.sqrt(normal_part**2 + np.maximum(tangential - disc_radius_mm, 0.0) ** 2)


def _articular_points(
    outer: Mesh,
    cart_field: npt.NDArray[np.float32],
    bone_field: npt.NDArray[np.float32],
    affine: Affine,
) -> tuple[F64, F64]:
    """Vertices of the outer surface that bound cartilage, (N, 3) mm, with their unit
    outward normals (N, 3). (Vertices lie ~0.2-0.35 mm apart, so the nearest vertex
    overestimates the distance to the surface by ~0.01 mm at 2 mm.)"""
    if len(outer.vertices_mm) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3))
    keep = _is_cartilage_side(outer.vertices_mm, cart_field, bone_field, affine)
    return outer.vertices_mm[keep], outer.normals[keep]


def _articular_area(
    outer: Mesh,
    cart_field: npt.NDArray[np.float32],
    bone_field: npt.NDArray[np.float32],
    affine: Affine,
) -> float:
    if len(outer.faces) == 0:
        return 0.0
    tri = outer.vertices_mm[outer.faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    keep = _is_cartilage_side(outer.face_centres_mm(), cart_field, bone_field, affine)
    return float(area[keep].sum())
