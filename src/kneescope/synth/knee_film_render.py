"""Pixels of a synthetic PA knee film: bones, soft tissue, texture, exposure, collimation, markers.

Each knee is a :class:`~kneescope.synth.knee_film_geometry.KneeFilmGeometry` placed on the film
by a :class:`KneePlacement` (knee centre in film pixels, in-plane rotation). Bone outlines are
drawn from approximate signed distances whose zero level is exactly the geometry's margins
(anti-aliased over one pixel), so the truth computed from the geometry is the film's.

Film array: ``array[row, col]`` float attenuation (log exposure) before display; rows to the
feet, columns to the patient's Left. Knee-frame ``x`` (+lateral) maps to the film with the
mirror of the side: the right knee's medial side faces larger columns, the left knee's smaller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from kneescope.synth.knee_film_geometry import Condyle, Ellipse, KneeFilmGeometry

F32 = npt.NDArray[np.float32]

MU_BONE = 0.020
"""Attenuation (1/mm) of trabecular-bone path (cortex weighted separately)."""
MU_SOFT = 0.0055
MU_METAL = 0.09


@dataclass(frozen=True)
class KneePlacement:
    """Where one knee lies on the film.

    Attributes:
        side: ``"right"`` or ``"left"``.
        centre_rc: film (row, col) in pixels of the knee centre (:meth:`KneeFilmGeometry.centre`).
        rotation_deg: angle of the tibial plateau line on the film; positive = the line's
            medial end is higher (nearer row 0). In the right frame (left knees mirrored) the
            medial direction is ``(d_row, d_col) = (-sin, cos)`` of this angle.
    """

    side: str
    centre_rc: tuple[float, float]
    rotation_deg: float


def knee_to_film(
    geom: KneeFilmGeometry,
    place: KneePlacement,
    pixel_mm: float,
    x: npt.ArrayLike,
    z: npt.ArrayLike,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Film (row, col) in pixels of knee-frame points (x, z) (mm)."""
    xc, zc = geom.centre()
    med = -(np.asarray(x, dtype=np.float64) - xc)
    sup = np.asarray(z, dtype=np.float64) - zc
    t = np.deg2rad(place.rotation_deg)
    s, c = np.sin(t), np.cos(t)
    drow = -med * s - sup * c
    dcol = med * c - sup * s
    mirror = 1.0 if place.side == "right" else -1.0
    return place.centre_rc[0] + drow / pixel_mm, place.centre_rc[1] + mirror * dcol / pixel_mm


def _film_to_knee(
    geom: KneeFilmGeometry,
    place: KneePlacement,
    pixel_mm: float,
    rows: F32,
    cols: F32,
) -> tuple[F32, F32]:
    """Knee-frame (x, z) in mm of film pixel grids (broadcast)."""
    xc, zc = geom.centre()
    mirror = 1.0 if place.side == "right" else -1.0
    drow = (rows - np.float32(place.centre_rc[0])) * np.float32(pixel_mm)
    dcol = (cols - np.float32(place.centre_rc[1])) * np.float32(pixel_mm * mirror)
    t = np.deg2rad(place.rotation_deg)
    s, c = np.float32(np.sin(t)), np.float32(np.cos(t))
    med = -drow * s + dcol * c
    sup = -drow * c - dcol * s
    return (np.float32(xc) - med).astype(np.float32), (sup + np.float32(zc)).astype(np.float32)


def _ease(t: F32) -> F32:
    t = np.clip(t, 0.0, 1.0)
    return (1.0 - (1.0 - t) ** 2).astype(np.float32)


def ellipse_sd(x: F32, z: F32, e: Ellipse) -> F32:
    q = np.sqrt(((x - e.cx) / e.rx) ** 2 + ((z - e.cz) / e.rz) ** 2)
    return ((q - 1.0) * min(e.rx, e.rz)).astype(np.float32)


def capsule_sd(x: F32, z: F32, a: tuple[float, float], b: tuple[float, float], r: float) -> F32:
    dx, dz = b[0] - a[0], b[1] - a[1]
    h = np.clip(((x - a[0]) * dx + (z - a[1]) * dz) / (dx * dx + dz * dz), 0.0, 1.0)
    return (np.sqrt((x - a[0] - h * dx) ** 2 + (z - a[1] - h * dz) ** 2) - r).astype(np.float32)


