"""Seeded sets of synthetic knee films for training and evaluation, and bad-input films.

:func:`knee_films` yields bilateral PA fixed-flexion films (:mod:`kneescope.synth.radiograph`)
with KL grades drawn from given weights (both knees of a film correlated), JSN and
osteophytes consistent with the grade as in ``kneescope synth``'s cohorts, and a rare total
knee replacement. Film ``i`` of a set depends only on ``(seed, i)``.

:func:`bad_input_film` draws what a knee reader must refuse or flag: a film with one knee, a
film with no knee (a blank exposure, the shins only, a step-wedge phantom), a lateral view, a
knee with an implant.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from kneescope.core import Volume
from kneescope.errors import InputError
from kneescope.synth.cohort import loss_of_severity
from kneescope.synth.knee_film_geometry import Ellipse
from kneescope.synth.knee_film_render import (
    F32,
    MU_BONE,
    MU_SOFT,
    bone_path,
    capsule_sd,
    ellipse_sd,
    expose,
    trabecular_texture,
)
from kneescope.synth.params import KneeParams, sample_anatomy
from kneescope.synth.radiograph import (
    FILM_MM,
    KNEE_PIXEL_MM,
    FilmTruth,
    KneeXrayTruth,
    annotation_boxes,
    film_affine,
    marker_centres,
    render_knee_film,
    sample_film_look,
)

BadInput = Literal["one_knee", "no_knee", "lateral", "implant"]
BAD_INPUTS: tuple[BadInput, ...] = ("one_knee", "no_knee", "lateral", "implant")


class KneeFilm(NamedTuple):
    """One film: the image, the truth of each knee on it, the film's truth."""

    image: Volume
    knees: list[KneeXrayTruth]
    film: FilmTruth


def _knee_state(
    rng: np.random.Generator, anatomy: dict[str, object], side: str, klg: int
) -> tuple[KneeParams, int, int, bool]:
    """(params, KL, osteophyte grade, medial-predominant) of a knee of grade ``klg``."""
    d = klg + float(rng.uniform(0.05, 0.95))
    loss = loss_of_severity(d)
    medial = bool(rng.random() < 0.8)
    loss_m, loss_l = (loss, 0.3 * loss) if medial else (0.3 * loss, loss)
    fields = dict(anatomy)
    for key in ("cart_femoral", "cart_medial_tibial", "cart_lateral_tibial"):
        fields[key] = float(fields[key]) * float(rng.uniform(0.97, 1.03))  # type: ignore[arg-type]
    fields.update(side=side, loss_medial=loss_m, loss_lateral=loss_l)
    params = KneeParams.model_validate(fields)
    return params, klg, int(np.clip(np.floor(d - 1.0), 0, 3)), medial


def _kl_probabilities(kl_weights: Sequence[float] | None) -> npt.NDArray[np.float64]:
    weights = np.asarray(kl_weights if kl_weights is not None else [0.2] * 5, dtype=float)
    if (
        weights.shape != (5,)
        or not np.all(np.isfinite(weights))
        or np.any(weights < 0)
        or weights.sum() <= 0
    ):
        raise InputError(
            f"kl_weights must be 5 non-negative numbers (KL 0..4), got {list(weights)}; "
            "give one weight per KL grade"
        )
    return weights / weights.sum()


def _check(seed: int, index: int, implant_rate: float, pixel_mm: float) -> None:
    if seed < 0 or index < 0:
        raise InputError(f"seed and film index must be >= 0, got {seed}, {index}")
    if not 0.0 <= implant_rate <= 1.0:
        raise InputError(f"implant_rate is a probability (0..1), got {implant_rate}")
    if not 0.05 < pixel_mm <= 1.0:
        raise InputError(
            f"pixel_mm {pixel_mm} is not a knee film's pixel spacing; give 0.05-1 mm (e.g. 0.2)"
        )


def _film_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index, stream, 0x4B46]))


