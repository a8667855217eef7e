"""A synthetic OA cohort: subjects, knees, visits, disease progression and a treatment arm.

The plan is drawn up front from the seed (cheap, deterministic) and rendered later in
parallel. Disease model, per knee:

- a latent severity ``D`` (KLG = ``min(4, floor(D))``), baseline ``D0 = KLG0 + U(0.05, 0.95)``
  with baseline KLG drawn from :data:`BASELINE_KLG` (the two knees of a subject correlated
  through a Gaussian copula, rho = 0.5);
- ``D`` grows from ``D0`` at a rate ``r`` (severity units / year)
  ``RATE_BY_KLG[KLG0] * lognormal(0, 0.5) * (1 + 0.03 (BMI - 27))``, x3 for ~8 % fast
  progressors, x ``(1 - treatment_effect)`` in the treatment arm; after baseline
  (:mod:`kneescope.synth.disease`, a random stream of its own): a further between-knee rate
  factor, a share of non-progressors (r = 0), a rate that drifts over time (AR(1) on its log)
  and a per-visit biological fluctuation of cartilage thickness (all plates of the knee x
  ``1 + N(0, FLUCTUATION_SD)`` at follow-up visits);
- cartilage loss of the predominant compartment (medial in 80 % of knees) follows
  :func:`loss_of_severity`, the other compartment and the patella lose 30 % of that; focal
  lesions deepen with ``D`` and become full-thickness defects from D ~ 3.6; meniscal
  extrusion and effusion grow with ``D``; HKA drifts to varus (medial) or valgus (lateral);
- bone-marrow lesions and meniscal tears (:class:`KneeFindings`, drawn from a random stream
  of their own so every other draw is unchanged) appear once ``D`` passes a per-knee onset
  severity and grow with ``D`` at fixed positions;
- WOMAC knee pain (0-20) = subject propensity + 1.2 KLG + 4 effusion + 0.1 (BMI - 27) +
  noise (:mod:`kneescope.synth.pain`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator

from kneescope.config import FROZEN
from kneescope.synth.disease import (
    DISEASE_STREAM,
    FAST_SHARE,
    FLUCTUATION_SD,
    RATE_BY_KLG,
    RATE_LOGNORMAL_SD,
    ProgressionDraws,
    draw_stream_part,
    knee_rate,
    severity_path,
)
from kneescope.synth.disease import loss_of_severity as _loss_of_severity
from kneescope.synth.pain import draw_pain_noise, draw_pain_propensity, womac_pain
from kneescope.synth.params import (
    OSTEOPHYTE_STREAM,
    KneeParams,
    Lesion,
    MarrowLesion,
    MeniscalTear,
    sample_anatomy,
    sample_scan,
    sample_tibial_osteophytes,
)
from kneescope.synth.visits import VISIT_MONTHS
from kneescope.types import Side

BASELINE_KLG = (0.38, 0.18, 0.25, 0.14, 0.05)
"""Baseline KLG 0..4 probabilities (OAI-like)."""

SIDES: tuple[Side, Side] = ("right", "left")

PROGRESSION_CLASSES = ("non-progressor", "typical", "fast")
"""A knee's progression class (truth): rate 0; the usual rate distribution; a fast progressor
(rate x 3)."""

CARTILAGE_KEYS = ("cart_femoral", "cart_medial_tibial", "cart_lateral_tibial", "cart_patellar")
"""The anatomy's mean cartilage thickness parameters (mm), scaled by the visit's fluctuation."""

__all__ = ["RATE_BY_KLG", "CohortSpec", "SubjectPlan", "plan_cohort", "plan_subject"]


class CohortSpec(BaseModel):
    """What to generate.

    Attributes:
        subjects: number of participants.
        visits: OAI visit codes, time-ordered.
        size: MRI grid, ``"small"`` or ``"full"``.
        seed: master seed; everything derives from it.
        treatment_effect: fraction by which treatment slows progression (0 = no arm).
        treated_fraction: share of subjects randomised to treatment when the effect > 0 (or
            ``randomise``).
        radiographs: write bilateral PA knee radiographs per visit.
        full_leg: write full-leg standing radiographs (first visit and every 24 months).
        mri: write MRI series (and label maps).
        contrast: the MRI contrast of every series: ``dess`` (water-excitation DESS, as the
            OAI), ``iw-tse-fs`` (intermediate-weighted fat-suppressed TSE) or ``t1-gre``
            (T1-weighted gradient echo); see ``core.tissues.CONTRASTS``.
        tissues: also write each series' tissue map (``tissues/``, ``core.tissues`` values).
        findings: draw bone-marrow lesions and meniscal tears (:func:`sample_knee_findings`);
            ``False``: knees without them (as every cohort before they existed; the demo's
            cohort, which the shipped segmentation model was trained and tested on).
        randomise: randomise subjects to two arms even when ``treatment_effect`` is 0 (a null
            trial; ``TRTARM`` in the clinical table). ``False``: arms only when the effect is
            > 0, every draw as without this option.
    """

    model_config = FROZEN

    subjects: int = Field(default=4, ge=1, le=100_000)
    visits: tuple[str, ...] = ("V00", "V01")
    size: str = "small"
    seed: int = Field(default=0, ge=0)
    treatment_effect: float = Field(default=0.0, ge=0.0, le=1.0)
    treated_fraction: float = Field(default=0.5, gt=0.0, lt=1.0)
    radiographs: bool = True
    full_leg: bool = True
    mri: bool = True
    contrast: Literal["dess", "iw-tse-fs", "t1-gre"] = "dess"
    tissues: bool = False
    findings: bool = True
    randomise: bool = False

    @field_validator("visits")
    @classmethod
    def _known_visits(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Visits the generator writes, each once, in time order (else planning a subject
        failed later with a bare ``KeyError: 'V02'``)."""
        if not value:
            raise ValueError("no visits given; expected e.g. ('V00', 'V01')")
        unknown = [v for v in value if v not in VISIT_MONTHS]
        if unknown:
            raise ValueError(
                f"unknown visit code(s) {unknown}: the generator writes the OAI MRI visits "
                f"{', '.join(VISIT_MONTHS)}"
            )
        ordered = tuple(sorted(set(value), key=VISIT_MONTHS.__getitem__))
        if value != ordered:
            raise ValueError(
                f"visits {list(value)} must be distinct and in time order: {list(ordered)}"
            )
        return value