def _condyle_sd(x: F32, z: F32, c: Condyle) -> F32:
    low = c.lower(x)
    low = np.where(np.isfinite(low), low, np.float32(1e4)).astype(np.float32)
    lower = (low - z) / np.sqrt(1.0 + c.slope(x) ** 2)
    side = np.abs(x - c.centre_x) - c.half_width
    return np.maximum(lower, side).astype(np.float32)


def femur_sd(geom: KneeFilmGeometry, x: F32, z: F32, *, osteophytes: bool = True) -> F32:
    """Approximate signed distance (mm, < 0 inside) of the femur's projection; its zero
    level in the condyles' and notch's columns is :meth:`KneeFilmGeometry.femur_low`."""
    cm, cl = geom.condyle_medial, geom.condyle_lateral
    bands = np.minimum(_condyle_sd(x, z, cm), _condyle_sd(x, z, cl))
    # above the condyles' arcs the femur spans its whole width, less the notch (a half
    # ellipse on the notch's columns below its base): no internal seams
    hole = np.minimum(
        ellipse_sd(
            x, z, Ellipse(geom.notch_x, geom.notch_base_z, geom.notch_half_width, geom.notch_height)
        ),
        np.maximum(
            np.abs(x - geom.notch_x) - geom.notch_half_width, z - np.float32(geom.notch_base_z)
        ),
    )
    bridge = np.maximum(np.float32(geom.notch_base_z) - z, -hole)
    out_m, out_l = geom.femur_outer
    half = 0.5 * (out_l - out_m)
    mid = 0.5 * (out_l + out_m)
    t = _ease((z - geom.notch_base_z) / (45.0 * half / 36.0))
    hw = half - (half - geom.femur_shaft_r) * t
    xs = mid + (geom.femur_shaft_x - mid) * t
    env = np.abs(x - xs) - hw
    sd = np.maximum(np.minimum(bands, bridge), env)
    for e in geom.epicondyles:
        sd = np.minimum(sd, ellipse_sd(x, z, e))
    if osteophytes:
        for e in geom.osteo_femur:
            sd = np.minimum(sd, ellipse_sd(x, z, e))
    return sd.astype(np.float32)


def tibia_sd(geom: KneeFilmGeometry, x: F32, z: F32, *, osteophytes: bool = True) -> F32:
    """Approximate signed distance (mm) of the tibia's projection; its zero level between
    the margins is :meth:`KneeFilmGeometry.tibia_bone_top`, its sides the margins."""
    tm, tl = geom.tibia_medial_x, geom.tibia_lateral_x
    xcl = np.clip(x, tm, tl).astype(np.float32)
    top = geom.tibia_bone_top(xcl).astype(np.float32)
    h = np.float32(0.15)
    slope = (
        geom.tibia_bone_top(np.clip(xcl + h, tm, tl))
        - geom.tibia_bone_top(np.clip(xcl - h, tm, tl))
    ) / (2 * h)
    top_sd = (z - top) / np.sqrt(1.0 + np.clip(slope, -20.0, 20.0) ** 2)
    half = 0.5 * (tl - tm)
    mid = 0.5 * (tl + tm)
    lip = 6.0 * half / 38.0
    t = _ease((-lip - z) / (55.0 * half / 38.0))
    hw = half - (half - geom.tibia_shaft_r) * t
    xs = mid + (geom.tibia_shaft_x - mid) * t
    sd = np.maximum(top_sd, np.abs(x - xs) - hw)
    if osteophytes:
        for e in geom.osteo_tibia:
            sd = np.minimum(sd, ellipse_sd(x, z, e))
    return sd.astype(np.float32)


def fibula_sd(geom: KneeFilmGeometry, x: F32, z: F32) -> F32:
    e = geom.fibula_head
    head = ellipse_sd(x, z, e)
    shaft = capsule_sd(x, z, (e.cx, e.cz), (e.cx - 0.1 * e.rx, e.cz - 200.0), geom.fibula_shaft_r)
    return np.minimum(head, shaft)


@dataclass(frozen=True)
class KneeLook:
    """How one knee's tissues attenuate (film mm)."""

    bone_depth_mm: float = 45.0
    cortex_mm: float = 1.2
    cortex_weight: float = 45.0
    leg_radius_mm: float = 62.0
    leg_offset_mm: float = 0.0
    fat_mm: float = 12.0
    sclerosis: tuple[float, float] = (0.0, 0.0)
    implant: bool = False
    cysts: tuple[tuple[float, float, float], ...] = ()
    """Subchondral cysts: (x, depth below the tibial margin, radius) in mm, lucent."""


