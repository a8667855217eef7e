"""Associate label maps (NIfTI/MHA/NRRD files) with cataloged series.

Two ways, both general:

* explicitly, a ``label_path`` column in a manifest;
* by convention, a ``labels/`` folder next to the data (or inside the ingested folder) whose
  files are named after the series: its SeriesInstanceUID, its folder or file name (OAI
  8-digit series folder, ``case001`` for ``case001.nii.gz``), or its path relative to the
  ingested root with ``/`` replaced by ``_`` (``0.C.2_9000099_20040909_10219306``).

A label map is checked against its series before it is recorded: integer dtype and the same
grid (shape and affine within 1e-3 mm).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from kneescope.catalog.fingerprint import files_fingerprint
from kneescope.catalog.identity import moved_from
from kneescope.catalog.schema import LabelMap, Series
from kneescope.catalog.volumes import read_image_file
from kneescope.core.volume import label_map_problem
from kneescope.errors import InputError, KneescopeError
from kneescope.workspace import from_stored, to_stored

log = logging.getLogger(__name__)

LABEL_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
LABELS_FOLDER = "labels"


def strip_image_suffix(name: str) -> str | None:
    """``case001`` for ``case001.nii.gz`` (any of :data:`LABEL_SUFFIXES`), else None."""
    lowered = name.lower()
    for suffix in LABEL_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return None


def index_label_folder(folder: Path) -> dict[str, Path]:
    """Label files below ``folder`` keyed by name without suffix (and a trailing ``_label``).

    Returns an empty dict when the folder does not exist.
    """
    index: dict[str, Path] = {}
    if not folder.is_dir():
        return index
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        stem = strip_image_suffix(path.name)
        if stem is None or path.suffix.lower() == ".raw":
            continue
        for key in {stem, stem.removesuffix("_label"), stem.removesuffix("_seg")}:
            index.setdefault(key, path)
    return index


def label_keys(series_path: str, series_uid: str | None, root: Path) -> list[str]:
    """Names a label file may carry for the series at ``series_path`` (see the module doc)."""
    path = Path(series_path)
    keys = []
    if series_uid:
        keys.append(series_uid)
    stem = strip_image_suffix(path.name)
    keys.append(stem if stem is not None else path.name)
    try:
        rel = path.relative_to(root)
        keys.append("_".join(rel.parts if stem is None else (*rel.parts[:-1], stem)))
    except ValueError:
        pass
    return keys


def find_label(
    series_path: str, series_uid: str | None, root: Path, index: dict[str, Path]
) -> Path | None:
    """The label file of ``index`` named after the series, if any."""
    for key in label_keys(series_path, series_uid, root):
        if key in index:
            return index[key]
    return None


def recorded_labels(session: Session, root: Path | None) -> dict[str, tuple[int, str]]:
    """Every recorded label map: real absolute path -> (series id, files checksum).

    ``root`` is the workspace that relative label paths are resolved against.
    """
    out: dict[str, tuple[int, str]] = {}
    for path, series_id, checksum in session.execute(
        select(LabelMap.path, LabelMap.series_id, LabelMap.files_checksum)
    ):
        try:
            out[str(from_stored(path, root))] = (series_id, checksum)
        except InputError:
            continue
    return out


def check_label_grid(label_path: Path, series: Series) -> None:
    """Refuse a label map whose dtype or grid does not fit ``series``.

    Raises:
        InputError: unreadable, not integer, or another shape/affine than the series.
    """
    label = read_image_file(label_path)
    if not label.is_label:
        problem = label_map_problem(label.array) or "is an image, not a label map"
        raise InputError(f"label map {label_path} {problem}; give the knee's label map")
    if series.shape is not None and list(label.shape) != list(series.shape):
        raise InputError(
            f"label map {label_path} has shape {label.shape}, its series "
            f"{tuple(series.shape)}; give the label map on the image's grid"
        )
    if series.affine_ras is not None and not np.allclose(
        label.affine_ras, np.asarray(series.affine_ras), atol=1e-3
    ):
        raise InputError(
            f"label map {label_path} has another affine than its series {series.path}; "
            "write it with the image's geometry"
        )


def attach_label(
    session: Session, series: Series, label_path: Path, scheme: str, *, root: Path | None
) -> bool:
    """Record ``label_path`` as a label map of ``series``; False when already recorded as is.

    The path is stored relative to the workspace ``root`` when inside it (an old absolute
    entry of the same file is rewritten). A label map of ``series`` with the same fingerprint
    (name, size, mtime) whose file is gone - a moved workspace or tree - is moved to the new
    path instead of recording the same label map twice.

    Raises:
        InputError: the label map does not fit the series (see :func:`check_label_grid`).
    """
    label_path = Path(os.path.normpath(label_path.absolute()))
    fingerprint = files_fingerprint(label_path)
    stored = to_stored(label_path, root)
    row = session.scalar(
        select(LabelMap).where(LabelMap.path.in_({stored, str(label_path)})).order_by(LabelMap.id)
    )
    if row is None:
        row = _moved_label(session, series.id, fingerprint, label_path, root)
    if row is not None and row.path != stored:
        row.path = stored
        session.flush()
    if row is not None and row.series_id == series.id and row.files_checksum == fingerprint:
        return False
    try:
        check_label_grid(label_path, series)
    except KneescopeError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read label map {label_path}: {exc}") from None
    if row is None:
        session.add(
            LabelMap(
                series_id=series.id,
                path=stored,
                scheme=scheme,
                files_checksum=fingerprint,
            )
        )
    else:
        row.series_id = series.id
        row.files_checksum = fingerprint
        row.scheme = scheme
    session.flush()
    log.debug("label map %s -> series %s", label_path, series.id)
    return True


def _moved_label(
    session: Session, series_id: int, fingerprint: str, label_path: Path, root: Path | None
) -> LabelMap | None:
    """A label map of the series that moved to ``label_path`` (see
    :func:`~kneescope.catalog.identity.moved_from`): one with the same fingerprint, else one
    with the same file name (its file was touched on the way)."""
    moved = [
        row
        for row in session.scalars(
            select(LabelMap).where(LabelMap.series_id == series_id).order_by(LabelMap.id)
        )
        if moved_from(row.path, label_path, root)
    ]
    for row in moved:
        if row.files_checksum == fingerprint:
            return row
    for row in moved:
        if Path(row.path).name == label_path.name:
            return row
    return None
