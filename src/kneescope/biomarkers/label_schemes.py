"""Label schemes ``measure`` reads: kneescope's own, OAI-ZIB, OAIZIB-CM, or one named in a file.

:func:`measure_labelled` measures a label map written in any :class:`MeasureScheme`: it maps
the scheme's values onto kneescope's labels (:data:`~kneescope.core.labels.KNEE_LABELS`),
splits a combined tibial cartilage label into its medial and lateral plates by anatomy
(:func:`split_tibial_cartilage`), measures with :func:`~kneescope.biomarkers.measure_knee`,
and then marks every structure the scheme does not label: its values are NaN (never a
volume of 0) and ``qc_not_labelled_<structure>`` is raised with a reason, an informative flag
that does not fail ``qc_ok`` (see :func:`kneescope.biomarkers.qc.finish_qc`). Schemes and
their sources: docs/biomarkers.md, "Label schemes".
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from kneescope.biomarkers.measure import KneeMeasurements, SideArg, measure_knee
from kneescope.biomarkers.measure_config import MeasureConfig
from kneescope.biomarkers.qc import (
    NOT_LABELLED_PREFIX,
    cartilage_contacts,
    flag_structure,
    value_structures,
)
from kneescope.core import Volume
from kneescope.core.geometry import validate_affine
from kneescope.core.labels import KNEE_LABELS
from kneescope.core.volume import MAX_LABEL_VALUE, label_map_problem
from kneescope.errors import InputError
from kneescope.types import Affine, Side

log = logging.getLogger(__name__)
F64 = npt.NDArray[np.float64]

COMBINED_TIBIAL = "tibial_cartilage"
"""Structure name of a tibial cartilage label that holds both plates (OAI-ZIB's 4)."""

STRUCTURES: tuple[str, ...] = (*KNEE_LABELS.labels.values(), COMBINED_TIBIAL)
"""Every structure name a scheme may label: kneescope's nine and the combined tibial
cartilage."""

REQUIRED = ("femur", "tibia")
"""Structures every scheme labels: the knee is oriented from them."""

_SPLIT_PLATES = ("medial_tibial_cartilage", "lateral_tibial_cartilage")
_KS = {name: value for value, name in KNEE_LABELS.labels.items()}
_COMBINED_MARK = 255  # temporary value of the combined tibial cartilage before the split


@dataclass(frozen=True)
class MeasureScheme:
    """A label scheme ``measure`` reads.

    Attributes:
        name: ``"kneescope"``, ``"oai-zib"``, ``"oaizib-cm"``, or the JSON file it came from.
        labels: structure name (:data:`STRUCTURES`) -> label value (1..9).
        optional: structures the scheme labels only in some of its files (OAI-ZIB's patella
            and patellar cartilage): labelled in a file when any of their values occurs in it.
    """

    name: str
    labels: Mapping[str, int]
    optional: frozenset[str] = frozenset()

    def describe(self) -> str:
        """The scheme's labels in words, e.g. ``1 femur, 2 femoral cartilage, ...``."""
        return ", ".join(
            f"{v} {s.replace('_', ' ')}" for s, v in sorted(self.labels.items(), key=_by_value)
        )


def _by_value(item: tuple[str, int]) -> int:
    return item[1]


KNEESCOPE_SCHEME = MeasureScheme("kneescope", {n: v for v, n in KNEE_LABELS.labels.items()})
"""kneescope's nine labels (:data:`~kneescope.core.labels.KNEE_LABELS`)."""

OAI_ZIB_SCHEME = MeasureScheme(
    "oai-zib",
    {
        "femur": 1,
        "femoral_cartilage": 2,
        "tibia": 3,
        COMBINED_TIBIAL: 4,
        "patella": 5,
        "patellar_cartilage": 6,
    },
    optional=frozenset({"patella", "patellar_cartilage"}),
)
"""OAI-ZIB (Ambellan et al. 2019, Med Image Anal 52:109, 507 OAI DESS knees): 1 femur,
2 femoral cartilage, 3 tibia, 4 tibial cartilage (both plates in one label); the variants
that add the patella use 5 patella and 6 patellar cartilage."""

OAIZIB_CM_SCHEME = MeasureScheme(
    "oaizib-cm",
    {
        "femur": 1,
        "femoral_cartilage": 2,
        "tibia": 3,
        "medial_tibial_cartilage": 4,
        "lateral_tibial_cartilage": 5,
    },
)
"""OAIZIB-CM (CartiMorph, Yao et al. 2024, Med Image Anal 91:103035): OAI-ZIB's masks in
NIfTI with the tibial cartilage split: 4 medial, 5 lateral (kneescope's values 1-5)."""

BUILTIN_SCHEMES: Mapping[str, MeasureScheme] = {
    s.name: s for s in (KNEESCOPE_SCHEME, OAI_ZIB_SCHEME, OAIZIB_CM_SCHEME)
}
"""Schemes known by name (``--labels NAME``)."""


def resolve_scheme(spec: str | Path | MeasureScheme) -> MeasureScheme:
    """The scheme named by ``spec``: a built-in name (case-insensitive), a JSON file's path
    (:func:`load_scheme_file`), or a scheme.

    Raises:
        InputError: neither a known name nor a valid JSON scheme file.
    """
    if isinstance(spec, MeasureScheme):
        return spec
    text = str(spec)
    known = BUILTIN_SCHEMES.get(text.lower())
    if known is not None:
        return known
    path = Path(text)
    if path.suffix.lower() != ".json":
        raise InputError(
            f"--labels {text!r} is neither a scheme kneescope knows "
            f"({', '.join(BUILTIN_SCHEMES)}) nor a .json file naming the structures' values"
        )
    return load_scheme_file(path)


def load_scheme_file(path: Path) -> MeasureScheme:
    """A scheme from a JSON file: one object, structure name -> label value, e.g.
    ``{"femur": 1, "femoral_cartilage": 2, "tibia": 3, "tibial_cartilage": 4}``.

    Names are those of :data:`STRUCTURES`; values integers 1..9, each used once. ``femur`` and
    ``tibia`` are required, and tibial cartilage either as ``tibial_cartilage`` (both plates,
    split by anatomy) or as ``medial_tibial_cartilage`` and ``lateral_tibial_cartilage``,
    not both ways. A structure the file leaves out is "not labelled" in every knee.

    Raises:
        InputError: the file is missing, not JSON, or breaks one of these rules.
    """
    where = f"label scheme {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{where} does not exist; give a .json file or a scheme name") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{where} cannot be read ({exc}); give a UTF-8 JSON file") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{where} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            'write one object such as {"femur": 1, "tibia": 3, ...}'
        ) from None
    except ValueError as exc:  # a name given twice
        raise InputError(f"{where}: {exc}; give each structure once") from None
    if not isinstance(data, dict):
        raise InputError(
            f"{where} holds a JSON {type(data).__name__}, not an object; write one object "
            'mapping structure names to label values, such as {"femur": 1, "tibia": 3, ...}'
        )
    return scheme_from_mapping(data, str(path))


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"{key!r} is named twice")
        seen[key] = value
    return seen