def knee_film(
    seed: int,
    index: int,
    *,
    kl_weights: Sequence[float] | None = None,
    implant_rate: float = 0.02,
    pixel_mm: float = KNEE_PIXEL_MM,
    sides: tuple[str, ...] = ("right", "left"),
) -> KneeFilm:
    """Film ``index`` of the set ``seed`` (see :func:`knee_films`).

    Raises:
        InputError: bad ``kl_weights``, ``implant_rate`` outside 0..1, ``pixel_mm`` outside
            (0.05, 1], a negative seed or index, or sides other than right/left.
    """
    _check(seed, index, implant_rate, pixel_mm)
    if not sides or len(set(sides)) != len(sides) or not set(sides) <= {"right", "left"}:
        raise InputError(f"sides must be 'right' and/or 'left' once each, got {sides!r}")
    p = _kl_probabilities(kl_weights)
    rng = _film_rng(seed, index, 0)
    anatomy = sample_anatomy(rng)
    first = int(rng.choice(5, p=p))
    knees = {}
    for k, side in enumerate(sides):
        klg = first
        if k > 0 and rng.random() < 0.5:
            klg = int(rng.choice(5, p=p))
        knees[side] = _knee_state(rng, anatomy, side, klg)
    implants = tuple(s for s in sides if rng.random() < implant_rate)
    film_mm = (float(rng.uniform(130.0, 160.0)), float(rng.uniform(310.0, 360.0)))
    if len(sides) == 1:
        film_mm = (film_mm[0], float(rng.uniform(150.0, 330.0)))
    vol, truths, film = render_knee_film(
        knees,
        seed=int(rng.integers(2**31)),
        pixel_mm=pixel_mm,
        implants=implants,
        film_mm=film_mm,
    )
    return KneeFilm(vol, truths, film)


def knee_films(
    n: int,
    seed: int,
    *,
    kl_weights: Sequence[float] | None = None,
    implant_rate: float = 0.02,
    pixel_mm: float = KNEE_PIXEL_MM,
    start: int = 0,
) -> Iterator[KneeFilm]:
    """``n`` bilateral PA knee films (films ``start .. start + n - 1`` of the set ``seed``).

    Args:
        n: number of films.
        seed: the set's seed; film ``i`` depends only on ``(seed, i)``.
        kl_weights: relative frequency of KL 0..4 of a film's first knee (default uniform);
            the other knee has the same grade half of the time, else an independent draw.
        implant_rate: probability that a knee has a total knee replacement (truth
            ``implant=True``, KL/JSN -1, JSW NaN: leave it out of training).
        pixel_mm: film pixel spacing.
        start: index of the first film.

    Returns:
        An iterator of :class:`KneeFilm` (image uint16, rows to the feet, columns to the
        patient's Left; truth per knee, right knee first; the film's truth), rendered lazily.

    Raises:
        InputError: (at the call, before any film) as :func:`knee_film`, or a negative
            ``n`` / ``start``.
    """
    if n < 0 or start < 0:
        raise InputError(f"n and start must be >= 0, got {n}, {start}")
    _check(seed, start, implant_rate, pixel_mm)
    _kl_probabilities(kl_weights)
    return (
        knee_film(seed, i, kl_weights=kl_weights, implant_rate=implant_rate, pixel_mm=pixel_mm)
        for i in range(start, start + n)
    )


