"""Segmentation overlays: a knee's label map blended on its image, in sagittal, coronal and
axial slices through each cartilage plate (numpy only, one PNG write per figure).

The image and the label map are put in the scanner's RAS+ axes first (:func:`to_ras_axes`:
axes permuted and flipped by the affine, so any acquisition orientation shows the same
way), cropped to the labelled knee plus a margin, sampled to square display pixels and shown
in the radiological convention:

- sagittal: anterior on the left, superior at the top;
- coronal: the patient's right on the viewer's left, superior at the top;
- axial: the patient's right on the viewer's left, anterior at the top.

Each structure is tinted with its colour (:func:`kneescope.core.labels.label_colour`) and its
outline drawn opaque, so the image under the segmentation stays readable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kneescope.core import Volume
from kneescope.core.labels import CARTILAGE_PLATES, KNEE_LABELS, label_colour
from kneescope.errors import InputError

U8 = npt.NDArray[np.uint8]

VIEWS = ("sagittal", "coronal", "axial")
VIEW_CAPTIONS = {
    "sagittal": "sagittal: anterior left, superior up",
    "coronal": "coronal: patient's right on the left, superior up",
    "axial": "axial: patient's right on the left, anterior up",
}
"""How each view is oriented, in words (shown under the figures)."""

ALPHA = 0.45
"""Opacity of a structure's tint inside it (its outline is opaque)."""

BONE_ALPHA = 0.12
"""Opacity of a bone's tint (light: the cartilage on it is what the figure is about)."""

_BONES = frozenset({"femur", "tibia", "patella"})

MARGIN_MM = 8.0
"""Margin around the labelled knee kept in the overlays."""


@dataclass(frozen=True)
class RasPair:
    """An image and its label map on one grid, axes in RAS+ order, indices increasing towards
    +R, +A, +S.

    Attributes:
        image: float32 (nR, nA, nS) intensities.
        labels: uint8 (nR, nA, nS) label values (0 background).
        spacing_mm: (3,) voxel size along R, A, S in mm.
    """

    image: npt.NDArray[np.float32]
    labels: U8
    spacing_mm: tuple[float, float, float]


def to_ras_axes(
    array: npt.NDArray[np.generic], affine_ras: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.generic], tuple[float, float, float]]:
    """``array`` (3D, indexed i, j, k) with its axes permuted and flipped so that axis 0 runs
    towards +R, axis 1 towards +A and axis 2 towards +S (the closest axis for an oblique
    grid), and the voxel size in mm along each. A 3D view, no copy."""
    if array.ndim != 3:
        raise InputError(f"an overlay needs a 3D volume, got shape {array.shape}")
    columns = np.asarray(affine_ras, dtype=np.float64)[:3, :3]
    world_of_axis = [int(np.argmax(np.abs(columns[:, a]))) for a in range(3)]
    if sorted(world_of_axis) != [0, 1, 2]:  # two axes on one world direction: pick greedily
        order = np.argsort(-np.abs(columns).max(axis=0))
        free, world_of_axis = [0, 1, 2], [0, 0, 0]
        for a in order:
            best = max(free, key=lambda w: abs(columns[w, a]))
            world_of_axis[a] = best
            free.remove(best)
    axis_of_world = [world_of_axis.index(w) for w in range(3)]
    out = np.transpose(array, axis_of_world)
    for w, a in enumerate(axis_of_world):
        if columns[w, a] < 0:
            out = np.flip(out, axis=w)
    spacing = tuple(float(np.linalg.norm(columns[:, a])) for a in axis_of_world)
    return out, (spacing[0], spacing[1], spacing[2])


def ras_pair(image: Volume, labels: Volume) -> RasPair:
    """The image and label map in RAS+ axes, cropped to the labelled voxels plus
    :data:`MARGIN_MM` (the whole grid when nothing is labelled).

    Raises:
        InputError: the two are not on the same grid shape.
    """
    if image.array.shape != labels.array.shape:
        raise InputError(
            f"image {image.array.shape} and label map {labels.array.shape} are not on one "
            "grid; an overlay needs the label map of this image"
        )
    img, spacing = to_ras_axes(image.array, image.affine_ras)
    lab_view, _ = to_ras_axes(labels.array, labels.affine_ras)
    lab: U8 = np.asarray(lab_view, dtype=np.uint8)
    inside = lab > 0
    if inside.any():
        lo, hi = [], []
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            idx = np.flatnonzero(inside.any(axis=other))
            pad = int(np.ceil(MARGIN_MM / spacing[axis]))
            lo.append(max(int(idx[0]) - pad, 0))
            hi.append(min(int(idx[-1]) + 1 + pad, lab.shape[axis]))
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        img, lab = img[box], lab[box]
    return RasPair(
        np.asarray(img, dtype=np.float32), np.asarray(lab, dtype=np.uint8).copy(), spacing
    )


