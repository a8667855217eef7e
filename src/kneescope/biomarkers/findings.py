"""MRI findings of one knee per tibiofemoral compartment, from a label map and its image.

Pure numpy/scipy. The findings and their definitions are those of the generator's truth
(:mod:`kneescope.synth.findings_truth`, whose helpers this module reuses so that truth and
detection share one written definition); compartments ``medial`` and ``lateral``. Grids
finer than :data:`WORK_SPACING_MM` are coarsened to about it first (sizes are in mm, mm^2
and mm^3, so independent of the grid).

- Full-thickness cartilage defect (``ftd``): the denuded bone of the compartment's
  weight-bearing regions (Wirth-Eckstein ``MT`` + ``cMF``, ``LT`` + ``cLF``) measured by
  :func:`kneescope.biomarkers.measure.measure_knee` (``we2008_*_tAB_mm2`` x ``dABp_pct``):
  ``defect_<c>_area_mm2``. Present when that area reaches
  :attr:`FindingsConfig.defect_area_mm2` (a label map loses cartilage thinner than about
  half a voxel, so measured denuded areas run larger than the truth: the threshold for a
  true 10 mm^2 defect is chosen on validation knees). Size grade: the largest denuded share
  of a Wirth-Eckstein subregion of the compartment (MOAKS style: 1 < 33 %, 2 33-66 %,
  3 > 66 %).
- Bone-marrow lesion (``bml``): voxels of the femur or tibia, more than
  :attr:`~FindingsConfig.bml_edge_mm` (and more than the largest voxel spacing) inside the
  bone and within
  :data:`~kneescope.synth.findings_truth.SUBCHONDRAL_DEPTH_MM` of the compartment's cartilage,
  whose intensity relative to the knee's cartilage (the median over all cartilage voxels) is
  at least :attr:`~FindingsConfig.bml_relative_intensity` (marrow ~0.2, oedema-like lesion
  ~0.6 on DESS); the largest 3D-connected group of them is the lesion
  (``bml_<c>_volume_mm3``). Present at :attr:`~FindingsConfig.bml_volume_mm3`; size grade:
  its volume as a share of the compartment's subchondral subregion (the weight-bearing
  plates' tAB x 10 mm).
- Meniscal tear (``tear``): inside the meniscus (its label closed by one voxel, so that a
  segmentation that leaves the bright cleft out still encloses it), less its border voxels
  (partial volume with cartilage and fluid), the voxels of relative intensity at
  least :attr:`~FindingsConfig.tear_relative_intensity` (meniscus ~0.1, fluid in a cleft
  ~1-2); their volume ``tear_<c>_volume_mm3``. Present at
  :attr:`~FindingsConfig.tear_volume_mm3`.
- Meniscal extrusion (``extrusion``, > 3 mm): ``<c>_meniscus_extrusion_mm`` (mid-coronal,
  as measured) above :attr:`~FindingsConfig.extrusion_mm`.

The medial side of the knee is told by the medial tibial cartilage (label 4): a voxel is
medial when it lies on the medial plate's side of the plane halfway between the two tibial
plates' centroids, perpendicular to the line joining them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field
from scipy import ndimage

from kneescope.config import FROZEN
from kneescope.synth.findings_truth import (
    COMPARTMENTS,
    SUBCHONDRAL_DEPTH_MM,
    defect_values,
    size_grade,
    subchondral_volume_mm3,
)

FINDINGS = ("ftd", "bml", "tear", "extrusion")
"""Finding codes: full-thickness cartilage defect, bone-marrow lesion, meniscal tear,
meniscal extrusion."""
FINDING_WORDS = {
    "ftd": "full-thickness cartilage defect",
    "bml": "bone-marrow lesion",
    "tear": "meniscal tear",
    "extrusion": "meniscal extrusion > 3 mm",
}

FEMUR, FEMORAL_CARTILAGE, TIBIA, MEDIAL_TIBIAL, LATERAL_TIBIAL = 1, 2, 3, 4, 5
MEDIAL_MENISCUS, LATERAL_MENISCUS = 8, 9
CARTILAGE = (2, 4, 5, 7)


class FindingsConfig(BaseModel):
    """Detection thresholds (see the module doc).

    The size thresholds are the ones with the best sensitivity at specificity >= 0.90 on
    validation knees (34 synthetic knees of seed 16002 on the DEMO grid, 8 of them with
    3.4 <= D < 3.8 where small full-thickness defects start; truth label maps:
    ``benchmarks/mri_findings_eval.py --tune``), so that a true finding as
    :mod:`kneescope.synth.findings_truth` defines it is called (a label map loses thin
    cartilage at a defect's rim, so a true defect of >= 10 mm^2 measures larger there).

    Attributes:
        defect_area_mm2: measured denuded area (mm^2) from which a full-thickness defect
            (>= 10 mm^2 in truth) counts as present.
        extrusion_mm: measured mid-coronal extrusion (mm) above which extrusion (> 3 mm in
            truth) counts as present.
        bml_relative_intensity: voxel intensity / median cartilage intensity of lesion voxels.
        bml_edge_mm: lesion voxels lie at least this far inside the bone (partial volume
            with the cartilage at the bone's surface is bright too).
        bml_volume_mm3: lesion volume (mm^3) from which a BML counts as present.
        tear_relative_intensity: voxel intensity / median cartilage intensity of tear voxels.
        tear_volume_mm3: tear volume (mm^3) from which a tear counts as present.
    """

    model_config = FROZEN

    defect_area_mm2: float = Field(default=30.0, ge=0.0)
    extrusion_mm: float = 2.63
    bml_relative_intensity: float = Field(default=0.55, gt=0.0)
    bml_edge_mm: float = Field(default=1.5, ge=0.0)
    bml_volume_mm3: float = Field(default=60.0, ge=0.0)
    tear_relative_intensity: float = Field(default=0.8, gt=0.0)
    tear_volume_mm3: float = Field(default=0.9, ge=0.0)


def _spacing(affine: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    s = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return float(s[0]), float(s[1]), float(s[2])


def medial_side(
    labels: npt.NDArray[np.integer], affine: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_] | None:
    """bool (I, J, K): voxels on the medial side of the knee (see the module doc); None
    when one of the tibial plates (labels 4, 5) is missing."""
    a = np.asarray(affine, dtype=np.float64)
    centres = []
    for value in (MEDIAL_TIBIAL, LATERAL_TIBIAL):
        idx = np.argwhere(labels == value)
        if not len(idx):
            return None
        centres.append(a[:3, :3] @ idx.mean(axis=0) + a[:3, 3])
    axis = centres[0] - centres[1]
    mid = 0.5 * (centres[0] + centres[1])
    # signed distance along the axis, as a separable sum over the voxel axes
    w = a[:3, :3].T @ axis  # per voxel step
    offset = float((a[:3, 3] - mid) @ axis)
    ii, jj, kk = (np.arange(n, dtype=np.float64) for n in labels.shape)
    value = w[0] * ii[:, None, None] + w[1] * jj[None, :, None] + w[2] * kk[None, None, :] + offset
    return np.asarray(value > 0)


WORK_SPACING_MM = 0.7
"""Finer grids are coarsened to about this spacing (block means of the image, the block's
first voxel of the labels) before the detection."""


def _coarsen(
    image: npt.NDArray[np.float32],
    labels: npt.NDArray[np.integer],
    affine: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.integer], npt.NDArray[np.float64]]:
    """Image, labels and affine on a grid of about :data:`WORK_SPACING_MM` (unchanged when
    every spacing is coarser than 0.75 x that)."""
    spacing = _spacing(affine)
    f = [max(1, int(np.floor(WORK_SPACING_MM / s + 0.25))) for s in spacing]
    if f == [1, 1, 1]:
        return image, labels, affine
    n = [d // k for d, k in zip(image.shape, f, strict=True)]
    cut = image[: n[0] * f[0], : n[1] * f[1], : n[2] * f[2]]
    blocks = cut.reshape(n[0], f[0], n[1], f[1], n[2], f[2])
    coarse = blocks.mean(axis=(1, 3, 5), dtype=np.float32)
    centre = [k // 2 for k in f]
    lab = labels[centre[0] :: f[0], centre[1] :: f[1], centre[2] :: f[2]][: n[0], : n[1], : n[2]]
    out = affine.copy()
    out[:3, :3] = affine[:3, :3] * np.asarray(f, dtype=np.float64)[None, :]
    # voxel (0, 0, 0) of the coarse grid is the centre of the first block
    out[:3, 3] = affine[:3, :3] @ ((np.asarray(f) - 1) / 2.0) + affine[:3, 3]
    return coarse, lab, out


def _crop_to_joint(
    image: npt.NDArray[np.number],
    labels: npt.NDArray[np.integer],
    affine: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.integer], npt.NDArray[np.float64]]:
    """The box of the cartilage and menisci grown by the subchondral depth + 3 mm (all a
    finding needs), its float32 image, labels and affine."""
    spacing = _spacing(affine)
    joint = np.isin(labels, (*CARTILAGE, MEDIAL_MENISCUS, LATERAL_MENISCUS))
    if not joint.any():
        return image.astype(np.float32), labels, affine
    idx = np.argwhere(joint)
    margin = [int(np.ceil((SUBCHONDRAL_DEPTH_MM + 3.0) / s)) for s in spacing]
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = np.minimum(idx.max(axis=0) + 1 + margin, labels.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    shifted = affine.copy()
    shifted[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]
    return image[box].astype(np.float32), labels[box], shifted


def _largest_component_voxels(mask: npt.NDArray[np.bool_]) -> int:
    lab, n = ndimage.label(mask)
    if n == 0:
        return 0
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return int(sizes.max())


def detect_findings(
    image: npt.NDArray[np.number],
    labels: npt.NDArray[np.integer],
    affine: npt.NDArray[np.float64],
    measured: Mapping[str, float],
    config: FindingsConfig | None = None,
) -> dict[str, float]:
    """Findings of one knee (see the module doc for every definition).

    Args:
        image: (I, J, K) MRI intensities (any scale; DESS-like: fluid and lesions bright,
            marrow and menisci dark).
        labels: (I, J, K) kneescope label map on the image's grid (0..9).
        affine: float64 (4, 4) voxel -> RAS mm of both.
        measured: the knee's ``kneescope measure`` values (``we2008_*`` region columns and
            ``<c>_meniscus_extrusion_mm``; NaN where not measurable).
        config: thresholds.

    Returns:
        ``finding_<f>_<c>`` (1.0 present, 0.0 absent, NaN not measurable) for every finding
        f and compartment c, ``finding_<f>_<c>_grade`` (0..3) for ``ftd`` and ``bml``, and
        the sizes ``defect_<c>_area_mm2``, ``bml_<c>_volume_mm3``, ``tear_<c>_volume_mm3``.
    """
    cfg = config or FindingsConfig()
    img, lab, affine = _crop_to_joint(
        np.asarray(image), np.asarray(labels), np.asarray(affine, dtype=np.float64)
    )
    img, lab, affine = _coarsen(img, lab, affine)
    spacing = _spacing(affine)
    voxel_mm3 = float(np.prod(spacing))
    out: dict[str, float] = {}
    cart = np.isin(lab, CARTILAGE)
    reference = float(np.median(img[cart])) if cart.any() else float("nan")
    medial = medial_side(lab, affine)
    usable = medial is not None and np.isfinite(reference) and reference > 0
    rel = img / np.float32(reference) if usable else img
    bone = np.isin(lab, (FEMUR, TIBIA))
    depth_in_bone = ndimage.distance_transform_edt(bone, sampling=spacing)
    edge = max(cfg.bml_edge_mm, max(spacing))  # at least the bone's border voxels go
    tf_cart = np.isin(lab, (FEMORAL_CARTILAGE, MEDIAL_TIBIAL, LATERAL_TIBIAL))
    to_cart = ndimage.distance_transform_edt(~tf_cart, sampling=spacing)
    for c in COMPARTMENTS:
        # full-thickness defects
        area, grade = defect_values(measured, c)
        tib = f"we2008_{'MT' if c == 'medial' else 'LT'}_tAB_mm2"
        known = np.isfinite(float(measured.get(tib, np.nan)))
        present = known and area >= cfg.defect_area_mm2
        out[f"finding_ftd_{c}"] = float(present) if known else np.nan
        out[f"finding_ftd_{c}_grade"] = float(max(grade, 1) if present else 0) if known else np.nan
        out[f"defect_{c}_area_mm2"] = area if known else np.nan
        # meniscal extrusion
        extrusion = float(measured.get(f"{c}_meniscus_extrusion_mm", np.nan))
        out[f"finding_extrusion_{c}"] = (
            float(extrusion > cfg.extrusion_mm) if np.isfinite(extrusion) else np.nan
        )
        if not usable or medial is None:
            for name in ("bml", "tear"):
                out[f"finding_{name}_{c}"] = np.nan
                out[f"{name}_{c}_volume_mm3"] = np.nan
            out[f"finding_bml_{c}_grade"] = np.nan
            continue
        side = medial if c == "medial" else ~medial
        # bone-marrow lesions: near the compartment's cartilage, inside the bone
        zone = bone & side & (to_cart <= SUBCHONDRAL_DEPTH_MM + cfg.bml_edge_mm)
        candidates = zone & (depth_in_bone > edge) & (rel >= cfg.bml_relative_intensity)
        volume = _largest_component_voxels(candidates) * voxel_mm3
        sub = subchondral_volume_mm3(measured, c)
        present = volume >= cfg.bml_volume_mm3
        out[f"finding_bml_{c}"] = float(present)
        out[f"finding_bml_{c}_grade"] = float(
            size_grade(volume / sub) if present and sub > 0 else 0
        )
        out[f"bml_{c}_volume_mm3"] = volume
        # meniscal tears: bright voxels well inside the (closed) meniscus
        meniscus = lab == (MEDIAL_MENISCUS if c == "medial" else LATERAL_MENISCUS)
        if meniscus.any():
            idx = np.argwhere(meniscus)
            lo, hi = np.maximum(idx.min(axis=0) - 2, 0), idx.max(axis=0) + 3
            box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
            closed = ndimage.binary_closing(meniscus[box], iterations=1) | meniscus[box]
            inner = ndimage.binary_erosion(closed)
            tear = inner & (rel[box] >= cfg.tear_relative_intensity)
            t_volume = float(np.count_nonzero(tear)) * voxel_mm3
            out[f"finding_tear_{c}"] = float(t_volume >= cfg.tear_volume_mm3)
            out[f"tear_{c}_volume_mm3"] = t_volume
        else:
            out[f"finding_tear_{c}"] = np.nan
            out[f"tear_{c}_volume_mm3"] = np.nan
    return out
