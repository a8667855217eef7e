"""The projected 2D geometry of one knee on a PA fixed-flexion film, and its exact truth.

:class:`KneeFilmGeometry` describes the bone outlines of one knee **as projected along the
beam** in the *knee frame*: ``x`` (mm, +lateral) along the tibial plateau line, ``z`` (mm,
+superior) perpendicular to it, in film millimetres (anatomical size times the film's scale
factor). Every outline is an explicit function of ``x``, so the truth is exact:

- :meth:`KneeFilmGeometry.tibia_top` (z of the tibial plateau's projected upper bone margin,
  the edge the film shows: the higher of the anterior and posterior plateau rims, which the
  beam-angle error separates by ``depth * tan(beam error)``);
- :meth:`KneeFilmGeometry.femur_low` (z of the femoral projected lower bone margin: the two
  condyles (superellipse arcs, not boxes) and the intercondylar notch's arch).

Both include the marginal osteophytes (axis-aligned ellipses; they sit at the margins, outside
the measured regions) so that the margins are exactly those the film shows. The tibial
plateau margins (:attr:`tibia_medial_x`, :attr:`tibia_lateral_x`) are those of the bone
without osteophytes.

**Joint space width** at ``x`` (mm) = ``femur_low(x) - tibia_top(x)``: the distance,
perpendicular to the tibial plateau line (the knee frame's x axis), from the femoral lower
bone margin to the tibial upper bone margin. See :func:`knee_jsw_truth` for mJSW and the
fixed locations.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

FArr = npt.NDArray[np.floating]  # type: ignore[type-arg]

JSW_FIXED_FRACTIONS = (0.175, 0.200, 0.225, 0.250, 0.275, 0.300)
"""Fixed locations: fractions of the tibial width from the compartment's outer margin."""
CENTRAL_FRACTION = 0.6
"""mJSW is the minimum over the central 60 % of the compartment's width."""


@dataclass(frozen=True)
class Condyle:
    """One femoral condyle's projected outline: a superellipse arc with vertical sides.

    Lower margin ``z(x) = bottom_z + height * (1 - (1 - |u|**n) ** (1/n))`` for
    ``u = (x - centre_x) / half_width`` in (-1, 1); above ``bottom_z + height`` the sides are
    vertical (``x = centre_x +- half_width``).
    """

    centre_x: float
    half_width: float
    bottom_z: float
    height: float
    exponent: float

    def lower(self, x: FArr) -> FArr:
        """Lower margin z (mm) at ``x``; +inf outside the condyle's columns."""
        u = np.abs(x - self.centre_x) / self.half_width
        inside = u < 1.0
        uc = np.minimum(u, 1.0)
        n = self.exponent
        z = self.bottom_z + self.height * (1.0 - np.clip(1.0 - uc**n, 0.0, None) ** (1.0 / n))
        return np.where(inside, z, np.inf)

    def slope(self, x: FArr) -> FArr:
        """|dz/dx| of :meth:`lower` (clipped near the vertical ends)."""
        u = np.clip(np.abs(x - self.centre_x) / self.half_width, 0.0, 0.995)
        n = self.exponent
        return self.height / self.half_width * u ** (n - 1.0) * (1.0 - u**n) ** ((1.0 - n) / n)


@dataclass(frozen=True)
class Ellipse:
    """An axis-aligned ellipse (knee-frame mm): osteophytes, fibular head, patella."""

    cx: float
    cz: float
    rx: float
    rz: float

    def half_height(self, x: FArr) -> FArr:
        """Half the ellipse's vertical extent at ``x`` (NaN outside its columns)."""
        q = 1.0 - ((x - self.cx) / self.rx) ** 2
        return np.where(q > 0.0, self.rz * np.sqrt(np.clip(q, 0.0, None)), np.nan)


