"""``kneescope ingest``: choose the importer for a source and run it.

``auto`` picks: a table file with a ``path`` column -> manifest, any other table file ->
clinical; a folder with OAI release folders (or itself one) -> oai; a folder with a
``manifest.csv`` -> manifest; a folder with ``dataset.json`` and ``imagesTr/`` -> nnunet (an
nnU-Net v2 raw dataset, :mod:`kneescope.catalog.import_nnunet`). ``--kind clinical`` also
takes a folder of tables.

An OAI-style tree with a ``clinical/`` folder of tables (as ``kneescope synth`` writes) also
imports those tables; they are parsed before anything is written, so a malformed one stops
the ingest with nothing written.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from kneescope.catalog.clinical import (
    ClinicalImport,
    ParsedTable,
    parse_clinical_tables,
    write_clinical_tables,
)
from kneescope.catalog.database import Catalog
from kneescope.catalog.manifest import MANIFEST_NAMES, PATH_COLUMNS, import_manifest
from kneescope.catalog.naming import visit_from_release
from kneescope.catalog.oai import ProgressFn, import_oai_tree
from kneescope.catalog.report import IngestReport
from kneescope.catalog.tables import read_table
from kneescope.errors import InputError

IngestKind = Literal["auto", "oai", "manifest", "clinical", "nnunet"]
TABLE_SUFFIXES = (".csv", ".txt", ".tsv")


def detect_kind(source: Path) -> Literal["oai", "manifest", "clinical", "nnunet"]:
    """The importer for ``source`` (see the module docstring).

    Raises:
        InputError: the path is missing, unreadable, or of no recognised kind.
    """
    if not source.exists():
        raise InputError(f"{source}: no such file or folder; check the path")
    if source.is_file():
        if source.suffix.lower() not in TABLE_SUFFIXES:
            raise InputError(
                f"{source}: expected a folder (OAI tree) or a .csv/.txt table "
                "(manifest or clinical), found another file"
            )
        table = read_table(source)
        return "manifest" if table.column(*PATH_COLUMNS) is not None else "clinical"
    try:
        children = [p for p in source.iterdir() if p.is_dir()]
    except OSError as exc:
        raise InputError(f"{source}: cannot list folder ({exc.strerror or exc})") from None
    if visit_from_release(source.name) or any(visit_from_release(p.name) for p in children):
        return "oai"
    if any((source / name).is_file() for name in MANIFEST_NAMES):
        return "manifest"
    if (source / "dataset.json").is_file() and (source / "imagesTr").is_dir():
        return "nnunet"  # an nnU-Net v2 raw dataset (catalog.import_nnunet)
    raise InputError(
        f"{source}: neither an OAI-style tree (release folders such as 0.C.2), a folder "
        "with manifest.csv nor an nnU-Net dataset; pass --kind or point at the tree's root"
    )


def ingest(
    catalog: Catalog,
    source: Path,
    kind: IngestKind = "auto",
    *,
    jobs: int = 1,
    progress: ProgressFn | None = None,
    clinical: list[ParsedTable] | None = None,
) -> IngestReport:
    """Ingest ``source`` into ``catalog`` incrementally and report what happened.

    ``jobs`` worker processes read the headers of new or changed OAI series. ``clinical``:
    the clinical tables of ``source`` already parsed by :func:`parse_clinical_source` (so that
    a caller can check them before it creates the catalog); parsed here when None.

    Raises:
        InputError: unreadable source or malformed table (nothing written then).
    """
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    source = source.expanduser().absolute()
    chosen = detect_kind(source) if kind == "auto" else kind
    if not source.exists():
        raise InputError(f"{source}: no such file or folder; check the path")
    if clinical is None and chosen not in ("manifest", "nnunet"):
        clinical = parse_clinical_source(source, chosen)
    if chosen == "oai":
        report = import_oai_tree(catalog, source, jobs=jobs, progress=progress)
        if clinical:
            start = time.perf_counter()
            _add_clinical(report, write_clinical_tables(catalog, clinical))
            report.seconds += time.perf_counter() - start
        return report
    if chosen == "manifest":
        return import_manifest(catalog, source)
    if chosen == "nnunet":
        from kneescope.catalog.import_nnunet import import_nnunet_dataset

        return import_nnunet_dataset(catalog, source)
    start = time.perf_counter()
    report = IngestReport(kind="clinical", source=str(source))
    _add_clinical(report, write_clinical_tables(catalog, clinical or []))
    report.unchanged = report.clinical_unchanged
    report.seconds = time.perf_counter() - start
    return report


def _add_clinical(report: IngestReport, results: list[ClinicalImport]) -> None:
    report.clinical_tables += len(results)
    report.clinical_values += sum(r.values_added + r.values_updated for r in results)
    report.clinical_unchanged += sum(r.values_unchanged for r in results)


def tree_clinical_tables(source: Path) -> list[Path]:
    """The tables in the ``clinical/`` folder of the OAI-style tree ``source`` (may be [])."""
    folder = source / "clinical"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES)


def parse_clinical_source(source: Path, kind: str) -> list[ParsedTable]:
    """Parse the clinical tables that ingesting ``source`` as ``kind`` imports; write nothing.

    ``clinical``: ``source`` itself or the tables in the folder ``source``; ``oai``: the
    tables in the tree's ``clinical/`` folder; otherwise none.

    Raises:
        InputError: a malformed table (see :func:`parse_clinical_tables`), or a ``clinical``
            folder without tables.
    """
    if kind == "clinical":
        return parse_clinical_tables(clinical_tables(source))
    if kind == "oai":
        return parse_clinical_tables(tree_clinical_tables(source))
    return []


def clinical_tables(source: Path) -> list[Path]:
    """``source`` itself, or every .csv/.txt/.tsv file directly inside the folder ``source``.

    Raises:
        InputError: a folder without table files.
    """
    if source.is_file():
        return [source]
    tables = sorted(
        p for p in source.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES
    )
    if not tables:
        raise InputError(f"{source}: no .csv/.txt/.tsv tables in this folder for --kind clinical")
    return tables
