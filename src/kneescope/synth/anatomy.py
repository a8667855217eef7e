"""The implicit knee: bone distance fields, cartilage thickness fields and menisci.

:class:`KneeShape` turns :class:`~kneescope.synth.params.KneeParams` into functions of
canonical-frame coordinates (mm, right knee: +x lateral, +y anterior, +z superior, origin at
the centre of the tibial plateau). Every method takes float32 coordinate arrays ``x, y, z`` of
one shape and returns a float32 array of that shape:

- ``*_sdf``: signed distance-like field in mm, negative inside (close to a true distance
  near the surface; the renderer re-normalises by the numerical gradient);
- ``*_thickness``: the imposed cartilage thickness (mm) at a point on or near the bone
  surface (the fields vary slowly, so evaluating them off the surface is accurate to second
  order); 0 where the plate has no cartilage.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from kneescope.synth.params import KneeParams
from kneescope.synth.sdf import (
    F32,
    capsule,
    circle2d,
    ellipse2d,
    ellipsoid,
    extrude_x,
    smooth_intersection,
    smooth_union,
    smoothstep,
)

PLATES = ("femoral", "medial_tibial", "lateral_tibial", "patellar")
THIN_MM = 0.15
"""Imposed thickness below which a plate point counts as bare (no cartilage)."""
HORN_WIDTH = 0.7
"""Meniscal width at the horn tips relative to the body (rim to inner edge)."""
HORN_HEIGHT = 0.6
"""Meniscal peripheral height at the horn tips relative to the body."""


def _f(v: float) -> np.float32:
    return np.float32(v)


class _MeniscusFrame(NamedTuple):
    """Per-point meniscal coordinates (float32 arrays of the points' shape, mm, rad)."""

    ang: F32  # angle around the C: 0 towards the notch, +-pi at the periphery
    outer: F32  # 2D distance to the outer outline (negative inside)
    depth_in: F32  # -outer: mm inside the outer outline
    w: F32  # local meniscal width (rim to free edge)
    base: F32  # height of the meniscus' underside (tibial cartilage top)
    height: F32  # local wedge height above ``base``
    gap: float  # half-angle of the C's opening (rad)
    radius: float  # mean radius of the C's centre line (mm): arc length per radian


@dataclass(frozen=True)
class KneeShape:
    """Derived geometry of one knee (all mm, canonical frame)."""

    p: KneeParams
    s: float
    # tibia compartments (ellipse centre and semi-axes in x/y)
    cxm: float
    cym: float
    axm: float
    aym: float
    cxl: float
    cyl: float
    axl: float
    ayl: float
    # femur
    x_med: tuple[float, float]
    x_lat: tuple[float, float]
    yd: float
    ay: float
    az: float
    zb_med: float
    zb_lat: float
    # patella
    pc: tuple[float, float, float]
    pr: tuple[float, float, float]
    # loaded contact: (x0, x1, y0, y1) boxes (one per compartment, medial first) holding
    # every column where the undeformed femoral and tibial cartilage would overlap
    contact_boxes: tuple[tuple[float, float, float, float], ...] = ()
    loaded: bool = True
    """False while seating: thickness fields without the contact compression."""

    @staticmethod
    def from_params(p: KneeParams) -> KneeShape:
        s = p.scale
        axm, axl = p.plateau_halfwidth_medial * s, p.plateau_halfwidth_lateral * s
        half_notch = 0.5 * p.notch_width * s
        x_med = (-half_notch - p.condyle_width_medial * s, -half_notch)
        x_lat = (half_notch, half_notch + p.condyle_width_lateral * s)
        rd, rp = p.distal_radius * s, p.posterior_radius * s
        shape = KneeShape(
            p=p,
            s=s,
            cxm=-axm,
            cym=0.0,
            axm=axm,
            aym=0.5 * p.plateau_depth_medial * s,
            cxl=axl,
            cyl=-1.5 * s,
            axl=axl,
            ayl=0.5 * p.plateau_depth_lateral * s,
            x_med=x_med,
            x_lat=x_lat,
            yd=-2.0 * s,
            ay=float((rd * rd * rp) ** (1.0 / 3.0)),
            az=float((rd * rd * rp) ** (2.0 / 3.0) / rd),
            zb_med=0.0,
            zb_lat=0.0,
            pc=(0.0, 0.0, 0.0),
            pr=(
                0.5 * p.patella_width * s,
                0.5 * p.patella_thickness * s,
                0.5 * p.patella_height * s,
            ),
        )
        zb_med, zb_lat, boxes = shape._seat_femur()
        shape = _replace(shape, zb_med=zb_med, zb_lat=zb_lat, contact_boxes=boxes)
        return _replace(shape, pc=shape._seat_patella())

    # ---- tibia ------------------------------------------------------------------------------
    def plateau_height(self, x: F32, y: F32) -> F32:
        """Height z (mm) of the subchondral tibial plateau surface at (x, y)."""
        p = self.p
        rm2 = ((x - _f(self.cxm)) / _f(self.axm)) ** 2 + ((y - _f(self.cym)) / _f(self.aym)) ** 2
        rl2 = ((x - _f(self.cxl)) / _f(self.axl)) ** 2 + ((y - _f(self.cyl)) / _f(self.ayl)) ** 2
        hm = -_f(p.medial_concavity) * np.maximum(1.0 - rm2, -0.3)
        hl = _f(p.lateral_convexity) * np.maximum(1.0 - rl2, -0.3)
        w = smoothstep(-3.0, 3.0, x)
        sp = _f(4.0 * self.s)
        spine = _f(p.spine_height) * np.exp(
            -(np.minimum((x + sp) ** 2, (x - sp) ** 2) / _f(2 * (2.2 * self.s) ** 2))
            - (y / _f(7.0 * self.s)) ** 2 * 0.5
        )
        return ((1.0 - w) * hm + w * hl + spine + _f(0.06) * y).astype(np.float32, copy=False)

    def plateau_outline(self, x: F32, y: F32) -> F32:
        """2D distance (mm) to the tibial plateau outline in the (x, y) plane."""
        m = ellipse2d(x, y, self.cxm, self.cym, self.axm, self.aym)
        lat = ellipse2d(x, y, self.cxl, self.cyl, self.axl, self.ayl)
        return smooth_union(m, lat, 4.0 * self.s)

    def tibia_sdf(self, x: F32, y: F32, z: F32) -> F32:
        s = self.s
        head = smooth_intersection(
            self.plateau_outline(x, y), (z - self.plateau_height(x, y)) / _f(1.02), 1.5 * s
        )
        head = smooth_intersection(head, _f(-28.0 * s) - z, 6.0 * s)
        t = smoothstep(-60.0 * s, -12.0 * s, z)
        radius = _f(15.0 * s) + _f(17.0 * s) * t
        cy = _f(-4.0 * s) * (1.0 - t)
        shaft = np.sqrt(x * x + (y - cy) ** 2) - radius
        shaft = np.maximum(shaft, z + _f(14.0 * s))  # blend stays clear of the rim
        bone = smooth_union(head, shaft, 10.0 * s)
        for px, py, pz, r in self.tibial_spurs():
            spur = ellipsoid(x, y, z, (px, py, pz), (r, r, 0.8 * r))
            bone = smooth_union(bone, spur, 1.5 * s)
        return bone

    def tibial_spurs(self) -> list[tuple[float, float, float, float]]:
        """Marginal tibial osteophytes: ``(x, y, z, r)`` (mm) per spur, an ellipsoid of radii
        (r, r, 0.8 r) centred on the plateau outline (``x, y``) 1 mm below its height there.

        Positions from ``KneeParams.tibial_osteophytes`` (angle along the compartment's
        outline ellipse, 0 = its outermost point), or, when None, two per compartment at
        +-55 deg (0.96 rad) from the mid-coronal plane. Spurs of radius 0 are left out.
        """
        p, s = self.p, self.s
        if p.tibial_osteophytes is None:
            spots = [
                (medial, ang, p.osteophyte_mm) for medial in (True, False) for ang in (-0.96, 0.96)
            ]
        else:
            spots = [
                (
                    o.medial,
                    float(np.deg2rad(o.angle_deg)),
                    p.osteophyte_mm if o.radius_mm is None else o.radius_mm,
                )
                for o in p.tibial_osteophytes
            ]
        out = []
        for medial, ang, radius in spots:
            if radius <= 0:
                continue
            if medial:
                ccx, ccy, cax, cay, sign = self.cxm, self.cym, self.axm, self.aym, -1.0
            else:
                ccx, ccy, cax, cay, sign = self.cxl, self.cyl, self.axl, self.ayl, 1.0
            px = ccx + sign * cax * float(np.cos(ang))
            py = ccy + cay * float(np.sin(ang))
            h = self.plateau_height(
                np.array([px], dtype=np.float32), np.array([py], dtype=np.float32)
            )
            out.append((px, py, float(h[0]) - 1.0, radius * s))
        return out

    def fibula_sdf(self, x: F32, y: F32, z: F32) -> F32:
        s = self.s
        head = ellipsoid(x, y, z, (30.0 * s, -18.0 * s, -18.0 * s), (8.0 * s, 8.0 * s, 7.0 * s))
        shaft = circle2d(x, y, 29.0 * s, -18.0 * s, 5.5 * s)
        shaft = np.maximum(shaft, z + _f(18.0 * s))
        return smooth_union(head, shaft, 4.0 * s)

    # ---- femur ------------------------------------------------------------------------------
    def _condyle_profile(self, y: F32, zp: F32) -> F32:
        # an ellipse has curvature radius ay^2/az at its bottom (distal) and az^2/ay at its
        # posterior end: the J-curve of the condyle in one primitive
        return ellipse2d(y, zp, self.yd, self.az, self.ay, self.az)

    def _condyle(self, x: F32, y: F32, z: F32, xr: tuple[float, float], zb: float) -> F32:
        cx = 0.5 * (xr[0] + xr[1])
        zp = z - _f(zb) - (x - _f(cx)) ** 2 / _f(2.0 * self.p.coronal_radius * self.s)
        prof = self._condyle_profile(y, zp)
        prof = smooth_intersection(prof, zp - _f(1.6 * self.az), 4.0 * self.s)
        return extrude_x(prof, x, xr[0], xr[1], 4.0 * self.s)

    def _trochlea(self, x: F32, y: F32, z: F32) -> F32:
        p, s = self.p, self.s
        zb = _f(self.zb_med) + _f(self.zb_lat - self.zb_med) * smoothstep(-10.0 * s, 10.0 * s, x)
        groove = _f(p.trochlear_depth) * np.exp(-(x**2) / _f(2 * (9.0 * s) ** 2))
        shrink = groove - _f(1.5) * smoothstep(-10.0 * s, 10.0 * s, x)
        zp = z - zb - _f(1.0 * s)
        prof = ellipse2d(y, zp, self.yd, self.az + 6.0 * s, self.ay, self.az + 6.0 * s) + shrink
        prof = smooth_intersection(prof, _f(self.yd + 15.0 * s) - y, 3.0 * s)
        prof = smooth_intersection(prof, zp - _f(2.2 * self.az), 4.0 * s)
        return extrude_x(prof, x, self.x_med[0] + 2.0 * s, self.x_lat[1] - 2.0 * s, 6.0 * s)

    def _shaft(self, x: F32, y: F32, z: F32) -> F32:
        """Metaphysis and shaft: elliptic sections lofted from the condyles' full width.

        Up to 1.5 ``az`` above the condyle bottoms the section covers both condyles; from
        there to 3.6 ``az`` it narrows to the shaft with ``f(u) = (1 - u)^3 (1 + 3u)``: a
        rounded epicondylar shoulder, then a concave flare that meets the shaft tangentially.
        """
        s = self.s
        zb = 0.5 * (self.zb_med + self.zb_lat)
        z0, z1 = zb + 1.5 * self.az, zb + 3.6 * self.az
        u = np.clip((z - _f(z0)) / _f(z1 - z0), 0.0, 1.0)
        f = (1.0 - u) ** 3 * (1.0 + 3.0 * u)
        half = 0.5 * (self.x_lat[1] - self.x_med[0])
        ax = _f(14.0 * s) + _f(half - 14.0 * s) * f
        ay = _f(13.0 * s) + _f(0.75 * self.ay - 13.0 * s) * f
        cy = _f(self.yd - 2.0 * s) + _f(2.0 * s) * f
        cx = _f(0.5 * (self.x_lat[1] + self.x_med[0])) * f
        sec = (np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2) - 1.0) * np.minimum(ax, ay)
        return np.maximum(sec, _f(zb + 1.0 * self.az) - z).astype(np.float32, copy=False)

    def femur_sdf(self, x: F32, y: F32, z: F32) -> F32:
        s = self.s
        med = self._condyle(x, y, z, self.x_med, self.zb_med)
        lat = self._condyle(x, y, z, self.x_lat, self.zb_lat)
        bone = smooth_union(med, lat, 2.0 * s)
        bone = smooth_union(bone, self._trochlea(x, y, z), 4.0 * s)
        bone = smooth_union(bone, self._shaft(x, y, z), 8.0 * s)
        r = self.p.osteophyte_mm * s
        if r > 0:  # marginal osteophytes on the outer edges of both condyles
            for xe, zb in (
                (self.x_med[0] + 0.3 * r, self.zb_med),
                (self.x_lat[1] - 0.3 * r, self.zb_lat),
            ):
                spur = ellipsoid(x, y, z, (xe, self.yd, zb + 8.0 * s), (0.9 * r, 1.6 * r, 1.2 * r))
                bone = smooth_union(bone, spur, 1.5 * s)
        return bone

    # ---- patella ----------------------------------------------------------------------------
    def patella_sdf(self, x: F32, y: F32, z: F32) -> F32:
        body = ellipsoid(x, y, z, self.pc, self.pr)
        k = 0.45
        ridge = (_f(self.pc[1] - self.pr[1] + 1.0) + _f(k) * np.abs(x - _f(self.pc[0])) - y) / _f(
            float(np.sqrt(1 + k * k))
        )
        return smooth_intersection(body, ridge, 2.0 * self.s)

    # ---- cartilage thickness fields -------------------------------------------------------
    def _lesion_factor(self, plate: str, u: F32, v: F32) -> F32 | None:
        out: F32 | None = None
        for lesion in self.p.lesions:
            if lesion.plate != plate:
                continue
            g = np.exp(
                -(
                    (u - _f(lesion.centre_mm[0] * self.s)) ** 2
                    + (v - _f(lesion.centre_mm[1] * self.s)) ** 2
                )
                / _f(2 * lesion.radius_mm**2)
            )
            f = np.maximum(1.0 - _f(lesion.depth) * g, 0.0)
            out = f if out is None else out * f
        return out

    def _finish(self, t: F32) -> F32:
        return np.where(t < _f(THIN_MM), _f(0.0), t).astype(np.float32, copy=False)

    def _femoral_nominal(self, x: F32, y: F32, z: F32) -> F32:
        """Undeformed femoral thickness (mm) without focal lesions or the bare cut-off.

        Outline (on the bone surface): condylar plates between the notch wall and the outer
        edge with rounded posterior-superior ends; the notch ends anteriorly in a rounded
        apex, so the trochlear cartilage spans the midline only in front of it and tapers to
        the notch; the trochlear plate's superior edge is curved and reaches higher
        laterally. All edges are >= 2.5 mm (x scale) smooth ramps.
        """
        p, s = self.p, self.s
        med = x < 0
        zb = np.where(med, _f(self.zb_med), _f(self.zb_lat))
        zp = z - zb
        base = _f(p.cart_femoral) * (_f(0.88) + _f(0.3) * np.exp(-((zp / _f(12.0 * s)) ** 2)))
        hn = 0.5 * p.notch_width * s
        trochlear = smoothstep(self.yd + 10.0 * s, self.yd + 16.0 * s, y)
        # notch edge: full half-width behind, closing in a rounded apex anteriorly
        v = np.clip((y - _f(self.yd + 8.0 * s)) / _f(11.0 * s), 0.0, 1.0)
        edge = _f(hn + 2.25 * s) * np.sqrt(1.0 - v) - _f(2.5 * s) * v
        ax_ = np.abs(x)
        in_x = smoothstep(edge - _f(1.25 * s), edge + _f(1.25 * s), ax_)
        outer = np.where(med, _f(-self.x_med[0]), _f(self.x_lat[1]))
        in_x = in_x * (1.0 - smoothstep(-5.0 * s, -2.5 * s, ax_ - outer))
        # superior ends: rounded over each condyle, a curved trochlear edge higher laterally
        c_mid = np.where(med, _f(0.5 * sum(self.x_med)), _f(0.5 * sum(self.x_lat)))
        c_half = np.where(
            med,
            _f(0.5 * (self.x_med[1] - self.x_med[0])),
            _f(0.5 * (self.x_lat[1] - self.x_lat[0])),
        )
        top_c = _f(1.4 * self.az) - _f(7.0 * s) * ((x - c_mid) / c_half) ** 2
        w_all = 0.5 * (self.x_lat[1] - self.x_med[0])
        xr = x / _f(w_all)
        top_t = _f(2.0 * self.az) - _f(9.0 * s) * xr**2 + _f(4.0 * s) * xr
        top = top_c * (1.0 - trochlear) + top_t * trochlear
        in_z = 1.0 - smoothstep(top - _f(4.0 * s), top, zp)
        wb = np.exp(-((zp / _f(10.0 * s)) ** 2) - ((y - _f(self.yd)) / _f(14.0 * s)) ** 2)
        loss = np.where(med, _f(p.loss_medial), _f(p.loss_lateral)) * wb * (1.0 - trochlear)
        loss = loss + _f(p.loss_patellar) * trochlear * 0.6
        return (base * in_x * in_z * (1.0 - loss)).astype(np.float32, copy=False)

    def femoral_thickness(self, x: F32, y: F32, z: F32, *, lesions: bool = True) -> F32:
        s = self.s
        t = self._femoral_nominal(x, y, z)
        zb = np.where(x < 0, _f(self.zb_med), _f(self.zb_lat))
        zp = z - zb
        if self.loaded and self.contact_boxes:
            distal = zp < _f(0.5 * self.az)  # the condyles' underside, facing the tibia
            t = t * np.where(distal, self._contact_strain(x, y), _f(1.0))
        if lesions:
            f = self._lesion_factor("femoral", x, y)
            if f is not None:
                t = t * np.where(zp < _f(20.0 * s), f, _f(1.0))
        return self._finish(t)

    def _femur_bottom(self, x: F32, y: F32, medial: bool) -> F32:
        """Height z (mm) of one condyle's underside over (x, y), analytically.

        The condyle's J-profile ellipse with its coronal curvature and the extrusion's
        rounded edges: equal to the zero level of :meth:`femur_sdf` within ~0.03 mm over the
        load-bearing part of the condyle (checked in tests); 1e3 outside the condyle.
        """
        s = self.s
        xr, zb = (self.x_med, self.zb_med) if medial else (self.x_lat, self.zb_lat)
        cx = 0.5 * (xr[0] + xr[1])
        r = 4.0 * s
        half = 0.5 * (xr[1] - xr[0]) - r
        wx = np.maximum(np.abs(x - _f(cx)) - _f(half), 0.0)
        u2 = ((y - _f(self.yd)) / _f(self.ay)) ** 2
        zp = _f(self.az) * (1.0 - np.sqrt(np.maximum(1.0 - u2, 0.0)))
        rounding = _f(r) - np.sqrt(np.maximum(_f(r * r) - wx * wx, 0.0))
        z = _f(zb) + (x - _f(cx)) ** 2 / _f(2.0 * self.p.coronal_radius * s) + zp + rounding
        return np.where((wx < _f(r)) & (u2 < 1.0), z, _f(1e3)).astype(np.float32, copy=False)

    def _contact_strain(self, x: F32, y: F32) -> F32:
        """Equal-strain compression factor (<= 1) of femoral and tibial cartilage at (x, y).

        Where the undeformed plates would overlap by ``o`` (vertical mm), both thicknesses
        are multiplied by ``1 - o / (t_femoral + t_tibial)``: their surfaces then meet. 1
        outside :attr:`contact_boxes`.
        """
        k = np.ones(np.shape(x), dtype=np.float32)
        for medial, (x0, x1, y0, y1) in zip((True, False), self.contact_boxes, strict=False):
            sel = (x >= _f(x0)) & (x <= _f(x1)) & (y >= _f(y0)) & (y <= _f(y1))
            if not sel.any():
                continue
            xs, ys = x[sel], y[sel]
            fb = self._femur_bottom(xs, ys, medial)
            t_f = self._femoral_nominal(xs, ys, fb)
            plate = "medial_tibial" if medial else "lateral_tibial"
            t_t = self._tibial_nominal(xs, ys, plate)
            overlap = self.plateau_height(xs, ys) + t_t - (fb - t_f)
            total = np.maximum(t_f + t_t, _f(1e-3))
            k[sel] = np.where(overlap > 0, 1.0 - overlap / total, _f(1.0))
        return k

    def _tibial_nominal(self, x: F32, y: F32, plate: str) -> F32:
        """Undeformed tibial thickness (mm) without focal lesions or the bare cut-off."""
        p, s = self.p, self.s
        if plate == "medial_tibial":
            cx, cy, ax, ay = self.cxm, self.cym, self.axm, self.aym
            mean, loss = p.cart_medial_tibial, p.loss_medial
        else:
            cx, cy, ax, ay = self.cxl, self.cyl, self.axl, self.ayl
            mean, loss = p.cart_lateral_tibial, p.loss_lateral
        r2 = ((x - _f(cx)) / _f(ax)) ** 2 + ((y - _f(cy)) / _f(ay)) ** 2
        base = _f(mean) * (_f(0.75) + _f(0.5) * np.maximum(1.0 - r2, 0.0))
        edge = 1.0 - smoothstep(0.80, 0.93, np.sqrt(r2))
        spine = smoothstep(6.5 * s, 9.0 * s, np.abs(x))
        wb = np.exp(-r2 * 2.0)
        return (base * edge * spine * (1.0 - _f(loss) * wb)).astype(np.float32, copy=False)

    def _tibial_thickness(self, x: F32, y: F32, plate: str, lesions: bool, z: F32 | None) -> F32:
        s = self.s
        t = self._tibial_nominal(x, y, plate)
        if z is not None:  # only on the plateau's top face, not on the metaphysis below
            t = t * smoothstep(-6.0 * s, -4.0 * s, z - self.plateau_height(x, y))
        if self.loaded and self.contact_boxes:
            t = t * self._contact_strain(x, y)
        if lesions:
            f = self._lesion_factor(plate, x, y)
            if f is not None:
                t = t * f
        return self._finish(t)

    def medial_tibial_thickness(self, x: F32, y: F32, z: F32, *, lesions: bool = True) -> F32:
        return self._tibial_thickness(x, y, "medial_tibial", lesions, z)

    def lateral_tibial_thickness(self, x: F32, y: F32, z: F32, *, lesions: bool = True) -> F32:
        return self._tibial_thickness(x, y, "lateral_tibial", lesions, z)

    def patellar_thickness(self, x: F32, y: F32, z: F32, *, lesions: bool = True) -> F32:
        p, s = self.p, self.s
        cx, cy, cz = self.pc
        ax, _, az = self.pr
        dx = x - _f(cx)
        base = _f(p.cart_patellar) * (_f(0.78) + _f(0.45) * np.exp(-((dx / _f(8.0 * s)) ** 2)))
        posterior = 1.0 - smoothstep(cy - 6.0 * s, cy - 3.0 * s, y)
        # an oval facet surface (wider than tall), centred a little above the patella's middle
        ru = dx / _f(ax - 6.0 * s)
        rv = (z - _f(cz + 1.5 * s)) / _f(az - 6.0 * s)
        r = np.sqrt(ru * ru + rv * rv)
        in_oval = 1.0 - smoothstep(0.7, 1.0, r)
        t = base * posterior * in_oval * (1.0 - _f(p.loss_patellar))
        if lesions:
            f = self._lesion_factor("patellar", dx, z - _f(cz))
            if f is not None:
                t = t * f
        return self._finish(t)

    def thickness(self, plate: str, x: F32, y: F32, z: F32, *, lesions: bool = True) -> F32:
        """Imposed thickness (mm) of ``plate`` (one of :data:`PLATES`)."""
        fn = {
            "femoral": self.femoral_thickness,
            "medial_tibial": self.medial_tibial_thickness,
            "lateral_tibial": self.lateral_tibial_thickness,
            "patellar": self.patellar_thickness,
        }[plate]
        return fn(x, y, z, lesions=lesions)

    # ---- menisci ----------------------------------------------------------------------------
    def _meniscus_frame(self, x: F32, y: F32, medial: bool) -> _MeniscusFrame:
        p, s = self.p, self.s
        if medial:
            cx, cy, ax, ay = self.cxm, self.cym, self.axm, self.aym
            shift, gap, inward = -p.extrusion_medial, 0.55, 1.0
        else:
            cx, cy, ax, ay = self.cxl, self.cyl, self.axl, self.ayl
            shift, gap, inward = p.extrusion_lateral, 0.3, -1.0
        mx = _f(cx + shift)
        # angle around the C: 0 towards the notch (the opening), +-pi at the body's periphery;
        # the horns (towards the opening) are narrower and lower than the body
        ang = np.arctan2(y - _f(cy), _f(inward) * (x - mx))
        body = smoothstep(gap + 0.25, 2.3, np.abs(ang))
        w = _f(p.meniscus_width * s) * (_f(HORN_WIDTH) + _f(1.0 - HORN_WIDTH) * body)
        h_max = _f(p.meniscus_height * s) * (_f(HORN_HEIGHT) + _f(1.0 - HORN_HEIGHT) * body)
        outer = ellipse2d(x, y, float(mx), cy, ax, ay)
        depth_in = -outer  # mm inside the outer boundary
        t_tib = self._tibial_thickness(
            x, y, "medial_tibial" if medial else "lateral_tibial", True, None
        )
        base = self.plateau_height(x, y) + t_tib
        height = h_max * np.clip(1.0 - depth_in / w, 0.0, 1.0)
        radius = min(ax, ay) - 0.5 * p.meniscus_width * s
        return _MeniscusFrame(ang, outer, depth_in, w, base, height, gap, radius)

    def meniscus_sdf(self, x: F32, y: F32, z: F32, medial: bool) -> F32:
        """Wedge-shaped C-ring on the compartment rim (before clipping by the femur).

        The wedge is :data:`HORN_HEIGHT` as high and :data:`HORN_WIDTH` as wide at the horn
        tips as in the body (smooth taper over the horns); the outer outline is unchanged.
        """
        return _meniscus_body(self._meniscus_frame(x, y, medial), z)

    # ---- soft tissue ------------------------------------------------------------------------
    def leg_sdf(self, x: F32, y: F32, z: F32) -> F32:
        s = self.s
        return ellipse2d(x, y, 0.0, 2.0 * s, 60.0 * s, 56.0 * s)

    def fluid_sdf(self, x: F32, y: F32, z: F32) -> F32:
        """Suprapatellar pouch; its size grows with the effusion parameter."""
        s, e = self.s, self.p.effusion
        cy = self.pc[1]
        zb = 0.5 * (self.zb_med + self.zb_lat)
        return ellipsoid(
            x,
            y,
            z,
            (0.0, cy - self.pr[1] - 4.0 * s, zb + 2.6 * self.az),
            (24.0 * s, (1.5 + 5.0 * e) * s, (10.0 + 8.0 * e) * s),
        )

    def cruciate_sdf(self, x: F32, y: F32, z: F32) -> F32:
        """ACL and PCL: dark bands crossing in the intercondylar notch (not labelled)."""
        s = self.s
        hn = 0.5 * self.p.notch_width * s
        zb = 0.5 * (self.zb_med + self.zb_lat)
        acl = capsule(
            x,
            y,
            z,
            (hn - 2.5 * s, self.yd - 12.0 * s, zb + 16.0 * s),
            (-1.0, 9.0 * s, 1.0),
            3.5 * s,
        )
        pcl = capsule(
            x,
            y,
            z,
            (-hn + 2.5 * s, self.yd + 4.0 * s, zb + 15.0 * s),
            (0.0, -20.0 * s, -5.0),
            4.0 * s,
        )
        return np.minimum(acl, pcl)

    def _tendon(self) -> tuple[tuple[float, float, float], tuple[float, float, float], float]:
        """Patellar tendon: (patellar end, tibial tuberosity end, radius), canonical mm."""
        s = self.s
        cx, cy, cz = self.pc
        return (cx, cy + 2.0 * s, cz - self.pr[2] + 4.0 * s), (0.0, 30.0 * s, -32.0 * s), 3.5 * s

    def patellar_tendon_sdf(self, x: F32, y: F32, z: F32) -> F32:
        a, b, r = self._tendon()
        return capsule(x, y, z, a, b, r)

    # ---- tissues that carry no label (vessels, fat pad, marrow lesions, meniscal tears) ------
    def _absent(self, x: F32) -> F32:
        return np.full(np.shape(x), 100.0, dtype=np.float32)

    def _vessel_path(self) -> tuple[tuple[float, float, float], ...]:
        """Popliteal artery centreline (canonical mm): below, at and above the joint line."""
        s = self.s
        zb = 0.5 * (self.zb_med + self.zb_lat)
        return (
            (0.5 * s, -38.0 * s, -75.0 * s),
            (-1.0 * s, self.yd - self.ay - 7.0 * s, zb + 0.5 * self.az),
            (0.0, self.yd - 0.75 * self.ay - 9.0 * s, zb + 3.8 * self.az),
        )

    def vessel_sdf(self, x: F32, y: F32, z: F32) -> F32:
        """Popliteal artery and vein in the fossa behind the joint (mm, negative inside).

        Artery (radius 3 mm x scale) along :meth:`_vessel_path`, the vein (radius 4 mm)
        behind and lateral to it, both through the whole field of view; not labelled.
        """
        s = self.s
        path = self._vessel_path()
        d = np.full(np.shape(x), np.float32(1e3), dtype=np.float32)
        for dx, dy, r in ((0.0, 0.0, 3.0 * s), (4.0 * s, -6.5 * s, 4.0 * s)):
            for a, b in itertools.pairwise(path):
                a2 = (a[0] + dx, a[1] + dy, a[2])
                b2 = (b[0] + dx, b[1] + dy, b[2])
                d = np.minimum(d, capsule(x, y, z, a2, b2, r))
        return d

    def fat_pad_sdf(self, x: F32, y: F32, z: F32) -> F32:
        """Hoffa's infrapatellar fat pad (mm, negative inside; not labelled).

        An ellipsoid below the patella, between the patellar tendon (cut off 0.5 mm behind
        it) and the femoral trochlea / anterior tibia; the renderer gives bones, cartilage,
        menisci and joint fluid priority where they overlap it.
        """
        s = self.s
        a, b, r_t = self._tendon()
        zb = 0.5 * (self.zb_med + self.zb_lat)
        pad = ellipsoid(
            x,
            y,
            z,
            (0.5 * s, a[1] - 11.0 * s, 0.5 * (zb + a[2]) - 1.0 * s),
            (17.0 * s, 8.0 * s, 12.0 * s),
        )
        # the half-space behind the tendon's centre line (in the sagittal plane)
        dy, dz = b[1] - a[1], b[2] - a[2]
        n = float(np.hypot(dy, dz))
        ny, nz = dy / n, dz / n
        behind = (y - _f(a[1])) * _f(nz) - (z - _f(a[2])) * _f(ny)  # > 0: posterior
        if nz > 0:  # the normal (nz, -ny) must point posterior (-y)
            behind = -behind
        return np.maximum(pad, _f(r_t + 0.5) - behind).astype(np.float32, copy=False)

    def marrow_lesion_sdf(self, x: F32, y: F32, z: F32, bone: Literal["femur", "tibia"]) -> F32:
        """Bone-marrow lesions of ``bone`` (mm, negative inside; +100 where there are none,
        and more than 2 mm outside every lesion's bounding box).

        Each :class:`~kneescope.synth.params.MarrowLesion` is an ellipsoid (radius r, 0.7 r
        vertically, a gentle +-12 % surface undulation) under the subchondral bone at its
        (x, y): its top reaches 0.3 r past the bone surface, so that it abuts the
        subchondral plate. The renderer draws lesion tissue only where the point is also
        inside that bone's marrow, so the label stays the bone.
        """
        lesions = [m for m in self.p.marrow_lesions if m.bone == bone]
        if not lesions:
            return self._absent(x)
        s = self.s
        d = np.full(np.shape(x), np.float32(100.0), dtype=np.float32)
        for m in lesions:
            cx, cy = m.centre_mm[0] * s, m.centre_mm[1] * s
            r = m.radius_mm * s
            px, py = np.array([cx], np.float32), np.array([cy], np.float32)
            if bone == "tibia":
                surface = float(self.plateau_height(px, py)[0])
                cz = surface - 0.4 * r
            else:
                surface = float(self._femur_bottom(px, py, medial=cx < 0)[0])
                if surface >= 1e3:  # off the condyle's underside: use its lowest point
                    surface = self.zb_med if cx < 0 else self.zb_lat
                cz = surface + 0.4 * r
            reach = 1.2 * r + 2.0  # evaluated within this box only (the renderer's band)
            near = (
                (np.abs(x - _f(cx)) < _f(reach))
                & (np.abs(y - _f(cy)) < _f(reach))
                & (np.abs(z - _f(cz)) < _f(0.85 * r + 2.0))
            )
            if not near.any():
                continue
            xs, ys, zs = x[near], y[near], z[near]
            e = ellipsoid(xs, ys, zs, (cx, cy, cz), (r, r, 0.7 * r))
            phase = 0.37 * cx + 0.91 * cy
            wobble = (
                np.sin((xs - _f(cx)) / _f(0.45 * r) + _f(phase))
                * np.sin((ys - _f(cy)) / _f(0.5 * r) - _f(phase))
                * np.cos((zs - _f(cz)) / _f(0.4 * r))
            )
            d[near] = np.minimum(d[near], e + _f(0.12 * r) * wobble)
        return d

    def meniscus_tear_sdf(self, x: F32, y: F32, z: F32, medial: bool) -> F32:
        """Tears / maceration of one meniscus (mm, negative inside; +100 where there are none).

        From each :class:`~kneescope.synth.params.MeniscalTear` of this meniscus: a
        horizontal cleft (0.7 mm thick at 45 % of the local wedge height), a radial cleft
        (0.8 mm wide, all heights) or a maceration region, each reaching ``depth`` of the
        local meniscal width from the free edge; all within the meniscus (before clipping by
        the femur). The renderer draws tear tissue only inside that meniscus, so the label
        stays meniscus.
        """
        tears = [t for t in self.p.meniscal_tears if t.medial == medial]
        if not tears:
            return self._absent(x)
        m = self._meniscus_frame(x, y, medial)
        d = np.full(np.shape(x), np.float32(100.0), dtype=np.float32)
        for t in tears:
            a0 = np.float32(np.deg2rad(t.angle_deg))
            along = (np.mod(m.ang - a0 + np.pi, 2 * np.pi) - np.pi) * _f(m.radius)  # mm
            reach = m.w * _f(1.0 - t.depth) - m.depth_in  # < 0 within reach of the free edge
            half_len = _f(0.5 * t.length_mm)
            if t.kind == "horizontal":
                cleft = np.abs(z - (m.base + _f(0.45) * m.height)) - _f(0.35)
                one = np.maximum(np.maximum(cleft, reach), np.abs(along) - half_len)
            elif t.kind == "radial":
                one = np.maximum(np.abs(along) - _f(0.4), reach)
            else:
                ru = along / half_len
                rv = (m.depth_in - m.w * _f(1.0 - 0.5 * t.depth)) / (m.w * _f(0.5 * t.depth))
                one = (np.sqrt(ru * ru + rv * rv) - 1.0) * np.minimum(
                    half_len, m.w * _f(0.5 * t.depth)
                )
            d = np.minimum(d, one)
        return np.maximum(d, _meniscus_body(m, z)).astype(np.float32, copy=False)

    # ---- seating ----------------------------------------------------------------------------
    def femur_underside(
        self, xr: tuple[float, float], step_mm: float = 0.05
    ) -> tuple[F32, F32, F32]:
        """Lowest femur bone height z (mm) on an (x, y) grid over one condyle.

        Returns ``(x, y, z_bottom)`` float32 arrays of shape (25, 41); 1e3 where the column
        misses the femur.
        """
        s = self.s
        zb = min(self.zb_med, self.zb_lat)
        xs = np.linspace(xr[0] + 2.5 * s, xr[1] - 2.5 * s, 25, dtype=np.float32)
        ys = np.linspace(self.yd - 22 * s, self.yd + 22 * s, 41, dtype=np.float32)
        zs = np.arange(zb - 8.0, zb + 16.0, step_mm, dtype=np.float32)
        gx, gy, gz = np.meshgrid(xs, ys, zs, indexing="ij")
        inside = self.femur_sdf(gx, gy, gz) <= 0
        bottom = np.where(inside.any(axis=2), zs[np.argmax(inside, axis=2)], np.float32(1e3))
        return gx[:, :, 0], gy[:, :, 0], bottom

    def _seat_femur(self) -> tuple[float, float, tuple[tuple[float, float, float, float], ...]]:
        """Condyle heights ``zb`` and the loaded-contact boxes.

        Iterates on the full femur shape (condyles, trochlea, blends) with the undeformed
        cartilage: the smallest vertical gap between the femoral cartilage underside and the
        tibial cartilage top in each compartment becomes ``joint_gap`` or, for loaded contact
        (``joint_gap == 0``), ``-contact_depth`` (an overlap that :meth:`_contact_strain`
        then removes by compressing both plates). Returns ``(zb_med, zb_lat, boxes)``.
        """
        p = self.p
        loaded = p.joint_gap == 0 and p.contact_depth > 0
        target = -p.contact_depth if loaded else p.joint_gap
        shape = _replace(self, zb_med=10.0, zb_lat=10.0, loaded=False, contact_boxes=())
        grids: list[tuple[F32, F32, F32]] = []
        for _ in range(3):
            zbs = []
            grids = []
            for xr, plate, zb in (
                (shape.x_med, "medial_tibial", shape.zb_med),
                (shape.x_lat, "lateral_tibial", shape.zb_lat),
            ):
                gx, gy, bottom = shape.femur_underside(xr, step_mm=0.1)
                t_fem = shape.femoral_thickness(gx, gy, bottom, lesions=False)
                t_tib = shape.thickness(plate, gx, gy, gx * 0, lesions=False)
                top = shape.plateau_height(gx, gy) + t_tib
                gaps = bottom - t_fem - top
                grids.append((gx, gy, gaps))
                zbs.append(zb + target - float(np.min(gaps)))
            shape = _replace(shape, zb_med=zbs[0], zb_lat=zbs[1])
        boxes: list[tuple[float, float, float, float]] = []
        if loaded:
            for gx, gy, gaps in grids:
                # the last iteration moved zb by (target - min gap); pad by 2.5 grid cells
                shift = target - float(np.min(gaps))
                near = gaps + shift < 0.25
                dx = float(gx[1, 0] - gx[0, 0]) * 2.5
                dy = float(gy[0, 1] - gy[0, 0]) * 2.5
                boxes.append(
                    (
                        float(gx[near].min()) - dx,
                        float(gx[near].max()) + dx,
                        float(gy[near].min()) - dy,
                        float(gy[near].max()) + dy,
                    )
                )
        return shape.zb_med, shape.zb_lat, tuple(boxes)

    def _seat_patella(self) -> tuple[float, float, float]:
        p, s = self.p, self.s
        zb = 0.5 * (self.zb_med + self.zb_lat)
        zc = zb + 1.4 * self.az
        rel = (zc - zb - self.az - 6.0 * s) / (self.az + 6.0 * s)
        y_groove = self.yd + (self.ay - p.trochlear_depth) * float(np.sqrt(1.0 - rel * rel))
        tpat = p.cart_patellar * 1.25
        y_post = y_groove + p.cart_femoral * 1.2 + tpat + 1.0 * s
        return (1.0 * s, y_post - 1.0 + self.pr[1], zc)


def _meniscus_body(m: _MeniscusFrame, z: F32) -> F32:
    """The meniscal wedge's distance field (mm, negative inside) from its frame."""
    ring = np.maximum(m.outer, m.depth_in - m.w)
    slab = np.maximum(m.base - z, z - m.base - m.height)
    d = np.maximum(ring, slab)
    # opening of the C towards the intercondylar region
    open_ = (_f(m.gap) - np.abs(m.ang)) * _f(m.radius)
    return np.maximum(d, open_).astype(np.float32, copy=False)


def _replace(shape: KneeShape, **changes: object) -> KneeShape:
    from dataclasses import replace

    return replace(shape, **changes)  # type: ignore[arg-type]
