"""Parameters of one synthetic knee scan and of the acquisition grid.

:class:`KneeParams` describes the anatomy (subject), its disease state (visit) and the scan
(orientation, noise) of one knee; :func:`sample_knee_params` draws a plausible healthy or
diseased knee. :class:`SizeSpec` is the acquisition grid (``full`` = OAI DESS, 160x384x384
at 0.7 x 0.3646 x 0.3646 mm; ``small`` = the same field of view at 48x128x128).

All lengths are millimetres in the *canonical knee frame* of a right knee: origin at the
centre of the tibial plateau, +x lateral, +y anterior, +z superior (RAS for a right knee).
"""

from __future__ import annotations

import copy
from typing import Literal, cast

import numpy as np
from pydantic import BaseModel, Field

from kneescope.config import FROZEN
from kneescope.errors import InputError
from kneescope.types import Side


class Lesion(BaseModel):
    """A focal cartilage lesion: thickness is multiplied by ``1 - depth * g`` (Gaussian g).

    ``depth >= 1`` produces a full-thickness defect (denuded bone) in its centre.
    ``centre_mm`` is (x, y) for tibial plates and patella (x, z), femur (x, angle-free y).
    """

    model_config = FROZEN

    plate: Literal["femoral", "medial_tibial", "lateral_tibial", "patellar"]
    centre_mm: tuple[float, float]
    radius_mm: float = Field(gt=0.5, le=15.0)
    depth: float = Field(ge=0.0, le=2.0)


class MarrowLesion(BaseModel):
    """A subchondral bone-marrow lesion: an oedema-like region in the marrow under a plate.

    ``centre_mm`` is the (x, y) position (canonical frame, mm, before ``scale``) on the
    femoral condyle's underside (``bone="femur"``) or on the tibial plateau (``"tibia"``);
    the lesion is a slightly irregular ellipsoid of radius ``radius_mm`` (0.7x that
    vertically) whose top reaches the subchondral bone. It is drawn only inside that bone's
    marrow (the label stays the bone).
    """

    model_config = FROZEN

    bone: Literal["femur", "tibia"]
    centre_mm: tuple[float, float]
    radius_mm: float = Field(ge=2.0, le=15.0)


class MeniscalTear(BaseModel):
    """A tear or maceration inside one meniscus (the label stays that meniscus).

    ``angle_deg`` is the position around the meniscal C seen from above: 180 = the body at the
    periphery, +90 the anterior horn, -90 the posterior horn (0 would be the opening towards
    the notch). ``kind``: ``horizontal`` (a cleavage cleft parallel to the plateau, from the
    free edge into the body), ``radial`` (a cleft across the meniscus from the free edge
    towards the rim) or ``maceration`` (a diffuse degenerate region). ``length_mm`` is the
    extent along the C (horizontal, maceration) and ``depth`` the fraction of the meniscal
    width reached from the free edge.
    """

    model_config = FROZEN

    medial: bool
    kind: Literal["horizontal", "radial", "maceration"]
    angle_deg: float = Field(ge=-180.0, le=180.0)
    length_mm: float = Field(default=12.0, ge=2.0, le=40.0)
    depth: float = Field(default=0.7, ge=0.2, le=1.0)


class TibialOsteophyte(BaseModel):
    """A marginal osteophyte (bony spur) on the outer rim of one tibial compartment.

    ``angle_deg`` is the position along the rim of the compartment's plateau outline (an
    ellipse), seen from above: 0 = the outermost point of the compartment (medial for the
    medial one, lateral for the lateral one), i.e. in the mid-coronal slab through its
    centre, +90 anterior, -90 posterior. ``radius_mm`` (before ``scale``): how far the spur
    reaches beyond the osteophyte-free rim; None = the knee's ``osteophyte_mm``.
    """

    model_config = FROZEN

    medial: bool
    angle_deg: float = Field(ge=-90.0, le=90.0)
    radius_mm: float | None = Field(default=None, ge=0.0, le=8.0)