def scheme_from_mapping(data: Mapping[str, Any], name: str) -> MeasureScheme:
    """Validate ``data`` (structure name -> label value) as a scheme called ``name``.

    Raises:
        InputError: see :func:`load_scheme_file`.
    """
    where = f"label scheme {name}"
    unknown = sorted(k for k in data if k not in STRUCTURES)
    if unknown:
        raise InputError(
            f"{where} names {', '.join(map(repr, unknown))}, which kneescope does not know; "
            f"use the structure names {', '.join(STRUCTURES)}"
        )
    labels: dict[str, int] = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where}: {key!r} is {value!r}, not an integer label value")
        if not 1 <= value <= MAX_LABEL_VALUE:
            raise InputError(
                f"{where}: {key!r} is {value}, outside the label values 1..{MAX_LABEL_VALUE} "
                "(0 is background)"
            )
        labels[key] = value
    by_value: dict[int, list[str]] = {}
    for key, value in labels.items():
        by_value.setdefault(value, []).append(key)
    shared = {v: ks for v, ks in by_value.items() if len(ks) > 1}
    if shared:
        v, ks = min(shared.items())
        raise InputError(
            f"{where} gives value {v} to {' and '.join(ks)}; each structure needs its own value"
        )
    lacking = [s for s in REQUIRED if s not in labels]
    if lacking:
        raise InputError(
            f"{where} does not label {' or '.join(lacking)}; measure needs the femur and the "
            "tibia to orient the knee"
        )
    split = [s for s in _SPLIT_PLATES if s in labels]
    if COMBINED_TIBIAL in labels and split:
        raise InputError(
            f"{where} labels both {COMBINED_TIBIAL} and {', '.join(split)}; give the tibial "
            "cartilage either as one label or as its two plates"
        )
    if COMBINED_TIBIAL not in labels and len(split) != 2:
        raise InputError(
            f"{where} labels no tibial cartilage plate pair; give {COMBINED_TIBIAL} (both "
            "plates in one label) or both medial_tibial_cartilage and lateral_tibial_cartilage"
        )
    return MeasureScheme(name, labels)


