"""Synthetic bilateral PA fixed-flexion knee films with exact truth.

A film is a 2D :class:`~kneescope.core.Volume`, ``array[i=row, j=column]`` uint16 (12-bit)
with bone bright (write it as MONOCHROME1 or 2; the io writer inverts stored values for
MONOCHROME1). Rows run to the patient's feet (Inferior), columns to the patient's Left (the
usual display: the patient's right knee on the viewer's left).

Each knee is drawn from its projected 2D outlines
(:mod:`kneescope.synth.knee_film_geometry`): femoral condyles (superellipse arcs) with the
intercondylar notch, the tibial plateau (medial concave, lateral convex, tibial spines,
rounded corners) whose anterior and posterior rims separate into two lines by the beam's
angle error (fixed flexion 10-20 deg, beam roughly parallel to the plateau), fibular head,
patella, marginal osteophytes and subchondral sclerosis with the KL grade, trabecular texture,
the leg's soft tissue (fat and muscle), and a film-wide look: exposure (quantum noise),
detector blur, display curve, heel effect, collimation edges, lead L/R markers, in-plane
rotation (up to +-8 deg) and scale (+-8 %) (:mod:`kneescope.synth.knee_film_render`).

**Knee frame.** For each knee: ``x`` (mm) along the tibial plateau line, ``z`` (mm)
perpendicular to it (superior), in *film* millimetres (pixels x the film's pixel spacing). The
plateau line is the knee frame's x axis; on the film it makes ``rotation_deg`` with the
columns (positive: its medial end higher). **Right frame**: a left knee mirrored left-right,
so that medial = larger column.

**Joint space width (exact definition, shared with kneescope.xray.jsw).** At a position ``x``
along the plateau line, JSW(x) = the distance, perpendicular to the tibial plateau line, from
the femoral condyle's projected lower bone margin to the tibial plateau's projected upper bone
margin, the edge the film shows (the higher of the two plateau rims; osteophytes included,
though they sit outside the measured regions). Tibial margins: the medial and lateral
outermost points of the plateau without osteophytes; tibial width W = their distance.

- mJSW of a compartment: the minimum of JSW(x) over the central 60 % of the compartment, a
  compartment spanning from its tibial margin to the knee centre's column (the middle of the
  intercondylar notch), evaluated every 0.005 mm.
- Fixed locations: x = 0.175, 0.200, 0.225, 0.250, 0.275, 0.300 of W measured from the medial
  margin towards the lateral (medial compartment) and the same fractions from the lateral
  margin towards the medial (lateral compartment).
- Knee centre: the notch column; row = the mean over the two compartments of the midpoint
  between the condyle's lowest point and the tibial margin straight below it.

All JSW values are in film millimetres (pixels x pixel spacing, magnification included).
KL 0 knees have medial mJSW ~5 mm and lateral ~6 mm (1.3 x the sum of the knee's femoral and
tibial cartilage thickness), narrowed by the compartment's cartilage-loss fraction.

The full-leg standing radiograph lives in :mod:`kneescope.synth.full_leg`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kneescope.core import Volume
from kneescope.synth.cohort import jsn_grade
from kneescope.synth.knee_film_geometry import (
    JSW_FIXED_FRACTIONS,
    KneeFilmGeometry,
    KneeFilmParams,
    build_geometry,
    knee_jsw_truth,
)
from kneescope.synth.knee_film_render import (
    FilmLook,
    KneeLook,
    KneePlacement,
    expose,
    knee_paths,
    knee_to_film,
    trabecular_texture,
)
from kneescope.synth.params import KneeParams
from kneescope.types import Affine

KNEE_PIXEL_MM = 0.2
FILM_MM = (140.0, 330.0)
"""Default film size (height, width) in mm."""
MU_BONE = 0.012  # 1/mm (cortex-weighted path), full-leg films
MU_SOFT = 0.006  # 1/mm, full-leg films
DISPLAY_MAX = 3800.0


@dataclass(frozen=True)
class KneeXrayTruth:
    """Exact truth of one knee on a film (film pixels and film mm; see the module docstring).

    Attributes:
        side: ``"right"``/``"left"``.
        mjsw_medial_mm / mjsw_lateral_mm: mJSW per compartment (NaN with an implant).
        klg: KL grade 0..4 (-1 with an implant: not gradable).
        osteophyte_grade: 0..3 (-1 with an implant).
        jsn_medial / jsn_lateral: OARSI JSN grade 0..3 (-1 with an implant).
        centre_rc: knee centre (row, col), film pixels (float).
        tibia_medial_rc / tibia_lateral_rc: the tibial plateau's medial / lateral margin
            point (the outermost plateau point, no osteophytes), film (row, col).
        tibia_edges_c: (medial, lateral) margin columns (film, float).
        tibial_width_mm: distance between the margins (film mm).
        jsw_fixed_medial_mm / jsw_fixed_lateral_mm: JSW at the fixed fractions
            (0.175 ... 0.300) from the medial / lateral margin.
        mjsw_medial_rc / mjsw_lateral_rc: film (row, col) of the tibial margin point where
            the compartment's mJSW is reached.
        implant: a total knee replacement (not gradable).
        rotation_deg: angle of the plateau line on the film (+ = medial end higher).
        pixel_mm: the film's pixel spacing (mm).
        scale: size factor of this knee on the film (anatomy x magnification).
        beam_error_deg: beam angle error against the plateau (rim doubling).
        flexion_deg: knee flexion.
    """

    side: str
    mjsw_medial_mm: float
    mjsw_lateral_mm: float
    klg: int
    osteophyte_grade: int
    jsn_medial: int
    jsn_lateral: int
    centre_rc: tuple[float, float]
    tibia_medial_rc: tuple[float, float]
    tibia_lateral_rc: tuple[float, float]
    tibia_edges_c: tuple[float, float]
    tibial_width_mm: float
    jsw_fixed_medial_mm: tuple[float, ...]
    jsw_fixed_lateral_mm: tuple[float, ...]
    mjsw_medial_rc: tuple[float, float]
    mjsw_lateral_rc: tuple[float, float]
    implant: bool
    rotation_deg: float
    pixel_mm: float
    scale: float
    beam_error_deg: float
    flexion_deg: float


@dataclass(frozen=True)
class FilmTruth:
    """What is on a film as a whole.

    Attributes:
        view: ``"pa_bilateral"``, ``"pa_one_knee"``, ``"no_knee"`` or ``"lateral"``.
        shape: (rows, cols).
        pixel_mm: pixel spacing (mm).
        sides: the knees on the film (``()`` when none; the lateral view's knee side).
        markers: lead letters burned in: (letter, row, col) of each letter's centre.
        collimation: (row0, row1, col0, col1) of the exposed field, or None (whole film).
        rotation_deg: the film's in-plane rotation (+ = counterclockwise as displayed).
        annotations: burned-in annotation text (not markers): (row0, row1, col0, col1) boxes.
    """

    view: str
    shape: tuple[int, int]
    pixel_mm: float
    sides: tuple[str, ...]
    markers: tuple[tuple[str, float, float], ...]
    collimation: tuple[int, int, int, int] | None
    rotation_deg: float
    annotations: tuple[tuple[int, int, int, int], ...] = ()


@dataclass(frozen=True)
class KneeOnFilm:
    """One knee to draw: its geometry, placement, look and grades."""

    geom: KneeFilmGeometry
    place: KneePlacement
    look: KneeLook
    params: KneeFilmParams
    klg: int
    osteophyte_grade: int
    jsn: tuple[int, int]


def radiograph_affine(origin_ras: tuple[float, float, float], pixel_mm: float) -> Affine:
    """Nominal affine of a PA film: rows to Inferior, columns to the patient's Left (mm)."""
    a = np.zeros((4, 4))
    a[:3, 0] = (0.0, 0.0, -pixel_mm)  # rows -> Inferior
    a[:3, 1] = (-pixel_mm, 0.0, 0.0)  # columns -> patient's Left
    a[:3, 2] = (0.0, 1.0, 0.0)
    a[:3, 3] = origin_ras
    a[3, 3] = 1.0
    return a


def film_affine(shape: tuple[int, int], pixel_mm: float) -> Affine:
    """The nominal affine of a knee film: RAS x = 0 at the middle column, z = -450 mm at the
    middle row (the right knee sits at RAS x ~ +100 mm)."""
    top_z = 0.5 * shape[0] * pixel_mm
    left_x = 0.5 * shape[1] * pixel_mm
    return radiograph_affine((left_x, 20.0, -450.0 + top_z), pixel_mm)


def knee_truth(k: KneeOnFilm, pixel_mm: float) -> KneeXrayTruth:
    """The exact truth of one drawn knee."""
    g, place = k.geom, k.place

    def rc(x: float, z: float) -> tuple[float, float]:
        r, c = knee_to_film(g, place, pixel_mm, x, z)
        return float(r), float(c)

    def top(x: float) -> float:
        return float(g.tibia_bone_top(np.array([x]))[0])

    med = rc(g.tibia_medial_x, top(g.tibia_medial_x))
    lat = rc(g.tibia_lateral_x, top(g.tibia_lateral_x))
    jt = knee_jsw_truth(g)
    implant = k.look.implant
    nan = float("nan")
    return KneeXrayTruth(
        side=place.side,
        mjsw_medial_mm=nan if implant else jt.mjsw_medial_mm,
        mjsw_lateral_mm=nan if implant else jt.mjsw_lateral_mm,
        klg=-1 if implant else k.klg,
        osteophyte_grade=-1 if implant else k.osteophyte_grade,
        jsn_medial=-1 if implant else k.jsn[0],
        jsn_lateral=-1 if implant else k.jsn[1],
        centre_rc=(float(place.centre_rc[0]), float(place.centre_rc[1])),
        tibia_medial_rc=med,
        tibia_lateral_rc=lat,
        tibia_edges_c=(med[1], lat[1]),
        tibial_width_mm=float(g.tibial_width),
        jsw_fixed_medial_mm=tuple(nan for _ in jt.fixed_medial_mm)
        if implant
        else jt.fixed_medial_mm,
        jsw_fixed_lateral_mm=tuple(nan for _ in jt.fixed_lateral_mm)
        if implant
        else jt.fixed_lateral_mm,
        mjsw_medial_rc=rc(jt.mjsw_medial_x, top(jt.mjsw_medial_x)),
        mjsw_lateral_rc=rc(jt.mjsw_lateral_x, top(jt.mjsw_lateral_x)),
        implant=implant,
        rotation_deg=float(place.rotation_deg),
        pixel_mm=float(pixel_mm),
        scale=float(k.params.scale),
        beam_error_deg=float(k.params.beam_error_deg),
        flexion_deg=float(k.params.flexion_deg),
    )


def sample_film_look(
    rng: np.random.Generator, shape: tuple[int, int], pixel_mm: float, *, vary: bool = True
) -> FilmLook:
    """A film-wide look: exposure, blur, texture, display, collimation and markers."""
    if not vary:
        h = round(11.0 / pixel_mm)
        return FilmLook(
            markers=(
                ("R", round(6 / pixel_mm), round(12 / pixel_mm), h),
                ("L", round(6 / pixel_mm), shape[1] - round(12 / pixel_mm) - h, h),
            )
        )
    rows, cols = shape
    collimation = None
    if rng.random() < 0.7:
        collimation = (
            int(rng.uniform(0.0, 0.08) * rows),
            rows - int(rng.uniform(0.0, 0.08) * rows),
            int(rng.uniform(0.0, 0.06) * cols),
            cols - int(rng.uniform(0.0, 0.06) * cols),
        )
    r0, r1, c0, c1 = collimation or (0, rows, 0, cols)
    h = round(rng.uniform(8.0, 14.0) / pixel_mm)
    w = 5 * max(1, h // 7)
    u = rng.random()
    letters = ("R", "L") if u < 0.7 else (("R",) if u < 0.8 else (("L",) if u < 0.9 else ()))
    markers = []
    for letter in letters:
        r = r0 + round(rng.uniform(3.0, 35.0) / pixel_mm)
        inset = round(rng.uniform(4.0, 25.0) / pixel_mm)
        c = c0 + inset if letter == "R" else c1 - inset - w
        markers.append((letter, int(r), int(c), int(h)))
    grid = (float(rng.uniform(0.01, 0.04)), float(rng.uniform(2.5, 6.0)))
    if rng.random() >= 0.3:
        grid = (0.0, 4.0)
    labels = []
    if rng.random() < 0.4:
        lh = round(rng.uniform(4.0, 7.0) / pixel_mm)
        n = int(rng.integers(6, 15))
        lw = n * 6 * max(1, lh // 7)
        lr = r1 - round(rng.uniform(3.0, 10.0) / pixel_mm) - lh
        lc = c0 + round(rng.uniform(5.0, 40.0) / pixel_mm)
        if rng.random() < 0.5:
            lc = c1 - round(rng.uniform(5.0, 40.0) / pixel_mm) - lw
        labels.append((int(lr), int(lc), n, int(lh)))
    return FilmLook(
        photons=float(np.exp(rng.uniform(np.log(1500.0), np.log(20000.0)))),
        blur_px=float(rng.uniform(0.5, 1.3) * 0.2 / pixel_mm),
        texture=float(rng.uniform(0.10, 0.30)),
        contrast_k=float(rng.uniform(0.25, 0.65)),
        display_lo=float(rng.uniform(0.0, 400.0)),
        display_hi=float(rng.uniform(2800.0, 4095.0)),
        heel=float(rng.uniform(-0.3, 0.3)),
        collimation=collimation,
        markers=tuple(markers),
        grid=grid,
        labels=tuple(labels),
    )


def compose_film(
    knees: list[KneeOnFilm],
    shape: tuple[int, int],
    pixel_mm: float,
    look: FilmLook,
    rng: np.random.Generator,
    *,
    extra: np.ndarray | None = None,  # type: ignore[type-arg]
) -> np.ndarray:  # type: ignore[type-arg]
    """Attenuation of every knee (+ ``extra``), exposed and displayed: uint16 (rows, cols)."""
    atten = np.zeros(shape, dtype=np.float32)
    tex = trabecular_texture(shape, pixel_mm, look.texture, rng) if look.texture > 0 else None
    for k in knees:
        a, win = knee_paths(k.geom, k.place, k.look, pixel_mm, shape, tex)
        atten[win] += a
    if extra is not None:
        atten += extra.astype(np.float32)
    return expose(atten, look, rng)


def film_params_from_knee(
    params: KneeParams,
    klg: int,
    osteo: int,
    medial: bool,
    rng: np.random.Generator,
    *,
    film_scale: float = 1.0,
    vary: bool = True,
    implant: bool = False,
) -> tuple[KneeFilmParams, tuple[float, float]]:
    """A knee's film parameters from its MRI anatomy and disease state; also its sclerosis
    grade (medial, lateral).

    mJSW: 1.3 x (femoral + tibial cartilage thickness) x scale, x (1 - cartilage loss).
    Osteophytes: ~1.8 mm per grade at each margin (the predominant compartment's larger);
    KL 1 knees get a doubtful lip (0.5-1 mm). Sclerosis: KL >= 3, the predominant side.
    """

    def u(lo: float, hi: float, nominal: float) -> float:
        return float(rng.uniform(lo, hi)) if vary else nominal

    s = params.scale * film_scale
    base_m = 1.3 * (params.cart_femoral + params.cart_medial_tibial) * s
    base_l = 1.3 * (params.cart_femoral + params.cart_lateral_tibial) * s
    jsw_m = max(base_m * (1.0 - params.loss_medial), 0.25)
    jsw_l = max(base_l * (1.0 - params.loss_lateral), 0.25)
    sizes = []
    for site in range(4):
        predominant = (site % 2 == 0) == medial
        if osteo > 0:
            size = 1.8 * osteo * u(0.8, 1.2, 1.0) * (1.0 if predominant else 0.6)
        elif klg >= 1 and predominant:
            size = u(0.5, 1.0, 0.7)
        else:
            size = 0.0
        sizes.append(size * params.scale * film_scale)
    scl = float(max(klg - 2, 0))
    sclerosis = (scl, 0.0) if medial else (0.0, scl)
    if implant:  # a replaced joint: flat tray, polyethylene gap, no spurs or sclerosis
        jsw_m = jsw_l = u(7.0, 10.0, 8.5) * film_scale
        sizes, sclerosis = [0.0, 0.0, 0.0, 0.0], (0.0, 0.0)
    fp = KneeFilmParams(
        scale=s,
        tibia_half_medial=2.0 * params.plateau_halfwidth_medial + u(-1.0, 1.5, 0.5),
        tibia_half_lateral=2.0 * params.plateau_halfwidth_lateral + u(-1.0, 1.5, 0.5),
        notch_half_width=0.5 * params.notch_width,
        condyle_gap_medial=u(1.0, 4.0, 2.5),
        condyle_gap_lateral=u(1.5, 4.5, 3.0),
        condyle_height=(u(12.0, 16.0, 14.0), u(11.0, 15.0, 13.0)),
        condyle_exponent=(u(2.0, 2.9, 2.4), u(1.9, 2.7, 2.2)),
        medial_concavity=0.0 if implant else params.medial_concavity,
        lateral_convexity=0.0 if implant else params.lateral_convexity,
        spine_height=0.3 if implant else params.spine_height * (1.15 if klg >= 2 else 1.0),
        plateau_depth=(params.plateau_depth_medial, params.plateau_depth_lateral),
        beam_error_deg=float(np.clip(rng.normal(0.0, 2.0), -5.0, 5.0)) if vary else 0.0,
        flexion_deg=u(10.0, 20.0, 15.0),
        jsw_medial_mm=jsw_m,
        jsw_lateral_mm=jsw_l,
        osteophyte_mm=(sizes[0], sizes[1], sizes[2], sizes[3]),
    )
    return fp, sclerosis


def sample_knee_look(
    rng: np.random.Generator,
    scale: float,
    sclerosis: tuple[float, float],
    *,
    vary: bool = True,
    implant: bool = False,
    geom: KneeFilmGeometry | None = None,
) -> KneeLook:
    """Soft tissue and bone density of one knee; with ``geom``, subchondral cysts in half of
    the sclerotic compartments (1-2, radius 1.2-2.8 mm, 2-8 mm under the tibial margin)."""
    if not vary:
        return KneeLook(leg_radius_mm=62.0 * scale, sclerosis=sclerosis, implant=implant)
    cysts: list[tuple[float, float, float]] = []
    if geom is not None:
        for medial, grade in ((True, sclerosis[0]), (False, sclerosis[1])):
            if grade <= 0 or rng.random() < 0.5:
                continue
            a, b = geom.compartment(medial)
            for _ in range(int(rng.integers(1, 3))):
                r = float(rng.uniform(1.2, 2.8)) * scale
                x = a + (b - a) * float(rng.uniform(0.25, 0.75))
                cysts.append((x, r + float(rng.uniform(2.0, 5.0)), r))
    return KneeLook(
        cysts=tuple(cysts),
        bone_depth_mm=float(rng.uniform(38.0, 52.0)) * scale,
        cortex_mm=float(rng.uniform(0.9, 1.5)),
        cortex_weight=float(rng.uniform(35.0, 55.0)),
        leg_radius_mm=float(rng.uniform(52.0, 78.0)) * scale,
        leg_offset_mm=float(rng.normal(-2.0, 3.0)),
        fat_mm=float(rng.uniform(6.0, 25.0)),
        sclerosis=sclerosis,
        implant=implant,
    )


def place_knees(
    rng: np.random.Generator,
    sides: tuple[str, ...],
    shape: tuple[int, int],
    pixel_mm: float,
    *,
    vary: bool = True,
) -> tuple[dict[str, KneePlacement], float]:
    """Knee centres and rotations on a film; also the film's rotation (deg)."""
    rows, cols = shape
    phi = float(rng.uniform(-8.0, 8.0)) if vary else 0.0
    half_sep = float(rng.uniform(88.0, 110.0)) if vary else 100.0
    out = {}
    t = np.deg2rad(phi)
    for side in sides:
        dr = float(rng.normal(0.0, 5.0)) if vary else 0.0
        dc = (-half_sep if side == "right" else half_sep) + (
            float(rng.normal(0, 3)) if vary else 0.0
        )
        if len(sides) == 1 and vary and rng.random() < 0.5:
            dc = float(rng.normal(0.0, 20.0))  # a single knee is often centred
        r = 0.5 * rows + (dr * np.cos(t) - dc * np.sin(t)) / pixel_mm
        c = 0.5 * cols + (dr * np.sin(t) + dc * np.cos(t)) / pixel_mm
        jitter = float(rng.normal(0.0, 1.5)) if vary else 0.0
        rot = (phi if side == "right" else -phi) + jitter
        out[side] = KneePlacement(side, (float(r), float(c)), rot)
    return out, phi


def render_knee_radiograph(
    knees: dict[str, tuple[KneeParams, int, int, bool]],
    *,
    seed: int,
    vary: bool = True,
    pixel_mm: float = KNEE_PIXEL_MM,
) -> tuple[Volume, list[KneeXrayTruth]]:
    """Bilateral PA fixed-flexion knee film.

    Args:
        knees: side -> (params, KL grade, osteophyte grade 0..3, medial-predominant).
        seed: seed of every random draw (placement, shape details, look, noise).
        vary: False: nominal placement (no rotation, knees 100 mm either side of the middle
            column, at the middle row), nominal shapes and a plain look (noise only).
        pixel_mm: film pixel spacing.

    Returns:
        (uint16 2D Volume, truth per knee in the order of ``knees``).
    """
    vol, truths, _ = render_knee_film(knees, seed=seed, vary=vary, pixel_mm=pixel_mm)
    return vol, truths


def render_knee_film(
    knees: dict[str, tuple[KneeParams, int, int, bool]],
    *,
    seed: int,
    vary: bool = True,
    pixel_mm: float = KNEE_PIXEL_MM,
    implants: tuple[str, ...] = (),
    film_mm: tuple[float, float] = FILM_MM,
) -> tuple[Volume, list[KneeXrayTruth], FilmTruth]:
    """:func:`render_knee_radiograph` with the film's own truth.

    Args:
        implants: sides drawn with a total knee replacement (truth ``implant=True``, grades
            -1, JSW NaN).
        film_mm: film (height, width) in mm.
    """
    rng = np.random.default_rng(seed)
    shape = (round(film_mm[0] / pixel_mm), round(film_mm[1] / pixel_mm))
    film_scale = float(rng.uniform(0.92, 1.08)) if vary else 1.0
    places, phi = place_knees(rng, tuple(knees), shape, pixel_mm, vary=vary)
    drawn = []
    for side, (params, klg, osteo, medial) in knees.items():
        implant = side in implants
        fp, scl = film_params_from_knee(
            params, klg, osteo, medial, rng, film_scale=film_scale, vary=vary, implant=implant
        )
        geom = build_geometry(fp)
        look = sample_knee_look(rng, fp.scale, scl, vary=vary, implant=implant, geom=geom)
        jsn = (jsn_grade(params.loss_medial), jsn_grade(params.loss_lateral))
        drawn.append(KneeOnFilm(geom, places[side], look, fp, klg, osteo, jsn))
    film_look = sample_film_look(rng, shape, pixel_mm, vary=vary)
    pixels = compose_film(drawn, shape, pixel_mm, film_look, rng)
    truths = [knee_truth(k, pixel_mm) for k in drawn]
    view = "pa_bilateral" if len(drawn) == 2 else "pa_one_knee"
    meta = {"kind": "knee_pa_bilateral", "synthetic": True}
    film = FilmTruth(
        view=view,
        shape=shape,
        pixel_mm=pixel_mm,
        sides=tuple(knees),
        markers=marker_centres(film_look),
        collimation=film_look.collimation,
        rotation_deg=phi,
        annotations=annotation_boxes(film_look),
    )
    return Volume(pixels, film_affine(shape, pixel_mm), meta), truths, film


def annotation_boxes(look: FilmLook) -> tuple[tuple[int, int, int, int], ...]:
    """(row0, row1, col0, col1) of each burned-in annotation line."""
    out = []
    for r, c, n, h in look.labels:
        k = max(1, h // 7)
        out.append((r, r + 7 * k, c, c + 6 * n * k))
    return tuple(out)


def marker_centres(look: FilmLook) -> tuple[tuple[str, float, float], ...]:
    """(letter, row, col) of each marker letter's centre."""
    out = []
    for letter, r, c, h in look.markers:
        k = max(1, h // 7)
        out.append((letter, r + 3.5 * k - 0.5, c + 2.5 * k - 0.5))
    return tuple(out)


def truth_columns(t: KneeXrayTruth) -> dict[str, str]:
    """The xray truth table's columns of one knee beyond KLG/OsteophyteGrade/mJSW (fixed-point
    text; NaN written empty). ``JSW_M_0175_mm`` is the JSW at 0.175 of the tibial width from
    the medial margin, and so on; rows/columns are film pixels (float)."""

    def f(v: float, digits: int = 4) -> str:
        return "" if np.isnan(v) else f"{v:.{digits}f}"

    out = {
        "JSN_M": str(t.jsn_medial),
        "JSN_L": str(t.jsn_lateral),
        "CentreRow": f(t.centre_rc[0], 2),
        "CentreCol": f(t.centre_rc[1], 2),
        "TibiaMedialRow": f(t.tibia_medial_rc[0], 2),
        "TibiaMedialCol": f(t.tibia_medial_rc[1], 2),
        "TibiaLateralRow": f(t.tibia_lateral_rc[0], 2),
        "TibiaLateralCol": f(t.tibia_lateral_rc[1], 2),
        "TibialWidth_mm": f(t.tibial_width_mm),
    }
    for frac, m, lat in zip(
        JSW_FIXED_FRACTIONS, t.jsw_fixed_medial_mm, t.jsw_fixed_lateral_mm, strict=True
    ):
        key = f"{round(frac * 1000):04d}"
        out[f"JSW_M_{key}_mm"] = f(m)
        out[f"JSW_L_{key}_mm"] = f(lat)
    out.update(
        {
            "Implant": "1" if t.implant else "0",
            "Rotation_deg": f(t.rotation_deg, 3),
            "PixelSpacing_mm": f(t.pixel_mm, 4),
            "Scale": f(t.scale),
            "BeamError_deg": f(t.beam_error_deg, 3),
            "Flexion_deg": f(t.flexion_deg, 2),
        }
    )
    return out