@dataclass(frozen=True)
class KneeFilmGeometry:
    """Projected bone outlines of one knee (knee frame, film mm; see the module docstring).

    Attributes:
        tibia_medial_x / tibia_lateral_x: the plateau's medial (< 0) and lateral (> 0)
            margins (no osteophytes); the tibial width is their distance.
        medial / lateral: the compartments' plateau shapes: (centre x, half width, AP depth,
            curvature: concavity (medial, dips) or convexity (lateral, bulges), mm).
        spine_x / spine_height / spine_sigma: tibial spines (two Gaussians at +-spine_x).
        corner_radius: rounding of the plateau's outer corners.
        beam_tan: |tan| of the beam's angle error against the plateau slope; the rims
            separate by ``depth * beam_tan`` (0: one line).
        condyle_medial / condyle_lateral: femoral condyles (:class:`Condyle`).
        notch_x / notch_half_width / notch_base_z / notch_height: the intercondylar notch's
            arch (a half-ellipse from ``notch_base_z`` up to ``notch_base_z + notch_height``).
        femur_shaft_x / femur_shaft_r, tibia_shaft_x / tibia_shaft_r: diaphyses.
        fibula_head / patella: ellipses; fibula_shaft_r: radius of the fibular shaft.
        osteo_tibia / osteo_femur: marginal osteophytes (ellipses; may be empty).
        epicondyles: the femur's convex outer contour above the condyles (ellipses centred
            on the condyles' outer sides; they reach no lower than the condyles' arcs
            except on those sides).
    """

    tibia_medial_x: float
    tibia_lateral_x: float
    medial: tuple[float, float, float, float]
    lateral: tuple[float, float, float, float]
    spine_x: float
    spine_height: float
    spine_sigma: float
    corner_radius: float
    beam_tan: float
    condyle_medial: Condyle
    condyle_lateral: Condyle
    notch_x: float
    notch_half_width: float
    notch_base_z: float
    notch_height: float
    femur_shaft_x: float
    femur_shaft_r: float
    tibia_shaft_x: float
    tibia_shaft_r: float
    fibula_head: Ellipse
    fibula_shaft_r: float
    patella: Ellipse
    osteo_tibia: tuple[Ellipse, ...] = field(default=())
    osteo_femur: tuple[Ellipse, ...] = field(default=())
    epicondyles: tuple[Ellipse, ...] = field(default=())

    # ---- tibia ------------------------------------------------------------------------------
    @property
    def tibial_width(self) -> float:
        """Distance (mm) between the medial and lateral plateau margins."""
        return self.tibia_lateral_x - self.tibia_medial_x

    def plateau_floor(self, x: FArr) -> FArr:
        """Plateau surface z (mm) with the beam aligned (no rim doubling, no corners)."""
        cxm, axm, _, cm = self.medial
        cxl, axl, _, cl = self.lateral
        hm = -cm * np.maximum(1.0 - ((x - cxm) / axm) ** 2, -0.3)
        hl = cl * np.maximum(1.0 - ((x - cxl) / axl) ** 2, -0.3)
        w = np.clip((x - self.notch_x + 3.0) / 6.0, 0.0, 1.0)
        w = w * w * (3.0 - 2.0 * w)
        dx = np.minimum(
            (x - self.notch_x + self.spine_x) ** 2, (x - self.notch_x - self.spine_x) ** 2
        )
        spine = self.spine_height * np.exp(-dx / (2.0 * self.spine_sigma**2))
        return (1.0 - w) * hm + w * hl + spine

    def rim_offset(self, x: FArr) -> FArr:
        """Half the separation (mm) of the anterior and posterior rims' projections at x."""
        out = np.zeros_like(x)
        for cx, ax, depth, _ in (self.medial, self.lateral):
            q = np.clip(1.0 - ((x - cx) / ax) ** 2, 0.0, None)
            out = np.maximum(out, 0.5 * depth * self.beam_tan * np.sqrt(q))
        return out

    def corner_drop(self, x: FArr) -> FArr:
        """How far (mm) the rounded outer corners lower the plateau near the margins."""
        d = np.minimum(x - self.tibia_medial_x, self.tibia_lateral_x - x)
        r = self.corner_radius
        t = np.clip(r - np.clip(d, 0.0, None), 0.0, r)
        return r - np.sqrt(np.clip(r * r - t * t, 0.0, None))

    def tibia_bone_top(self, x: FArr) -> FArr:
        """Upper margin z of the tibia without osteophytes (-inf outside the margins)."""
        z = self.plateau_floor(x) + self.rim_offset(x) - self.corner_drop(x)
        inside = (x >= self.tibia_medial_x) & (x <= self.tibia_lateral_x)
        return np.where(inside, z, -np.inf)

    def second_rim(self, x: FArr) -> FArr:
        """z of the lower of the two plateau rims (a line inside the tibia's shadow)."""
        return self.plateau_floor(x) - self.rim_offset(x) - self.corner_drop(x)

    def tibia_top(self, x: FArr) -> FArr:
        """Tibial projected upper bone margin z (mm), osteophytes included."""
        z = self.tibia_bone_top(x)
        for e in self.osteo_tibia:
            z = np.fmax(z, e.cz + e.half_height(x))
        return z

    # ---- femur ------------------------------------------------------------------------------
    def notch_arch(self, x: FArr) -> FArr:
        """z of the notch roof in the notch's columns (+inf elsewhere)."""
        u = (x - self.notch_x) / self.notch_half_width
        q = np.clip(1.0 - u * u, 0.0, None)
        return np.where(np.abs(u) < 1.0, self.notch_base_z + self.notch_height * np.sqrt(q), np.inf)

    def femur_bone_low(self, x: FArr) -> FArr:
        """Femoral lower margin z without osteophytes (+inf outside the femur's columns)."""
        z = np.minimum(self.condyle_medial.lower(x), self.condyle_lateral.lower(x))
        inner = (x >= self.condyle_medial.centre_x + self.condyle_medial.half_width) & (
            x <= self.condyle_lateral.centre_x - self.condyle_lateral.half_width
        )
        arch = np.minimum(self.notch_arch(x), self.notch_base_z)
        return np.where(inner, np.minimum(z, arch), z)

    def femur_low(self, x: FArr) -> FArr:
        """Femoral projected lower bone margin z (mm), osteophytes included."""
        z = self.femur_bone_low(x)
        for e in (*self.osteo_femur, *self.epicondyles):
            z = np.fmin(z, e.cz - e.half_height(x))
        return z

    @property
    def femur_outer(self) -> tuple[float, float]:
        """(medial, lateral) outer x of the condyles."""
        cm, cl = self.condyle_medial, self.condyle_lateral
        return cm.centre_x - cm.half_width, cl.centre_x + cl.half_width

    # ---- derived ----------------------------------------------------------------------------
    def jsw(self, x: FArr) -> FArr:
        """Joint space width (mm) at ``x``: femur_low - tibia_top (perpendicular to the
        plateau line)."""
        return self.femur_low(x) - self.tibia_top(x)

    def centre(self) -> tuple[float, float]:
        """Knee centre (x, z): the notch column; the mean over both compartments of the
        midpoint between the condyle's lowest point and the tibial margin below it."""
        zs = []
        for c in (self.condyle_medial, self.condyle_lateral):
            x = np.array([c.centre_x])
            zs.append(0.5 * float(self.femur_low(x)[0] + self.tibia_top(x)[0]))
        return self.notch_x, float(np.mean(zs))

    def compartment(self, medial: bool) -> tuple[float, float]:
        """x range of a compartment: from its tibial margin to the knee centre's column."""
        if medial:
            return self.tibia_medial_x, self.notch_x
        return self.notch_x, self.tibia_lateral_x

    def fixed_x(self, medial: bool, fractions: tuple[float, ...] = JSW_FIXED_FRACTIONS) -> FArr:
        """x of the fixed locations (fractions of the tibial width from the outer margin)."""
        f = np.asarray(fractions, dtype=np.float64)
        if medial:
            return self.tibia_medial_x + f * self.tibial_width
        return self.tibia_lateral_x - f * self.tibial_width