def bad_input_film(kind: BadInput, seed: int, *, pixel_mm: float = KNEE_PIXEL_MM) -> KneeFilm:
    """A film a knee reader must refuse or flag.

    ``one_knee``: a PA film with one knee (the other leg absent; side drawn). ``no_knee``: a
    blank exposure, the shins only, or a step-wedge phantom. ``lateral``: a lateral view of
    one knee. ``implant``: a bilateral PA film with a total knee replacement on one side (or,
    rarely, both).
    """
    if kind not in BAD_INPUTS:
        raise InputError(
            f"unknown bad-input film kind {kind!r}; choose one of {', '.join(BAD_INPUTS)}"
        )
    _check(seed, 0, 0.0, pixel_mm)
    rng = _film_rng(seed, 0, 1 + BAD_INPUTS.index(kind))
    if kind == "one_knee":
        side = "right" if rng.random() < 0.5 else "left"
        return knee_film(seed, 0, implant_rate=0.0, pixel_mm=pixel_mm, sides=(side,))
    if kind == "implant":
        anatomy = sample_anatomy(rng)
        knees = {
            s: _knee_state(rng, anatomy, s, int(rng.integers(0, 5))) for s in ("right", "left")
        }
        u = rng.random()
        implants = ("right", "left") if u < 0.15 else (("right",) if u < 0.575 else ("left",))
        vol, truths, film = render_knee_film(
            knees, seed=int(rng.integers(2**31)), pixel_mm=pixel_mm, implants=implants
        )
        return KneeFilm(vol, truths, film)
    if kind == "no_knee":
        return _no_knee(rng, pixel_mm)
    return _lateral(rng, pixel_mm)


def _grid(shape: tuple[int, int], pixel_mm: float) -> tuple[F32, F32]:
    """Film (x, z) in mm from the film's middle: x to the right (columns), z up."""
    r = (np.arange(shape[0], dtype=np.float32) - 0.5 * shape[0]) * np.float32(pixel_mm)
    c = (np.arange(shape[1], dtype=np.float32) - 0.5 * shape[1]) * np.float32(pixel_mm)
    return np.broadcast_to(c[None, :], shape), np.broadcast_to(-r[:, None], shape)


def _rotate(x: F32, z: F32, deg: float, centre: tuple[float, float]) -> tuple[F32, F32]:
    t = np.deg2rad(deg)
    s, c = np.float32(np.sin(t)), np.float32(np.cos(t))
    dx, dz = x - np.float32(centre[0]), z - np.float32(centre[1])
    return (c * dx + s * dz).astype(np.float32), (-s * dx + c * dz).astype(np.float32)


def _leg_soft(x: F32, r: float) -> F32:
    return (2.0 * np.sqrt(np.clip(r * r - x * x, 0.0, None))).astype(np.float32)


def _finish(
    atten: npt.NDArray[np.float32],
    rng: np.random.Generator,
    pixel_mm: float,
    view: str,
    sides: tuple[str, ...],
    rotation: float,
) -> KneeFilm:
    shape = (int(atten.shape[0]), int(atten.shape[1]))
    look = sample_film_look(rng, shape, pixel_mm)
    pixels = expose(atten.astype(np.float32), look, rng)
    film = FilmTruth(
        view=view,
        shape=shape,
        pixel_mm=pixel_mm,
        sides=sides,
        markers=marker_centres(look),
        collimation=look.collimation,
        rotation_deg=rotation,
        annotations=annotation_boxes(look),
    )
    meta = {"kind": f"knee_{view}", "synthetic": True}
    return KneeFilm(Volume(pixels, film_affine(shape, pixel_mm), meta), [], film)


def _no_knee(rng: np.random.Generator, pixel_mm: float) -> KneeFilm:
    shape = (round(FILM_MM[0] / pixel_mm), round(FILM_MM[1] / pixel_mm))
    x, z = _grid(shape, pixel_mm)
    atten = np.zeros(shape, dtype=np.float32)
    variant = int(rng.integers(0, 3))
    if variant == 1:  # the shins: two legs with tibial and fibular shafts, no joint
        tex = trabecular_texture(shape, pixel_mm, 0.2, rng)
        for sign in (-1.0, 1.0):
            cx = sign * float(rng.uniform(85.0, 110.0))
            atten += np.float32(MU_SOFT) * _leg_soft(x - np.float32(cx), float(rng.uniform(45, 60)))
            for off, r, depth in ((-2.0, 13.0, 30.0), (sign * 24.0, 6.0, 14.0)):
                sd = capsule_sd(x, z, (cx + off, -200.0), (cx + off + 3.0, 200.0), r)
                body, cortex = bone_path(sd, depth, 3.0, 40.0, pixel_mm)
                atten += np.float32(MU_BONE) * (body * (1.0 + tex) + cortex)
    elif variant == 2:  # a step-wedge phantom
        steps = int(rng.integers(5, 11))
        width = 180.0 / steps
        for k in range(steps):
            x0 = -90.0 + k * width
            inside = (x >= x0) & (x < x0 + width) & (np.abs(z) < 30.0)
            atten += np.float32(0.25 * (k + 1)) * inside.astype(np.float32)
    return _finish(atten, rng, pixel_mm, "no_knee", (), 0.0)


