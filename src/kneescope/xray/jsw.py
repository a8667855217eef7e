"""Joint space width (JSW) of a knee on a standard knee ROI, from bone-margin detection.

Input: a standard knee ROI (``roi[row, col]``, rows to the feet, bone bright, right frame:
MEDIAL = larger column index, LATERAL = smaller; 700 x 700 at 0.2 mm centred on the knee
centre), any float or integer dtype, any intensity scale.

Method (pure numpy/scipy):

1. Joint line. The ROI is smoothed (Gaussian) and, in every column, the joint space is the
   deepest dark valley between bright bone above and below (valley depth = the lower of the
   brightest values within :data:`VALLEY_REACH_MM` above and below, minus the value), traced
   across columns by dynamic programming (a smooth path).
2. Bone margins. In every column, the femoral condyle's lower margin is the strong negative
   vertical intensity gradient (bright above, dark below) nearest to the joint line from
   above, the tibial plateau's upper margin the strong positive one nearest from below (the
   upper of two rim lines when the beam shows both); sub-pixel by a parabola through the
   gradient's extremum; outliers (off a running median over 2 mm) and traces shorter than
   :data:`MIN_RUN_MM` (tibial spines, notch walls) removed.
3. Plateau rotation. A line is fitted by least squares to the tibial margin over both
   compartments (the tibial spines and the outer 15 % of each side left out, then the
   points farthest off trimmed); the ROI is turned about its centre so that this plateau
   line is horizontal (the knee frame) and steps 1-2 are repeated: vertical distances are
   then perpendicular to the plateau line. (The medial plateau is concave and the lateral
   convex, so this line is not the generator's knee-frame axis: on kneescope's synthetic
   films its medial end is about 2.5 deg lower; JSW is insensitive to that, to second
   order.)
4. Tibial margins. Per side, from the plateau's level there (median tibial margin row of the
   compartment's outer half), the tibia's side is traced in the rows :data:`SIDE_ROWS_MM`
   below (per row, going outwards, the first edge where the intensity falls by at least
   :data:`MARGIN_EDGE_SHARE` of the plateau's vertical edge strength; either sign when a
   collimator's bright shadow lies outside); a line through those points, with the points
   farthest outside it trimmed (marginal osteophytes only push the edge outwards), is
   extended up to the plateau's level: that column is the margin. Tibial width = the
   margins' distance.
5. JSW at column x = tibial margin row - femoral margin row (mm). The compartments meet at
   the intercondylar notch (the column where the femoral margin is highest between the
   condyles). mJSW of a compartment = the minimum JSW over its central region
   (:data:`CENTRAL_FRACTION` of the compartment's width, from its tibial margin to the
   notch, centred). Fixed locations: x = :data:`FIXED_FRACTIONS` of the tibial width from the
   medial margin (medial compartment) and from the lateral margin (lateral compartment),
   JSW interpolated linearly between columns.

When the margins cannot be found (no joint valley, too few columns with both margins, no
tibial edge) the result carries a ``reason`` and NaN measurements, never a made-up number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from kneescope.errors import InputError

FloatArray = npt.NDArray[np.float64]

ROI_SIZE = 700
"""Side of the standard knee ROI (pixels)."""
ROI_SPACING_MM = 0.2
"""Pixel spacing of the standard knee ROI (mm)."""
FIXED_FRACTIONS: tuple[float, ...] = (0.175, 0.200, 0.225, 0.250, 0.275, 0.300)
"""Fixed JSW locations as fractions of the tibial width from the compartment's outer
(medial or lateral) tibial margin."""
CENTRAL_FRACTION = 0.6
"""mJSW is the minimum over this central share of each compartment's width."""