class KneeParams(BaseModel):
    """Anatomy, disease state and scan settings of one synthetic knee.

    Attributes (lengths in mm, angles in degrees):
        side: which knee; left knees are rendered mirrored.
        scale: isotropic size factor applied to all bone dimensions (~0.9-1.1).
        condyle_width_medial/lateral: mediolateral width of each femoral condyle.
        notch_width: intercondylar notch width.
        distal_radius / posterior_radius: sagittal radii of the condylar arcs.
        coronal_radius: coronal curvature radius of the condyles.
        trochlear_depth: depth of the anterior trochlear groove.
        plateau_halfwidth_medial/lateral: mediolateral extent of each tibial compartment.
        plateau_depth_medial/lateral: anteroposterior depth of each compartment.
        medial_concavity / lateral_convexity: plateau curvature (height change, mm).
        spine_height: tibial spines height.
        patella_width / patella_height / patella_thickness: patella dimensions.
        cart_femoral / cart_medial_tibial / cart_lateral_tibial / cart_patellar: healthy mean
            cartilage thickness of each plate before disease.
        loss_medial / loss_lateral / loss_patellar: fraction of cartilage lost (0 = none),
            applied to the weight-bearing region of the compartment.
        lesions: focal lesions.
        marrow_lesions: subchondral bone-marrow lesions (:class:`MarrowLesion`).
        meniscal_tears: meniscal tears and maceration (:class:`MeniscalTear`).
        extrusion_medial / extrusion_lateral: meniscal extrusion beyond the tibial rim.
        meniscus_height: meniscal wedge height at the periphery.
        meniscus_width: meniscal body width (rim to inner edge).
        osteophyte_mm: radius of the marginal osteophytes (femoral condyle edges, tibial
            rim); 0 = none (~1.8 mm per OARSI-like grade).
        tibial_osteophytes: where on the tibial rims the spurs sit
            (:class:`TibialOsteophyte`); None = two per compartment at +-55 deg from the
            mid-coronal plane (the fixed corners of earlier versions, clear of the
            extrusion slab). :func:`sample_knee_params` draws random positions, the slab
            included.
        effusion: joint fluid amount (0 none .. 1 large).
        joint_gap: smallest fluid gap between opposing femorotibial cartilage surfaces; 0 (the
            default) = loaded contact: the surfaces touch over a contact patch.
        contact_depth: loaded contact (``joint_gap == 0``): how far the undeformed cartilage
            surfaces would interpenetrate; both plates are thinned there in proportion to
            their thickness (equal strain) so that they meet without gap or overlap.
        obliquity_deg: rotation of the slice stack about x, y, z (scan obliquity).
        offset_mm: position of the joint centre relative to the field-of-view centre.
        noise_sigma: Rician noise sigma relative to cartilage intensity (~0.03-0.06).
        bias_strength: amplitude of the smooth multiplicative bias field (0..0.3).
        intensity_seed: seed for noise and bias field.
        contrast: the MRI contrast rendered (``core.tissues.CONTRASTS``): ``dess``
            (water-excitation DESS, OAI), ``iw-tse-fs`` (intermediate-weighted fat-suppressed
            TSE) or ``t1-gre`` (T1-weighted gradient echo).
        motion_ghosts: strength of phase-encode motion ghosting (0 none .. 1 strong):
            random phase errors on k-space lines along the phase-encode axis.
        gibbs: fraction of the outer k-space removed along both in-plane axes (0 none; Gibbs
            ringing at edges as in a lower-resolution acquisition).
    """

    model_config = FROZEN

    side: Side = "right"
    scale: float = Field(default=1.0, ge=0.8, le=1.2)
    condyle_width_medial: float = Field(default=30.0, ge=20.0, le=40.0)
    condyle_width_lateral: float = Field(default=28.0, ge=20.0, le=40.0)
    notch_width: float = Field(default=20.0, ge=14.0, le=26.0)
    distal_radius: float = Field(default=36.0, ge=28.0, le=46.0)
    posterior_radius: float = Field(default=20.0, ge=15.0, le=26.0)
    coronal_radius: float = Field(default=28.0, ge=18.0, le=45.0)
    trochlear_depth: float = Field(default=5.0, ge=2.0, le=8.0)
    plateau_halfwidth_medial: float = Field(default=19.0, ge=15.0, le=24.0)
    plateau_halfwidth_lateral: float = Field(default=18.0, ge=15.0, le=24.0)
    plateau_depth_medial: float = Field(default=48.0, ge=40.0, le=56.0)
    plateau_depth_lateral: float = Field(default=42.0, ge=36.0, le=50.0)
    medial_concavity: float = Field(default=1.5, ge=0.0, le=3.0)
    lateral_convexity: float = Field(default=0.8, ge=-1.0, le=2.0)
    spine_height: float = Field(default=5.0, ge=2.0, le=8.0)
    patella_width: float = Field(default=42.0, ge=36.0, le=50.0)
    patella_height: float = Field(default=37.0, ge=30.0, le=44.0)
    patella_thickness: float = Field(default=22.0, ge=18.0, le=27.0)
    cart_femoral: float = Field(default=2.0, ge=1.0, le=3.5)
    cart_medial_tibial: float = Field(default=1.8, ge=1.0, le=3.5)
    cart_lateral_tibial: float = Field(default=2.4, ge=1.0, le=3.5)
    cart_patellar: float = Field(default=3.0, ge=1.5, le=4.5)
    loss_medial: float = Field(default=0.0, ge=0.0, le=0.95)
    loss_lateral: float = Field(default=0.0, ge=0.0, le=0.95)
    loss_patellar: float = Field(default=0.0, ge=0.0, le=0.95)
    lesions: tuple[Lesion, ...] = ()
    marrow_lesions: tuple[MarrowLesion, ...] = ()
    meniscal_tears: tuple[MeniscalTear, ...] = ()
    extrusion_medial: float = Field(default=1.0, ge=-2.0, le=8.0)
    extrusion_lateral: float = Field(default=0.5, ge=-2.0, le=8.0)
    meniscus_height: float = Field(default=6.0, ge=3.0, le=8.0)
    meniscus_width: float = Field(default=10.0, ge=6.0, le=13.0)
    osteophyte_mm: float = Field(default=0.0, ge=0.0, le=8.0)
    tibial_osteophytes: tuple[TibialOsteophyte, ...] | None = None
    effusion: float = Field(default=0.3, ge=0.0, le=1.0)
    joint_gap: float = Field(default=0.0, ge=0.0, le=2.0)
    contact_depth: float = Field(default=0.4, ge=0.0, le=1.5)
    obliquity_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    noise_sigma: float = Field(default=0.04, ge=0.0, le=0.2)
    bias_strength: float = Field(default=0.15, ge=0.0, le=0.4)
    intensity_seed: int = Field(default=0, ge=0)
    # scan settings owned by the renderer (synth/render.py, synth/knee.py)
    contrast: Literal["dess", "iw-tse-fs", "t1-gre"] = "dess"
    motion_ghosts: float = Field(default=0.0, ge=0.0, le=1.0)
    gibbs: float = Field(default=0.0, ge=0.0, lt=1.0)