@dataclass(frozen=True)
class TibialSplit:
    """How a combined tibial cartilage label was split (:func:`split_tibial_cartilage`).

    Attributes:
        medial: bool mask of the medial plate, on the input grid.
        lateral: bool mask of the lateral plate.
        gap_ratio: voxel density at the split over the smaller plate's peak density (along
            the medial-lateral axis): about 0 for two plates with a gap between them.
        axis_to_world_x_deg: angle (deg) between the cartilage's medial-lateral axis and the
            patient's left-right axis of the header.
    """

    medial: npt.NDArray[np.bool_]
    lateral: npt.NDArray[np.bool_]
    gap_ratio: float
    axis_to_world_x_deg: float


SPLIT_UNCLEAR_GAP_RATIO = 0.5
"""A split whose gap holds more than half the smaller plate's peak density raises
``qc_tibial_split_unclear``."""

MAX_ML_TO_WORLD_X_DEG = 60.0
"""Largest angle between the tibial cartilage's medial-lateral axis and the header's
left-right axis at which the header can tell medial from lateral."""


def split_tibial_cartilage(
    cartilage: npt.NDArray[np.bool_],
    affine: Affine,
    superior: F64,
    side: Side,
    *,
    bin_mm: float = 0.5,
    smooth_mm: float = 1.5,
) -> TibialSplit:
    """Split a tibial cartilage mask holding both plates into medial and lateral plates.

    The plates lie side by side along the knee's medial-lateral axis, with the
    intercondylar eminence (no cartilage) between them: along it the voxel density (a
    histogram of ``bin_mm`` bins, smoothed with a Gaussian of ``smooth_mm``) has one peak per
    plate, and the split lies at the least dense point between the 20th and 80th
    percentiles. The axis is the one of the cartilage's two principal axes across
    ``superior`` along which the density has a gap (:data:`SPLIT_UNCLEAR_GAP_RATIO`); when
    neither has one (e.g. one plate missing), the one nearer the header's left-right axis.
    A connected piece of cartilage that lies (at least 90 %) on one side of the split goes
    whole to that side, so a gap that is not straight does not cut a plate; a piece bridging
    both plates is cut at the split. Which side is medial: the patient's left
    for a right knee (world -x in RAS+), the patient's right for a left knee.

    Args:
        cartilage: (I, J, K) bool mask of the tibial cartilage.
        affine: 4x4 voxel -> RAS+ mm.
        superior: (3,) world direction from the tibia to the femur (need not be exact).
        side: the knee's side.

    Returns:
        :class:`TibialSplit`.

    Raises:
        InputError: no cartilage, or its medial-lateral axis lies more than
            :data:`MAX_ML_TO_WORLD_X_DEG` from the header's left-right axis.
    """
    box = _bounding_box(cartilage)
    if box is None:
        raise InputError("the label map holds no tibial cartilage to split into plates")
    crop = cartilage[box]
    idx = np.argwhere(crop).astype(np.float64) + [sl.start for sl in box]
    pts = idx @ affine[:3, :3].T + affine[:3, 3]
    centre = pts.mean(axis=0)
    sup = np.asarray(superior, dtype=np.float64)
    sup = sup / float(np.linalg.norm(sup))
    flat = pts - centre
    flat = flat - np.outer(flat @ sup, sup)
    _, vecs = np.linalg.eigh(flat.T @ flat)
    # the in-plane principal axes (the third is ~superior): the plates' axis is the one along
    # which the density has a gap; without a gap on either, the one nearer the header's x
    cuts = [_density_cut(flat @ vecs[:, k], bin_mm, smooth_mm) for k in (1, 2)]
    angles = [math.degrees(math.acos(min(1.0, abs(float(vecs[0, k]))))) for k in (1, 2)]
    gapped = [i for i in (0, 1) if cuts[i][1] <= SPLIT_UNCLEAR_GAP_RATIO]
    usable = [i for i in gapped if angles[i] <= MAX_ML_TO_WORLD_X_DEG]
    if usable:
        pick = min(usable, key=lambda i: cuts[i][1])
    elif gapped:  # two plates, but across the header's left-right axis: refuse, not guess
        pick = gapped[0]
    else:
        pick = 0 if angles[0] < angles[1] else 1
    if angles[pick] > MAX_ML_TO_WORLD_X_DEG:
        raise InputError(
            f"the tibial cartilage's medial-lateral axis lies {angles[pick]:.0f} deg from the "
            "left-right axis the file's header states: cannot tell its medial plate from its "
            "lateral one; give the label map with the image's orientation in its header (or "
            "it holds one plate only)"
        )
    axis = vecs[:, pick + 1]
    cut, gap_ratio = cuts[pick]
    # point the axis medially: the patient's left (RAS -x) in a right knee, right in a left
    if float(axis[0]) * (-1.0 if side == "right" else 1.0) < 0:
        axis, cut = -axis, -cut
    angle = angles[pick]
    t = flat @ axis
    is_medial = t > cut
    pieces, n = ndimage.label(crop, structure=np.ones((3, 3, 3), dtype=bool))
    piece_of = pieces[crop]  # same (C) order as np.argwhere
    if n > 0:
        total = np.bincount(piece_of, minlength=n + 1).astype(np.float64)
        med = np.bincount(piece_of, weights=is_medial, minlength=n + 1)
        share = np.divide(med, total, out=np.zeros_like(med), where=total > 0)
        whole_medial = share >= 0.9
        whole_lateral = share <= 0.1
        is_medial = np.where(
            whole_medial[piece_of], True, np.where(whole_lateral[piece_of], False, is_medial)
        )
    medial = np.zeros(cartilage.shape, dtype=bool)
    lateral = np.zeros(cartilage.shape, dtype=bool)
    where = tuple(idx.astype(np.intp).T)
    medial[where] = is_medial
    lateral[where] = ~is_medial
    return TibialSplit(medial, lateral, gap_ratio, angle)


