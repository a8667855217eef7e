"""Full-leg films: a two-stage landmark cascade, then the mechanical axes and HKA per leg.

A standing full-leg film (e.g. 3600 x 1200 pixels at 0.3 mm, 4000 x 1000 at 0.36 mm) is too
large for one network pass at the resolution the landmarks need. The cascade:

1. **Overview.** The film is block-averaged to about :data:`COARSE_SPACING_MM` per pixel,
   a band of rows at a time (never a float copy of the whole film), and the body's midline
   column is found (intensity centroid). Each leg's half of the overview (the left leg's
   mirrored into the right leg's frame, medial side at larger columns, with
   :data:`COARSE_OVERLAP_MM` past the midline) is resampled to exactly
   :data:`COARSE_SPACING_MM` on a :data:`COARSE_SHAPE` grid from the film's top row.
2. **Coarse landmarks.** The ``full-leg-coarse`` landmark model (a small MONAI U-Net heat-map
   network, :mod:`kneescope.capabilities.landmarks`) finds the hip, knee and ankle regions
   of each leg on that grid.
3. **Fine landmarks.** Around each coarse position a :data:`FINE_SHAPE` crop at
   :data:`FINE_SPACING_MM` (about 67 mm square; right frame, read from the film's pixels in
   that window only, anti-aliased) goes through the ``full-leg-fine`` model, which finds the
   joint centre in it (femoral head centre, knee centre or ankle centre); the crop is taken
   again around that answer and the model run a second time.
4. **Alignment.** :mod:`kneescope.xray.alignment`: HKA (180 neutral, < 180 varus) and the
   mechanical axis deviation from the three fine landmarks, in film mm.

Peak memory is the film's own pixels plus a few megabytes, whatever the film's size.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage

from kneescope.capabilities.landmarks.heatmaps import decode_heatmaps, sigma_vox
from kneescope.capabilities.landmarks.predict import LandmarkModel, load_landmark_model
from kneescope.capabilities.landmarks.synthetic import LandmarkData
from kneescope.core import Volume
from kneescope.errors import InputError, ModelError
from kneescope.transforms.image_batch import normalise_images
from kneescope.xray.alignment import axis_length_mm, hka_deg, mechanical_axis_deviation_mm

COARSE_SPACING_MM = 5.0
"""Pixel spacing (mm) of the coarse pass."""
COARSE_SHAPE = (320, 48)
"""Coarse grid per leg (rows, columns): 1600 mm from the film's top, 240 mm across."""
COARSE_OVERLAP_MM = 16.0
"""How far (mm) each leg's coarse grid reaches past the midline."""
COARSE_LANDMARKS = ("hip", "knee", "ankle")
FINE_SPACING_MM = 0.7
"""Pixel spacing (mm) of the fine crops."""
FINE_SHAPE = (96, 96)
"""Fine crop size (rows, columns): 67.2 mm square."""
FINE_LANDMARKS = ("centre",)
COARSE_MODEL = "full-leg-coarse"
FINE_MODEL = "full-leg-fine"
SIDES = ("right", "left")

MIN_FILM_HEIGHT_MM = 650.0
MIN_ASPECT = 1.6
FEMUR_RANGE_MM = (280.0, 650.0)
TIBIA_RANGE_MM = (240.0, 600.0)
HKA_RANGE_DEG = (150.0, 210.0)
MIN_CONFIDENCE = 0.2
"""Least heat-map mass near a coarse peak for a leg to count as found."""

ModelArg = LandmarkModel | Path | str | None