@dataclass(frozen=True)
class FilmLook:
    """Film-wide appearance: exposure, detector, display, collimation, markers.

    Attributes:
        photons: mean detected quanta per pixel at zero attenuation (noise level).
        blur_px: detector blur (Gaussian sigma, pixels).
        texture: trabecular texture amplitude (relative path modulation).
        contrast_k / display_lo / display_hi: display curve ``lo + (hi-lo)(1-exp(-k a))``.
        heel: linear exposure gradient across the columns (attenuation units).
        collimation: (row0, row1, col0, col1) of the exposed field (pixels, end exclusive).
        markers: lead letters: (letter, row, col, height_px) of each.
        grid: anti-scatter grid lines: (amplitude, period in pixels); amplitude 0 = none.
        labels: burned-in annotation text (blocky random glyphs at the display's top value):
            (row, col, characters, height_px) of each line.
    """

    photons: float = 6000.0
    blur_px: float = 0.8
    texture: float = 0.18
    contrast_k: float = 0.7
    display_lo: float = 150.0
    display_hi: float = 3900.0
    heel: float = 0.0
    collimation: tuple[int, int, int, int] | None = None
    markers: tuple[tuple[str, int, int, int], ...] = field(default=())
    grid: tuple[float, float] = (0.0, 4.0)
    labels: tuple[tuple[int, int, int, int], ...] = field(default=())


_LETTERS = {
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
}


