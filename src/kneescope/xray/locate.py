"""Find both knees on a bilateral PA knee radiograph and cut a standard ROI per knee.

Classical image analysis, in two stages:

1. **Candidates** on a 2 mm working copy of the film (block means; intensities scaled between
   the 1st and 99.5th percentiles of the exposed field, collimated borders left out): the
   tibial plateau under the joint space is a long straight edge, dark above and bright below.
   The copy is rotated through -14..14 degrees (4-degree steps) and filtered with the first
   derivative of a Gaussian across the edge (sigma 1.5 mm) times a Gaussian along it (sigma
   15 mm); the strongest responses at least :data:`MIN_KNEE_SEPARATION_MM` apart are the
   candidates.
2. **Each knee** on a joint-aligned image sampled from the film at :data:`LOCAL_MM`
   (170 x 90 mm, re-centred and re-aligned once): the plateau edge row of every column is
   fitted by a line (robust, iterated), whose inlier extent gives the tibial margins and whose
   slope the joint angle; the femoral condyles' lower margin is the strongest
   bright-to-dark edge 0.75..16 mm above the line; the intercondylar notch is the deepest
   valley of the brightness 8..16 mm above the line between two bright condyles (peaks within
   25 mm either side); the **knee centre** is the notch's middle column and, as row, the mean
   over the two compartments of the midpoint between the condyle's lowest point and the
   plateau below it (the definition of the synthetic films' truth).
3. **Side.** Two knees: the one on the patient's right (from the film's column direction,
   i.e. the DICOM PatientOrientation, default the conventional PA display ``L\\F``) is the
   right knee. The anatomy is checked against that: the fibular head sits lateral, so on a
   PA film of two knees each knee's fibula must lie away from the other knee. One knee: the
   fibula gives the lateral side, and with the column direction the side; the DICOM
   ImageLaterality (R/L), when recorded, must agree. Lead L/R markers are not read.
4. **Reasons** a knee is not gradable (each is one short phrase): ``no knee found``,
   ``only one knee on the film``, ``lateral view`` (DICOM ViewPosition LL/RL/LAT, or a knee
   without an intercondylar notch), ``implant`` (a metal-bright blob by the joint),
   ``side conflict: ...`` (anatomy and DICOM disagree).

Each knee found yields the standard ROI (:mod:`kneescope.xray.roi`): 140 mm at 0.2 mm, right
frame (a left knee mirrored).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from kneescope.core import Volume
from kneescope.errors import InputError
from kneescope.types import Side
from kneescope.xray.roi import ROI_PIXEL_MM, ROI_SIZE_MM, extract_roi

WORK_MM = 2.0
"""Pixel size of the working copy the knees are searched on (mm)."""

ANGLES_DEG = tuple(float(a) for a in range(-14, 15, 4))
"""In-plane rotations searched for the joint line (degrees)."""

MIN_RESPONSE = 0.004
"""Least joint-line (ridge) response of a knee, in normalised intensity per mm^2."""

MIN_NOTCH_CONTRAST = 0.03
"""Least depth of the intercondylar notch (normalised brightness) of a knee in a PA view."""

MAX_LATERAL_PLATEAU_MM = 75.0
"""A notch-less joint whose plateau is at most this long is a knee seen from the side."""

MIN_KNEE_SEPARATION_MM = 80.0
"""Two knee candidates closer than this (along the film's width) are one knee."""

NO_KNEE = "no knee found"
ONE_KNEE = "only one knee on the film"
LATERAL_VIEW = "lateral view"
IMPLANT = "implant"

_LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "XTABLE"})


@dataclass(frozen=True)
class KneeLocation:
    """One knee of a film.

    Attributes:
        side: ``"right"`` or ``"left"``.
        centre_rc: (row, column) of the knee centre in film pixels; None when not found.
        centre_mm: the same in mm from the film's first pixel (row, column); None if not found.
        joint_angle_deg: in-plane angle of the joint line (degrees, positive = the line
            runs down to the right of the display, i.e. a counter-clockwise film rotation
            undoes it); None when not found.
        side_source: how the side was decided, in words.
        reason: why the knee cannot be graded (None: gradable).
        roi: the standard ROI (``(700, 700)`` float32, right frame); None when not found.
        response: joint-line strength (normalised ridge response); 0 when not found.
    """

    side: Side
    centre_rc: tuple[float, float] | None
    centre_mm: tuple[float, float] | None
    joint_angle_deg: float | None
    side_source: str
    reason: str | None
    roi: npt.NDArray[np.float32] | None = field(repr=False)
    response: float = 0.0

    @property
    def found(self) -> bool:
        """True when the knee was found on the film."""
        return self.centre_rc is not None

    @property
    def gradable(self) -> bool:
        """True when the knee was found and nothing stands against grading it."""
        return self.reason is None and self.roi is not None