@dataclass(frozen=True)
class JswTruth:
    """Exact JSW truth of one knee (mm; see :func:`knee_jsw_truth`)."""

    mjsw_medial_mm: float
    mjsw_lateral_mm: float
    mjsw_medial_x: float
    mjsw_lateral_x: float
    fixed_medial_mm: tuple[float, ...]
    fixed_lateral_mm: tuple[float, ...]


def central_min(geom: KneeFilmGeometry, medial: bool, step: float = 0.005) -> tuple[float, float]:
    """(min JSW, its x) over the central :data:`CENTRAL_FRACTION` of a compartment."""
    a, b = geom.compartment(medial)
    margin = 0.5 * (1.0 - CENTRAL_FRACTION) * (b - a)
    xs = np.arange(a + margin, b - margin + step / 2, step, dtype=np.float64)
    w = geom.jsw(xs)
    i = int(np.argmin(w))
    return float(w[i]), float(xs[i])


def knee_jsw_truth(geom: KneeFilmGeometry) -> JswTruth:
    """mJSW per compartment (minimum of :meth:`KneeFilmGeometry.jsw` over the central 60 % of
    the compartment, evaluated every 0.005 mm) and JSW at :data:`JSW_FIXED_FRACTIONS`."""
    m, mx = central_min(geom, True)
    lat, lx = central_min(geom, False)
    fm = tuple(float(v) for v in geom.jsw(geom.fixed_x(True)))
    fl = tuple(float(v) for v in geom.jsw(geom.fixed_x(False)))
    return JswTruth(m, lat, mx, lx, fm, fl)


