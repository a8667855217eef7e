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

from dataclasses import dataclass
from typing import Literal

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


def _f(v: float) -> np.float32:
    return np.float32(v)


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
        zb_med, zb_lat = shape._seat_femur()
        shape = _replace(shape, zb_med=zb_med, zb_lat=zb_lat)
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
        r = self.p.osteophyte_mm * s
        if r > 0:
            # marginal osteophytes at the outer rim corners, +-55 deg from the coronal plane
            # through each compartment centre (so the extrusion rim stays the plateau edge)
            for ccx, ccy, cax, cay, out in (
                (self.cxm, self.cym, self.axm, self.aym, -1.0),
                (self.cxl, self.cyl, self.axl, self.ayl, 1.0),
            ):
                for ang in (-0.96, 0.96):
                    px = ccx + out * cax * float(np.cos(ang))
                    py = ccy + cay * float(np.sin(ang))
                    h = self.plateau_height(
                        np.array([px], dtype=np.float32), np.array([py], dtype=np.float32)
                    )
                    spur = ellipsoid(x, y, z, (px, py, float(h[0]) - 1.0), (r, r, 0.8 * r))
                    bone = smooth_union(bone, spur, 1.5 * s)
        return bone

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
        s = self.s
        zb = 0.5 * (self.zb_med + self.zb_lat)
        t = smoothstep(zb + 1.0 * self.az, zb + 3.0 * self.az, z)
        ax = _f(0.5 * (self.x_lat[1] - self.x_med[0]) - 3.0 * s) * (1.0 - t) + _f(14.0 * s) * t
        ay = _f(0.75 * self.ay) * (1.0 - t) + _f(13.0 * s) * t
        cy = _f(self.yd) * (1.0 - t) + _f(self.yd - 2.0 * s) * t
        cx = _f(0.5 * (self.x_lat[1] + self.x_med[0])) * (1.0 - t)
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

    def femoral_thickness(self, x: F32, y: F32, z: F32, *, lesions: bool = True) -> F32:
        p, s = self.p, self.s
        zb = np.where(x < 0, _f(self.zb_med), _f(self.zb_lat))
        zp = z - zb
        base = _f(p.cart_femoral) * (_f(0.88) + _f(0.3) * np.exp(-((zp / _f(12.0 * s)) ** 2)))
        hn = 0.5 * p.notch_width * s
        trochlear = smoothstep(self.yd + 10.0 * s, self.yd + 16.0 * s, y)
        # mediolateral extent: condyles away from the notch walls and outer edges
        in_x = smoothstep(hn + 1.0 * s, hn + 3.5 * s, np.abs(x)) * (1.0 - trochlear) + trochlear
        outer = np.where(x < 0, _f(-self.x_med[0]), _f(self.x_lat[1]))
        in_x = in_x * (1.0 - smoothstep(-5.0 * s, -2.5 * s, np.abs(x) - outer))
        top = self.az * (1.4 + 0.6 * trochlear)
        in_z = 1.0 - smoothstep(top - 4.0 * s, top, zp)
        wb = np.exp(-((zp / _f(10.0 * s)) ** 2) - ((y - _f(self.yd)) / _f(14.0 * s)) ** 2)
        loss = np.where(x < 0, _f(p.loss_medial), _f(p.loss_lateral)) * wb * (1.0 - trochlear)
        loss = loss + _f(p.loss_patellar) * trochlear * 0.6
        t = base * in_x * in_z * (1.0 - loss)
        if lesions:
            f = self._lesion_factor("femoral", x, y)
            if f is not None:
                t = t * np.where(zp < _f(20.0 * s), f, _f(1.0))
        return self._finish(t)

    def _tibial_thickness(
        self, x: F32, y: F32, plate: str, mean: float, loss: float, lesions: bool, z: F32 | None
    ) -> F32:
        s = self.s
        if plate == "medial_tibial":
            cx, cy, ax, ay = self.cxm, self.cym, self.axm, self.aym
        else:
            cx, cy, ax, ay = self.cxl, self.cyl, self.axl, self.ayl
        r2 = ((x - _f(cx)) / _f(ax)) ** 2 + ((y - _f(cy)) / _f(ay)) ** 2
        base = _f(mean) * (_f(0.75) + _f(0.5) * np.maximum(1.0 - r2, 0.0))
        edge = 1.0 - smoothstep(0.80, 0.93, np.sqrt(r2))
        spine = smoothstep(6.5 * s, 9.0 * s, np.abs(x))
        wb = np.exp(-r2 * 2.0)
        t = base * edge * spine * (1.0 - _f(loss) * wb)
        if z is not None:  # only on the plateau's top face, not on the metaphysis below
            t = t * smoothstep(-6.0 * s, -4.0 * s, z - self.plateau_height(x, y))
        if lesions:
            f = self._lesion_factor(plate, x, y)
            if f is not None:
                t = t * f
        return self._finish(t)

    def medial_tibial_thickness(self, x: F32, y: F32, z: F32, *, lesions: bool = True) -> F32:
        return self._tibial_thickness(
            x, y, "medial_tibial", self.p.cart_medial_tibial, self.p.loss_medial, lesions, z
        )

    def lateral_tibial_thickness(self, x: F32, y: F32, z: F32, *, lesions: bool = True) -> F32:
        return self._tibial_thickness(
            x, y, "lateral_tibial", self.p.cart_lateral_tibial, self.p.loss_lateral, lesions, z
        )

    def patellar_thickness(self, x: F32, y: F32, z: F32, *, lesions: bool = True) -> F32:
        p, s = self.p, self.s
        cx, cy, cz = self.pc
        ax, _, az = self.pr
        dx = x - _f(cx)
        base = _f(p.cart_patellar) * (_f(0.78) + _f(0.45) * np.exp(-((dx / _f(8.0 * s)) ** 2)))
        posterior = 1.0 - smoothstep(cy - 6.0 * s, cy - 3.0 * s, y)
        in_x = 1.0 - smoothstep(ax - 7.0 * s, ax - 4.0 * s, np.abs(dx))
        in_z = 1.0 - smoothstep(az - 9.0 * s, az - 5.0 * s, np.abs(z - _f(cz)))
        t = base * posterior * in_x * in_z * (1.0 - _f(p.loss_patellar))
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
    def meniscus_sdf(self, x: F32, y: F32, z: F32, medial: bool) -> F32:
        """Wedge-shaped C-ring on the compartment rim (before clipping by the femur)."""
        p, s = self.p, self.s
        if medial:
            cx, cy, ax, ay = self.cxm, self.cym, self.axm, self.aym
            shift, gap, inward = -p.extrusion_medial, 0.55, 1.0
        else:
            cx, cy, ax, ay = self.cxl, self.cyl, self.axl, self.ayl
            shift, gap, inward = p.extrusion_lateral, 0.3, -1.0
        w = p.meniscus_width * s
        mx = _f(cx + shift)
        outer = ellipse2d(x, y, float(mx), cy, ax, ay)
        depth_in = -outer  # mm inside the outer boundary
        t_tib = self._tibial_thickness(
            x,
            y,
            "medial_tibial" if medial else "lateral_tibial",
            p.cart_medial_tibial if medial else p.cart_lateral_tibial,
            p.loss_medial if medial else p.loss_lateral,
            True,
            None,
        )
        base = self.plateau_height(x, y) + t_tib
        height = _f(p.meniscus_height * s) * np.clip(1.0 - depth_in / _f(w), 0.0, 1.0)
        ring = np.maximum(outer, depth_in - _f(w))
        slab = np.maximum(base - z, z - base - height)
        d = np.maximum(ring, slab)
        # opening of the C towards the intercondylar region
        ang = np.arctan2(y - _f(cy), _f(inward) * (x - mx))
        open_ = (_f(gap) - np.abs(ang)) * _f(min(ax, ay) - 0.5 * w)
        return np.maximum(d, open_).astype(np.float32, copy=False)

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

    def patellar_tendon_sdf(self, x: F32, y: F32, z: F32) -> F32:
        s = self.s
        cx, cy, cz = self.pc
        return capsule(
            x,
            y,
            z,
            (cx, cy + 2.0 * s, cz - self.pr[2] + 4.0 * s),
            (0.0, 30.0 * s, -32.0 * s),
            3.5 * s,
        )

    # ---- tissues that carry no label (vessels, fat pad, marrow lesions, meniscal tears) ------
    def _absent(self, x: F32) -> F32:
        return np.full(np.shape(x), 100.0, dtype=np.float32)

    def vessel_sdf(self, x: F32, y: F32, z: F32) -> F32:
        """Popliteal artery and vein behind the joint (mm, negative inside; not labelled)."""
        return self._absent(x)

    def fat_pad_sdf(self, x: F32, y: F32, z: F32) -> F32:
        """Hoffa's infrapatellar fat pad (mm, negative inside; not labelled)."""
        return self._absent(x)

    def marrow_lesion_sdf(self, x: F32, y: F32, z: F32, bone: Literal["femur", "tibia"]) -> F32:
        """Bone-marrow lesions of ``bone`` (mm, negative inside).

        The renderer draws lesion tissue only where the point is also inside that bone's
        marrow, so the label stays the bone.
        """
        return self._absent(x)

    def meniscus_tear_sdf(self, x: F32, y: F32, z: F32, medial: bool) -> F32:
        """Tears / maceration of one meniscus (mm, negative inside).

        The renderer draws tear tissue only inside that meniscus, so the label stays meniscus.
        """
        return self._absent(x)

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

    def _seat_femur(self) -> tuple[float, float]:
        """Condyle heights ``zb`` so femoral and tibial cartilage leave ``joint_gap`` (mm).

        Iterates on the full femur shape (condyles, trochlea, blends): the smallest vertical
        gap between the femoral cartilage underside and the tibial cartilage top in each
        compartment becomes ``joint_gap``.
        """
        shape = _replace(self, zb_med=10.0, zb_lat=10.0)
        for _ in range(3):
            zbs = []
            for xr, plate, zb in (
                (shape.x_med, "medial_tibial", shape.zb_med),
                (shape.x_lat, "lateral_tibial", shape.zb_lat),
            ):
                gx, gy, bottom = shape.femur_underside(xr, step_mm=0.1)
                t_fem = shape.femoral_thickness(gx, gy, bottom, lesions=False)
                t_tib = shape.thickness(plate, gx, gy, gx * 0, lesions=False)
                top = shape.plateau_height(gx, gy) + t_tib
                gap = float(np.min(bottom - t_fem - top))
                zbs.append(zb + self.p.joint_gap - gap)
            shape = _replace(shape, zb_med=zbs[0], zb_lat=zbs[1])
        return shape.zb_med, shape.zb_lat

    def _seat_patella(self) -> tuple[float, float, float]:
        p, s = self.p, self.s
        zb = 0.5 * (self.zb_med + self.zb_lat)
        zc = zb + 1.4 * self.az
        rel = (zc - zb - self.az - 6.0 * s) / (self.az + 6.0 * s)
        y_groove = self.yd + (self.ay - p.trochlear_depth) * float(np.sqrt(1.0 - rel * rel))
        tpat = p.cart_patellar * 1.25
        y_post = y_groove + p.cart_femoral * 1.2 + tpat + 1.0 * s
        return (1.0 * s, y_post - 1.0 + self.pr[1], zc)


def _replace(shape: KneeShape, **changes: object) -> KneeShape:
    from dataclasses import replace

    return replace(shape, **changes)  # type: ignore[arg-type]
