"""Colour tables next to label maps, so that viewers show "femoral_cartilage", not "2".

Two small text files are written beside a label map ``NAME.nii.gz`` (or ``.nii``, ``.nrrd``,
``.mha``):

- ``NAME.ctbl``: a 3D Slicer colour table (``# Color table file`` header, then one line
  ``value name R G B A`` per label, 0..255). In Slicer: load the ``.ctbl`` file, then load the
  label map with "Show options" -> "LabelMap" and pick that colour table (or convert it to a
  segmentation: the segments take the names).
- ``NAME.itksnap.txt``: an ITK-SNAP label description file (``value R G B A VIS MSH "name"``,
  alpha 0..1). In ITK-SNAP: Segmentation -> Import Label Descriptions.

Both are written atomically; names are the label scheme's names (kneescope's are written
verbatim; a character other than letters, digits, ``_``, ``.``, ``-`` becomes ``_``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from kneescope.core.labels import label_colour
from kneescope.errors import InputError
from kneescope.io.atomic import atomic_write_path

LABEL_MAP_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".zarr")
SLICER_SUFFIX = ".ctbl"
ITKSNAP_SUFFIX = ".itksnap.txt"

RGBA = tuple[int, int, int, int]


def label_map_stem(path: Path) -> str:
    """The file name of an image or label map without its image suffix (``a_seg.nii.gz`` ->
    ``a_seg``); a name without one (a DICOM folder) is kept."""
    name = path.name
    for suffix in LABEL_MAP_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def colour_table_paths(label_path: Path) -> tuple[Path, Path]:
    """``(Slicer .ctbl, ITK-SNAP .itksnap.txt)`` paths next to the label map ``label_path``."""
    stem = label_map_stem(label_path)
    return (
        label_path.with_name(stem + SLICER_SUFFIX),
        label_path.with_name(stem + ITKSNAP_SUFFIX),
    )


def _checked(labels: Mapping[int, str]) -> list[tuple[int, str]]:
    rows = []
    for value, name in sorted(labels.items()):
        if not 1 <= int(value) <= 65535:
            raise InputError(f"label value {value} is not in 1..65535 (0 is background)")
        # Slicer splits a line at spaces and ITK-SNAP quotes names: anything else becomes '_'
        rows.append((int(value), re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or f"label_{value}"))
    return rows


def slicer_colour_table(labels: Mapping[int, str], *, title: str = "kneescope") -> str:
    """Text of a 3D Slicer colour table for ``labels`` (value -> structure name)."""
    rows = _checked(labels)
    lines = [
        f"# Color table file {title}",
        f"# {len(rows) + 1} values",
        "# value name R G B A (written by kneescope)",
        "0 background 0 0 0 0",
    ]
    for value, name in rows:
        r, g, b = label_colour(value, name)
        lines.append(f"{value} {name} {r} {g} {b} 255")
    return "\n".join(lines) + "\n"


def itksnap_label_description(labels: Mapping[int, str]) -> str:
    """Text of an ITK-SNAP label description file for ``labels`` (value -> structure name)."""
    rows = _checked(labels)
    lines = [
        "################################################",
        "# ITK-SnAP Label Description File (written by kneescope)",
        "# File format:",
        "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
        "################################################",
        '    0     0    0    0     0  0  0    "Clear Label"',
    ]
    for value, name in rows:
        r, g, b = label_colour(value, name)
        lines.append(f'{value:5d} {r:5d} {g:4d} {b:4d}     1  1  1    "{name}"')
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> None:
    with atomic_write_path(path, suffix=".txt") as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")


def write_colour_tables(label_path: Path, labels: Mapping[int, str]) -> tuple[Path, Path]:
    """Write the Slicer and ITK-SNAP colour tables of ``labels`` next to ``label_path``.

    Returns:
        ``(ctbl path, itksnap path)``; see :func:`colour_table_paths`.
    """
    ctbl, itksnap = colour_table_paths(label_path)
    _write_text(ctbl, slicer_colour_table(labels, title=label_map_stem(label_path)))
    _write_text(itksnap, itksnap_label_description(labels))
    return ctbl, itksnap


def read_slicer_colour_table(path: Path) -> dict[int, tuple[str, RGBA]]:
    """Parse a 3D Slicer colour table: value -> (name, (R, G, B, A)), background included.

    Raises:
        InputError: a data line that is not ``value name R G B A``.
    """
    table: dict[int, tuple[str, RGBA]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 6:
            raise InputError(f"{path}:{n}: expected 'value name R G B A', got {line!r}")
        try:
            value, rgba = int(parts[0]), tuple(int(p) for p in parts[2:])
        except ValueError:
            raise InputError(f"{path}:{n}: non-integer value or colour in {line!r}") from None
        table[value] = (parts[1], (rgba[0], rgba[1], rgba[2], rgba[3]))
    return table


def read_itksnap_label_description(path: Path) -> dict[int, tuple[str, RGBA]]:
    """Parse an ITK-SNAP label description file: value -> (name, (R, G, B, A 0..255)).

    Raises:
        InputError: a data line that is not ``value R G B A VIS MSH "name"``.
    """
    table: dict[int, tuple[str, RGBA]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = shlex.split(line)
        if len(parts) != 8:
            raise InputError(f"{path}:{n}: expected 'IDX R G B A VIS MSH \"name\"', got {line!r}")
        try:
            value = int(parts[0])
            r, g, b = (int(p) for p in parts[1:4])
            alpha = round(float(parts[4]) * 255)
        except ValueError:
            raise InputError(f"{path}:{n}: non-numeric value or colour in {line!r}") from None
        table[value] = (parts[7], (r, g, b, alpha))
    return table
