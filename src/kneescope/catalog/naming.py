"""OAI naming conventions: release folders -> visit codes, SeriesDescription -> sequence/side.

All functions are pure string logic and never touch the disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kneescope.catalog.schema import KIND_MRI, KIND_RADIOGRAPH, KIND_UNKNOWN
from kneescope.core.oai_layout import RELEASE_TO_VISIT

PARTICIPANT_RE = re.compile(r"^9\d{6}$")
STUDY_DATE_RE = re.compile(r"^\d{8}$")
_VISIT_RE = re.compile(r"^v?(\d{1,2})$", re.IGNORECASE)

MRI_SEQUENCES = frozenset({"DESS", "IW_TSE", "T2_MAP", "MPR", "LOCATOR", "T1", "FLASH"})
RADIOGRAPH_SEQUENCES = frozenset({"XR_PA", "XR_FULL_LEG", "XR_PELVIS", "XR_HAND", "XR_LATERAL"})

# (pattern, sequence) in priority order; matched against an upper-cased description.
_SEQUENCE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"DESS"), "DESS"),
    (re.compile(r"T2[_ ]?MAP|MESE|T2MAP"), "T2_MAP"),
    (re.compile(r"IW[_ ]?TSE|TSE"), "IW_TSE"),
    (re.compile(r"MPR"), "MPR"),
    (re.compile(r"LOCALI[SZ]ER|LOCATOR|SCOUT"), "LOCATOR"),
    (re.compile(r"FLASH"), "FLASH"),
    (re.compile(r"\bT1\b|_T1_|T1W"), "T1"),
    (re.compile(r"FULL[ _]?(LIMB|LEG)|LONG[ _]?LEG|STANDING.*(LIMB|LEG)"), "XR_FULL_LEG"),
    (re.compile(r"\bPA\b.*KNEE|FIXED[ _]FLEXION|KNEE.*\bPA\b"), "XR_PA"),
    (re.compile(r"LATERAL.*KNEE|KNEE.*LAT"), "XR_LATERAL"),
    (re.compile(r"PELVIS"), "XR_PELVIS"),
    (re.compile(r"HAND"), "XR_HAND"),
)
_PLANE_RE = re.compile(r"^(SAG|COR|AX|TRA)[_ ]")


@dataclass(frozen=True)
class SeriesName:
    """What a SeriesDescription says: sequence, imaging plane, side and kind.

    Attributes:
        sequence: ``DESS``, ``IW_TSE``, ``T2_MAP``, ``MPR``, ``LOCATOR``, ``XR_PA``,
            ``XR_FULL_LEG``, ... or ``None`` when nothing matched.
        plane: ``SAG``, ``COR`` or ``AX`` when the description starts with it.
        side: ``right``/``left``; ``None`` for bilateral or unknown.
        kind: ``mri``, ``radiograph`` or ``unknown``.
    """

    sequence: str | None
    plane: str | None
    side: str | None
    kind: str


def visit_from_release(folder_name: str) -> str | None:
    """The visit code of an OAI release folder name (``"0.C.2"`` -> ``"V00"``), or None."""
    return RELEASE_TO_VISIT.get(folder_name.strip().upper())


def normalize_visit(text: str) -> str:
    """A visit code in the ``V00`` form from ``"V00"``, ``"v1"``, ``"0"`` or ``"03"``.

    Raises:
        ValueError: the text is no visit code.
    """
    match = _VISIT_RE.match(text.strip())
    if match is None:
        raise ValueError(f"visit {text!r} is not a visit code like V00, V01 or 3")
    return f"V{int(match.group(1)):02d}"


def side_from_text(text: str | None) -> str | None:
    """``right``/``left`` from free text (``_RIGHT``, ``Left``, ``R``, ``1``=right, ``2``=left).

    Returns None for bilateral, empty or unrecognised text.
    """
    if text is None:
        return None
    t = text.strip().upper()
    if not t or "BILAT" in t:
        return None
    if t in {"R", "RIGHT", "1", "RT"}:
        return "right"
    if t in {"L", "LEFT", "2", "LT"}:
        return "left"
    words = set(re.split(r"[^A-Z]+", t))
    has_right, has_left = "RIGHT" in words, "LEFT" in words
    if has_right and not has_left:
        return "right"
    if has_left and not has_right:
        return "left"
    return None


def kind_of(sequence: str | None, modality: str | None = None) -> str:
    """``mri``/``radiograph``/``unknown`` from a sequence name and a DICOM Modality."""
    mod = (modality or "").upper()
    if mod == "MR" or sequence in MRI_SEQUENCES:
        return KIND_MRI
    if mod in {"CR", "DX", "RG", "DR"} or sequence in RADIOGRAPH_SEQUENCES:
        return KIND_RADIOGRAPH
    return KIND_UNKNOWN


def parse_series_description(description: str | None, modality: str | None = None) -> SeriesName:
    """Sequence, plane, side and kind from an OAI-style SeriesDescription.

    Examples: ``SAG_3D_DESS_RIGHT`` -> (DESS, SAG, right, mri);
    ``Bilateral PA Fixed Flexion Knee`` -> (XR_PA, None, None, radiograph).
    """
    text = (description or "").strip().upper()
    sequence = next((seq for pattern, seq in _SEQUENCE_PATTERNS if pattern.search(text)), None)
    plane_match = _PLANE_RE.match(text)
    plane = plane_match.group(1) if plane_match else None
    if plane == "TRA":
        plane = "AX"
    return SeriesName(
        sequence=sequence,
        plane=plane,
        side=side_from_text(text),
        kind=kind_of(sequence, modality),
    )