def _bounding_box(mask: npt.NDArray[np.bool_]) -> tuple[slice, slice, slice] | None:
    """Slices of the smallest box holding every True voxel of a 3D mask (None: empty)."""
    spans = []
    for axis in range(3):
        hit = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(3) if a != axis)))
        if hit.size == 0:
            return None
        spans.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return spans[0], spans[1], spans[2]


def _density_cut(t: F64, bin_mm: float, smooth_mm: float) -> tuple[float, float]:
    """Least dense point of positions ``t`` (mm) between their 20th and 80th percentiles,
    and its density over the smaller of the two peaks around it (the gap ratio)."""
    lo, hi = float(t.min()), float(t.max())
    edges = np.arange(lo - 2 * bin_mm, hi + 3 * bin_mm, bin_mm)
    hist, _ = np.histogram(t, bins=edges)
    density = ndimage.gaussian_filter1d(hist.astype(np.float64), smooth_mm / bin_mm)
    mids = 0.5 * (edges[:-1] + edges[1:])
    q20, q80 = np.quantile(t, [0.2, 0.8])
    window = np.nonzero((mids >= q20) & (mids <= q80))[0]
    if window.size == 0:
        return float(np.median(t)), 1.0
    at = int(window[np.argmin(density[window])])
    peaks = min(float(density[: at + 1].max()), float(density[at:].max()))
    return float(mids[at]), (float(density[at]) / peaks if peaks > 0 else 1.0)


