"""The catalog's image/label pairs as an nnU-Net v2 raw dataset (``kneescope export --format
nnunet --dataset-id N``).

Every series with status ``ok`` and a label map (radiographs aside) becomes one training
case: its image (read from its DICOM folder or image file) as
``imagesTr/<case>_0000.nii.gz``, its label map as ``labelsTr/<case>.nii.gz``;
``dataset.json`` names the labels from kneescope's label table (background 0, femur 1, ...,
lateral_meniscus 9). Case ids are ``<subject>_<visit>_<side>`` (``9001609_V00_right``);
where two series share a knee and visit the ids of those become the series' canonical stems
(``9001609_V00_right_DESS_s3``). dataset.json's ``kneescope`` entry records, per case,
subject, visit, side, sequence, series id and SeriesInstanceUID, so that the case can be
traced back (and ``kneescope train`` knows each knee's side).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kneescope.catalog.database import Catalog
from kneescope.catalog.output_names import safe_token, series_stem
from kneescope.catalog.queries import SeriesFilter, SeriesRecord, list_series
from kneescope.catalog.schema import KIND_RADIOGRAPH
from kneescope.catalog.volumes import read_image_file, read_series
from kneescope.core.labels import KNEE_LABELS
from kneescope.errors import InputError, NotFoundError
from kneescope.io.nnunet_dataset import (
    DATASET_NAME,
    NnunetCaseData,
    dataset_folder_name,
    write_nnunet_dataset,
)

DEFAULT_NAME = "kneescope"
"""The dataset name after the id: ``Dataset018_kneescope``."""


@dataclass(frozen=True)
class NnunetExportResult:
    """What :func:`export_nnunet_dataset` wrote.

    Attributes:
        folder: the dataset folder (``RAW/DatasetNNN_kneescope``).
        dataset_id: NNN.
        cases: number of training cases.
        case_ids: their ids, sorted.
        labels: structure name -> value, background included (as in dataset.json).
        skipped_without_labels: ok image series (radiographs aside) without a label map.
    """

    folder: str
    dataset_id: int
    cases: int
    case_ids: tuple[str, ...]
    labels: dict[str, int]
    skipped_without_labels: int

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["case_ids"] = list(self.case_ids)
        return data


def case_ids(records: Sequence[SeriesRecord]) -> dict[int, str]:
    """Series id -> case id: ``<subject>_<visit>_<side>``, or the series' canonical stem
    (with sequence and ``s<id>``) for series that share that knee and visit."""
    short = {
        r.id: "_".join(safe_token(p) for p in (r.subject or "unknown", r.visit, r.side) if p)
        for r in records
    }
    counts = Counter(short.values())
    return {r.id: short[r.id] if counts[short[r.id]] == 1 else series_stem(r) for r in records}


def dataset_folder(raw_dir: Path, dataset_id: int, name: str = DEFAULT_NAME) -> Path:
    """``raw_dir/DatasetNNN_name``.

    Raises:
        InputError: another dataset with the same id already lies in ``raw_dir`` (nnU-Net
            finds datasets by id, so two would be ambiguous).
    """
    folder = raw_dir / dataset_folder_name(dataset_id, name)
    if raw_dir.is_dir():
        for other in sorted(raw_dir.iterdir()):
            match = DATASET_NAME.match(other.name)
            if match and int(match.group(1)) == dataset_id and other.name != folder.name:
                raise InputError(
                    f"{other} already uses nnU-Net dataset id {dataset_id}; pick another "
                    "--dataset-id or move that dataset"
                )
    return folder


def export_nnunet_dataset(
    catalog: Catalog,
    raw_dir: Path,
    dataset_id: int,
    *,
    overwrite: bool = False,
    create_raw_dir: bool = False,
) -> NnunetExportResult:
    """Write every cataloged image/label pair as ``raw_dir/DatasetNNN_kneescope``.

    Args:
        catalog: the catalog.
        raw_dir: the nnU-Net raw folder (what ``nnUNet_raw`` points to).
        dataset_id: the dataset id (1..999).
        overwrite: replace an existing dataset folder of that id and name.
        create_raw_dir: create ``raw_dir`` when missing (the default output); a given folder
            must exist.

    Raises:
        NotFoundError: the catalog holds no series with a label map.
        InputError: see :func:`~kneescope.io.nnunet_dataset.write_nnunet_dataset`; a missing
            ``raw_dir``; another dataset with this id in it.
    """
    raw_dir = raw_dir.expanduser().absolute()
    if raw_dir.is_file():
        raise InputError(f"--out {raw_dir} is a file; give the nnU-Net raw folder")
    if not raw_dir.is_dir() and not create_raw_dir:
        raise InputError(f"--out {raw_dir} does not exist; create it first")
    folder = dataset_folder(raw_dir, dataset_id)
    if folder.exists() and not overwrite:
        raise InputError(f"{folder} exists; pass --overwrite to replace it")
    records = [
        r for r in list_series(catalog, SeriesFilter(status="ok")) if r.kind != KIND_RADIOGRAPH
    ]
    pairs = [r for r in records if r.label_paths]
    if not pairs:
        raise NotFoundError(
            "the catalog holds no series with a label map; ingest label maps (a manifest "
            "label_path column or a labels/ folder) before exporting an nnU-Net dataset"
        )
    ids = case_ids(pairs)
    sequences = {r.sequence for r in pairs if r.sequence}
    channel = sequences.pop() if len(sequences) == 1 else "MRI"
    if channel.upper() == "CT":  # nnU-Net would normalise it as Hounsfield units
        channel = "MRI"
    from kneescope import __version__

    raw_dir.mkdir(parents=True, exist_ok=True)  # only once the inputs are checked
    dataset = write_nnunet_dataset(
        folder,
        _cases(pairs, ids),
        labels=KNEE_LABELS.labels,
        channel_name=channel,
        description=f"{len(pairs)} image/label pairs of a kneescope catalog",
        extra={"version": __version__, "label_scheme": KNEE_LABELS.name},
        overwrite=overwrite,
    )
    return NnunetExportResult(
        folder=str(folder),
        dataset_id=dataset_id,
        cases=len(dataset.cases),
        case_ids=tuple(c.case_id for c in dataset.cases),
        labels=dict(dataset.labels),
        skipped_without_labels=len(records) - len(pairs),
    )


def _cases(records: Sequence[SeriesRecord], ids: dict[int, str]) -> Iterator[NnunetCaseData]:
    """One case per record, read only when the writer asks for it (one knee in memory)."""
    for record in records:
        image = read_series(record.path, record.kind)
        labels = read_image_file(Path(record.label_paths[0]))
        yield NnunetCaseData(
            case_id=ids[record.id],
            image=image,
            labels=labels,
            info={
                "subject": record.subject,
                "visit": record.visit,
                "side": record.side if record.side in ("right", "left") else None,
                "sequence": record.sequence,
                "series_id": record.id,
                "series_uid": record.series_uid,
            },
        )