def _lateral(rng: np.random.Generator, pixel_mm: float) -> KneeFilm:
    """A lateral view of one knee (flexed 20-40 deg): overlapping condyles, the patella in
    front, the tibial plateau and tuberosity, the fibular head behind."""
    film_mm = (float(rng.uniform(180.0, 240.0)), float(rng.uniform(180.0, 330.0)))
    shape = (round(film_mm[0] / pixel_mm), round(film_mm[1] / pixel_mm))
    x0, z0 = _grid(shape, pixel_mm)
    rot = float(rng.uniform(-10.0, 10.0))
    # anterior to the viewer's left or right
    x, z = _rotate(x0, z0, rot, (float(rng.normal(0, 10)), float(rng.normal(0, 8))))
    if rng.random() < 0.5:
        x = -x
    s = float(rng.uniform(0.9, 1.1))
    flex = np.deg2rad(float(rng.uniform(20.0, 40.0)))
    top = (float(-95.0 * np.sin(flex) * s), float(25.0 * s + 95.0 * np.cos(flex) * s))
    femur = np.minimum(
        capsule_sd(x, z, (0.0, 22.0 * s), top, 15.0 * s),
        np.minimum(
            ellipse_sd(x, z, Ellipse(-2.0 * s, 22.0 * s, 24.0 * s, 21.0 * s)),
            ellipse_sd(x, z, Ellipse(1.0 * s, 21.0 * s, 22.0 * s, 20.0 * s)),
        ),
    )
    plateau = z - np.float32(-0.12 * s) * x  # posterior slope ~7 deg
    hw = np.float32(26.0 * s) - np.float32(12.0 * s) * np.clip(-z / np.float32(60.0 * s), 0.0, 1.0)
    tibia = np.maximum(plateau, np.abs(x - np.float32(2.0 * s)) - hw)
    tibia = np.minimum(tibia, ellipse_sd(x, z, Ellipse(20.0 * s, -24.0 * s, 8.0 * s, 12.0 * s)))
    fibula = np.minimum(
        ellipse_sd(x, z, Ellipse(-20.0 * s, -18.0 * s, 8.0 * s, 9.0 * s)),
        capsule_sd(x, z, (-20.0 * s, -18.0 * s), (-17.0 * s, -250.0), 6.0 * s),
    )
    patella = ellipse_sd(x, z, Ellipse(30.0 * s, 30.0 * s, 9.0 * s, 20.0 * s))
    tex = trabecular_texture(shape, pixel_mm, 0.2, rng)
    path = np.zeros(shape, dtype=np.float32)
    for sd, depth in ((femur, 60.0), (tibia, 55.0), (fibula, 20.0), (patella, 35.0)):
        body, cortex = bone_path(sd.astype(np.float32), depth * s, 1.2, 40.0, pixel_mm)
        path += body * (1.0 + tex) + cortex
    r = float(rng.uniform(50.0, 75.0)) * s
    atten = np.float32(MU_BONE) * path + np.float32(MU_SOFT) * _leg_soft(x - np.float32(5.0), r)
    side = "right" if rng.random() < 0.5 else "left"
    return _finish(atten, rng, pixel_mm, "lateral", (side,), rot)