@dataclass(frozen=True)
class FilmKnees:
    """Both knees of a film (a knee not found still has an entry, with its reason).

    Attributes:
        right, left: the knees.
        spacing_mm: (row, column) pixel spacing used (mm).
        spacing_source: where it came from: ``PixelSpacing``, ``ImagerPixelSpacing`` (DICOM),
            else ``affine`` (the volume's geometry, e.g. a NIfTI file).
        view: ``PA`` (knees found as expected), ``lateral`` or ``unknown``.
        reason: a film-level reason (the same as every knee's when nothing was found).
    """

    right: KneeLocation
    left: KneeLocation
    spacing_mm: tuple[float, float]
    spacing_source: str
    view: str
    reason: str | None

    def knee(self, side: str) -> KneeLocation:
        """The knee of ``side`` (``right``/``left``)."""
        if side == "right":
            return self.right
        if side == "left":
            return self.left
        raise InputError(f"a knee side is 'right' or 'left', got {side!r}")

    def __iter__(self) -> Iterator[KneeLocation]:
        return iter((self.right, self.left))


@dataclass(frozen=True)
class _Candidate:
    """A knee found on the film: centre in film pixels and what the anatomy says."""

    row: float
    col: float
    angle_deg: float
    response: float
    notch_contrast: float
    lateral_sign: int  # -1: fibula towards smaller columns, +1 larger, 0 unsure
    implant: bool
    tibial_width_mm: float
    bone_above: float  # brightness 8-16 mm above the plateau over that 4-16 mm below