def set_jsw(geom: KneeFilmGeometry, medial_mm: float, lateral_mm: float) -> KneeFilmGeometry:
    """Move each condyle vertically so that the compartment's mJSW is exactly the target."""
    for _ in range(2):
        m, _x = central_min(geom, True, 0.05)
        lat, _x = central_min(geom, False, 0.05)
        cm = replace(geom.condyle_medial, bottom_z=geom.condyle_medial.bottom_z + medial_mm - m)
        cl = replace(
            geom.condyle_lateral, bottom_z=geom.condyle_lateral.bottom_z + lateral_mm - lat
        )
        base = max(cm.bottom_z + cm.height, cl.bottom_z + cl.height)
        geom = replace(geom, condyle_medial=cm, condyle_lateral=cl, notch_base_z=base)
    return geom


@dataclass(frozen=True)
class KneeFilmParams:
    """What varies between knees on a film (all lengths film mm after ``scale``).

    Attributes:
        scale: size factor (anatomical size x the film's magnification variation).
        tibia_half_medial / tibia_half_lateral: plateau extent from the notch column.
        notch_half_width: half the intercondylar notch width.
        condyle_gap_medial / condyle_gap_lateral: how far the condyle's outer side sits
            inside the tibial margin.
        condyle_height / condyle_exponent: superellipse height and exponent (medial, lateral).
        medial_concavity / lateral_convexity: plateau curvature.
        spine_height: tibial spines.
        plateau_depth: AP depths (medial, lateral).
        beam_error_deg: beam angle error against the plateau slope (rim doubling).
        flexion_deg: knee flexion (deepens the notch, raises the patella).
        jsw_medial_mm / jsw_lateral_mm: target mJSW.
        osteophyte_mm: (medial tibia, lateral tibia, medial femur, lateral femur) spur size.
    """

    scale: float = 1.0
    tibia_half_medial: float = 39.0
    tibia_half_lateral: float = 37.0
    notch_half_width: float = 10.0
    condyle_gap_medial: float = 2.5
    condyle_gap_lateral: float = 3.0
    condyle_height: tuple[float, float] = (14.0, 13.0)
    condyle_exponent: tuple[float, float] = (2.4, 2.2)
    medial_concavity: float = 1.5
    lateral_convexity: float = 0.8
    spine_height: float = 5.0
    plateau_depth: tuple[float, float] = (48.0, 42.0)
    beam_error_deg: float = 0.0
    flexion_deg: float = 15.0
    jsw_medial_mm: float = 5.0
    jsw_lateral_mm: float = 6.0
    osteophyte_mm: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