class SizeSpec(BaseModel):
    """Acquisition grid: shape (slices, rows, columns) and spacing (mm) of a sagittal stack."""

    model_config = FROZEN

    name: str
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]

    @property
    def fov_mm(self) -> tuple[float, float, float]:
        return (
            self.shape[0] * self.spacing_mm[0],
            self.shape[1] * self.spacing_mm[1],
            self.shape[2] * self.spacing_mm[2],
        )


FULL = SizeSpec(name="full", shape=(160, 384, 384), spacing_mm=(0.7, 140.0 / 384, 140.0 / 384))
"""OAI SAG_3D_DESS geometry."""

SMALL = SizeSpec(
    name="small", shape=(48, 128, 128), spacing_mm=(112.0 / 48, 140.0 / 128, 140.0 / 128)
)
"""Same field of view as :data:`FULL`, ~27x fewer voxels (for tests)."""

FULL_THICK = SizeSpec(
    name="full-thick", shape=(80, 384, 384), spacing_mm=(1.4, 140.0 / 384, 140.0 / 384)
)
""":data:`FULL` field of view and in-plane grid with twice the slice thickness (1.4 mm)."""

DEMO = SizeSpec(name="demo", shape=(128, 352, 352), spacing_mm=(0.85, 140.0 / 384, 140.0 / 384))
"""``kneescope demo``'s grid: 0.85 mm slices and :data:`FULL`'s in-plane pixels over a
109 x 128 x 128 mm field of view (0.66x FULL's voxels): meniscal extrusion is measurable on it
(at most 1.0 mm medial-lateral and 0.75 mm in-plane, also on 8-degree oblique knees), the
shipped 2D model needs no resampling, and the cartilage, menisci and patella of sampled knees
(offset and oblique) stay inside it."""