def letter_mask(letter: str, height_px: int) -> npt.NDArray[np.bool_]:
    """A blocky 5x7 bitmap letter (``R`` or ``L``) scaled to ``height_px`` rows."""
    bits = np.array([[ch == "1" for ch in row] for row in _LETTERS[letter]], dtype=bool)
    k = max(1, height_px // 7)
    return np.kron(bits, np.ones((k, k), dtype=bool))


def bone_path(
    sd: F32, depth: float, cortex_mm: float, cortex_w: float, pixel_mm: float
) -> tuple[F32, F32]:
    """(trabecular body, cortex) path (mm) of a bone from its signed distance (mm): occupancy
    anti-aliased over one pixel, the body deepening over 9 mm from the edge, the cortex a band
    of ``cortex_mm`` along the edge weighted ``cortex_w``."""
    px = np.float32(pixel_mm)
    o = np.clip(0.5 - sd / px, 0.0, 1.0)
    body = o * np.float32(depth) * (0.3 + 0.7 * np.sqrt(np.clip(-sd / 9.0, 0.0, 1.0)))
    cortex = o - np.clip(0.5 - (sd + np.float32(cortex_mm)) / px, 0.0, 1.0)
    return body.astype(np.float32), (cortex * np.float32(cortex_w)).astype(np.float32)


def knee_paths(
    geom: KneeFilmGeometry,
    place: KneePlacement,
    look: KneeLook,
    pixel_mm: float,
    shape: tuple[int, int],
    texture: F32 | None,
) -> tuple[F32, tuple[slice, slice]]:
    """Attenuation (dimensionless) of one knee and its leg in a window of the film."""
    half_mm = look.leg_radius_mm + 15.0
    c0 = place.centre_rc[1]
    j0 = max(0, int(c0 - half_mm / pixel_mm))
    j1 = min(shape[1], int(c0 + half_mm / pixel_mm) + 1)
    win = (slice(0, shape[0]), slice(j0, j1))
    rows = np.arange(shape[0], dtype=np.float32)[:, None]
    cols = np.arange(j0, j1, dtype=np.float32)[None, :]
    x_leg, z_leg = _film_to_knee(geom, place, pixel_mm, rows, cols)
    px = np.float32(pixel_mm)
    # bones: only the columns they can reach (the rotated film height included)
    reach = max(-geom.tibia_medial_x, geom.tibia_lateral_x) + 25.0
    reach += 0.5 * shape[0] * pixel_mm * abs(np.sin(np.deg2rad(place.rotation_deg)))
    b0 = max(j0, int(c0 - reach / pixel_mm)) - j0
    b1 = min(j1, int(c0 + reach / pixel_mm) + 1) - j0
    bs = slice(max(b0, 0), max(b1, 0))
    x, z = x_leg[:, bs], z_leg[:, bs]

    def occ(sd: F32) -> F32:
        return np.clip(0.5 - sd / px, 0.0, 1.0)

    def bone(sd: F32, depth: float, cortex_w: float) -> tuple[F32, F32]:
        return bone_path(sd, depth, look.cortex_mm, cortex_w, pixel_mm)

    sd_f = femur_sd(geom, x, z)
    sd_t = tibia_sd(geom, x, z)
    body_f, cort_f = bone(sd_f, look.bone_depth_mm * 1.1, look.cortex_weight)
    body_t, cort_t = bone(sd_t, look.bone_depth_mm, look.cortex_weight)
    body_b, cort_b = bone(
        fibula_sd(geom, x, z), 0.45 * look.bone_depth_mm, 0.8 * look.cortex_weight
    )
    body_p, cort_p = bone(
        ellipse_sd(x, z, geom.patella), 0.3 * look.bone_depth_mm, 0.08 * look.cortex_weight
    )
    body = body_f + body_t + body_b + body_p
    if texture is not None:
        body = body * (1.0 + texture[:, j0:j1][:, bs])
    path = body + cort_f + cort_t + cort_b + cort_p
    # osteophytes: dense new bone (solid, not a ring), inside the outline already drawn
    for e in (*geom.osteo_tibia, *geom.osteo_femur):
        path += np.float32(28.0) * occ(ellipse_sd(x, z, e) + np.float32(0.3))
    # the lower plateau rim: a thin dense line inside the tibia's shadow
    if geom.beam_tan > 0:
        rim2 = geom.second_rim(np.clip(x, geom.tibia_medial_x, geom.tibia_lateral_x))
        path += (
            occ(sd_t) * np.float32(18.0) * np.exp(-(((z - rim2) / 0.45) ** 2)).astype(np.float32)
        )
    # subchondral sclerosis under (and above) the affected compartments
    for medial, grade in ((True, look.sclerosis[0]), (False, look.sclerosis[1])):
        if grade <= 0:
            continue
        a, b = geom.compartment(medial)
        cx, hw = 0.5 * (a + b), 0.4 * (b - a)
        band_x = np.exp(-(((x - cx) / hw) ** 6))
        below = np.clip(-sd_t, 0.0, None)
        above = np.clip(-sd_f, 0.0, None)
        sc = np.exp(-((below / 4.0) ** 2)) * occ(sd_t) + 0.5 * np.exp(-((above / 3.0) ** 2)) * occ(
            sd_f
        )
        path += (np.float32(14.0 * grade) * band_x * sc).astype(np.float32)
    for cx, depth, radius in look.cysts:
        top = float(geom.tibia_bone_top(np.array([cx]))[0])
        cyst = Ellipse(cx, top - depth, radius, 0.8 * radius)
        path -= np.float32(15.0) * occ(ellipse_sd(x, z, cyst))
    if look.cysts:
        path = np.clip(path, 0.0, None)
    bone_atten = np.float32(MU_BONE) * path
    if look.implant:
        bone_atten += np.float32(MU_METAL) * _implant_path(geom, x, z, sd_f, px)
    # soft tissue: the leg as a cylinder along the beam (fat outside, muscle inside)
    r = look.leg_radius_mm * (1.0 + 0.0015 * np.clip(z_leg, -80.0, 80.0))
    dx = x_leg - np.float32(look.leg_offset_mm)
    full = 2.0 * np.sqrt(np.clip(r * r - dx * dx, 0.0, None))
    ri = np.clip(r - look.fat_mm, 1.0, None)
    inner = 2.0 * np.sqrt(np.clip(ri * ri - dx * dx, 0.0, None))
    atten = (np.float32(MU_SOFT) * (0.8 * full + 0.35 * inner)).astype(np.float32)
    atten[:, bs] += bone_atten
    return atten, win


def _implant_path(geom: KneeFilmGeometry, x: F32, z: F32, sd_f: F32, px: np.float32) -> F32:
    """Metal path (mm) of a total knee replacement: a femoral shell following the condyles
    and a tibial tray with a stem."""
    shell = np.clip(0.5 - sd_f / px, 0.0, 1.0) * np.clip(0.5 + (sd_f + 7.0) / px, 0.0, 1.0)
    shell *= (z < geom.notch_base_z + 8.0).astype(np.float32)
    top = float(geom.tibia_top(np.array([geom.notch_x]))[0])
    tray = (
        (np.abs(x - 0.5 * (geom.tibia_medial_x + geom.tibia_lateral_x)) < 0.48 * geom.tibial_width)
        & (z <= top)
        & (z > top - 4.0)
    )
    stem = (np.abs(x - geom.tibia_shaft_x) < 6.0) & (z < top - 3.0) & (z > top - 50.0)
    return (60.0 * shell + 60.0 * (tray | stem)).astype(np.float32)


def trabecular_texture(
    shape: tuple[int, int], pixel_mm: float, amp: float, rng: np.random.Generator
) -> F32:
    """Band-passed noise, mostly vertical streaks (trabeculae), zero mean, ~``amp`` std."""
    # drawn on a grid of half the film's resolution, then interpolated (speed)
    small = ((shape[0] + 1) // 2 + 1, (shape[1] + 1) // 2 + 1)
    noise = rng.standard_normal(small, dtype=np.float32)
    s = 0.1 / pixel_mm
    fine = ndimage.gaussian_filter(noise, (2.2 * s, 0.9 * s))
    coarse = ndimage.uniform_filter(fine, max(3, round(12.0 * s)))
    tex = fine - coarse
    tex *= np.float32(amp / (float(tex.std()) or 1.0))
    big = np.repeat(np.repeat(tex, 2, axis=0), 2, axis=1)[: shape[0], : shape[1]]
    return ndimage.uniform_filter(big, 2).astype(np.float32)


def _edge_profile(n: int, lo: int, hi: int) -> tuple[F32, F32]:
    """1D exposed-field profile (blurred box over [lo, hi)) and its wide scatter glow."""
    box = np.zeros(n, dtype=np.float32)
    box[lo:hi] = 1.0
    return ndimage.gaussian_filter1d(box, 2.0), ndimage.gaussian_filter1d(box, 25.0)


def expose(atten: F32, look: FilmLook, rng: np.random.Generator) -> npt.NDArray[np.uint16]:
    """Detector and display: blur, quantum noise, heel effect, collimation, lead markers,
    display curve; 12-bit uint16 with bone bright."""
    shape = atten.shape
    a = atten.copy()
    if look.heel:
        a = a + np.float32(look.heel) * np.linspace(-0.5, 0.5, shape[1], dtype=np.float32)[None, :]
    a = ndimage.gaussian_filter(a, look.blur_px) if look.blur_px > 0 else a
    unexposed = np.float32(6.5)
    if look.collimation is not None:
        r0, r1, c0, c1 = look.collimation
        fr, gr = _edge_profile(shape[0], r0, r1)
        fc, gc = _edge_profile(shape[1], c0, c1)
        field = fr[:, None] * fc[None, :]
        glow = gr[:, None] * gc[None, :]  # scatter from the exposed field beyond its edge
        a = a * field + (1.0 - field) * (unexposed - np.float32(0.6) * glow)
    for letter, r, c, h in look.markers:
        m = letter_mask(letter, h)
        rr = slice(max(r, 0), min(r + m.shape[0], shape[0]))
        cc = slice(max(c, 0), min(c + m.shape[1], shape[1]))
        sub = m[: rr.stop - rr.start, : cc.stop - cc.start]
        a[rr, cc] = np.where(sub, np.float32(4.0), a[rr, cc] + np.float32(0.25))
    for r, c, n, h in look.labels:
        size = max(1, h // 7)
        glyphs = rng.random((7, 6 * n)) < 0.45
        glyphs[:, 5::6] = False  # a blank column between characters
        m = np.kron(glyphs, np.ones((size, size), dtype=bool))
        rr = slice(max(r, 0), min(r + m.shape[0], shape[0]))
        cc = slice(max(c, 0), min(c + m.shape[1], shape[1]))
        sub = m[: rr.stop - rr.start, : cc.stop - cc.start]
        a[rr, cc] = np.where(sub, unexposed, a[rr, cc])
    if look.grid[0] > 0:
        cols = np.arange(shape[1], dtype=np.float32)
        a += np.float32(look.grid[0]) * np.cos(2 * np.pi * cols / np.float32(look.grid[1]))[None, :]
    counts = np.float32(look.photons) * np.exp(-np.clip(a, 0.0, 8.0))
    a = a + rng.standard_normal(shape, dtype=np.float32) / np.sqrt(counts + 1.0)
    k = np.float32(look.contrast_k)
    disp = (1.0 - np.exp(-k * np.clip(a, 0.0, None))) / (1.0 - np.exp(-k * unexposed))
    v = look.display_lo + (look.display_hi - look.display_lo) * disp
    return np.clip(np.rint(v), 0, 4095).astype(np.uint16)