def build_geometry(p: KneeFilmParams) -> KneeFilmGeometry:
    """The knee's projected outlines from :class:`KneeFilmParams` (mJSW exactly the target)."""
    s = p.scale
    tm, tl = -p.tibia_half_medial * s, p.tibia_half_lateral * s
    hn = p.notch_half_width * s
    # condyles: from the notch edge to the outer side (a gap inside the tibial margin)
    cm_in, cm_out = -hn, tm + p.condyle_gap_medial * s
    cl_in, cl_out = hn, tl - p.condyle_gap_lateral * s
    hm, hl = p.condyle_height[0] * s, p.condyle_height[1] * s
    cond_m = Condyle(0.5 * (cm_in + cm_out), 0.5 * (cm_in - cm_out), 5.0, hm, p.condyle_exponent[0])
    cond_l = Condyle(0.5 * (cl_in + cl_out), 0.5 * (cl_out - cl_in), 5.0, hl, p.condyle_exponent[1])
    med = (0.5 * (tm - 2.0 * s), 0.5 * (-tm - 2.0 * s), p.plateau_depth[0] * s, p.medial_concavity)
    lat = (0.5 * (tl + 2.0 * s), 0.5 * (tl - 2.0 * s), p.plateau_depth[1] * s, p.lateral_convexity)
    flex = p.flexion_deg
    geom = KneeFilmGeometry(
        tibia_medial_x=tm,
        tibia_lateral_x=tl,
        medial=med,
        lateral=lat,
        spine_x=4.0 * s,
        spine_height=p.spine_height * s,
        spine_sigma=2.2 * s,
        corner_radius=2.5 * s,
        beam_tan=float(abs(np.tan(np.deg2rad(p.beam_error_deg)))),
        condyle_medial=cond_m,
        condyle_lateral=cond_l,
        notch_x=0.0,
        notch_half_width=hn,
        notch_base_z=5.0 + max(hm, hl),
        notch_height=(8.0 + 0.45 * flex) * s,
        femur_shaft_x=1.5 * s,
        femur_shaft_r=15.0 * s,
        tibia_shaft_x=1.0 * s,
        tibia_shaft_r=15.5 * s,
        fibula_head=Ellipse(tl - 3.0 * s, -20.0 * s, 9.0 * s, 8.0 * s),
        fibula_shaft_r=6.0 * s,
        patella=Ellipse(3.0 * s, (26.0 + 0.9 * flex) * s, 21.0 * s, 19.0 * s),
    )
    geom = set_jsw(geom, p.jsw_medial_mm, p.jsw_lateral_mm)
    out_m, out_l = geom.femur_outer
    epi = tuple(
        Ellipse(xo - sign * 1.0 * s, c.bottom_z + c.height, 2.8 * s, 9.0 * s)
        for xo, sign, c in (
            (out_m, -1.0, geom.condyle_medial),
            (out_l, 1.0, geom.condyle_lateral),
        )
    )
    return add_osteophytes(replace(geom, epicondyles=epi), p.osteophyte_mm)


def add_osteophytes(
    geom: KneeFilmGeometry, sizes: tuple[float, float, float, float]
) -> KneeFilmGeometry:
    """Marginal spurs of ``sizes`` mm (medial tibia, lateral tibia, medial femur, lateral
    femur), each mostly outside the bone margin it grows from (0: none)."""
    tib: list[Ellipse] = []
    fem: list[Ellipse] = []
    for k, size in enumerate(sizes):
        if size <= 0.0:
            continue
        if k < 2:  # tibial rim: a beak pointing outwards, just below the plateau's corner
            medial = k == 0
            xm = geom.tibia_medial_x if medial else geom.tibia_lateral_x
            sign = -1.0 if medial else 1.0
            top = float(geom.tibia_bone_top(np.array([xm - sign * 3.0]))[0])
            tib.append(
                Ellipse(
                    xm + sign * 0.5 * size, top - 0.6 - 0.2 * size, 1.2 * size, 0.45 * size + 0.5
                )
            )
        else:  # femoral condyle's outer-lower corner
            medial = k == 2
            xo = geom.femur_outer[0 if medial else 1]
            c = geom.condyle_medial if medial else geom.condyle_lateral
            sign = -1.0 if medial else 1.0
            fem.append(
                Ellipse(
                    xo + sign * 0.3 * size,
                    c.bottom_z + 0.55 * c.height + 0.3 * size,
                    0.8 * size,
                    1.0 * size + 0.5,
                )
            )
    return replace(geom, osteo_tibia=tuple(tib), osteo_femur=tuple(fem))