SEARCH_HALF_MM = 25.0
"""The joint line is searched within this distance (mm) above and below the ROI centre."""
VALLEY_REACH_MM = 8.0
"""Bone brightness for the valley depth is taken within this distance above and below."""
EDGE_REACH_MM = 7.0
"""Bone margins are searched within this distance of the joint line."""
EDGE_SIGMA_MM = 0.3
"""Gaussian smoothing (mm, along columns x2) before the vertical gradient."""
EDGE_STRENGTH = 0.35
"""A margin is the gradient extremum nearest to the joint line that reaches this share of
the strongest extremum in its search window."""
MARGIN_REACH_MM = 55.0
"""The tibial margins are searched within this distance of the notch."""
SIDE_ROWS_MM = (2.5, 10.0)
"""Rows (mm below the plateau's level) where the tibia's sides are traced."""
SIDE_TOLERANCE_PX = 2.0
"""Side points up to this far outside the fitted line are kept."""
SIDE_SMOOTH_MM = 1.6
"""Gaussian smoothing along rows (mm) of the horizontal gradient for the sides."""
MARGIN_EDGE_SHARE = 0.3
"""A tibial margin's horizontal edge must reach this share of the plateau's vertical edge."""
MIN_RUN_MM = 3.0
"""Margin traces shorter than this (mm of columns) are dropped (spines, notch walls)."""
SPINE_HALF_MM = 10.0
"""Columns within this distance of the notch are not used to fit the plateau line."""
MIN_EDGE_CONTRAST = 5.0
"""The margins' median gradient must reach this multiple of the ROI's gradient noise level
(robust standard deviation of the vertical gradient); below it there is no knee."""
MAX_ANGLE_DEG = 20.0
"""A plateau line tilted more than this in the ROI is a QC failure."""
MIN_COMPARTMENT_MM = 12.0
"""A compartment narrower than this (tibial margin to notch) is a QC failure."""


@dataclass(frozen=True)
class JswResult:
    """JSW measurements of one knee (right frame, the ROI's pixel grid).

    Attributes:
        mjsw_medial_mm, mjsw_lateral_mm: minimum JSW (mm) per compartment; NaN with a reason.
        jsw_fixed_medial_mm, jsw_fixed_lateral_mm: JSW (mm) at :data:`FIXED_FRACTIONS` of the
            tibial width from the medial / lateral tibial margin; NaN where not measured.
        tibial_width_mm: distance between the tibial plateau margins (mm).
        tibia_medial_col, tibia_lateral_col: the tibial plateau margins as ROI columns
            (in the knee frame, i.e. after the plateau rotation is undone about the centre).
        notch_col: the compartments' boundary (ROI column, knee frame).
        plateau_angle_deg: rotation of the plateau line in the ROI: the angle from the
            ROI's column axis to the line, positive when the line rises (smaller row)
            towards larger columns (medial).
        joint_row: row of the fitted tibial plateau line at the notch column (knee frame).
        profile_col: ROI columns (knee frame) where the JSW profile is measured.
        profile_jsw_mm: JSW (mm) at ``profile_col`` (NaN where a margin is missing).
        femur_row, tibia_row: the margins' rows (knee frame) at ``profile_col``.
        reason: why the knee could not be measured (None when it was).
    """

    mjsw_medial_mm: float
    mjsw_lateral_mm: float
    jsw_fixed_medial_mm: tuple[float, ...]
    jsw_fixed_lateral_mm: tuple[float, ...]
    tibial_width_mm: float
    tibia_medial_col: float
    tibia_lateral_col: float
    notch_col: float
    plateau_angle_deg: float
    joint_row: float
    profile_col: FloatArray = field(repr=False)
    profile_jsw_mm: FloatArray = field(repr=False)
    femur_row: FloatArray = field(repr=False)
    tibia_row: FloatArray = field(repr=False)
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """True when the knee was measured."""
        return self.reason is None