@dataclass(frozen=True)
class LegResult:
    """One leg of a full-leg film.

    Attributes:
        side: the patient's ``"right"`` or ``"left"`` leg (the right leg is on the viewer's
            left of a conventionally displayed film).
        hip_rc, knee_rc, ankle_rc: femoral head centre, knee centre and ankle centre as
            (row, column) float pixel positions in the film (``None``: not found).
        hip_mm, knee_mm, ankle_mm: the same as (row, column) mm from the centre of pixel
            (0, 0) (pixel index x spacing).
        hka_deg: hip-knee-ankle angle, degrees, 180 neutral, ``< 180`` varus (``None`` when
            the leg could not be measured).
        mad_mm: mechanical axis deviation (knee centre from the hip-ankle line), mm, positive
            lateral (varus); film mm, so including the film's magnification.
        confidence: the least heat-map mass near the three coarse peaks (0..1).
        reason: why the leg has no HKA (``None``: measured).
    """

    side: str
    hip_rc: tuple[float, float] | None = None
    knee_rc: tuple[float, float] | None = None
    ankle_rc: tuple[float, float] | None = None
    hip_mm: tuple[float, float] | None = None
    knee_mm: tuple[float, float] | None = None
    ankle_mm: tuple[float, float] | None = None
    hka_deg: float | None = None
    mad_mm: float | None = None
    confidence: float = 0.0
    reason: str | None = None


