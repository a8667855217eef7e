"""A cataloged DICOM series' label map as a DICOM Segmentation (``export --format dicom-seg``).

The SEG references the series' own DICOM instances (found through the catalog), so a PACS or
viewer shows it over that series. The label map is the catalog's (``--labels``, the default)
or one a run's segmentation wrote (the CLI finds it: ``--run``). See
:mod:`kneescope.io.dicom_seg` for the object written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kneescope.catalog.database import Catalog
from kneescope.catalog.queries import SeriesRecord, get_series
from kneescope.catalog.schema import KIND_RADIOGRAPH, STATUS_OK
from kneescope.catalog.volumes import read_image_file
from kneescope.errors import DicomError, InputError, NotFoundError
from kneescope.io.dicom_seg import SegAlgorithm, SegCompression, write_dicom_seg

SEG_SUFFIX = ".dcm"


@dataclass(frozen=True)
class DicomSegExport:
    """What :func:`export_dicom_seg` wrote (``to_json`` for ``--json``)."""

    series_id: int
    series_uid: str
    path: str
    label_map: str
    segments: dict[int, str]
    n_frames: int
    n_source_instances: int
    size_bytes: int
    compression: str
    transfer_syntax: str
    sop_instance_uid: str
    seg_series_uid: str
    side: str | None
    algorithm: str

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        data = asdict(self)
        data["segments"] = {str(k): v for k, v in self.segments.items()}
        return data


def default_seg_name(record: SeriesRecord) -> str:
    """``<subject>_<visit>_<side>_<sequence>_s<id>_seg.dcm`` (see catalog.output_names)."""
    from kneescope.catalog.output_names import series_stem

    return series_stem(record) + "_seg" + SEG_SUFFIX


def dicom_source_folder(record: SeriesRecord) -> Path:
    """The DICOM series folder of ``record``.

    Raises:
        InputError: the series failed at ingest, is a radiograph, or did not come from DICOM
            (a NIfTI/MHA/NRRD file), so there are no source instances to reference.
    """
    if record.status != STATUS_OK:
        raise InputError(
            f"series {record.id} failed at ingest ({record.reason}); fix its files and re-run "
            "`kneescope ingest`"
        )
    where = Path(record.path)
    if record.kind == KIND_RADIOGRAPH:
        raise InputError(
            f"series {record.id} is a radiograph; a DICOM SEG is made for an MRI series"
        )
    if not where.is_dir():
        raise InputError(
            f"series {record.id} was not ingested from DICOM ({where.name}); a DICOM SEG must "
            "reference DICOM source images: use --format nifti or slicer for it"
        )
    return where


def export_dicom_seg(
    catalog: Catalog,
    ref: str,
    out: Path | None,
    *,
    label_path: Path | None = None,
    algorithm: SegAlgorithm | None = None,
    default_dir: Path | None = None,
    compression: SegCompression = "jpeg-ls",
    overwrite: bool = False,
) -> DicomSegExport:
    """Write the label map of series ``ref`` as a DICOM SEG referencing its DICOM instances.

    Args:
        catalog: the catalog.
        ref: catalog id or SeriesInstanceUID.
        out: the ``.dcm`` file; None: ``default_dir / default_seg_name(...)`` (the folder is
            created). A given ``out`` must be in an existing folder.
        label_path: the label map to export (e.g. a run's segmentation of the series); None:
            the catalog's label map of the series (recorded as ``MANUAL``).
        algorithm: who made ``label_path``'s label map (None: ``MANUAL``).
        default_dir: folder for the default name.
        compression: lossless frame compression.
        overwrite: replace an existing ``out``.

    Raises:
        InputError: no DICOM source, a label map on another grid or with unknown values, a
            bad or existing ``out``.
        NotFoundError: unknown series, no label map in the catalog, a missing label file.
    """
    from kneescope.core.labels import KNEE_LABELS

    record = get_series(catalog, ref)
    create_folder = out is None
    if out is None:
        if default_dir is None:
            raise InputError("give --output FILE.dcm")
        out = default_dir / default_seg_name(record)
    out = out.expanduser().absolute()
    if not out.name.lower().endswith(SEG_SUFFIX):
        raise InputError(f"--output {out.name} does not end in {SEG_SUFFIX}; give a .dcm file name")
    if out.is_dir():
        raise InputError(f"--output {out} is a folder; give a file name")
    if not create_folder and not out.parent.is_dir():
        raise InputError(f"--output {out}: folder {out.parent} does not exist; create it first")
    if out.exists() and not overwrite:
        raise InputError(f"--output {out} exists; pass --overwrite to replace it")
    source = dicom_source_folder(record)
    if label_path is None:
        if not record.label_paths:
            raise NotFoundError(
                f"series {record.id} has no label map in the catalog; give --run NAME (a run "
                "that segmented it) or ingest a label map"
            )
        label_path = Path(record.label_paths[0])
        algorithm = SegAlgorithm(kind="MANUAL")
    elif algorithm is None:
        algorithm = SegAlgorithm(kind="MANUAL")
    if not label_path.is_file():
        raise NotFoundError(f"label map {label_path} is missing; re-run the step that wrote it")
    labels = read_image_file(label_path)
    side = record.side if record.side in ("right", "left") else None
    description = " ".join(
        part
        for part in ("kneescope SEG", record.subject or "", record.visit or "", side or "")
        if part
    )
    if create_folder:
        out.parent.mkdir(parents=True, exist_ok=True)
    try:
        written = write_dicom_seg(
            labels,
            source,
            out,
            label_names=KNEE_LABELS.labels,
            algorithm=algorithm,
            side=side,
            series_description=description,
            compression=compression,
            overwrite=overwrite,
        )
    except DicomError as exc:
        raise InputError(
            f"series {record.id}: its DICOM files cannot be referenced ({exc}); re-run "
            "`kneescope ingest`"
        ) from None
    return DicomSegExport(
        series_id=record.id,
        series_uid=written.source_series_uid,
        path=str(written.path),
        label_map=str(label_path),
        segments=written.segments,
        n_frames=written.n_frames,
        n_source_instances=written.n_source_instances,
        size_bytes=written.size_bytes,
        compression=written.compression,
        transfer_syntax=written.transfer_syntax,
        sop_instance_uid=written.sop_instance_uid,
        seg_series_uid=written.series_instance_uid,
        side=side,
        algorithm=algorithm.kind if not algorithm.name else f"{algorithm.name} {algorithm.version}",
    )