def check_scheme_values(array: npt.NDArray[Any], scheme: MeasureScheme, source: str) -> list[int]:
    """Refuse a label map that is not written in ``scheme``; the non-zero values it holds.

    Raises:
        InputError: not a label map (:func:`~kneescope.core.volume.label_map_problem`), a
            value the scheme does not have, or (OAI-ZIB) value 5 lying on the tibia like
            OAIZIB-CM's lateral tibial cartilage rather than being a patella.
    """
    problem = label_map_problem(array)
    if array.ndim != 3 or problem is not None:
        raise InputError(
            f"{source} is not a 3D label map: it {problem or f'is {array.ndim}D'}; "
            "pass a segmentation (label values 0..9), not an image"
        )
    present = _present_values(array)
    known = set(scheme.labels.values())
    beyond = [v for v in present if v not in known]
    if beyond:
        raise InputError(
            f"{source} holds label values {', '.join(map(str, beyond))}, which the "
            f"{scheme.name} scheme does not have ({scheme.describe()}); pass the scheme the "
            f"file is written in: --labels {'|'.join(BUILTIN_SCHEMES)}|FILE.json"
        )
    if scheme is OAI_ZIB_SCHEME and 5 in present:
        box = ndimage.find_objects(np.asarray(array == 5, dtype=np.uint8))[0]
        contacts = cartilage_contacts(array, box, 5, (3, 6)) if box else {3: 0, 6: 0}
        if contacts[3] > contacts[6]:
            raise InputError(
                f"{source}: its label 5 lies on the tibia ({contacts[3]} voxel faces; "
                f"{contacts[6]} on patellar cartilage 6), as OAIZIB-CM's lateral tibial "
                "cartilage does, not as OAI-ZIB's patella; pass --labels oaizib-cm"
            )
    if scheme is OAIZIB_CM_SCHEME and 5 not in present and 4 in present:
        raise InputError(
            f"{source} has tibial cartilage 4 but no lateral tibial cartilage 5: an OAI-ZIB "
            "map with both plates in label 4? pass --labels oai-zib"
        )
    return present


def _present_values(array: npt.NDArray[Any]) -> list[int]:
    """Non-zero values of an integer or boolean label map holding 0..MAX_LABEL_VALUE."""
    if array.dtype.kind == "b":
        return [1] if bool(array.any()) else []
    # values are 0..MAX_LABEL_VALUE here (label_map_problem); a compare per value is much
    # faster than np.bincount/np.unique on a full-size map
    lo, hi = int(array.min()), int(array.max())
    return [v for v in range(max(lo, 1), hi + 1) if bool(np.any(array == v))]


def labelled_structures(scheme: MeasureScheme, present: list[int]) -> frozenset[str]:
    """The kneescope structures a file in ``scheme`` labels (a combined tibial cartilage
    labels both plates; an optional structure only when a value of the optional group is
    ``present``)."""
    shown = set(present)
    optional_here = any(scheme.labels[s] in shown for s in scheme.optional)
    out: set[str] = set()
    for structure in scheme.labels:
        if structure in scheme.optional and not optional_here:
            continue
        if structure == COMBINED_TIBIAL:
            out.update(_SPLIT_PLATES)
        else:
            out.add(structure)
    return frozenset(out)


def _resolve_side(labels: Volume | tuple[Any, Any], side: SideArg | None) -> Side | None:
    if side in ("right", "left"):
        return side
    if side not in (None, "auto"):
        raise InputError(f"side must be 'right', 'left' or 'auto', got {side!r}")
    return labels.side if isinstance(labels, Volume) else None