FINE_ISO = SizeSpec(
    name="fine-iso", shape=(320, 384, 384), spacing_mm=(140.0 / 384, 140.0 / 384, 140.0 / 384)
)
"""Isotropic 0.3646 mm voxels (:data:`FULL`'s in-plane pixel in every direction) over a
117 x 140 x 140 mm field of view (2x FULL's voxels): a grid on which nothing thicker than
0.18 mm is lost, for validating thickness against the exact truth (docs/biomarkers.md)."""

SIZES = {"full": FULL, "small": SMALL, "full-thick": FULL_THICK, "demo": DEMO, "fine-iso": FINE_ISO}


def size_spec(name: str) -> SizeSpec:
    """The :class:`SizeSpec` called ``name`` (a key of :data:`SIZES`)."""
    try:
        return SIZES[name]
    except KeyError:
        raise InputError(f"unknown size {name!r}; expected one of {sorted(SIZES)}") from None


def sample_anatomy(rng: np.random.Generator, side: Side = "right") -> dict[str, object]:
    """Draw subject-specific (visit-independent) anatomy fields for :class:`KneeParams`."""

    def n(mean: float, sd: float, lo: float, hi: float) -> float:
        return float(np.clip(rng.normal(mean, sd), lo, hi))

    return {
        "side": side,
        "scale": n(1.0, 0.05, 0.88, 1.12),
        "condyle_width_medial": n(30.0, 2.0, 25.0, 35.0),
        "condyle_width_lateral": n(28.0, 2.0, 23.0, 33.0),
        "notch_width": n(20.0, 1.5, 16.0, 24.0),
        "distal_radius": n(36.0, 2.5, 30.0, 42.0),
        "posterior_radius": n(20.0, 1.5, 16.0, 24.0),
        "coronal_radius": n(28.0, 3.0, 20.0, 38.0),
        "trochlear_depth": n(5.0, 0.7, 3.0, 7.0),
        "plateau_halfwidth_medial": n(19.0, 1.0, 16.5, 21.5),
        "plateau_halfwidth_lateral": n(18.0, 1.0, 15.5, 20.5),
        "plateau_depth_medial": n(48.0, 2.0, 43.0, 53.0),
        "plateau_depth_lateral": n(42.0, 2.0, 38.0, 47.0),
        "medial_concavity": n(1.5, 0.4, 0.5, 2.5),
        "lateral_convexity": n(0.8, 0.4, -0.2, 1.8),
        "spine_height": n(5.0, 0.8, 3.0, 7.0),
        "patella_width": n(42.0, 2.0, 38.0, 47.0),
        "patella_height": n(37.0, 2.0, 32.0, 42.0),
        "patella_thickness": n(22.0, 1.2, 19.0, 25.0),
        "cart_femoral": n(2.0, 0.15, 1.6, 2.4),
        "cart_medial_tibial": n(1.8, 0.15, 1.4, 2.2),
        "cart_lateral_tibial": n(2.4, 0.2, 1.9, 2.9),
        "cart_patellar": n(3.0, 0.25, 2.4, 3.6),
        "meniscus_height": n(6.0, 0.5, 5.0, 7.0),
        "meniscus_width": n(10.0, 1.0, 8.0, 12.0),
    }