def _working_image(
    array: npt.NDArray[Any], spacing_mm: tuple[float, float]
) -> tuple[npt.NDArray[Any], tuple[float, float]]:
    """Block means then a resample to ~:data:`WORK_MM`; returns (image, film pixels per
    working pixel along rows and columns)."""
    fr = max(1, int(WORK_MM / spacing_mm[0]))
    fc = max(1, int(WORK_MM / spacing_mm[1]))
    h, w = array.shape[0] // fr * fr, array.shape[1] // fc * fc
    if h == 0 or w == 0:
        raise InputError(f"a film of {array.shape} pixels is too small to hold a knee")
    block = np.empty((h // fr, w // fc), dtype=np.float32)
    step = max(fr, 4_000_000 // max(w, 1) // fr * fr)  # rows per chunk: bounded memory
    for r0 in range(0, h, step):
        r1 = min(r0 + step, h)
        chunk = np.asarray(array[r0:r1, :w], dtype=np.float32)
        block[r0 // fr : r1 // fr] = chunk.reshape((r1 - r0) // fr, fr, w // fc, fc).mean(
            axis=(1, 3)
        )
    zoom = (spacing_mm[0] * fr / WORK_MM, spacing_mm[1] * fc / WORK_MM)
    if abs(zoom[0] - 1.0) > 0.02 or abs(zoom[1] - 1.0) > 0.02:
        block = ndimage.zoom(block, zoom, order=1, grid_mode=True, mode="nearest")
        block = block.astype(np.float32)
    # film pixels per working pixel: working (i + 0.5) * f - 0.5 is film row i'
    return block, (h / block.shape[0], w / block.shape[1])


def _exposed_field(image: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Mask of the exposed field: border rows/columns that are flat and bright (collimated,
    unexposed) are out."""
    mask = np.ones(image.shape, dtype=bool)
    lo, hi = (float(v) for v in np.percentile(image, [1.0, 99.9]))
    spread = hi - lo or 1.0
    for axis in (0, 1):
        lines = image if axis == 0 else image.T
        med = (np.median(lines, axis=1) - lo) / spread
        std = lines.std(axis=1) / spread
        flat = (std < 0.06) & (med > 0.75)
        n = flat.size
        a = 0
        while a < n // 3 and flat[a]:
            a += 1
        b = n
        while b > 2 * n // 3 and flat[b - 1]:
            b -= 1
        # the edge itself is blurred: a few more mm out
        a = a + 2 if a else 0
        b = b - 2 if b < n else n
        if axis == 0:
            mask[:a] = False
            mask[b:] = False
        else:
            mask[:, :a] = False
            mask[:, b:] = False
    return mask


def _normalised(image: npt.NDArray[Any], mask: npt.NDArray[np.bool_]) -> npt.NDArray[Any]:
    values = image[mask] if mask.any() else image.ravel()
    lo, hi = np.percentile(values, [1.0, 99.5])
    if hi - lo <= 1e-6 * max(abs(float(hi)), 1.0):
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _rotate(image: npt.NDArray[Any], angle_deg: float, cval: float = 0.0) -> npt.NDArray[Any]:
    if angle_deg == 0.0:
        return image
    return ndimage.rotate(image, angle_deg, reshape=False, order=1, mode="constant", cval=cval)


def _plateau_responses(
    norm: npt.NDArray[Any], mask: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """(best response, its angle index) per working pixel: a long straight edge, dark above
    and bright below (the tibial plateau under the joint space)."""
    best = np.full(norm.shape, -np.inf, dtype=np.float32)
    which = np.zeros(norm.shape, dtype=np.int16)
    fill = float(np.median(norm[mask])) if mask.any() else 0.0
    inner = ndimage.binary_erosion(mask, iterations=3, border_value=0)
    base = np.where(mask, norm, fill).astype(np.float32)
    for k, angle in enumerate(ANGLES_DEG):
        rot = _rotate(base, angle, cval=fill)
        resp = ndimage.gaussian_filter(
            rot, sigma=(1.5 / WORK_MM, 15.0 / WORK_MM), order=(1, 0), mode="nearest"
        )
        back = _rotate(resp, -angle)
        better = back > best
        best[better] = back[better]
        which[better] = k
    best[~inner] = 0.0
    return np.maximum(best, 0.0), which


def _runs(values: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, stop) of the True runs of a 1D mask."""
    padded = np.concatenate(([False], values, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


LOCAL_MM = 0.5
"""Pixel size of the local, joint-aligned image a knee is measured on (mm)."""


@dataclass(frozen=True)
class _Frame:
    """A joint-aligned frame on the film: origin (film mm), angle of its u axis."""

    origin_mm: tuple[float, float]
    phi_deg: float  # + = the u axis runs down to the right as displayed

    def to_film_mm(self, u: Any, v: Any) -> tuple[Any, Any]:
        t = np.deg2rad(self.phi_deg)
        return (
            self.origin_mm[0] + u * np.sin(t) + v * np.cos(t),
            self.origin_mm[1] + u * np.cos(t) - v * np.sin(t),
        )


def _sample(
    film: npt.NDArray[Any],
    spacing: tuple[float, float],
    frame: _Frame,
    u_mm: tuple[float, float],
    v_mm: tuple[float, float],
) -> npt.NDArray[np.float32]:
    """The film on the frame's grid (rows = v, columns = u, :data:`LOCAL_MM` apart)."""
    us = np.arange(u_mm[0], u_mm[1] + 1e-6, LOCAL_MM)
    vs = np.arange(v_mm[0], v_mm[1] + 1e-6, LOCAL_MM)
    vv, uu = np.meshgrid(vs, us, indexing="ij")
    r_mm, c_mm = frame.to_film_mm(uu, vv)
    rows, cols = r_mm / spacing[0], c_mm / spacing[1]
    r0 = max(int(np.floor(rows.min())) - 1, 0)
    r1 = min(int(np.ceil(rows.max())) + 2, film.shape[0])
    c0 = max(int(np.floor(cols.min())) - 1, 0)
    c1 = min(int(np.ceil(cols.max())) + 2, film.shape[1])
    if r0 >= r1 or c0 >= c1:
        return np.full(vv.shape, np.nan, dtype=np.float32)
    block = np.asarray(film[r0:r1, c0:c1], dtype=np.float32)
    out = ndimage.map_coordinates(
        block, [rows - r0, cols - c0], order=1, mode="constant", cval=np.nan, output=np.float32
    )
    return np.asarray(out, dtype=np.float32)


def _subpixel(values: npt.NDArray[Any], k: int) -> float:
    if 0 < k < values.size - 1:
        den = values[k - 1] - 2 * values[k] + values[k + 1]
        if den < 0:
            return k + 0.5 * float(values[k - 1] - values[k + 1]) / float(den)
    return float(k)


@dataclass(frozen=True)
class _Plateau:
    """The tibial plateau edge in a local image: row per column, line fit, extent."""

    p: npt.NDArray[Any]  # edge row (local pixels) per column, NaN where weak
    alpha: float  # line: row = alpha + beta * column
    beta: float
    a: int  # first and last column of the plateau edge
    b: int
    strength: float


def _plateau(d: npt.NDArray[Any], v_row0: int, band: int) -> _Plateau | None:
    """Find the plateau edge (largest +d/dv) within ``band`` rows of row ``v_row0``."""
    lo, hi = max(v_row0 - band, 1), min(v_row0 + band, d.shape[0] - 1)
    if hi - lo < 5:
        return None
    sub = d[lo:hi]
    k = np.argmax(sub, axis=0)
    s = sub[k, np.arange(sub.shape[1])]
    ref = float(np.percentile(s, 90))
    if not ref > 0:
        return None
    p = np.array(
        [lo + _subpixel(sub[:, j], int(k[j])) for j in range(sub.shape[1])], dtype=np.float64
    )
    strong = s > 0.35 * ref
    cols = np.arange(p.size, dtype=np.float64)
    if strong.sum() < 20:
        return None
    alpha, beta = float(np.median(p[strong])), 0.0
    keep = strong & (np.abs(p - alpha) < 8.0 / LOCAL_MM)
    for tol in (4.0, 2.0, 1.2):
        if keep.sum() < 20:
            return None
        beta, alpha = (float(x) for x in np.polyfit(cols[keep], p[keep], 1))
        keep = strong & (np.abs(p - (alpha + beta * cols)) < tol / LOCAL_MM)
    idx = np.flatnonzero(keep)
    if idx.size < 20:
        return None
    # the plateau: the largest cluster of inlier columns (gaps up to 25 mm: the spines)
    gaps = np.flatnonzero(np.diff(idx) > 25.0 / LOCAL_MM)
    bounds = np.split(idx, gaps + 1)
    middle = p.size / 2.0
    near = [g for g in bounds if np.abs(g - middle).min() < 30.0 / LOCAL_MM] or bounds
    cluster = max(near, key=lambda g: g.size)
    out = np.where(keep, p, np.nan)
    return _Plateau(out, alpha, beta, int(cluster[0]), int(cluster[-1]), ref)


def _refine(
    film: npt.NDArray[Any],
    spacing: tuple[float, float],
    guess_mm: tuple[float, float],
    phi_deg: float,
    response: float,
) -> _Candidate | None:
    """Fit the knee at ``guess_mm`` (a point on its plateau edge) on joint-aligned images."""
    frame = _Frame(guess_mm, phi_deg)
    u_half, v_up, v_down = 85.0, 40.0, 50.0
    plateau = None
    local = norm = d = None
    sampled = frame
    for _ in range(2):
        sampled = frame
        local = _sample(film, spacing, frame, (-u_half, u_half), (-v_up, v_down))
        finite = np.isfinite(local)
        if finite.mean() < 0.6:
            return None
        centre = local[:, round((u_half - 50.0) / LOCAL_MM) : round((u_half + 50.0) / LOCAL_MM)]
        lo, hi = np.percentile(centre[np.isfinite(centre)], [2.0, 99.5])
        norm = np.clip((np.where(finite, local, lo) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
        d = ndimage.gaussian_filter(norm, sigma=(2.0, 1.0), order=(1, 0))
        plateau = _plateau(d, round(v_up / LOCAL_MM), round(14.0 / LOCAL_MM))
        if plateau is None:
            return None
        mid = 0.5 * (plateau.a + plateau.b)
        u_mid = mid * LOCAL_MM - u_half
        v_mid = (plateau.alpha + plateau.beta * mid) * LOCAL_MM - v_up
        frame = _Frame(
            frame.to_film_mm(u_mid, v_mid), frame.phi_deg + np.degrees(np.arctan(plateau.beta))
        )
    assert plateau is not None and norm is not None and d is not None and local is not None
    width_mm = (plateau.b - plateau.a) * LOCAL_MM
    if not 40.0 <= width_mm <= 140.0:
        return None
    n_cols = d.shape[1]
    cols = np.arange(n_cols)
    line = plateau.alpha + plateau.beta * cols  # the plateau edge row per column
    # femoral condyles' lower margin: the strongest bright-above/dark-below edge 0.75-16 mm
    # above the plateau line
    f = np.full(n_cols, np.nan)
    for j in range(max(plateau.a, 0), min(plateau.b + 1, n_cols)):
        top = max(int(line[j] - 16.0 / LOCAL_MM), 0)
        bot = int(line[j] - 0.75 / LOCAL_MM)
        if bot - top < 3:
            continue
        col = d[top:bot, j]
        k = int(np.argmin(col))
        if -col[k] > 0.3 * plateau.strength:
            f[j] = top + _subpixel(-col, k)
    a, b = plateau.a, plateau.b
    w = b - a
    mid_lo, mid_hi = a + int(0.25 * w), b - int(0.25 * w)
    # the intercondylar notch: the dark run between the bright condyles, 8-16 mm above the
    # plateau line (above the tibial spines)
    band = np.array(
        [
            norm[
                max(int(line[j] - 16 / LOCAL_MM), 0) : max(int(line[j] - 8 / LOCAL_MM), 1), j
            ].mean()
            for j in range(n_cols)
        ]
    )
    band = ndimage.gaussian_filter1d(band, 1.5 / LOCAL_MM)
    below = np.array(
        [
            norm[int(line[j] + 4 / LOCAL_MM) : int(line[j] + 16 / LOCAL_MM), j].mean()
            for j in range(a, b + 1)
        ]
    )
    bone_above = float(np.median(band[a : b + 1])) / max(float(np.median(below)), 1e-3)
    band[:a] = 0.0  # condyles lie over the plateau: nothing outside it is one
    band[b + 1 :] = 0.0
    # the deepest valley between two bright condyles (peaks within 25 mm on either side)
    reach = int(25.0 / LOCAL_MM)
    left_peak = ndimage.maximum_filter1d(band, reach, origin=(reach - 1) // 2, mode="nearest")
    right_peak = ndimage.maximum_filter1d(band, reach, origin=-(reach // 2), mode="nearest")
    depth = np.minimum(left_peak, right_peak) - band
    darkest = mid_lo + int(np.argmax(depth[mid_lo:mid_hi]))
    notch_contrast = float(depth[darkest])
    dark = band < band[darkest] + 0.5 * max(notch_contrast, 0.0)
    run = next((r for r in _runs(dark) if r[0] <= darkest < r[1]), (darkest, darkest + 1))
    run = (max(run[0], darkest - reach) - a, min(run[1], darkest + reach) - a)
    notch = a + 0.5 * (run[0] + run[1] - 1)
    n_i = round(notch)
    half_notch = max(int(3.0 / LOCAL_MM), (run[1] - run[0]) // 2)
    # the centre row: per compartment, midway between the condyle's lowest point and the
    # plateau straight below it; the mean of the two
    mids = []
    for lo_j, hi_j in ((a, n_i - half_notch), (n_i + half_notch, b + 1)):
        seg = f[lo_j:hi_j]
        if seg.size and np.isfinite(seg).any():
            j = lo_j + int(np.nanargmax(seg))
            mids.append(0.5 * (f[j] + line[j]))
        elif hi_j > lo_j:
            mids.append(float(line[(lo_j + hi_j) // 2]))
    centre_row = float(np.mean(mids)) if mids else float(line[n_i])
    u_c, v_c = notch * LOCAL_MM - u_half, centre_row * LOCAL_MM - v_up
    r_mm, c_mm = sampled.to_film_mm(u_c, v_c)
    lateral = _fibula_side(norm, line, a, b, n_i)
    implant = _has_implant(local, line, a, b)
    return _Candidate(
        row=float(r_mm / spacing[0]),
        col=float(c_mm / spacing[1]),
        angle_deg=float(sampled.phi_deg + np.degrees(np.arctan(plateau.beta))),
        response=response,
        notch_contrast=notch_contrast,
        lateral_sign=lateral,
        implant=implant,
        tibial_width_mm=width_mm,
        bone_above=bone_above,
    )


def _fibula_side(
    norm: npt.NDArray[Any], line: npt.NDArray[Any], a: int, b: int, centre: int
) -> int:
    """-1 / +1: the fibula lies towards smaller / larger columns of the knee; 0: unsure.

    30..60 mm below the plateau line the fibula is a narrow bone beside the tibial shaft,
    apart from it by a darker gap. Across that band, the tibial shaft is the bright run
    around the knee centre (above halfway between the soft tissue and its peak); walking
    outwards from each of its edges for 40 mm, the fibula is a rise after a dip. Its
    prominence (the rise over the dip, relative to the shaft's contrast) must reach 0.08 and
    twice the other side's.
    """
    n_rows, n_cols = norm.shape
    mm = 1.0 / LOCAL_MM
    r = int(np.nanmedian(line[a : b + 1]))
    r0, r1 = min(r + int(30 * mm), n_rows), min(r + int(60 * mm), n_rows)
    if r1 - r0 < 10 * mm:
        return 0
    prof = ndimage.gaussian_filter1d(norm[r0:r1].mean(axis=0), 1.0 * mm)
    reach = int(40 * mm)
    window = prof[max(a - reach, 0) : min(b + reach, n_cols)]
    soft = float(np.percentile(window, 10))
    c_lo, c_hi = max(centre - int(15 * mm), 0), min(centre + int(15 * mm), n_cols)
    peak_at = c_lo + int(np.argmax(prof[c_lo:c_hi]))
    contrast = float(prof[peak_at]) - soft
    if contrast <= 0:
        return 0
    shaft = next(run for run in _runs(prof > soft + 0.5 * contrast) if run[0] <= peak_at < run[1])
    scores = []
    for outward in (
        prof[max(shaft[0] - reach, 0) : shaft[0]][::-1],
        prof[shaft[1] : shaft[1] + reach],
    ):
        if outward.size < 5:
            scores.append(0.0)
            continue
        scores.append(float((outward - np.minimum.accumulate(outward)).max()) / contrast)
    small, large = scores
    if max(small, large) < 0.08:
        return 0
    if small > 2.0 * large:
        return -1
    if large > 2.0 * small:
        return 1
    return 0


def _has_implant(local: npt.NDArray[Any], line: npt.NDArray[Any], a: int, b: int) -> bool:
    """Metal by the joint: >= 100 mm^2 of blobs (after removing lines thinner than ~3.5 mm)
    that reach from 20 mm above to 8 mm below the plateau line, inside its middle 80 %, and
    are brighter than the tibia's bone (the median of the metaphysis, 10..35 mm below the
    line) by half the bone-to-soft-tissue contrast. Raw film values; soft tissue: the median
    beside the knee."""
    n_rows = local.shape[0]
    r = int(np.nanmedian(line[a : b + 1]))
    w = b - a
    mm = int(1.0 / LOCAL_MM)
    img = np.nan_to_num(local, nan=float(np.nanmin(local)))
    rows = slice(max(r - 25 * mm, 0), min(r + 25 * mm, n_rows))
    t_rows = slice(min(r + 10 * mm, n_rows - 1), min(r + 35 * mm, n_rows))
    t_cols = slice(a + w // 6, b - w // 6)
    tibia = local[t_rows, t_cols]
    beside = np.concatenate(
        [local[:, : max(a - 10 * mm, 1)].ravel(), local[:, b + 10 * mm :].ravel()]
    )
    beside = beside[np.isfinite(beside)]
    finite = np.isfinite(tibia)
    if tibia.size == 0 or finite.sum() < 50 or beside.size < 50:
        return False
    bone = float(np.percentile(tibia[finite], 50))
    soft = float(np.percentile(beside, 50))
    if bone <= soft:
        return False
    cols = slice(a + w // 10, b - w // 10)
    region = img[rows, cols]
    metal = region > bone + 0.5 * (bone - soft)
    metal = ndimage.binary_opening(metal, structure=np.ones((7, 7), dtype=bool))
    if not metal.any():
        return False
    # only blobs by the joint line (20 mm above to 8 mm below): not a collimator edge or a
    # lead marker
    labels, _ = ndimage.label(metal)
    line_rows = slice(max(r - 20 * mm - rows.start, 0), r + 8 * mm - rows.start)
    at_joint = np.unique(labels[line_rows])
    at_joint = at_joint[at_joint > 0]
    area = float(np.isin(labels, at_joint).sum()) * LOCAL_MM**2
    return area >= 100.0


def _candidates(film: npt.NDArray[Any], spacing: tuple[float, float]) -> list[_Candidate]:
    work, to_film = _working_image(film, spacing)
    mask = _exposed_field(work)
    norm = _normalised(work, mask)
    resp, which = _plateau_responses(norm, mask)
    found: list[_Candidate] = []
    strongest = 0.0
    half = int(MIN_KNEE_SEPARATION_MM / WORK_MM)
    near = int(20.0 / WORK_MM)
    for _ in range(8):
        idx = np.unravel_index(int(np.argmax(resp)), resp.shape)
        value = float(resp[idx])
        if value < MIN_RESPONSE or value < 0.15 * strongest:
            break
        c0 = int(idx[1])
        row = (idx[0] + 0.5) * to_film[0] - 0.5
        col = (idx[1] + 0.5) * to_film[1] - 0.5
        cand = _refine(
            film,
            spacing,
            (row * spacing[0], col * spacing[1]),
            ANGLES_DEG[int(which[idx])],
            value,
        )
        if cand is None:
            resp[max(int(idx[0]) - near, 0) : int(idx[0]) + near, max(c0 - near, 0) : c0 + near] = 0
            continue
        # a knee found: no other knee within the separation of its centre
        kc = round((cand.col + 0.5) / to_film[1] - 0.5)
        resp[:, max(min(c0, kc) - half, 0) : max(c0, kc) + half] = 0.0
        if all(abs(cand.col - c.col) * spacing[1] > MIN_KNEE_SEPARATION_MM for c in found):
            strongest = max(strongest, value)
            found.append(cand)
        if len(found) == 2:
            break
    return found


def _spacing_source(film: Volume) -> str:
    source = str(film.metadata.get("spacing_source", "") or "")
    return source if source in ("PixelSpacing", "ImagerPixelSpacing") else "affine"


def _view(film: Volume) -> str:
    return str(film.metadata.get("view_position", "") or "").strip().upper()


def _missing(side: Side, reason: str, source: str) -> KneeLocation:
    return KneeLocation(side, None, None, None, source, reason, None, 0.0)


def locate_knees(
    film: Volume, *, roi_size_mm: float = ROI_SIZE_MM, roi_pixel_mm: float = ROI_PIXEL_MM
) -> FilmKnees:
    """Find the knees of a bilateral PA knee film and cut their standard ROIs.

    Args:
        film: 2D Volume, ``array[row, col]``, bone bright (as
            :func:`kneescope.io.read_dicom_radiograph` gives), any numeric dtype; its affine
            gives the pixel spacing and which way the columns run (RAS).
        roi_size_mm, roi_pixel_mm: the ROI's side and pixel size (defaults: the standard
            140 mm at 0.2 mm).

    Returns:
        :class:`FilmKnees`: each knee's centre, side, reason (None when gradable) and ROI.
        Nothing is invented: a knee not found has no centre and no ROI.

    Raises:
        InputError: the volume is not 2D.
    """
    if film.ndim != 2:
        raise InputError(f"a knee radiograph is 2D, got an image of shape {film.shape}")
    spacing = (float(film.spacing_mm[0]), float(film.spacing_mm[1]))
    source = _spacing_source(film)
    # which way the columns run: x (RAS) decreasing = towards the patient's left
    col_x = float(film.affine_ras[0, 1])
    columns_to_left = col_x <= 0.0
    orient = (
        "PatientOrientation"
        if film.metadata.get("patient_orientation")
        else ("the conventional PA display (no PatientOrientation)")
    )
    view = _view(film)
    if view in _LATERAL_VIEWS:
        why = f"{LATERAL_VIEW} (DICOM ViewPosition {view})"
        return FilmKnees(
            _missing("right", why, orient),
            _missing("left", why, orient),
            spacing,
            source,
            "lateral",
            LATERAL_VIEW,
        )
    cands = _candidates(film.array, spacing)

    def location(c: _Candidate, side: Side, side_source: str, reason: str | None) -> KneeLocation:
        centre = (c.row, c.col)
        if c.implant and reason is None:
            reason = IMPLANT
        mirror = side == "left"
        roi = extract_roi(
            film.array,
            spacing,
            centre,
            mirror=mirror,
            size_mm=roi_size_mm,
            pixel_mm=roi_pixel_mm,
        )
        return KneeLocation(
            side=side,
            centre_rc=(float(centre[0]), float(centre[1])),
            centre_mm=(float(centre[0] * spacing[0]), float(centre[1] * spacing[1])),
            joint_angle_deg=float(c.angle_deg),
            side_source=side_source,
            reason=reason,
            roi=roi,
            response=float(c.response),
        )

    knees = [c for c in cands if c.notch_contrast > MIN_NOTCH_CONTRAST]
    # a joint without a notch, bone above a plateau as deep as a tibia is wide: a lateral view
    lateral = [
        c
        for c in cands
        if c not in knees and c.tibial_width_mm <= MAX_LATERAL_PLATEAU_MM and c.bone_above > 0.5
    ]
    if not knees and not lateral:
        return FilmKnees(
            _missing("right", NO_KNEE, orient),
            _missing("left", NO_KNEE, orient),
            spacing,
            source,
            "unknown",
            NO_KNEE,
        )
    if not knees:
        # joint lines without an intercondylar notch: a lateral view of a knee
        return FilmKnees(
            _missing("right", LATERAL_VIEW, orient),
            _missing("left", LATERAL_VIEW, orient),
            spacing,
            source,
            "lateral",
            LATERAL_VIEW,
        )
    laterality = film.side  # ImageLaterality R/L (a one-knee film), None for B
    if len(knees) == 2:
        first, second = sorted(knees, key=lambda c: c.col)
        right_c, left_c = (first, second) if columns_to_left else (second, first)
        # anatomy: each fibula lies away from the other knee (the midline)
        outward = {id(first): -1, id(second): 1}
        conflict = [
            c for c in (first, second) if c.lateral_sign and c.lateral_sign != outward[id(c)]
        ]
        reason = None
        if len(conflict) == 2:
            reason = "side conflict: both fibulae lie towards the midline (not a PA film?)"
        src = (
            f"film position ({orient}); fibula checked"
            if not conflict
            else (f"film position ({orient})")
        )
        return FilmKnees(
            location(right_c, "right", src, reason),
            location(left_c, "left", src, reason),
            spacing,
            source,
            "PA",
            None,
        )
    # one knee: anatomy (fibula side) and the DICOM ImageLaterality
    c = knees[0]
    anatomy: Side | None = None
    if c.lateral_sign:
        # the right knee's lateral side is the patient's right: the side away from the
        # column direction when the columns run to the patient's left
        lateral_towards_small = c.lateral_sign < 0
        anatomy = "right" if lateral_towards_small == columns_to_left else "left"
    reason = None
    if anatomy and laterality and anatomy != laterality:
        reason = f"side conflict: anatomy says {anatomy}, DICOM ImageLaterality says {laterality}"
    if laterality:
        side: Side = laterality
        src = "DICOM ImageLaterality" + (" and anatomy (fibula)" if anatomy == laterality else "")
    elif anatomy:
        side, src = anatomy, f"anatomy (fibula side, {orient})"
    else:
        half = film.shape[1] / 2.0
        on_small = c.col < half
        side = "right" if on_small == columns_to_left else "left"
        src = f"film position ({orient}); anatomy unsure"
    other: Side = "left" if side == "right" else "right"
    found = location(c, side, src, reason)
    missing = _missing(other, ONE_KNEE, src)
    pair = (found, missing) if side == "right" else (missing, found)
    return FilmKnees(pair[0], pair[1], spacing, source, "PA", None)