def _centroid_ijk(mask: npt.NDArray[np.bool_]) -> F64:
    """Mean voxel index (3,) of a non-empty 3D mask, from its marginal counts (fast)."""
    total = float(np.count_nonzero(mask))
    out = np.empty(3)
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        counts = mask.sum(axis=others, dtype=np.int64)
        out[axis] = float(counts @ np.arange(mask.shape[axis])) / total
    return out


def _superior(arr: npt.NDArray[Any], affine: Affine, femur: int, tibia: int) -> F64:
    """Unit world vector from the tibia's centroid to the femur's."""
    centres = []
    for value in (femur, tibia):
        mask = arr == value
        if not mask.any():
            raise InputError(
                "label map lacks the femur or tibia; both are needed to orient the knee"
            )
        centres.append(affine[:3, :3] @ _centroid_ijk(mask) + affine[:3, 3])
    up = centres[0] - centres[1]
    norm = float(np.linalg.norm(up))
    if norm < 1e-6:
        raise InputError("the femur and tibia centroids coincide: cannot orient the knee")
    return up / norm


def measure_labelled(
    labels: Volume | tuple[npt.ArrayLike, npt.ArrayLike],
    scheme: str | Path | MeasureScheme = "kneescope",
    side: SideArg | None = "auto",
    config: MeasureConfig | None = None,
    *,
    with_maps: bool = True,
    source: str = "the label map",
) -> KneeMeasurements:
    """Measure a label map written in ``scheme`` (see :func:`resolve_scheme`).

    Values of structures the scheme (or, for OAI-ZIB's optional patella, this file) does not
    label are NaN, and ``qc_not_labelled_<structure>`` is raised with its reason; they do not
    fail ``qc_ok``. A combined tibial cartilage is split into plates
    (:func:`split_tibial_cartilage`); ``qc_tibial_split_unclear`` is raised when the plates
    have no clear gap between them.

    Args:
        labels: a label-map :class:`Volume` or ``(array, affine_ras)``.
        scheme: the scheme the map is written in.
        side: "right", "left" or "auto" (the Volume's side if recorded, else the anatomy's).
            A combined tibial cartilage needs a known side (given or recorded).
        config: measurement options.
        with_maps: also build the 2D thickness maps.
        source: what to call the input in error messages (e.g. its path).

    Raises:
        InputError: the map is not written in ``scheme`` (:func:`check_scheme_values`), or a
            combined tibial cartilage cannot be split (no side, no orientation in the file),
            or anything :func:`measure_knee` refuses.
    """
    sch = resolve_scheme(scheme)
    if sch is KNEESCOPE_SCHEME:
        arr = labels.array if isinstance(labels, Volume) else np.asarray(labels[0])
        check_scheme_values(arr, sch, source)
        return measure_knee(labels, side, config, with_maps=with_maps)
    conv = to_kneescope_labels(labels, sch, side, source=source)
    measured = measure_knee(conv.labels, conv.side or "auto", config, with_maps=with_maps)
    return _mark_not_labelled(measured, sch, conv.labelled, conv.split)


@dataclass(frozen=True)
class KneescopeLabels:
    """A label map converted to kneescope's labels (:func:`to_kneescope_labels`).

    Attributes:
        labels: uint8 label map in :data:`~kneescope.core.labels.KNEE_LABELS`, on the
            input's grid, with its metadata.
        side: the side given or recorded (None when neither).
        labelled: the kneescope structures the input's scheme labels.
        split: how a combined tibial cartilage was split (None when there was none).
    """

    labels: Volume
    side: Side | None
    labelled: frozenset[str]
    split: TibialSplit | None


