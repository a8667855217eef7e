"""Ingest an nnU-Net v2 raw dataset (``kneescope ingest DatasetNNN_Name``): every training
case's image becomes a cataloged series, its label map the series' label map.

- **Series**: each channel image ``imagesTr/<case>_<cccc>`` is one series (its sequence the
  channel's name from dataset.json, e.g. ``DESS``); ``imagesTs/`` is not ingested.
- **Subject, visit, side**: from dataset.json's ``kneescope`` entry where kneescope wrote the
  dataset (``kneescope export --format nnunet``), else the case id is the subject, the side
  comes from a ``sides.csv`` (columns ``name,side``) in the dataset folder, and the visit is
  unknown.
- **Label maps** attach to channel 0 of their case only when the dataset's labels are
  kneescope's own (same names and values: the catalog holds kneescope label maps); a dataset
  labelled otherwise is ingested without its label maps and the report says so (train on it
  directly instead: ``data_dir`` in a training file accepts an nnU-Net dataset, labels matched
  by name).

Incremental like the manifest importer (it shares its row ingest): unchanged images are
skipped, a bad image is recorded as failed with a reason.
"""

from __future__ import annotations

import time
from pathlib import Path

from kneescope.catalog.database import Catalog
from kneescope.catalog.manifest import ManifestRow, ingest_rows
from kneescope.catalog.naming import normalize_visit, side_from_text
from kneescope.catalog.report import IngestReport
from kneescope.catalog.tables import read_table
from kneescope.core.labels import KNEE_LABELS
from kneescope.io.nnunet_dataset import NnunetDataset, read_nnunet_dataset


def import_nnunet_dataset(catalog: Catalog, folder: Path) -> IngestReport:
    """Ingest (or re-ingest) the training cases of the nnU-Net dataset ``folder``.

    Raises:
        InputError: not a readable nnU-Net v2 dataset (nothing is written then).
    """
    start = time.perf_counter()
    folder = folder.absolute()
    dataset = read_nnunet_dataset(folder)
    rows, with_labels = _rows(dataset)
    report = IngestReport(kind="nnunet", source=str(folder))
    if not with_labels:
        report.warnings.append(
            f"{folder.name}: its labels ({', '.join(dataset.label_names().values())}) are not "
            "kneescope's, so its label maps were not attached; train on the dataset directly "
            "(data_dir) to match them by name"
        )
    ingest_rows(catalog, rows, folder, {}, report)
    report.seconds = time.perf_counter() - start
    return report


def _rows(dataset: NnunetDataset) -> tuple[list[ManifestRow], bool]:
    names = dataset.label_names()
    with_labels = all(KNEE_LABELS.labels.get(v) == n for v, n in names.items())
    sides = _sides_csv(dataset.folder)
    rows: list[ManifestRow] = []
    for case in dataset.cases:
        info = dataset.case_info(case.case_id)
        problems = []
        visit = None
        if info.get("visit"):
            try:
                visit = normalize_visit(str(info["visit"]))
            except ValueError as exc:
                problems.append(str(exc))
        side = side_from_text(str(info.get("side") or "")) or sides.get(case.case_id)
        for channel, image in enumerate(case.images):
            rows.append(
                ManifestRow(
                    line=len(rows) + 1,
                    path=image,
                    subject=str(info.get("subject") or case.case_id),
                    visit=visit,
                    side=side,
                    sequence=dataset.channel_names[str(channel)].upper() or None,
                    modality=None,
                    kind="mri",
                    label_path=case.label if with_labels and channel == 0 else None,
                    problem=f"case {case.case_id}: {'; '.join(problems)}" if problems else None,
                )
            )
    return rows, with_labels


def _sides_csv(folder: Path) -> dict[str, str]:
    """``name -> side`` of the dataset folder's ``sides.csv`` (empty when absent)."""
    path = folder / "sides.csv"
    if not path.is_file():
        return {}
    table = read_table(path)
    name_col, side_col = table.column("name"), table.column("side")
    if name_col is None or side_col is None:
        return {}
    out = {}
    for raw in table.rows:
        side = side_from_text(raw[side_col])
        if side is not None:
            out[raw[name_col]] = side
    return out