def sample_scan(rng: np.random.Generator) -> dict[str, object]:
    """Draw per-scan settings: obliquity, position in the field of view, noise, bias."""
    return {
        "obliquity_deg": tuple(float(v) for v in rng.normal(0.0, 3.0, size=3).clip(-8, 8)),
        "offset_mm": tuple(float(v) for v in rng.normal(0.0, 3.0, size=3).clip(-8, 8)),
        "noise_sigma": float(rng.uniform(0.03, 0.06)),
        "bias_strength": float(rng.uniform(0.05, 0.25)),
        "intensity_seed": int(rng.integers(0, 2**31 - 1)),
    }


def sample_knee_params(
    rng: np.random.Generator, *, side: Side = "right", klg: int = 0
) -> KneeParams:
    """A random knee: subject anatomy, a disease state typical of ``klg`` and scan settings.

    The positions of the tibial osteophytes (KL >= 2) come from a separate random stream
    seeded by ``rng``'s state on entry (:func:`osteophyte_rng`), so every other parameter is
    what it was before they were drawn.
    """
    spur_rng = osteophyte_rng(rng)
    fields: dict[str, object] = {**sample_anatomy(rng, side), **sample_scan(rng)}
    severity = [0.0, 0.05, 0.15, 0.35, 0.6][int(np.clip(klg, 0, 4))]
    fields["loss_medial"] = float(np.clip(severity * rng.uniform(0.7, 1.3), 0, 0.9))
    fields["loss_lateral"] = float(np.clip(0.3 * severity * rng.uniform(0.5, 1.5), 0, 0.9))
    fields["extrusion_medial"] = float(np.clip(rng.normal(1.0 + 6.0 * severity, 0.5), -1.0, 7.0))
    fields["extrusion_lateral"] = float(np.clip(rng.normal(0.5 + 2.0 * severity, 0.4), -1.0, 5.0))
    fields["effusion"] = float(np.clip(0.2 + severity + rng.normal(0, 0.1), 0.0, 1.0))
    fields["osteophyte_mm"] = (0.0, 0.0, 1.8, 3.6, 5.4)[int(np.clip(klg, 0, 4))]
    if klg >= 2:
        fields["tibial_osteophytes"] = sample_tibial_osteophytes(spur_rng)
    if klg >= 3:
        fields["lesions"] = (
            Lesion(
                plate="medial_tibial",
                centre_mm=(float(rng.uniform(-24, -16)), float(rng.uniform(-6, 6))),
                radius_mm=float(rng.uniform(3.0, 5.0)),
                depth=float(rng.uniform(0.8, 1.4)),
            ),
        )
    if klg >= 2:
        fields["marrow_lesions"] = sample_marrow_lesions(rng, fields, klg)
        fields["meniscal_tears"] = sample_meniscal_tears(rng, klg)
    return KneeParams.model_validate(fields)


OSTEOPHYTE_STREAM = 0x05E0
"""Second word of the seed of the osteophyte positions' random stream."""

SPURS_PER_COMPARTMENT = 2
SPUR_ANGLE_RANGE_DEG = 75.0
"""Tibial spurs are placed uniformly within +-75 deg of the compartment's outermost point
(the mid-coronal slab at 0 deg), two per compartment."""


def osteophyte_rng(rng: np.random.Generator) -> np.random.Generator:
    """A random stream for the osteophyte positions, seeded by ``rng``'s current state
    without advancing it: ``default_rng([next 63-bit draw of a copy of rng, 0x05E0])``."""
    probe = np.random.Generator(copy.deepcopy(rng.bit_generator))
    return np.random.default_rng([int(probe.integers(0, 2**63 - 1)), OSTEOPHYTE_STREAM])