def plate_centres(pair: RasPair) -> dict[str, tuple[int, int, int]]:
    """Voxel (R, A, S index) at the centre of each cartilage plate present: the plate's voxel
    nearest its centroid (so the slices through it cut the plate)."""
    out: dict[str, tuple[int, int, int]] = {}
    for plate, (value, _bone) in CARTILAGE_PLATES.items():
        mask = pair.labels == value
        spans = []
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            idx = np.flatnonzero(mask.any(axis=other))
            if idx.size == 0:
                break
            spans.append((int(idx[0]), int(idx[-1]) + 1))
        if len(spans) < 3:
            continue
        box = tuple(slice(a, b) for a, b in spans)
        where = np.argwhere(mask[box]) + np.array([a for a, _ in spans])
        centroid = where.mean(axis=0)
        nearest = where[int(np.argmin(((where - centroid) ** 2).sum(axis=1)))]
        out[plate] = (int(nearest[0]), int(nearest[1]), int(nearest[2]))
    return out


def _window(image: npt.NDArray[np.float32]) -> tuple[float, float]:
    """Grey-level window: 1st..99.5th percentile of the (cropped) image, from every second
    voxel along each axis."""
    sample = image[::2, ::2, ::2].ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(sample, [1.0, 99.5])
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def _resample_2d(
    plane: npt.NDArray[np.generic], step_rows_mm: float, step_cols_mm: float, pixel_mm: float
) -> npt.NDArray[np.generic]:
    """Nearest-neighbour resampling of a 2D slice to square ``pixel_mm`` pixels."""
    rows = np.minimum(
        (
            np.arange(max(round(plane.shape[0] * step_rows_mm / pixel_mm), 1))
            * pixel_mm
            / step_rows_mm
        ).astype(np.int64),
        plane.shape[0] - 1,
    )
    cols = np.minimum(
        (
            np.arange(max(round(plane.shape[1] * step_cols_mm / pixel_mm), 1))
            * pixel_mm
            / step_cols_mm
        ).astype(np.int64),
        plane.shape[1] - 1,
    )
    return plane[np.ix_(rows, cols)]


def _view(
    volume: npt.NDArray[np.generic], view: str, at: tuple[int, int, int]
) -> tuple[npt.NDArray[np.generic], int, int]:
    """The 2D slice of a RAS-axes volume for ``view`` through voxel ``at``, in display order
    (rows top to bottom, columns left to right), and which RAS axes its rows and columns
    run along."""
    r, a, s = at
    if view == "sagittal":  # rows: S (superior up), columns: A (anterior left)
        return volume[r, ::-1, ::-1].T, 2, 1
    if view == "coronal":  # rows: S (superior up), columns: R (patient's right on the left)
        return volume[::-1, a, ::-1].T, 2, 0
    if view == "axial":  # rows: A (anterior up), columns: R (patient's right on the left)
        return volume[::-1, ::-1, s].T, 1, 0
    raise InputError(f"unknown view {view!r}; use one of {', '.join(VIEWS)}")


@dataclass(frozen=True)
class Palette:
    """Colour (256, 3) uint8 and tint opacity (256,) float32 of every label value."""

    rgb: U8
    alpha: npt.NDArray[np.float32]


def palette_for(names: Mapping[int, str]) -> Palette:
    """The overlay palette of label value -> structure name ``names``: each structure's
    colour, :data:`BONE_ALPHA` for bones, :data:`ALPHA` for everything else."""
    table = np.zeros((256, 3), np.uint8)
    alpha = np.zeros(256, np.float32)
    for value in range(1, 256):
        name = names.get(value, f"label {value}")
        table[value] = label_colour(value, name)
        alpha[value] = BONE_ALPHA if name in _BONES else ALPHA
    return Palette(table, alpha)


def blend(grey: U8, labels: U8, palette: Palette) -> U8:
    """(H, W, 3) uint8 RGB: ``grey`` (H, W) with each label tinted by its palette colour at
    its opacity inside and drawn opaque on its outline (pixels with a differently labelled
    4-neighbour)."""
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    inside = labels > 0
    colour = palette.rgb[labels].astype(np.float32)
    a = palette.alpha[labels][..., None]
    rgb = np.where(inside[..., None], (1.0 - a) * rgb + a * colour, rgb)
    edge = np.zeros(labels.shape, bool)
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge &= inside
    rgb[edge] = colour[edge]
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def view_rgb(
    pair: RasPair,
    view: str,
    at: tuple[int, int, int],
    *,
    pixel_mm: float,
    window: tuple[float, float],
    palette: Palette,
) -> U8:
    """One overlay panel: (H, W, 3) uint8, square ``pixel_mm`` pixels."""
    img, row_axis, col_axis = _view(pair.image, view, at)
    lab, _, _ = _view(pair.labels, view, at)
    dr, dc = pair.spacing_mm[row_axis], pair.spacing_mm[col_axis]
    img = _resample_2d(img, dr, dc, pixel_mm)
    lab = _resample_2d(lab, dr, dc, pixel_mm)
    lo, hi = window
    grey = np.clip((np.asarray(img, np.float32) - lo) * (255.0 / (hi - lo)), 0, 255)
    return blend(grey.astype(np.uint8), np.asarray(lab, np.uint8), palette)