# --- the overview (coarse) images ------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    """A film block-averaged for the coarse pass.

    Attributes:
        image: ``(rows // fr, columns // fc)`` float32 block means.
        factor: block size (rows, columns) in film pixels.
        spacing_mm: the film's pixel spacing (rows, columns), mm.
        film_shape: the film's (rows, columns).
        background: a low percentile of the block means (fills outside the film).
    """

    image: npt.NDArray[np.float32]
    factor: tuple[int, int]
    spacing_mm: tuple[float, float]
    film_shape: tuple[int, int]
    background: float

    @property
    def size_mm(self) -> tuple[float, float]:
        """Film height and width, mm."""
        return (
            self.film_shape[0] * self.spacing_mm[0],
            self.film_shape[1] * self.spacing_mm[1],
        )


def block_average(
    array: npt.NDArray[Any], factor: tuple[int, int], *, band_rows: int = 256
) -> npt.NDArray[np.float32]:
    """Means of ``factor`` blocks of a 2D array (trailing partial blocks dropped).

    Converts ``band_rows`` blocks of rows to float at a time, so the memory it needs beyond
    the input is a band, not a float copy of the whole array.
    """
    fr, fc = factor
    rows, cols = array.shape[0] // fr, array.shape[1] // fc
    if rows < 1 or cols < 1:
        raise InputError(f"image {array.shape} is smaller than one {factor} block")
    out = np.empty((rows, cols), dtype=np.float32)
    for start in range(0, rows, band_rows):
        stop = min(rows, start + band_rows)
        band = np.asarray(array[start * fr : stop * fr, : cols * fc], dtype=np.float32)
        out[start:stop] = band.reshape(stop - start, fr, cols, fc).mean(axis=(1, 3))
    return out


def film_overview(film: Volume) -> Overview:
    """The film block-averaged to at most :data:`COARSE_SPACING_MM` per block.

    Raises:
        InputError: not a 2D film, non-finite pixels, or a film too small.
    """
    if film.ndim != 2:
        raise InputError(f"a full-leg film is a 2D image, got shape {film.shape}")
    spacing = (float(film.spacing_mm[0]), float(film.spacing_mm[1]))
    factor = (
        max(1, int(COARSE_SPACING_MM / spacing[0] + 1e-6)),
        max(1, int(COARSE_SPACING_MM / spacing[1] + 1e-6)),
    )
    image = block_average(film.array, factor)
    if not np.isfinite(image).all():
        raise InputError("the film holds non-finite pixel values")
    background = float(np.percentile(image, 2.0))
    return Overview(image, factor, spacing, (int(film.shape[0]), int(film.shape[1])), background)


def midline_mm(overview: Overview) -> float:
    """The column (mm) of the body's midline: the centroid of the above-background signal
    over the film's width, its outer 8 % on each side left out (collimation, markers)."""
    image = overview.image
    cols = image.shape[1]
    edge = max(1, int(0.08 * cols))
    signal = np.clip(image[:, edge : cols - edge] - overview.background, 0.0, None)
    weights = signal.sum(axis=0, dtype=np.float64)
    centres = np.arange(edge, cols - edge) * overview.factor[1] + (overview.factor[1] - 1) / 2.0
    if weights.sum() <= 0:
        return float((cols * overview.factor[1] - 1) / 2.0 * overview.spacing_mm[1])
    return float((weights * centres).sum() / weights.sum() * overview.spacing_mm[1])


def coarse_grid_mm(
    side: str, midline: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Film (row mm, column mm) of every coarse-grid row and column of ``side``'s leg."""
    sign = 1.0 if side == "right" else -1.0
    rows_mm = np.arange(COARSE_SHAPE[0], dtype=np.float64) * COARSE_SPACING_MM
    j = np.arange(COARSE_SHAPE[1], dtype=np.float64)
    cols_mm = midline + sign * (COARSE_OVERLAP_MM - (COARSE_SHAPE[1] - 1 - j) * COARSE_SPACING_MM)
    return rows_mm, cols_mm


def coarse_to_film_mm(
    side: str, midline: float, rc_mm: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Coarse-grid positions ``(..., 2)`` (mm from its first pixel) as film (row, column) mm."""
    sign = 1.0 if side == "right" else -1.0
    out = np.array(rc_mm, dtype=np.float64, copy=True)
    j = rc_mm[..., 1] / COARSE_SPACING_MM
    out[..., 1] = midline + sign * (
        COARSE_OVERLAP_MM - (COARSE_SHAPE[1] - 1 - j) * COARSE_SPACING_MM
    )
    return out


def film_to_coarse_mm(
    side: str, midline: float, rc_mm: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Film (row, column) mm ``(..., 2)`` as coarse-grid mm (the inverse of
    :func:`coarse_to_film_mm`)."""
    sign = 1.0 if side == "right" else -1.0
    out = np.array(rc_mm, dtype=np.float64, copy=True)
    j = (
        COARSE_SHAPE[1]
        - 1
        - (COARSE_OVERLAP_MM - sign * (rc_mm[..., 1] - midline)) / COARSE_SPACING_MM
    )
    out[..., 1] = j * COARSE_SPACING_MM
    return out


def coarse_image(overview: Overview, side: str, midline: float) -> npt.NDArray[np.float32]:
    """``side``'s leg on the coarse grid (:data:`COARSE_SHAPE` float32, right frame)."""
    rows_mm, cols_mm = coarse_grid_mm(side, midline)
    (fr, fc), (sr, sc) = overview.factor, overview.spacing_mm
    bi = (rows_mm / sr - (fr - 1) / 2.0) / fr
    bj = (cols_mm / sc - (fc - 1) / 2.0) / fc
    coords = np.meshgrid(bi, bj, indexing="ij")
    return ndimage.map_coordinates(
        overview.image, coords, order=1, mode="constant", cval=overview.background
    ).astype(np.float32)


# --- the fine crops --------------------------------------------------------------------------


def fine_crop(
    array: npt.NDArray[Any],
    spacing_mm: tuple[float, float],
    centre_mm: tuple[float, float],
    side: str,
) -> npt.NDArray[np.float32]:
    """A :data:`FINE_SHAPE` crop at :data:`FINE_SPACING_MM` centred on film ``centre_mm``
    (row, column mm), mirrored for the left leg (right frame); reads only its window of the
    film; outside the film the nearest edge pixel."""
    sign = 1.0 if side == "right" else -1.0
    half = (np.asarray(FINE_SHAPE, dtype=np.float64) - 1.0) / 2.0
    i = np.arange(FINE_SHAPE[0], dtype=np.float64)
    j = np.arange(FINE_SHAPE[1], dtype=np.float64)
    r_px = (centre_mm[0] + (i - half[0]) * FINE_SPACING_MM) / spacing_mm[0]
    c_px = (centre_mm[1] + sign * (j - half[1]) * FINE_SPACING_MM) / spacing_mm[1]
    ratio = (FINE_SPACING_MM / spacing_mm[0], FINE_SPACING_MM / spacing_mm[1])
    sigma = tuple(0.4 * q if q > 1.2 else 0.0 for q in ratio)
    pad = 2 + int(3 * max(sigma))
    rows, cols = array.shape
    r0 = min(max(math.floor(min(r_px[0], r_px[-1])) - pad, 0), rows - 1)
    r1 = max(min(math.ceil(max(r_px[0], r_px[-1])) + pad + 1, rows), r0 + 1)
    c0 = min(max(math.floor(min(c_px[0], c_px[-1])) - pad, 0), cols - 1)
    c1 = max(min(math.ceil(max(c_px[0], c_px[-1])) + pad + 1, cols), c0 + 1)
    window = np.asarray(array[r0:r1, c0:c1], dtype=np.float32)
    if max(sigma) > 0:
        window = ndimage.gaussian_filter(window, sigma, mode="nearest")
    coords = np.meshgrid(r_px - r0, c_px - c0, indexing="ij")
    return ndimage.map_coordinates(window, coords, order=1, mode="nearest").astype(np.float32)


def film_to_crop_mm(
    point_mm: npt.NDArray[np.float64], centre_mm: tuple[float, float], side: str
) -> npt.NDArray[np.float64]:
    """Film (row, column) mm as mm in the crop centred on ``centre_mm`` (its first pixel 0)."""
    sign = 1.0 if side == "right" else -1.0
    half = (np.asarray(FINE_SHAPE, dtype=np.float64) - 1.0) / 2.0 * FINE_SPACING_MM
    return np.array(
        [point_mm[0] - centre_mm[0] + half[0], sign * (point_mm[1] - centre_mm[1]) + half[1]]
    )


def crop_to_film_mm(
    crop_mm: npt.NDArray[np.float64], centre_mm: tuple[float, float], side: str
) -> npt.NDArray[np.float64]:
    """Crop mm (inverse of :func:`film_to_crop_mm`) as film (row, column) mm."""
    sign = 1.0 if side == "right" else -1.0
    half = (np.asarray(FINE_SHAPE, dtype=np.float64) - 1.0) / 2.0 * FINE_SPACING_MM
    return np.array(
        [crop_mm[0] - half[0] + centre_mm[0], sign * (crop_mm[1] - half[1]) + centre_mm[1]]
    )


# --- the models ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _load_cached(path: str) -> LandmarkModel:
    return load_landmark_model(Path(path))


def load_full_leg_model(model: ModelArg, default: str) -> LandmarkModel:
    """A landmark model from a loaded model, a file path or a shipped name (``None``:
    ``default``, a shipped name).

    Raises:
        ModelError: the file cannot be used, or no shipped model has that name.
    """
    if isinstance(model, LandmarkModel):
        return model
    from kneescope.models.pretrained import step_model_path

    path = step_model_path(model, default)
    name = str(model or default)
    if not path.is_file():
        raise ModelError(
            f"no landmark model file or shipped model called {name!r}; give the file "
            "written by `kneescope train` or a name from `kneescope models list`"
        )
    return _load_cached(str(path))


def _check_model(
    model: LandmarkModel,
    landmarks: tuple[str, ...],
    shape: tuple[int, int],
    spacing: float,
    what: str,
) -> None:
    spec = model.spec
    if (
        tuple(spec.landmarks) != landmarks
        or tuple(spec.input_size_vox) != shape
        or not all(math.isclose(s, spacing, rel_tol=1e-4) for s in spec.spacing_mm)
    ):
        raise ModelError(
            f"the {what} model finds {spec.landmarks} on {spec.input_size_vox} pixels at "
            f"{spec.spacing_mm} mm; the cascade needs {landmarks} on {shape} at {spacing} mm: "
            f"give a {what} model trained for it"
        )


def _run(
    model: LandmarkModel, images: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Positions ``(N, L, 2)`` mm and the heat-map mass near each peak ``(N, L)``."""
    spec = model.spec
    batch = torch.from_numpy(normalise_images(images, spec.input_size_vox, spec.normalisation))
    sigma = sigma_vox(spec.heatmap_sigma_mm, spec.spacing_mm)
    with torch.no_grad():
        logits = model.network(batch.to(model.device)).float().cpu()
    positions = decode_heatmaps(logits, sigma).double().numpy()
    prob = torch.softmax(logits.flatten(2), dim=-1).view(logits.shape).numpy()
    mass = np.zeros(positions.shape[:2])
    rr, rc = math.ceil(3 * sigma[0]), math.ceil(3 * sigma[1])
    for n in range(positions.shape[0]):
        for k in range(positions.shape[1]):
            r, c = (round(float(v)) for v in positions[n, k])
            mass[n, k] = float(
                prob[n, k, max(r - rr, 0) : r + rr + 1, max(c - rc, 0) : c + rc + 1].sum()
            )
    return positions * np.asarray(spec.spacing_mm, dtype=np.float64), mass


# --- the cascade -----------------------------------------------------------------------------


def _film_problem(overview: Overview) -> str | None:
    height, width = overview.size_mm
    if height < MIN_FILM_HEIGHT_MM or height < MIN_ASPECT * width:
        return (
            f"not a full-leg film ({height:.0f} x {width:.0f} mm; a standing hip-to-ankle "
            "film is taller than 650 mm and much taller than wide)"
        )
    return None


def _leg_problem(
    hip: npt.NDArray[np.float64],
    knee: npt.NDArray[np.float64],
    ankle: npt.NDArray[np.float64],
    confidence: float,
) -> str | None:
    if confidence < MIN_CONFIDENCE:
        return "leg not found (the hip, knee or ankle is not on the film)"
    femur, tibia = axis_length_mm(hip, knee), axis_length_mm(knee, ankle)
    if not (hip[0] < knee[0] < ankle[0]):
        return "leg not found (hip, knee and ankle are not in order from the top)"
    if not FEMUR_RANGE_MM[0] <= femur <= FEMUR_RANGE_MM[1]:
        return f"leg not found (femoral axis {femur:.0f} mm long)"
    if not TIBIA_RANGE_MM[0] <= tibia <= TIBIA_RANGE_MM[1]:
        return f"leg not found (tibial axis {tibia:.0f} mm long)"
    return None


def measure_full_leg(
    film: Volume,
    *,
    coarse: ModelArg = None,
    fine: ModelArg = None,
    refine_passes: int = 2,
) -> list[LegResult]:
    """Hip, knee and ankle centres and the HKA angle of both legs of a full-leg film.

    Args:
        film: a 2D film, ``array[row, column]``, bone bright, rows to the feet, columns to
            the patient's Left (as :func:`kneescope.io.read_dicom_radiograph` gives it);
            any size and pixel spacing.
        coarse: the coarse landmark model (loaded, a file or a shipped name); default the
            shipped ``full-leg-coarse``.
        fine: the fine landmark model; default the shipped ``full-leg-fine``.
        refine_passes: fine passes per landmark (each re-centres the crop on the last
            answer).

    Returns:
        ``[right, left]``: a :class:`LegResult` per leg, with a ``reason`` instead of an HKA
        when the leg cannot be measured.

    Raises:
        InputError: not a 2D film, or non-finite pixels.
        ModelError: a model cannot be used.
    """
    coarse_model = load_full_leg_model(coarse, COARSE_MODEL)
    fine_model = load_full_leg_model(fine, FINE_MODEL)
    _check_model(coarse_model, COARSE_LANDMARKS, COARSE_SHAPE, COARSE_SPACING_MM, "coarse")
    _check_model(fine_model, FINE_LANDMARKS, FINE_SHAPE, FINE_SPACING_MM, "fine")
    overview = film_overview(film)
    problem = _film_problem(overview)
    if problem is not None:
        return [LegResult(side=side, reason=problem) for side in SIDES]
    midline = midline_mm(overview)
    images = np.stack([coarse_image(overview, side, midline) for side in SIDES])
    coarse_mm, mass = _run(coarse_model, images)
    del images, overview
    spacing = (float(film.spacing_mm[0]), float(film.spacing_mm[1]))
    results = []
    for s, side in enumerate(SIDES):
        points = coarse_to_film_mm(side, midline, coarse_mm[s])  # (3, 2) film mm
        for _ in range(max(1, refine_passes)):
            crops = np.stack([fine_crop(film.array, spacing, tuple(p), side) for p in points])
            found, _mass = _run(fine_model, crops)
            points = np.stack(
                [crop_to_film_mm(found[k, 0], tuple(points[k]), side) for k in range(3)]
            )
        hip, knee, ankle = points
        confidence = float(mass[s].min())
        reason = _leg_problem(hip, knee, ankle, confidence)
        hka = mad = None
        if reason is None:
            hka = hka_deg(hip, knee, ankle, side)
            mad = mechanical_axis_deviation_mm(hip, knee, ankle, side)
            if not HKA_RANGE_DEG[0] <= hka <= HKA_RANGE_DEG[1]:
                reason, hka, mad = f"implausible HKA ({hka:.1f} deg): check the film", None, None

        def rc(p: npt.NDArray[np.float64]) -> tuple[float, float]:
            return (float(p[0] / spacing[0]), float(p[1] / spacing[1]))

        def mm(p: npt.NDArray[np.float64]) -> tuple[float, float]:
            return (float(p[0]), float(p[1]))

        results.append(
            LegResult(
                side=side,
                hip_rc=rc(hip),
                knee_rc=rc(knee),
                ankle_rc=rc(ankle),
                hip_mm=mm(hip),
                knee_mm=mm(knee),
                ankle_mm=mm(ankle),
                hka_deg=hka,
                mad_mm=mad,
                confidence=confidence,
                reason=reason,
            )
        )
    return results


# --- training data ---------------------------------------------------------------------------


def coarse_examples(
    films: Iterable[tuple[Volume, dict[str, dict[str, tuple[float, float]]]]],
    *,
    seed: int,
    midline_jitter_mm: float = 15.0,
) -> LandmarkData:
    """Coarse training images (two per film: right leg, mirrored left leg) with positions.

    Args:
        films: (film, truth) pairs; truth: side -> landmark (``hip``, ``knee``, ``ankle``)
            -> film (row, column) mm.
        seed: seeds the midline jitter (the estimated midline moved by up to
            ``midline_jitter_mm``, so the coarse model does not rely on it).

    A leg with a landmark off its coarse grid is left out.
    """
    rng = np.random.default_rng(seed)
    extent = np.asarray(COARSE_SHAPE, dtype=np.float64) * COARSE_SPACING_MM
    images, positions = [], []
    for film, truth in films:
        overview = film_overview(film)
        midline = midline_mm(overview)
        for side in SIDES:
            if side not in truth:
                continue
            shift = rng.uniform(-midline_jitter_mm, midline_jitter_mm)
            pts = np.array([truth[side][name] for name in COARSE_LANDMARKS], dtype=np.float64)
            grid_mm = film_to_coarse_mm(side, midline + shift, pts)
            if (grid_mm < 0).any() or (grid_mm > extent - COARSE_SPACING_MM).any():
                continue  # a landmark off the leg's grid: nothing the model could learn
            images.append(coarse_image(overview, side, midline + shift))
            positions.append(grid_mm)
    shape = (0, *COARSE_SHAPE)
    return LandmarkData(
        images=np.stack(images) if images else np.zeros(shape, dtype=np.float32),
        positions_mm=np.stack(positions) if positions else np.zeros((0, 3, 2)),
        landmarks=COARSE_LANDMARKS,
        spacing_mm=(COARSE_SPACING_MM, COARSE_SPACING_MM),
    )


def fine_examples(
    films: Iterable[tuple[Volume, dict[str, dict[str, tuple[float, float]]]]],
    *,
    seed: int,
    per_landmark: int = 2,
    max_offset_mm: float = 14.0,
) -> LandmarkData:
    """Fine training crops: ``per_landmark`` crops around every landmark of every leg.

    Each crop's centre is off the landmark by a random offset: half of them uniform within
    ``max_offset_mm`` (what the coarse pass leaves), half within 2 mm (the second pass).
    """
    rng = np.random.default_rng(seed)
    images, positions = [], []
    for film, truth in films:
        spacing = (float(film.spacing_mm[0]), float(film.spacing_mm[1]))
        for side, marks in truth.items():
            for name in COARSE_LANDMARKS:
                point = np.asarray(marks[name], dtype=np.float64)
                for k in range(per_landmark):
                    reach = max_offset_mm if k % 2 == 0 else 2.0
                    centre = point + rng.uniform(-reach, reach, size=2)
                    images.append(fine_crop(film.array, spacing, (centre[0], centre[1]), side))
                    positions.append(film_to_crop_mm(point, (centre[0], centre[1]), side)[None])
    return LandmarkData(
        images=np.stack(images),
        positions_mm=np.stack(positions),
        landmarks=FINE_LANDMARKS,
        spacing_mm=(FINE_SPACING_MM, FINE_SPACING_MM),
    )