def sample_tibial_osteophytes(rng: np.random.Generator) -> tuple[TibialOsteophyte, ...]:
    """Random rim positions of the tibial spurs (:data:`SPURS_PER_COMPARTMENT` per
    compartment, uniform within +-:data:`SPUR_ANGLE_RANGE_DEG`; sizes from ``osteophyte_mm``).
    """
    return tuple(
        TibialOsteophyte(
            medial=medial,
            angle_deg=float(rng.uniform(-SPUR_ANGLE_RANGE_DEG, SPUR_ANGLE_RANGE_DEG)),
        )
        for medial in (True, False)
        for _ in range(SPURS_PER_COMPARTMENT)
    )


BML_PROBABILITY = {2: 0.5, 3: 0.7, 4: 0.85}
"""Chance of subchondral bone-marrow lesions per KL grade (MOST/OAI cohorts: ~50 % of KL 2
knees, most KL 3-4 knees; Felson et al., Ann Intern Med 2003; Hunter et al., Arthritis
Rheum 2006)."""

TEAR_PROBABILITY = {2: 0.45, 3: 0.65, 4: 0.8}
"""Chance of a meniscal tear or maceration per KL grade (Englund et al., N Engl J Med 2008:
63-76 % of knees with radiographic OA in the Framingham study)."""


def sample_marrow_lesions(
    rng: np.random.Generator, fields: dict[str, object], klg: int
) -> tuple[MarrowLesion, ...]:
    """Subchondral marrow lesions of a KL ``klg`` knee (none below KL 2; mostly medial).

    ``fields``: the knee's anatomy (condyle and plateau sizes place the lesion under the
    load-bearing region).
    """
    if klg < 2 or rng.uniform() >= BML_PROBABILITY[min(klg, 4)]:
        return ()

    def size(name: str) -> float:
        return cast(float, fields[name])

    out = []
    medial = bool(rng.uniform() < 0.75)
    bones: list[Literal["femur", "tibia"]] = ["femur" if rng.uniform() < 0.5 else "tibia"]
    if klg >= 4 and rng.uniform() < 0.4:  # "kissing" lesions on both sides of the joint
        bones.append("tibia" if bones[0] == "femur" else "femur")
    for bone in bones:
        if bone == "femur":
            half_notch = 0.5 * size("notch_width")
            cw = size("condyle_width_medial" if medial else "condyle_width_lateral")
            x = half_notch + 0.5 * cw + float(rng.uniform(-3.0, 3.0))
            y = -2.0 + float(rng.uniform(-6.0, 6.0))
        else:
            x = size("plateau_halfwidth_medial" if medial else "plateau_halfwidth_lateral")
            x += float(rng.uniform(-4.0, 4.0))
            y = (0.0 if medial else -1.5) + float(rng.uniform(-8.0, 8.0))
        out.append(
            MarrowLesion(
                bone=bone,
                centre_mm=(-x if medial else x, y),
                radius_mm=float(rng.uniform(4.0, 4.0 + 2.0 * klg)),
            )
        )
    return tuple(out)


def sample_meniscal_tears(rng: np.random.Generator, klg: int) -> tuple[MeniscalTear, ...]:
    """A meniscal tear or maceration of a KL ``klg`` knee (none below KL 2).

    Mostly the medial posterior horn and body; horizontal (degenerative cleavage) tears
    most often, maceration more often at KL 3-4.
    """
    if klg < 2 or rng.uniform() >= TEAR_PROBABILITY[min(klg, 4)]:
        return ()
    medial = bool(rng.uniform() < 0.75)
    kinds: tuple[Literal["horizontal", "radial", "maceration"], ...] = (
        "horizontal",
        "radial",
        "maceration",
    )
    weights = [0.6, 0.25, 0.15] if klg == 2 else [0.4, 0.25, 0.35]
    kind = kinds[int(rng.choice(3, p=weights))]
    if rng.uniform() < 0.7:  # posterior horn / body junction
        angle = float(rng.uniform(-160.0, -100.0))
    else:  # body
        angle = float(rng.uniform(150.0, 180.0))
    return (
        MeniscalTear(
            medial=medial,
            kind=kind,
            angle_deg=angle,
            length_mm=float(rng.uniform(8.0, 18.0)),
            depth=float(rng.uniform(0.5, 0.9)),
        ),
    )
