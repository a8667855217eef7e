"""Read one series folder's headers into catalog column values, in parallel when asked.

:func:`scan_series_folder` turns a DICOM series folder (or a single-file radiograph folder)
into :class:`~kneescope.catalog.schema.Series` column values; :func:`scan_many` runs it over
many folders in worker processes (``concurrent.futures``), in order, never raising: each
result is either values or a one-line failure reason.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kneescope.catalog.fingerprint import header_fingerprint
from kneescope.catalog.naming import kind_of, parse_series_description, side_from_text
from kneescope.catalog.schema import KIND_MRI, KIND_RADIOGRAPH, STATUS_OK
from kneescope.catalog.workers import sigint_deferred
from kneescope.errors import KneescopeError

ScanResult = tuple[dict[str, Any] | None, str | None]
"""``(values, None)`` for a readable series, ``(None, reason)`` otherwise."""


@dataclass(frozen=True)
class ContentsRow:
    """One row of a release's ``contents.csv``."""

    barcode: str
    study_description: str
    series_description: str


def _image_files(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        return sorted(
            Path(e.path)
            for e in entries
            if not e.name.startswith(".") and not e.is_dir(follow_symlinks=True)
        )


def scan_series_folder(folder: Path, hint: ContentsRow | None) -> dict[str, Any]:
    """Header facts of one series folder as Series column values (status ok).

    Raises:
        KneescopeError: the folder cannot be read as a series or radiograph.
    """
    files = _image_files(folder)
    if len(files) == 1:  # a radiograph (or a single-slice localizer): one 2D image
        from kneescope.io.dicom_radiograph import scan_dicom_file

        info: Any = scan_dicom_file(files[0])
    else:
        from kneescope.io.dicom_series import scan_dicom_series

        info = scan_dicom_series(folder)
    description = (hint.series_description if hint else "") or info.series_description
    name = parse_series_description(description, info.modality)
    study_description = (hint.study_description if hint else "") or getattr(
        info, "study_description", ""
    )
    side = name.side
    if side is None and name.kind == KIND_MRI:
        side = info.laterality or side_from_text(study_description)
    shape = [int(n) for n in info.shape]
    spacing = [float(s) for s in info.spacing_mm][: len(shape)]
    affine_ras = getattr(info, "affine_ras", None)
    affine = [[float(v) for v in row] for row in affine_ras] if affine_ras is not None else None
    kind = name.kind if name.kind != "unknown" else kind_of(None, info.modality)
    if kind == "unknown":
        kind = KIND_RADIOGRAPH if len(shape) == 2 else KIND_MRI
    return {
        "kind": kind,
        "modality": info.modality or None,
        "sequence": name.sequence,
        "plane": name.plane,
        "side": side,
        "description": description or None,
        "series_uid": info.series_uid or None,
        "study_uid": info.study_uid or None,
        "n_files": len(files),
        "shape": shape,
        "spacing_mm": spacing,
        "affine_ras": affine,
        "orientation": getattr(info, "orientation", None),
        "dtype": str(info.stored_dtype),
        "header_checksum": header_fingerprint(
            {
                "uid": info.series_uid,
                "shape": shape,
                "spacing": spacing,
                "affine": affine,
                "dtype": str(info.stored_dtype),
                "files": len(files),
            }
        ),
        "status": STATUS_OK,
    }


def one_line(exc: BaseException) -> str:
    """The exception as one line; non-kneescope errors prefixed by their type."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, KneescopeError) else f"{type(exc).__name__}: {text}"


def scan_safely(folder: Path, hint: ContentsRow | None) -> ScanResult:
    """:func:`scan_series_folder` that returns a one-line reason instead of raising."""
    try:
        return scan_series_folder(folder, hint), None
    except Exception as exc:  # a bad series must never stop the ingest
        return None, one_line(exc)


def _scan_pair(item: tuple[Path, ContentsRow | None]) -> ScanResult:
    return scan_safely(item[0], item[1])


def scan_many(items: Sequence[tuple[Path, ContentsRow | None]], jobs: int) -> Iterator[ScanResult]:
    """Scan ``(folder, hint)`` pairs, in order, with ``jobs`` worker processes (1: inline)."""
    if jobs <= 1 or len(items) < 2 * jobs:
        for folder, hint in items:
            yield scan_safely(folder, hint)
        return
    context = multiprocessing.get_context("spawn")
    chunk = max(1, min(16, len(items) // (4 * jobs)))
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context)
    try:
        with sigint_deferred():  # workers started now never see Ctrl-C: the parent does
            results = pool.map(_scan_pair, items, chunksize=chunk)
        yield from results
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: scan nothing more
        raise
    pool.shutdown(wait=True)


def default_jobs() -> int:
    """CPU count, at most 8 (header reading is I/O- and parse-bound)."""
    return max(1, min(8, os.cpu_count() or 1))