def _failed(reason: str, angle_deg: float = math.nan) -> JswResult:
    nan = math.nan
    empty = np.zeros(0)
    return JswResult(
        mjsw_medial_mm=nan,
        mjsw_lateral_mm=nan,
        jsw_fixed_medial_mm=(nan,) * len(FIXED_FRACTIONS),
        jsw_fixed_lateral_mm=(nan,) * len(FIXED_FRACTIONS),
        tibial_width_mm=nan,
        tibia_medial_col=nan,
        tibia_lateral_col=nan,
        notch_col=nan,
        plateau_angle_deg=angle_deg,
        joint_row=nan,
        profile_col=empty,
        profile_jsw_mm=empty,
        femur_row=empty,
        tibia_row=empty,
        reason=reason,
    )


@dataclass(frozen=True)
class _Margins:
    """Per-column bone margins (rows, float; NaN where not found)."""

    femur: FloatArray
    tibia: FloatArray
    joint: FloatArray
    contrast: float
    tibia_edge: float
    """median vertical gradient at the tibial margin (normalised intensity per pixel)."""
    """median edge gradient at the margins over the gradient's noise level (robust)."""


def _normalise(roi: npt.NDArray[np.generic]) -> FloatArray:
    img = np.asarray(roi, dtype=np.float64)
    lo, hi = np.percentile(img, (1.0, 99.0))
    if not hi > lo:
        return np.zeros_like(img)
    return (img - lo) / (hi - lo)


