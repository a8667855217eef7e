"""Cartilage thickness by nearest-surface distance between sub-voxel surfaces.

Method (see docs/biomarkers.md): the bone-cartilage interface (BCI) is the 0.5 level of the
blurred bone indicator; the articular surface is the 0.5 level of the blurred (bone or
cartilage) indicator, restricted to where cartilage rather than bone lies beneath it. Both
regions are thick, so blurring does not shrink thin cartilage (blurring the cartilage mask
itself would). Thickness at each BCI vertex is the Euclidean distance in mm to the nearest
articular-surface vertex (to its tangent disc), found with a k-d tree.

Nearest-surface distance agrees with surface-normal methods on real knees and, unlike ray
casting, does not overestimate where the two surfaces are not parallel. Measuring between
sub-voxel surfaces instead of voxel faces or voxel-centre distance maps removes the half-voxel
bias of voxelised surfaces.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class PlateSurfaces:
    """The bone surface under one cartilage plate, with thickness where cartilage covers it.

    Attributes:
        bone: mesh of the bone surface in the crop (world mm, outward normals).
        covered: bool (V,) bone vertex lies under cartilage (the BCI).
        thickness_mm: float64 (V,) nearest-surface thickness at covered vertices, NaN elsewhere.
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
) -> PlateSurfaces:
    """Sub-voxel bone and articular surfaces of one plate and the thickness between them.

    Args:
        cartilage: bool (I, J, K) cartilage voxels of this plate (already cropped).
        bone: bool (I, J, K) voxels of the bone under the plate, same grid.
        affine: 4x4 voxel -> RAS+ mm of the grid.
        sigma_vox: Gaussian width in voxels along each axis used for the sub-voxel surfaces.
        cover_threshold: a bone vertex is covered when the blurred cartilage indicator there
            reaches this value (0.5 x the value at a bone/cartilage boundary, ~0.25).
        normal_cos_min: a bone vertex pairs with the nearest articular point whose outward
            normal has at least this cosine with the bone normal, so the side walls at a
            plate's edge do not shorten the thickness there (nearest point overall if none
            of the 256 nearest qualifies).
        smoothing_mm: Gaussian width (mm) of the normalised convolution that smooths the
            thickness over the interface (0: none). Binary masks put terraces of up to half a
            voxel into both surfaces where they lie nearly parallel to the grid; averaging over
            ~1.5 mm removes most of that without blurring real thickness patterns.

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
    covered = sample_field(cart_field, affine, bone_mesh.vertices_mm) >= cover_threshold

    near = ndimage.binary_dilation(cartilage, iterations=2)
    outer = iso_surface(union_field, affine, region=near)
    targets, target_normals = _articular_points(outer, cart_field, bone_field, affine)
    articular_area = _articular_area(outer, cart_field, bone_field, affine)
    if len(targets) and covered.any():
        thickness[covered] = _paired_distance(
            bone_mesh.vertices_mm[covered],
            bone_mesh.normals[covered],
            targets,
            target_normals,
            normal_cos_min,
            0.35 * outer.median_edge_mm(),
        )
        if smoothing_mm > 0:
            thickness[covered] = _smooth_on_grid(
                bone_mesh.vertices_mm[covered],
                thickness[covered],
                bone_mesh.vertex_area_mm2[covered],
                affine,
                bone.shape,
                smoothing_mm,
            )
    else:
        covered[:] = False
    return PlateSurfaces(bone_mesh, covered, thickness, articular_area)


def _smooth_on_grid(
    points: F64,
    values: F64,
    weights: F64,
    affine: Affine,
    shape: tuple[int, ...],
    sigma_mm: float,
) -> F64:
    """Gaussian normalised convolution of point values (N,) splatted on the voxel grid."""
    # splat on a grid coarsened so that each cell stays below sigma / 2 (speed only)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    step = np.maximum(1, np.floor(sigma_mm / (2.0 * spacing))).astype(np.int64)
    inv = np.linalg.inv(affine)
    ijk = (points @ inv[:3, :3].T + inv[:3, 3]) / step
    coarse = tuple(int(n) for n in (np.array(shape) + step - 1) // step)
    idx = np.clip(np.rint(ijk).astype(np.int64), 0, np.array(coarse) - 1)
    flat = np.ravel_multi_index((idx[:, 0], idx[:, 1], idx[:, 2]), coarse)
    size = int(np.prod(coarse))
    num = np.bincount(flat, weights=weights * values, minlength=size).reshape(coarse)
    den = np.bincount(flat, weights=weights, minlength=size).reshape(coarse)
    sigma_vox = tuple(float(sigma_mm / (s * n)) for s, n in zip(spacing, step, strict=True))
    num_s = ndimage.gaussian_filter(num.astype(np.float32), sigma_vox, mode="constant")
    den_s = ndimage.gaussian_filter(den.astype(np.float32), sigma_vox, mode="constant")
    n_at = ndimage.map_coordinates(num_s, ijk.T, order=1, mode="nearest")
    d_at = ndimage.map_coordinates(den_s, ijk.T, order=1, mode="nearest")
    ok = d_at > 1e-6
    out = values.copy()
    out[ok] = n_at[ok] / d_at[ok]
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
