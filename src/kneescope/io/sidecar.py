"""What kneescope records about a knee in the files it writes, and reads back.

Every image or label map kneescope writes carries the knee's side twice:

- in the NIfTI header's 80-byte ``descrip`` field, as ``kneescope side=left ...`` tokens
  (travels with the file when it is copied alone);
- in a JSON sidecar ``NAME.json`` next to ``NAME.nii.gz`` (``.nrrd``, ...) with the side,
  subject, visit, series id and UID, and for label maps the label scheme (value -> name).

A sidecar counts only when it says ``"written_by": "kneescope ..."`` (a BIDS sidecar of
dcm2niix with the same name is ignored). Reading never fails on a foreign or malformed
sidecar; it fails (one line) when the header and the sidecar name different sides.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kneescope.errors import InputError
from kneescope.io.atomic import atomic_write_path
from kneescope.io.colour_table import label_map_stem

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"
MAX_SIDECAR_BYTES = 1 << 20
_SIDE_TOKEN = re.compile(r"(?:^|\s)side=(\S*)")
SIDES = ("right", "left")


def sidecar_path(image_path: Path) -> Path:
    """``NAME.json`` next to ``NAME.nii.gz`` (``.nii``, ``.nrrd``, ``.mha``, ...)."""
    return image_path.with_name(label_map_stem(image_path) + SIDECAR_SUFFIX)


def _written_by() -> str:
    from kneescope import __version__

    return f"kneescope {__version__}"


def describe(side: str | None, *extra: str) -> str:
    """A NIfTI ``descrip`` text: ``kneescope side=left`` plus ``extra`` tokens (<= 79 bytes)."""
    tokens = ["kneescope"]
    if side is not None:
        if side not in SIDES:
            raise InputError(f"side {side!r} is not right or left")
        tokens.append(f"side={side}")
    tokens += [t for t in extra if t]
    return " ".join(tokens)[:79]


def side_from_description(text: str) -> str | None:
    """The side recorded in a ``descrip`` text written by :func:`describe`, else None."""
    if not text.startswith("kneescope"):
        return None
    match = _SIDE_TOKEN.search(text)
    if match is None:
        return None
    value = match.group(1).lower()
    return value if value in SIDES else None


def write_sidecar(image_path: Path, fields: Mapping[str, Any]) -> Path:
    """Write ``NAME.json`` next to ``image_path`` atomically (``written_by`` added).

    An earlier kneescope sidecar is replaced; any other file of that name is refused
    (:class:`InputError`), never overwritten.

    ``fields``: JSON-serialisable values (``None`` kept as null), e.g. ``side``, ``subject``,
    ``visit``, ``series_id``, ``series_uid``, ``labels`` (value -> name).
    """
    path = sidecar_path(image_path)
    if os.path.lexists(path) and read_sidecar(image_path) is None:
        raise InputError(
            f"{path} exists and was not written by kneescope (a BIDS sidecar?); "
            "move it or write elsewhere"
        )
    text = sidecar_text(fields)
    with atomic_write_path(path, suffix=".json") as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")
    return path


def sidecar_text(fields: Mapping[str, Any]) -> str:
    """The JSON text :func:`write_sidecar` writes (for writers that place the file)."""
    side = fields.get("side")
    if side is not None and side not in SIDES:
        raise InputError(f"side {side!r} is not right or left")
    payload = {"written_by": _written_by(), **fields}
    return json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"


def read_sidecar(image_path: Path) -> dict[str, Any] | None:
    """The kneescope sidecar of ``image_path`` as a dict, or None when there is none.

    A missing file, a non-regular file (FIFO, folder), one over 1 MiB, invalid JSON, or JSON
    not written by kneescope all give None (logged), never an error or a hang.
    """
    path = sidecar_path(image_path)
    try:
        info = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SIDECAR_BYTES:
        logger.warning("ignoring %s: not a regular file under 1 MiB", path)
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        logger.warning("ignoring %s: not readable JSON (%s)", path, exc)
        return None
    if not isinstance(data, dict) or not str(data.get("written_by", "")).startswith("kneescope"):
        return None
    return data


def recorded_side(image_path: Path, description: str | None) -> tuple[str, str] | None:
    """``(side, where)`` recorded by kneescope for ``image_path``, or None.

    ``where`` names the source (``"its NIfTI header"``, ``"NAME.json"``) for messages.

    Raises:
        InputError: the sidecar's side is no side, or header and sidecar disagree.
    """
    found: list[tuple[str, str]] = []
    if description:
        side = side_from_description(description)
        if side is not None:
            found.append((side, "its NIfTI header"))
    data = read_sidecar(image_path)
    if data is not None and data.get("side") is not None:
        value = str(data["side"]).lower()
        if value not in SIDES:
            raise InputError(
                f"{sidecar_path(image_path)}: side {data['side']!r} is not right or left; "
                "fix or delete the sidecar"
            )
        found.append((value, sidecar_path(image_path).name))
    if len({s for s, _ in found}) > 1:
        (a, wa), (b, wb) = found[0], found[1]
        raise InputError(
            f"{image_path}: {wa} says side {a} but {wb} says {b}; fix the wrong one "
            "(or delete the sidecar)"
        )
    return found[0] if found else None