def strip(panels: list[U8], gap: int = 4) -> U8:
    """Panels side by side, top-aligned, on white, ``gap`` pixels apart."""
    height = max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    out = np.full((height, width, 3), 255, np.uint8)
    x = 0
    for p in panels:
        out[: p.shape[0], x : x + p.shape[1]] = p
        x += p.shape[1] + gap
    return out


def display_pixel_mm(pair: RasPair, max_panel_px: int) -> float:
    """Square display pixel (mm): the finest voxel size, coarsened so that no panel is
    larger than ``max_panel_px`` on a side."""
    extent = [n * s for n, s in zip(pair.labels.shape, pair.spacing_mm, strict=True)]
    return max(min(pair.spacing_mm), max(extent) / max_panel_px)


def write_png(path: Path, rgb: U8) -> Path:
    """Write (H, W, 3) uint8 RGB as a PNG, atomically (Pillow)."""
    from PIL import Image

    from kneescope.io.atomic import atomic_write

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"a PNG needs a uint8 (H, W, 3) array, got {rgb.dtype} {rgb.shape}")
    image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    return atomic_write(
        path, lambda tmp: image.save(tmp, format="PNG", compress_level=3), suffix=".png"
    )


@dataclass(frozen=True)
class OverlayFigure:
    """One written overlay figure: ``plate`` ("" for the thumbnail), its file, size in
    pixels and the voxel (R, A, S index in the cropped RAS grid) the slices pass through."""

    plate: str
    path: Path
    width: int
    height: int
    at: tuple[int, int, int]


def write_overlays(
    image: Volume,
    labels: Volume,
    folder: Path,
    *,
    names: Mapping[int, str] | None = None,
    max_panel_px: int = 240,
    thumbnail: Path | None = None,
    thumbnail_px: int = 160,
    thumbnail_plate: str = "medial_tibial",
) -> list[OverlayFigure]:
    """Write ``overlay_<plate>.png`` into ``folder`` for each cartilage plate present in
    ``labels``: sagittal, coronal and axial slices through the plate's centre side by side;
    and, with ``thumbnail``, a small sagittal overlay through ``thumbnail_plate`` (else the
    first plate, else the knee's centre) there.

    Args:
        image: the knee's image (any orientation).
        labels: its label map on the same grid (kneescope labels for the plate centres).
        folder: output folder (created).
        names: label value -> structure name for the colours (default: kneescope's).
        max_panel_px: largest side of one panel in pixels (keeps pages small).
        thumbnail: path of the thumbnail PNG, or None for none.
        thumbnail_px: the thumbnail's largest side in pixels.
        thumbnail_plate: the plate the thumbnail's slice passes through.

    Returns:
        The figures written, plates in :data:`~kneescope.core.labels.CARTILAGE_PLATES` order,
        the thumbnail (plate ``""``) last.
    """
    pair = ras_pair(image, labels)
    palette = palette_for(dict(names) if names is not None else KNEE_LABELS.labels)
    window = _window(pair.image)
    pixel = display_pixel_mm(pair, max_panel_px)
    folder.mkdir(parents=True, exist_ok=True)
    out: list[OverlayFigure] = []
    centres = plate_centres(pair)
    for plate, at in centres.items():
        rgb = strip(
            [view_rgb(pair, v, at, pixel_mm=pixel, window=window, palette=palette) for v in VIEWS]
        )
        path = write_png(folder / f"overlay_{plate}.png", rgb)
        out.append(OverlayFigure(plate, path, rgb.shape[1], rgb.shape[0], at))
    if thumbnail is not None:
        at = centres.get(thumbnail_plate) or next(
            iter(centres.values()),
            tuple(n // 2 for n in pair.labels.shape),  # type: ignore[arg-type]
        )
        small = display_pixel_mm(pair, thumbnail_px)
        rgb = view_rgb(pair, "sagittal", at, pixel_mm=small, window=window, palette=palette)
        thumbnail.parent.mkdir(parents=True, exist_ok=True)
        path = write_png(thumbnail, rgb)
        out.append(OverlayFigure("", path, rgb.shape[1], rgb.shape[0], at))
    return out