def _trace_joint(smooth: FloatArray, spacing_mm: float) -> FloatArray:
    """Row of the joint valley per column (float; NaN where no valley), by DP over columns."""
    n_rows, n_cols = smooth.shape
    centre = (n_rows - 1) / 2.0
    half = round(SEARCH_HALF_MM / spacing_mm)
    r0, r1 = max(0, round(centre) - half), min(n_rows, round(centre) + half + 1)
    reach = max(2, round(VALLEY_REACH_MM / spacing_mm))
    up = ndimage.maximum_filter1d(smooth, size=reach + 1, axis=0, origin=reach // 2)
    down = ndimage.maximum_filter1d(smooth, size=reach + 1, axis=0, origin=-(reach // 2))
    depth = (np.minimum(up, down) - smooth)[r0:r1]  # (rows, cols)
    depth = np.clip(depth, 0.0, None)
    # dynamic programming: maximise summed depth, the path moving <= step rows per column
    step = max(1, round(0.4 / spacing_mm))
    score = depth[:, 0].copy()
    back = np.zeros(depth.shape, dtype=np.int64)
    rows = np.arange(depth.shape[0])
    for c in range(1, n_cols):
        best = np.full(depth.shape[0], -np.inf)
        arg = rows.copy()
        for d in range(-step, step + 1):
            shifted = np.full(depth.shape[0], -np.inf)
            if d >= 0:
                shifted[d:] = score[: depth.shape[0] - d] if d else score
            else:
                shifted[:d] = score[-d:]
            better = shifted > best
            best = np.where(better, shifted, best)
            arg = np.where(better, rows - d, arg)
        back[:, c] = arg
        score = best + depth[:, c]
    path = np.zeros(n_cols, dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for c in range(n_cols - 1, 0, -1):
        path[c - 1] = back[path[c], c]
    joint = (path + r0).astype(np.float64)
    depth_on_path = depth[path, np.arange(n_cols)]
    strong = depth_on_path >= 0.25 * np.percentile(depth_on_path, 90)
    joint[~strong] = np.nan
    return joint


def _subpixel(g: FloatArray, i: int) -> float:
    """Sub-pixel position of the extremum of ``g`` at ``i`` (parabola through 3 points)."""
    if i <= 0 or i >= g.size - 1:
        return float(i)
    a, b, c = g[i - 1], g[i], g[i + 1]
    den = a - 2.0 * b + c
    if den == 0.0:
        return float(i)
    return float(i + 0.5 * (a - c) / den)


def _nearest_strong_extremum(
    g: FloatArray, from_end: bool, threshold: float | None = None
) -> int | None:
    """Index of the local maximum of ``g`` (> 0) nearest to the window's end (``from_end``)
    or start that reaches ``threshold`` (default: :data:`EDGE_STRENGTH` of the window's
    largest value); None when there is none."""
    if g.size < 3:
        return None
    peak = float(g.max())
    if peak <= 0.0:
        return None
    level = EDGE_STRENGTH * peak if threshold is None else threshold
    inner = g[1:-1]
    local = np.flatnonzero((inner >= g[:-2]) & (inner >= g[2:]) & (inner >= level))
    if local.size == 0:
        return None if threshold is not None else int(np.argmax(g))
    return int(local[-1] + 1) if from_end else int(local[0] + 1)


def _find_margins(img: FloatArray, spacing_mm: float) -> _Margins:
    """Femoral and tibial bone margins per column (rows, float) around the joint line."""
    sigma = max(EDGE_SIGMA_MM / spacing_mm, 0.5)
    smooth = ndimage.gaussian_filter(img, (2.0 * sigma, 4.0 * sigma))
    joint = _trace_joint(smooth, spacing_mm)
    grad = ndimage.gaussian_filter(img, (sigma, 2.0 * sigma), order=(1, 0))
    n_rows, n_cols = img.shape
    reach = round(EDGE_REACH_MM / spacing_mm)
    femur = np.full(n_cols, np.nan)
    tibia = np.full(n_cols, np.nan)
    strength_f = np.full(n_cols, np.nan)
    strength_t = np.full(n_cols, np.nan)
    for c in np.flatnonzero(np.isfinite(joint)):
        j = int(joint[c])
        a, b = max(1, j - reach), min(n_rows - 1, j + reach + 1)
        above = -grad[a : j + 1, c]  # femur: intensity falls going down
        below = grad[j:b, c]  # tibia: intensity rises going down
        i_f = _nearest_strong_extremum(above, from_end=True)
        i_t = _nearest_strong_extremum(below, from_end=False)
        if i_f is not None:
            femur[c] = a + _subpixel(above, i_f)
            strength_f[c] = above[i_f]
        if i_t is not None:
            tibia[c] = j + _subpixel(below, i_t)
            strength_t[c] = below[i_t]
    # outliers: a running median over ~2 mm of columns
    size = max(3, round(2.0 / spacing_mm) | 1)
    for arr in (femur, tibia):
        med = _nan_median_filter(arr, size)
        bad = np.abs(arr - med) > max(1.0, 0.5 / spacing_mm)
        arr[bad] = np.nan
        _drop_short_runs(arr, round(MIN_RUN_MM / spacing_mm))
    both = np.isfinite(femur) & np.isfinite(tibia)
    noise = 1.4826 * float(np.median(np.abs(grad - np.median(grad))))
    edge = float(np.median(np.minimum(strength_f[both], strength_t[both]))) if both.any() else 0.0
    contrast = edge / noise if noise > 0 else (math.inf if edge > 0 else 0.0)
    tibia_edge = float(np.median(strength_t[both])) if both.any() else 0.0
    return _Margins(femur=femur, tibia=tibia, joint=joint, contrast=contrast, tibia_edge=tibia_edge)


def _drop_short_runs(arr: FloatArray, min_len: int) -> None:
    """Set runs of finite values shorter than ``min_len`` to NaN (in place)."""
    ok = np.isfinite(arr)
    labels, n = ndimage.label(ok)
    if n == 0:
        return
    sizes = np.bincount(labels.ravel())
    short = sizes < min_len
    short[0] = False
    arr[short[labels]] = np.nan


def _nan_median_filter(arr: FloatArray, size: int) -> FloatArray:
    """Running median over ``size`` samples ignoring NaN (NaN where all are NaN)."""
    half = size // 2
    padded = np.pad(arr, half, mode="constant", constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, size)
    out = np.full(arr.shape, np.nan)
    ok = np.isfinite(windows).any(axis=1)
    if ok.any():
        out[ok] = np.nanmedian(windows[ok], axis=1)
    return out


def _notch_col(margins: _Margins, spacing_mm: float, centre: float) -> float:
    """Column of the intercondylar notch: the middle of the columns within 15 mm of the ROI's
    centre column where the femoral margin is highest (or missing: the notch's roof lies
    beyond the margin search)."""
    n = margins.femur.size
    half = round(15.0 / spacing_mm)
    lo, hi = max(0, round(centre) - half), min(n, round(centre) + half + 1)
    fem = margins.femur[lo:hi]
    joint_rows = np.nanmedian(margins.femur)
    # height of the femoral margin above the condyles' level; missing counts as highest
    height = np.where(np.isfinite(fem), joint_rows - fem, np.inf)
    top = height >= np.nanmax(np.where(np.isfinite(height), height, -np.inf)) - 1.0
    if not np.isfinite(height).any():
        return float(centre)
    idx = np.flatnonzero(top)
    return float(lo + 0.5 * (idx[0] + idx[-1]))


def _plateau_line(margins: _Margins, notch: float, spacing_mm: float) -> tuple[float, float] | None:
    """(slope rows/column, intercept row) of a line fitted to the tibial margin of both
    compartments (spines and the outer 15 % of each side left out); None if too few points."""
    cols = np.arange(margins.tibia.size, dtype=np.float64)
    ok = np.isfinite(margins.tibia) & (np.abs(cols - notch) > SPINE_HALF_MM / spacing_mm)
    if ok.sum() < 20:
        return None
    lo, hi = cols[ok].min(), cols[ok].max()
    ok &= (cols > lo + 0.15 * (notch - lo)) & (cols < hi - 0.15 * (hi - notch))
    side_l = ok & (cols < notch)
    side_m = ok & (cols > notch)
    if side_l.sum() < 10 or side_m.sum() < 10:
        return None
    x, y = cols[ok], margins.tibia[ok]
    slope, icpt = np.polyfit(x, y, 1)
    for _ in range(2):  # trim the points farthest from the line (spines, rims)
        res = np.abs(y - (slope * x + icpt))
        keep = res <= max(np.percentile(res, 75), 0.5)
        x, y = x[keep], y[keep]
        slope, icpt = np.polyfit(x, y, 1)
    return float(slope), float(icpt)


def _side_line(
    grad: FloatArray, rows: npt.NDArray[np.int64], start: int, stop: int, outward: int, level: float
) -> tuple[float, float] | None:
    """Line ``col = a * row + b`` through the tibia's side over ``rows``: per row, the first
    edge of at least ``level`` where the intensity falls going outwards from ``start``
    (towards ``stop``; ``outward`` = +1 or -1), fitted with the points farthest outside
    the line (osteophytes) dropped four times. None with fewer than 5 rows found."""
    lo, hi = (start, stop) if outward > 0 else (stop, start)
    lo, hi = max(lo, 0), min(hi, grad.shape[1])
    found = np.full(rows.size, np.nan)
    for signed in (True, False):  # then either sign: a collimator's bright shadow outside
        for k, row in enumerate(rows):
            g = -outward * grad[row, lo:hi] if signed else np.abs(grad[row, lo:hi])
            i = _nearest_strong_extremum(g, from_end=outward < 0, threshold=level)
            if i is not None:
                found[k] = lo + _subpixel(g, i)
        if np.isfinite(found).sum() >= 5:
            break
    ok = np.isfinite(found)
    if ok.sum() < 5:
        return None
    x, y = rows[ok].astype(np.float64), found[ok]
    a, b = np.polyfit(x, y, 1)
    for _ in range(4):
        # osteophytes only ever push the edge outwards: drop the points farthest outside
        out = (y - (a * x + b)) * outward
        keep = out <= max(float(np.percentile(out, 70)), SIDE_TOLERANCE_PX)
        if keep.sum() < 5:
            break
        x, y = x[keep], y[keep]
        a, b = np.polyfit(x, y, 1)
    return float(a), float(b)


def _tibial_margins(
    img: FloatArray, margins: _Margins, notch: float, spacing_mm: float
) -> tuple[float, float] | None:
    """(lateral, medial) tibial plateau margin columns (knee frame).

    Each side's plateau level is the median tibial margin row of the compartment's outer
    half. The tibia's side is traced in the rows :data:`SIDE_ROWS_MM` below that level
    (below the marginal osteophytes, which sit at the plateau's corners): per row, going
    outwards from :data:`MIN_COMPARTMENT_MM` beside the notch, the first edge where the
    intensity falls by at least :data:`MARGIN_EDGE_SHARE` of the plateau's vertical edge
    strength (vertical gradient smoothed over :data:`SIDE_SMOOTH_MM` rows). A line through
    these points, extended up to the plateau level, gives the margin. None if not found.
    """
    n_rows, n_cols = img.shape
    sigma = max(EDGE_SIGMA_MM / spacing_mm, 0.5)
    grad = ndimage.gaussian_filter(img, (SIDE_SMOOTH_MM / spacing_mm, sigma), order=(0, 1))
    gap = round(MIN_COMPARTMENT_MM / spacing_mm)
    reach = round(MARGIN_REACH_MM / spacing_mm)
    level = MARGIN_EDGE_SHARE * margins.tibia_edge
    i_n = round(notch)
    cols = np.arange(n_cols)
    out: list[float] = []
    for outward in (-1, +1):  # lateral (smaller columns), medial
        side = (cols - notch) * outward > gap
        tib = np.where(side, margins.tibia, np.nan)
        ok = np.flatnonzero(np.isfinite(tib))
        if ok.size < 5:
            return None
        outer = ok[ok * outward >= np.median(ok * outward)]
        top = float(np.median(tib[outer]))
        r0 = round(top + SIDE_ROWS_MM[0] / spacing_mm)
        r1 = round(top + SIDE_ROWS_MM[1] / spacing_mm)
        if r0 < 0 or r1 > n_rows:
            return None
        rows = np.arange(r0, r1, dtype=np.int64)
        line = _side_line(grad, rows, i_n + outward * gap, i_n + outward * reach, outward, level)
        if line is None:
            return None
        out.append(line[0] * top + line[1])
    return out[0], out[1]


def _interp(cols: FloatArray, values: FloatArray, at: float) -> float:
    ok = np.isfinite(values)
    if ok.sum() < 2 or not (cols[ok][0] <= at <= cols[ok][-1]):
        return math.nan
    i = int(np.searchsorted(cols, at))
    i = min(max(i, 1), cols.size - 1)
    v0, v1 = values[i - 1], values[i]
    if not (np.isfinite(v0) and np.isfinite(v1)):
        return math.nan
    t = (at - cols[i - 1]) / (cols[i] - cols[i - 1])
    return float(v0 + t * (v1 - v0))


def measure_jsw(roi: npt.ArrayLike, spacing_mm: float = ROI_SPACING_MM) -> JswResult:
    """Joint space width of the knee in a standard knee ROI (see the module docstring).

    Args:
        roi: 2D array ``[row, col]`` (rows to the feet, bone bright, right frame: medial =
            larger column), centred on the knee centre; normally 700 x 700 float32.
        spacing_mm: its pixel spacing (mm, isotropic).

    Returns:
        :class:`JswResult` (with ``reason`` set and NaN measurements when the bone margins
        cannot be found).

    Raises:
        InputError: not a 2D array of finite numbers, too small, or a bad spacing.
    """
    arr = np.asarray(roi)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise InputError(
            f"the knee ROI must be a 2D numeric array, got shape {arr.shape} of {arr.dtype}; "
            "pass a standard knee ROI (700 x 700 at 0.2 mm)"
        )
    if not (math.isfinite(spacing_mm) and spacing_mm > 0):
        raise InputError(f"pixel spacing {spacing_mm} mm is not positive; pass the ROI's spacing")
    if min(arr.shape) * spacing_mm < 2.5 * SEARCH_HALF_MM:
        raise InputError(
            f"the knee ROI ({arr.shape[0]} x {arr.shape[1]} at {spacing_mm} mm) is too small; "
            "pass a standard knee ROI (140 mm square)"
        )
    if not np.all(np.isfinite(arr)):
        raise InputError("the knee ROI holds NaN or infinite values; pass finite pixels")
    img = _normalise(arr)
    if not img.any():
        return _failed("blank image: no joint space found")
    n_cols = img.shape[1]
    centre_c = (n_cols - 1) / 2.0
    first = _find_margins(img, spacing_mm)
    if np.isfinite(first.tibia).sum() < 20 or first.contrast < MIN_EDGE_CONTRAST:
        return _failed("no joint space found (no bone margins above and below a dark gap)")
    notch0 = _notch_col(first, spacing_mm, centre_c)
    line = _plateau_line(first, notch0, spacing_mm)
    if line is None:
        return _failed("tibial plateau margin not found in both compartments")
    angle = math.degrees(math.atan(-line[0]))
    if abs(angle) > MAX_ANGLE_DEG:
        return _failed(f"tibial plateau tilted {angle:.0f} deg in the ROI (not a PA knee view?)")
    # turn the ROI so that the plateau line is horizontal (about the ROI's centre)
    rot = ndimage.rotate(img, -angle, reshape=False, order=1, mode="nearest")
    margins = _find_margins(rot, spacing_mm)
    notch = _notch_col(margins, spacing_mm, centre_c)
    line2 = _plateau_line(margins, notch, spacing_mm)
    if line2 is None:
        return _failed("tibial plateau margin not found in both compartments", angle)
    cols = np.arange(n_cols, dtype=np.float64)
    plateau_row = line2[0] * notch + line2[1]
    edges = _tibial_margins(rot, margins, notch, spacing_mm)
    if edges is None:
        return _failed("tibial margins not found", angle)
    lat, med = edges
    if (
        med - notch < MIN_COMPARTMENT_MM / spacing_mm
        or notch - lat < MIN_COMPARTMENT_MM / spacing_mm
    ):
        return _failed("tibial margins not found", angle)
    jsw = (margins.tibia - margins.femur) * spacing_mm
    width = med - lat

    def central_min(outer: float) -> float:
        half = 0.5 * CENTRAL_FRACTION * abs(notch - outer)
        mid = 0.5 * (notch + outer)
        sel = (cols >= mid - half) & (cols <= mid + half)
        vals = jsw[sel]
        if np.isfinite(vals).sum() < 0.5 * vals.size:
            return math.nan
        return float(np.nanmin(vals))

    mjsw_m, mjsw_l = central_min(med), central_min(lat)
    fixed_m = tuple(_interp(cols, jsw, med - f * width) for f in FIXED_FRACTIONS)
    fixed_l = tuple(_interp(cols, jsw, lat + f * width) for f in FIXED_FRACTIONS)
    reason = None
    if not (math.isfinite(mjsw_m) and math.isfinite(mjsw_l)):
        reason = "bone margins not found in the central region of a compartment"
    sel = (cols >= lat) & (cols <= med)
    return JswResult(
        mjsw_medial_mm=mjsw_m,
        mjsw_lateral_mm=mjsw_l,
        jsw_fixed_medial_mm=fixed_m,
        jsw_fixed_lateral_mm=fixed_l,
        tibial_width_mm=float(width * spacing_mm),
        tibia_medial_col=float(med),
        tibia_lateral_col=float(lat),
        notch_col=float(notch),
        plateau_angle_deg=float(angle),
        joint_row=plateau_row,
        profile_col=cols[sel],
        profile_jsw_mm=jsw[sel],
        femur_row=margins.femur[sel],
        tibia_row=margins.tibia[sel],
        reason=reason,
    )


__all__ = [
    "CENTRAL_FRACTION",
    "FIXED_FRACTIONS",
    "ROI_SIZE",
    "ROI_SPACING_MM",
    "JswResult",
    "measure_jsw",
]
