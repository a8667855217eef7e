"""Write a cataloged series (or its label map) as NIfTI or NRRD for viewers, geometry exact.

3D Slicer and ITK-SNAP read both; the affine written is the catalog's voxel -> RAS+ affine
(NIfTI sform/qform; NRRD space directions in LPS as ITK writes them).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from kneescope.catalog.database import Catalog
from kneescope.catalog.queries import SeriesRecord, get_series
from kneescope.catalog.schema import STATUS_OK
from kneescope.catalog.volumes import read_image_file, read_series
from kneescope.core.volume import Volume
from kneescope.errors import InputError, NotFoundError

ExportFormat = Literal["nifti", "nrrd"]
SUFFIXES: dict[str, tuple[str, ...]] = {"nifti": (".nii.gz", ".nii"), "nrrd": (".nrrd",)}


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_series` wrote."""

    series_id: int
    path: str
    format: str
    labels: bool
    shape: tuple[int, ...]
    spacing_mm: tuple[float, ...]
    orientation: str
    dtype: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def default_name(record: SeriesRecord, fmt: ExportFormat, labels: bool) -> str:
    """A file name such as ``9000099_V00_right_DESS_s12.nii.gz`` (``_labels`` when labels)."""
    from kneescope.catalog.output_names import series_stem

    return series_stem(record) + ("_labels" if labels else "") + SUFFIXES[fmt][0]


def export_series(
    catalog: Catalog,
    ref: str,
    fmt: ExportFormat,
    out: Path | None,
    *,
    labels: bool = False,
    default_dir: Path | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write series ``ref`` (catalog id or SeriesInstanceUID), or its label map, to ``out``.

    ``out`` defaults to ``default_dir / default_name(...)`` (``default_dir`` is created when
    missing). A given ``out`` must be in an existing folder (nothing is created for it, as
    ``cp`` does), and an existing file is replaced only with ``overwrite``. The write is
    atomic.

    Raises:
        InputError: unknown format, a suffix that does not match it, a failed series, a
            missing output folder, an existing output without ``overwrite``.
        NotFoundError: unknown series, or no label map with ``labels``.
    """
    if fmt not in SUFFIXES:
        raise InputError(f"--format {fmt!r} is not one of {', '.join(SUFFIXES)}")
    record = get_series(catalog, ref)
    create_folder = out is None
    if out is None:
        if default_dir is None:
            raise InputError("give --out FILE")
        out = default_dir / default_name(record, fmt, labels)
    out = out.expanduser().absolute()
    if not out.name.lower().endswith(SUFFIXES[fmt]):
        raise InputError(
            f"--out {out.name} does not end in {' or '.join(SUFFIXES[fmt])} as --format "
            f"{fmt} needs; rename it or change --format"
        )
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name")
    if not create_folder and not out.parent.is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist; create it first")
    if out.exists() and not overwrite:
        raise InputError(f"--out {out} exists; pass --overwrite to replace it")
    if labels:
        if not record.label_paths:
            raise NotFoundError(
                f"series {record.id} has no label map in the catalog; ingest one with a "
                "manifest label_path column or a labels/ folder"
            )
        volume: Volume = read_image_file(Path(record.label_paths[0]))
    else:
        if record.status != STATUS_OK:
            raise InputError(
                f"series {record.id} failed at ingest ({record.reason}); fix its files and "
                "re-run `kneescope ingest`"
            )
        volume = read_series(record.path, record.kind)
    if create_folder:
        out.parent.mkdir(parents=True, exist_ok=True)
    _write_side_and_names(record, out, labels=labels, overwrite=overwrite)
    if fmt == "nifti":
        from kneescope.io.nifti import write_nifti
        from kneescope.io.sidecar import describe

        write_nifti(volume, out, description=describe(record.side, f"series={record.id}"))
    else:
        from kneescope.io.itk_formats import write_itk

        write_itk(volume, out)
    return ExportResult(
        series_id=record.id,
        path=str(out),
        format=fmt,
        labels=labels,
        shape=volume.shape,
        spacing_mm=tuple(float(s) for s in volume.spacing_mm),
        orientation=volume.orientation,
        dtype=str(volume.array.dtype),
    )


def _write_side_and_names(
    record: SeriesRecord, out: Path, *, labels: bool, overwrite: bool
) -> None:
    """Next to ``out``: the JSON sidecar (side, subject, visit, series) that
    ``kneescope segment`` reads back, and for a label map its Slicer and ITK-SNAP colour
    tables (kneescope's label names). Like ``out``, an existing one is replaced only with
    ``overwrite`` (checked before anything is written)."""
    from kneescope.core.labels import KNEE_LABELS
    from kneescope.io.colour_table import colour_table_paths, write_colour_tables
    from kneescope.io.sidecar import sidecar_path, write_sidecar

    companions = [sidecar_path(out), *(colour_table_paths(out) if labels else ())]
    for path in companions:
        if not overwrite and os.path.lexists(path):
            raise InputError(f"{path} exists; pass --overwrite to replace it")

    fields: dict[str, Any] = {
        "kind": "labels" if labels else "image",
        "side": record.side if record.side in ("right", "left") else None,
        "subject": record.subject,
        "visit": record.visit,
        "sequence": record.sequence,
        "series_id": record.id,
        "series_uid": record.series_uid,
    }
    if labels:
        fields["label_scheme"] = KNEE_LABELS.name
        fields["labels"] = {str(v): n for v, n in KNEE_LABELS.labels.items()}
        write_colour_tables(out, KNEE_LABELS.labels)
    write_sidecar(out, fields)