@dataclass(frozen=True)
class KneeVisit:
    """State of one knee at one visit.

    Attributes:
        visit: OAI code; months: since baseline; severity: latent D.
        klg: Kellgren-Lawrence grade 0..4; jsn_medial/jsn_lateral: OARSI JSN grade 0..3.
        osteophyte_grade: 0..3; hka_deg: hip-knee-ankle angle (180 neutral, < 180 varus).
        pain: WOMAC knee pain 0..20; params: what the MRI renderer draws.
    """

    visit: str
    months: int
    severity: float
    klg: int
    jsn_medial: int
    jsn_lateral: int
    osteophyte_grade: int
    hka_deg: float
    pain: int
    params: KneeParams


@dataclass(frozen=True)
class SubjectPlan:
    """One participant: demographics, arm, visit dates and both knees' trajectories."""

    index: int
    participant_id: str
    age: int
    sex: int  # 1 male, 2 female (OAI P02SEX)
    bmi: float
    arm: str  # "control" | "treatment"
    baseline_date: date
    visit_dates: dict[str, date]
    knees: dict[str, tuple[KneeVisit, ...]]  # side -> visits
    baseline_klg: dict[str, int]
    rate: dict[str, float]
    medial_predominant: dict[str, bool]
    lesion_radius_mm: dict[str, float] = field(default_factory=dict)  # side -> focal lesion
    progression: dict[str, str] = field(default_factory=dict)  # side -> PROGRESSION_CLASSES


FINDINGS_STREAM = 0xF16D
"""Fourth word of the seed of a knee's findings stream (bone-marrow lesions, meniscal tears):
``SeedSequence([seed, index, side, FINDINGS_STREAM])``, apart from every other draw."""