def to_kneescope_labels(
    labels: Volume | tuple[npt.ArrayLike, npt.ArrayLike],
    scheme: str | Path | MeasureScheme,
    side: SideArg | None = "auto",
    *,
    source: str = "the label map",
) -> KneescopeLabels:
    """Convert a label map written in ``scheme`` to kneescope's labels, splitting a combined
    tibial cartilage into plates (:func:`split_tibial_cartilage`).

    Raises:
        InputError: the map is not written in ``scheme``; a combined tibial cartilage with no
            side given or recorded, or in a file that states no orientation.
    """
    sch = resolve_scheme(scheme)
    if isinstance(labels, Volume):
        arr, affine = labels.array, labels.affine_ras
        metadata: Mapping[str, Any] = labels.metadata
    else:
        arr, affine = np.asarray(labels[0]), validate_affine(labels[1])
        metadata = {}
    present = check_scheme_values(arr, sch, source)
    labelled = labelled_structures(sch, present)
    declared = _resolve_side(labels, side)
    lut = np.zeros(MAX_LABEL_VALUE + 1, dtype=np.uint8)
    for structure, value in sch.labels.items():
        lut[value] = _COMBINED_MARK if structure == COMBINED_TIBIAL else _KS[structure]
    mapped = lut[np.asarray(arr, dtype=np.intp) if arr.dtype.kind == "b" else arr]
    split: TibialSplit | None = None
    if COMBINED_TIBIAL in sch.labels:
        combined = mapped == _COMBINED_MARK
        if declared is None:
            raise InputError(
                f"{source}: the {sch.name} scheme holds both tibial plates in one label; "
                "to tell the medial plate from the lateral one kneescope needs the knee's "
                "side: pass --side right or left (OAIZIB-CM lists each knee's side in its "
                "kneeSideInfo.csv)"
            )
        if bool(metadata.get("orientation_unknown", False)):
            raise InputError(
                f"{source} states no orientation (a NIfTI without sform and qform): its "
                "combined tibial cartilage cannot be split into medial and lateral plates; "
                "write the label map with the image's geometry"
            )
        if combined.any():
            up = _superior(mapped, affine, _KS["femur"], _KS["tibia"])
            split = split_tibial_cartilage(combined, affine, up, declared)
            mapped[split.medial] = _KS["medial_tibial_cartilage"]
            mapped[split.lateral] = _KS["lateral_tibial_cartilage"]
            log.debug(
                "%s: tibial cartilage split, gap ratio %.2f, axis %.0f deg from header x",
                source,
                split.gap_ratio,
                split.axis_to_world_x_deg,
            )
        mapped[mapped == _COMBINED_MARK] = 0
    return KneescopeLabels(Volume(mapped, affine, dict(metadata)), declared, labelled, split)


def _mark_not_labelled(
    measured: KneeMeasurements,
    scheme: MeasureScheme,
    labelled: frozenset[str],
    split: TibialSplit | None,
) -> KneeMeasurements:
    values = dict(measured.values)
    qc = dict(measured.qc)
    reasons = {k: v for k, v in measured.reasons.items() if k != "qc_unmeasured_values"}
    absent = [s for s in KNEE_LABELS.labels.values() if s not in labelled]
    for structure in absent:
        names = [k for k in values if structure in value_structures(k)]
        for key in names:
            values[key] = math.nan
        for key in list(qc):  # no QC verdict on a structure that is not labelled
            if flag_structure(key) == structure:
                qc[key] = 0 if key.startswith("qc_extra_components_") else False
                reasons.pop(key, None)
        qc[f"{NOT_LABELLED_PREFIX}{structure}"] = True
        which = "label map" if structure in scheme.optional else "label scheme"
        reasons[f"{NOT_LABELLED_PREFIX}{structure}"] = (
            f"this {scheme.name} {which} has no {structure.replace('_', ' ')} label: its "
            f"{len(names)} values are not measured (NaN)"
        )
    if {"medial_meniscus", "lateral_meniscus"} <= set(absent):
        qc["qc_extrusion_grid_too_coarse"] = False  # no meniscus to measure extrusion of
        reasons.pop("qc_extrusion_grid_too_coarse", None)
    if split is not None and split.gap_ratio > SPLIT_UNCLEAR_GAP_RATIO:
        qc["qc_tibial_split_unclear"] = True
        reasons["qc_tibial_split_unclear"] = (
            "the combined tibial cartilage shows no clear gap between its plates (density at "
            f"the split {split.gap_ratio:.0%} of the smaller plate's peak): the medial and "
            "lateral plates may be cut in the wrong place"
        )
    return replace(measured, values=values, qc=qc, reasons=reasons)