BML_ONSET = (1.8, 1.0)
"""A knee's BML onset severity is ``1.8 + Exponential(1.0)``: P(BML) ~ 0.5 at D = 2.5,
0.8 at D = 3.5, 0.9 at D = 4.5 (about ``params.BML_PROBABILITY`` per KL grade)."""

TEAR_ONSET = (1.6, 1.2)
"""A knee's meniscal-tear onset severity is ``1.6 + Exponential(1.2)``: P(tear) ~ 0.45 at
D = 2.3, 0.7 at D = 3.0, 0.85 at D = 4.0 (about ``params.TEAR_PROBABILITY``)."""


@dataclass(frozen=True)
class KneeFindings:
    """One knee's bone-marrow lesions and meniscal tears, fixed for all its visits.

    Positions, kinds and onset severities are drawn once per knee
    (:func:`sample_knee_findings`); what a visit shows depends on its latent severity ``d``:
    nothing before the onset, then a lesion whose size grows with ``d - onset``.
    """

    bml_onset: float
    bml_bone: tuple[Literal["femur", "tibia"], ...]  # first, then a "kissing" one
    bml_centre_mm: tuple[tuple[float, float], ...]
    bml_radius0_mm: float
    bml_second_after: float  # severity past the onset at which the kissing lesion appears
    tear_onset: float
    tear_medial: bool
    tear_kind: Literal["horizontal", "radial", "maceration"]
    tear_angle_deg: float
    tear_length0_mm: float
    tear_depth0: float

    def marrow_lesions(self, d: float) -> tuple[MarrowLesion, ...]:
        """The BMLs at latent severity ``d``: radius ``r0 + 2.5 (d - onset)`` mm (<= 15)."""
        past = d - self.bml_onset
        if past < 0:
            return ()
        radius = float(min(self.bml_radius0_mm + 2.5 * past, 15.0))
        count = 2 if past >= self.bml_second_after else 1
        return tuple(
            MarrowLesion(bone=bone, centre_mm=centre, radius_mm=radius if i == 0 else 0.8 * radius)
            for i, (bone, centre) in enumerate(
                zip(self.bml_bone[:count], self.bml_centre_mm[:count], strict=True)
            )
            if (radius if i == 0 else 0.8 * radius) >= 2.0
        )

    def meniscal_tears(self, d: float) -> tuple[MeniscalTear, ...]:
        """The tear at latent severity ``d``: length ``l0 + 5 (d - onset)`` mm (<= 30), depth
        ``depth0 + 0.15 (d - onset)`` of the meniscal width (<= 1)."""
        past = d - self.tear_onset
        if past < 0:
            return ()
        return (
            MeniscalTear(
                medial=self.tear_medial,
                kind=self.tear_kind,
                angle_deg=self.tear_angle_deg,
                length_mm=float(min(self.tear_length0_mm + 5.0 * past, 30.0)),
                depth=float(min(self.tear_depth0 + 0.15 * past, 1.0)),
            ),
        )


def sample_knee_findings(
    rng: np.random.Generator, anatomy: dict[str, object], medial_predominant: bool
) -> KneeFindings:
    """Draw one knee's findings (a fixed number of draws from ``rng``, its own stream).

    BMLs and tears sit in the predominant compartment in 80 % of knees; a BML lies under the
    load-bearing part of the condyle or plateau (as :func:`params.sample_marrow_lesions`),
    a tear mostly at the posterior horn / body junction.
    """

    def size(name: str) -> float:
        return float(anatomy[name])  # type: ignore[arg-type]

    bml_onset = BML_ONSET[0] + float(rng.exponential(BML_ONSET[1]))
    bml_medial = bool(rng.random() < 0.8) == medial_predominant
    first: Literal["femur", "tibia"] = "femur" if rng.random() < 0.5 else "tibia"
    second: Literal["femur", "tibia"] = "tibia" if first == "femur" else "femur"
    centres = []
    for bone in (first, second):
        jx, jy = float(rng.uniform(-3.0, 3.0)), float(rng.uniform(-6.0, 6.0))
        if bone == "femur":
            cw = size("condyle_width_medial" if bml_medial else "condyle_width_lateral")
            x = 0.5 * size("notch_width") + 0.5 * cw + jx
            y = -2.0 + jy
        else:
            x = size("plateau_halfwidth_medial" if bml_medial else "plateau_halfwidth_lateral")
            x += 1.3 * jx
            y = (0.0 if bml_medial else -1.5) + 1.3 * jy
        centres.append((-x if bml_medial else x, y))
    radius0 = float(rng.uniform(3.0, 5.0))
    second_after = float(rng.uniform(1.0, 3.0)) if rng.random() < 0.4 else float("inf")
    tear_onset = TEAR_ONSET[0] + float(rng.exponential(TEAR_ONSET[1]))
    tear_medial = bool(rng.random() < 0.8) == medial_predominant
    kinds: tuple[Literal["horizontal", "radial", "maceration"], ...] = (
        "horizontal",
        "radial",
        "maceration",
    )
    kind = kinds[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
    if rng.random() < 0.7:  # posterior horn / body junction
        angle = float(rng.uniform(-160.0, -100.0))
    else:  # body
        angle = float(rng.uniform(150.0, 180.0))
    return KneeFindings(
        bml_onset=bml_onset,
        bml_bone=(first, second),
        bml_centre_mm=(centres[0], centres[1]),
        bml_radius0_mm=radius0,
        bml_second_after=second_after,
        tear_onset=tear_onset,
        tear_medial=tear_medial,
        tear_kind=kind,
        tear_angle_deg=angle,
        tear_length0_mm=float(rng.uniform(6.0, 10.0)),
        tear_depth0=float(rng.uniform(0.45, 0.7)),
    )


def _clip(x: float, lo: float, hi: float) -> float:
    """``x`` limited to ``[lo, hi]`` as a Python float (what ``float(np.clip(x, lo, hi))`` gives
    for a finite scalar, without numpy's per-call overhead)."""
    return float(min(max(x, lo), hi))


def loss_of_severity(d: float) -> float:
    """Fraction of weight-bearing cartilage lost at latent severity ``d`` (piecewise linear;
    :func:`kneescope.synth.disease.loss_of_severity`)."""
    return float(_loss_of_severity(d))


def visit_fluctuation(seed: int, index: int, side_index: int, months: int) -> float:
    """The knee's relative cartilage-thickness fluctuation at the visit ``months`` after
    baseline: ``N(0, FLUCTUATION_SD)`` from ``SeedSequence([seed, index, side_index,
    DISEASE_STREAM, months])``; 0 at baseline."""
    if months == 0:
        return 0.0
    rng = np.random.default_rng(
        np.random.SeedSequence([seed, index, side_index, DISEASE_STREAM, months])
    )
    return float(rng.normal(0.0, FLUCTUATION_SD))


def jsn_grade(loss: float) -> int:
    """OARSI-like joint-space-narrowing grade from the cartilage loss fraction."""
    return int(np.searchsorted([0.1, 0.3, 0.6], loss, side="right"))


def klg_text(klg: int) -> str:
    """OAI-style coded value, e.g. ``"2: 2"`` style with a description."""
    words = (
        "no JSN or osteophytes",
        "doubtful JSN, possible osteophytes",
        "definite osteophytes, possible JSN",
        "multiple osteophytes, definite JSN",
        "large osteophytes, marked JSN, sclerosis",
    )
    return f"{klg}: {words[klg]}"


def participant_id(seed: int, index: int) -> str:
    """Deterministic 7-digit ID starting with 9 (OAI style), unique per index."""
    digest = hashlib.sha256(f"kneescope-synth|{seed}".encode()).digest()
    offset = int.from_bytes(digest[:4], "little") % 400_000
    return f"{9_000_000 + (offset + index * 7919) % 1_000_000:07d}"


def _baseline_klg(u: float) -> int:
    return int(np.searchsorted(np.cumsum(BASELINE_KLG)[:-1], u, side="right"))


def _norm_cdf(z: float) -> float:
    from math import erf, sqrt

    return 0.5 * (1.0 + erf(z / sqrt(2.0)))


def visit_date(seed: int, index: int, start: date, visit: str) -> date:
    """Baseline date + the visit's months, +-20 days of jitter (none at baseline)."""
    months = VISIT_MONTHS[visit]
    if months == 0:
        return start
    jitter = np.random.default_rng(np.random.SeedSequence([seed, index, months, 7]))
    return start + timedelta(days=round(months * 30.44) + int(jitter.integers(-20, 21)))


def plan_subject(spec: CohortSpec, index: int) -> SubjectPlan:
    """Draw one subject's whole trajectory from ``(spec.seed, index)`` alone."""
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, index, 0x5EED]))
    age = int(rng.integers(45, 80))
    sex = 2 if rng.random() < 0.58 else 1
    bmi = _clip(float(rng.normal(28.5, 4.5)), 18.5, 45.0)
    arm = "control"
    if (spec.treatment_effect > 0 or spec.randomise) and rng.random() < spec.treated_fraction:
        arm = "treatment"
    start = date(2004, 2, 1) + timedelta(days=int(rng.integers(0, 840)))
    visit_dates = {v: visit_date(spec.seed, index, start, v) for v in spec.visits}
    anatomy = sample_anatomy(rng)
    pain_propensity = draw_pain_propensity(rng)
    z_subject = float(rng.normal())
    knees: dict[str, tuple[KneeVisit, ...]] = {}
    baseline_klg: dict[str, int] = {}
    rates: dict[str, float] = {}
    medial_pred: dict[str, bool] = {}
    lesion_radii: dict[str, float] = {}
    progression: dict[str, str] = {}
    for side in SIDES:
        z = 0.5**0.5 * z_subject + 0.5**0.5 * float(rng.normal())
        klg0 = _baseline_klg(_norm_cdf(z))
        d0 = klg0 + float(rng.uniform(0.05, 0.95))
        # post-baseline disease draws (synth.disease): the original two from this stream,
        # the rest (extra rate variation, non-progressor, rate drift) from a stream of their own
        rate_lognormal = float(rng.lognormal(0.0, RATE_LOGNORMAL_SD))
        fast = bool(rng.random() < FAST_SHARE)
        side_index = SIDES.index(side)
        extra, non_progressor, rate_drift = draw_stream_part(
            1,
            np.random.default_rng(
                np.random.SeedSequence([spec.seed, index, side_index, DISEASE_STREAM])
            ),
        )
        draws = ProgressionDraws(
            np.array([rate_lognormal]), np.array([fast]), extra, non_progressor, rate_drift
        )
        rate = float(
            knee_rate([klg0], [bmi], draws, [arm == "treatment"], spec.treatment_effect)[0]
        )
        months_all = [VISIT_MONTHS[v] for v in spec.visits]
        severities = severity_path([d0], [rate], draws, months_all)[0]
        medial = bool(rng.random() < 0.8)
        hka0 = float(rng.normal(179.3, 1.5))
        e0 = float(rng.normal(0.8, 0.5))
        lesion_xy = (float(rng.uniform(-24, -16)), float(rng.uniform(-6, 6)))
        lesion_r = float(rng.uniform(3.5, 5.0))
        fem_xy = (float(rng.uniform(-30, -20)), float(rng.uniform(-8, 4)))
        knee_anatomy = dict(anatomy)
        for key in CARTILAGE_KEYS:
            knee_anatomy[key] = float(anatomy[key]) * float(rng.uniform(0.97, 1.03))  # type: ignore[arg-type]
        knee_anatomy["side"] = side
        # tibial spur positions: once per knee (they stay put across visits), from a stream
        # of their own so that every other draw of the cohort is unchanged
        spurs = sample_tibial_osteophytes(
            np.random.default_rng(
                np.random.SeedSequence([spec.seed, index, SIDES.index(side), OSTEOPHYTE_STREAM])
            )
        )
        findings = sample_knee_findings(
            np.random.default_rng(
                np.random.SeedSequence([spec.seed, index, SIDES.index(side), FINDINGS_STREAM])
            ),
            knee_anatomy,
            medial,
        )
        states = []
        for visit in spec.visits:
            vrng = np.random.default_rng(
                np.random.SeedSequence([spec.seed, index, SIDES.index(side), VISIT_MONTHS[visit]])
            )
            d = float(severities[months_all.index(VISIT_MONTHS[visit])])
            fluct = visit_fluctuation(spec.seed, index, side_index, VISIT_MONTHS[visit])
            klg = min(4, int(np.floor(d)))
            loss = loss_of_severity(d)
            loss_m, loss_l = (loss, 0.3 * loss) if medial else (0.3 * loss, loss)
            depth = _clip((d - 2.3) * 0.8, 0.0, 1.6)
            lesions: tuple[Lesion, ...] = ()
            if depth > 0.05:
                x_sign = 1.0 if medial else -1.0
                lesions = (
                    Lesion(
                        plate="medial_tibial" if medial else "lateral_tibial",
                        centre_mm=(x_sign * lesion_xy[0], lesion_xy[1]),
                        radius_mm=lesion_r,
                        depth=depth,
                    ),
                    Lesion(
                        plate="femoral",
                        centre_mm=(x_sign * fem_xy[0], fem_xy[1]),
                        radius_mm=lesion_r * 0.9,
                        depth=depth * 0.8,
                    ),
                )
            growth = 1.2 * max(d - 1.5, 0.0)
            effusion = _clip(0.15 + 0.15 * d + float(vrng.normal(0, 0.08)), 0.0, 1.0)
            fields = {
                **knee_anatomy,
                **{key: float(knee_anatomy[key]) * (1.0 + fluct) for key in CARTILAGE_KEYS},  # type: ignore[arg-type]
                **sample_scan(vrng),
                "contrast": spec.contrast,
                "loss_medial": loss_m,
                "loss_lateral": loss_l,
                "loss_patellar": 0.3 * loss,
                "lesions": lesions,
                "extrusion_medial": float(
                    _clip(e0 + (growth if medial else 0.2 * growth), -1.5, 7.5)
                ),
                "extrusion_lateral": float(
                    _clip(0.5 * e0 + (0.2 * growth if medial else growth), -1.5, 7.5)
                ),
                "effusion": effusion,
                "osteophyte_mm": 1.8 * _clip(math.floor(d - 1.0), 0.0, 3.0),
                "tibial_osteophytes": spurs,
                "marrow_lesions": findings.marrow_lesions(d) if spec.findings else (),
                "meniscal_tears": findings.meniscal_tears(d) if spec.findings else (),
            }
            params = KneeParams.model_validate(fields)
            drift = max(d - 1.0, 0.0)
            hka = hka0 - 0.9 * drift if medial else hka0 + 0.6 * drift
            pain = womac_pain(pain_propensity, klg, effusion, bmi, draw_pain_noise(vrng))
            states.append(
                KneeVisit(
                    visit=visit,
                    months=VISIT_MONTHS[visit],
                    severity=d,
                    klg=klg,
                    jsn_medial=jsn_grade(loss_m),
                    jsn_lateral=jsn_grade(loss_l),
                    osteophyte_grade=int(_clip(math.floor(d - 1.0), 0.0, 3.0)),
                    hka_deg=float(hka),
                    pain=int(pain),
                    params=params,
                )
            )
        knees[side] = tuple(states)
        baseline_klg[side] = klg0
        rates[side] = rate
        medial_pred[side] = medial
        lesion_radii[side] = lesion_r
        progression[side] = (
            "non-progressor" if bool(non_progressor[0]) else "fast" if fast else "typical"
        )
    return SubjectPlan(
        index=index,
        participant_id=participant_id(spec.seed, index),
        age=age,
        sex=sex,
        bmi=bmi,
        arm=arm,
        baseline_date=start,
        visit_dates=visit_dates,
        knees=knees,
        baseline_klg=baseline_klg,
        rate=rates,
        medial_predominant=medial_pred,
        lesion_radius_mm=lesion_radii,
        progression=progression,
    )


def plan_cohort(spec: CohortSpec) -> list[SubjectPlan]:
    """All subjects of ``spec`` (each depends only on the seed and its index)."""
    return [plan_subject(spec, i) for i in range(spec.subjects)]
