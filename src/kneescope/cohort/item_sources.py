"""Turn an :class:`ItemsConfig` into items: a CSV list, a file pattern, inline rows, or a
catalog selection. Items stream (one at a time), so 20,000 of them cost no memory spike."""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from kneescope.cohort.item import Item, ItemPart, file_checksum
from kneescope.cohort.manifest import Manifest
from kneescope.cohort.pipeline_config import ItemsConfig
from kneescope.errors import ConfigError, InputError

if TYPE_CHECKING:
    from kneescope.catalog.queries import SeriesFilter, SeriesRecord

log = logging.getLogger(__name__)

_CSV_FIELDS = ("item_id", "subject", "visit", "side", "series", "path")


def iter_items(
    config: ItemsConfig,
    base_dir: Path,
    catalog_url: str | None = None,
    catalog_root: Path | None = None,
) -> Iterator[Item]:
    """Items of the selection, in order; relative paths resolved against ``base_dir``;
    ``catalog_url`` is the catalog a ``catalog`` selection reads and ``catalog_root`` its
    workspace folder (what the catalog's relative paths are relative to).

    Raises:
        InputError: a missing list file, a row without item_id and path, a duplicate id.
    """
    seen: set[str] = set()
    for item in _raw_items(config, base_dir, catalog_url, catalog_root):
        if item.item_id in seen:
            raise InputError(f"item id {item.item_id!r} appears twice; item ids must be unique")
        seen.add(item.item_id)
        yield item


def _resolve(path: str | None, base_dir: Path) -> str | None:
    if not path:
        return None
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base_dir / p).absolute())


def _raw_items(
    config: ItemsConfig, base_dir: Path, catalog_url: str | None, catalog_root: Path | None
) -> Iterator[Item]:
    if config.rows:
        for row in config.rows:
            yield Item(
                row.item_id,
                row.subject,
                row.visit,
                row.side,
                row.series,
                _resolve(row.path, base_dir),
            )
    elif config.glob:
        matches = sorted(p for p in base_dir.glob(config.glob) if p.is_file())
        if not matches:
            raise InputError(f"no files match {config.glob!r} under {base_dir}; check the pattern")
        for path in matches:
            yield Item(item_id=str(path.relative_to(base_dir)), path=str(path.absolute()))
    elif config.list:
        yield from _csv_items(Path(_resolve(config.list, base_dir) or config.list), base_dir)
    else:
        yield from catalog_items(config.catalog or {}, catalog_url, catalog_root, config.unit)


_UNIT_DEFAULTS: dict[str, dict[str, str]] = {
    "radiograph_knee": {"kind": "radiograph", "sequence": "XR_PA"},
    "full_leg": {"kind": "radiograph", "sequence": "XR_FULL_LEG"},
}
"""Filter values a unit implies unless the selection gives its own."""

_UNIT_NOUNS = {
    "series": "series",
    "radiograph_knee": "bilateral knee radiographs",
    "full_leg": "full-leg radiographs",
    "subject_visit": "series with a subject and visit",
    "knee_longitudinal": "series of a knee with a visit",
}


def catalog_items(
    selection: dict[str, str],
    catalog_url: str | None,
    root: Path | None = None,
    unit: str = "series",
) -> Iterator[Item]:
    """Items of the catalog series matching ``selection`` (fields of the catalog's
    SeriesFilter: subject, visit, side, sequence, status, modality, kind, limit), one per
    ``unit`` (see :data:`kneescope.cohort.item.UNITS`).

    Only series with status ``ok`` unless ``status`` is given. ``series``: one item per
    series, radiographs only when ``kind`` asks for them. ``radiograph_knee`` (default filter
    ``kind = radiograph, sequence = XR_PA``): two items per bilateral film (``series-<id>-right``
    and ``-left``; a film with a side gives that side only). ``full_leg`` (default
    ``sequence = XR_FULL_LEG``): one item per film. ``subject_visit``: one item per subject and
    visit (``subject-<subject>-<visit>``) holding its series, every kind. ``knee_longitudinal``:
    one item per subject and knee (``knee-<subject>-<side>``) holding the knee's series in
    visit order; a radiograph without a side (a bilateral or full-leg film) belongs to both
    knees, other series without a side to none. For these two units ``side`` picks the knee
    (a bilateral film gives only that knee). ``limit`` counts series, not items.

    The input checksum is the catalog's file checksum of every series the item reads (and of
    their label maps), so a changed series re-runs exactly the items that read it. ``root`` is
    the catalog's workspace folder (default: a SQLite catalog's folder); item paths are real
    paths in it.

    Raises:
        ConfigError: no catalog.
        InputError: a bad filter value, or nothing matches.
    """
    from kneescope.catalog.queries import SeriesFilter
    from kneescope.config import validate_config

    if catalog_url is None:
        raise ConfigError("a catalog selection needs a workspace catalog; pass -w or --catalog")
    query = {"status": "ok", **_UNIT_DEFAULTS.get(unit, {}), **selection}
    knee_side = None
    if unit in _KNEE_UNITS and query.get("side"):
        # a bilateral film has no side of its own but shows this knee: pick knees, not series
        knee_side = _side(query.pop("side"))
    where = validate_config(SeriesFilter, query, "items.catalog")
    records, checksums = _catalog_records(where, catalog_url, root)
    if unit == "series":
        records = [r for r in records if r.kind != "radiograph" or where.kind]
    items = [
        i
        for i in _UNIT_BUILDERS[unit](records, checksums)
        if knee_side is None or i.side == knee_side
    ]
    if not items:
        raise InputError(
            f"the catalog selection {selection} matches no {_UNIT_NOUNS[unit]}; "
            "check it with `kneescope catalog`"
        )
    yield from items


_KNEE_UNITS = frozenset({"radiograph_knee", "knee_longitudinal"})
"""Units whose ``side`` filter picks knees (a bilateral film serves both)."""


def _side(text: str) -> str:
    from kneescope.catalog.naming import side_from_text

    side = side_from_text(text)
    if side is None:
        raise InputError(f"items.catalog side {text!r} is not right or left")
    return side


def _catalog_records(
    where: SeriesFilter, catalog_url: str, root: Path | None
) -> tuple[list[SeriesRecord], dict[int, str]]:
    """The matching series and each one's input checksum (series files + label map)."""
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.queries import label_map_checksums, list_series

    catalog = Catalog.open(catalog_url, create=False, root=root)
    try:
        records = list_series(catalog, where)
        # real path -> (stored path, checksum): the stored one (workspace-relative) goes
        # into the input checksum, so a moved workspace does not re-run every item
        label_checksums = label_map_checksums(catalog)
    finally:
        catalog.close()
    checksums: dict[int, str] = {}
    for r in records:
        checksum = r.files_checksum
        labels = r.label_paths[0] if r.label_paths else None
        if labels is not None:
            # The attached label map is part of the input: a new label map re-runs the item.
            stored, label_sum = label_checksums.get(labels, (labels, ""))
            text = f"{r.files_checksum}|{stored}|{label_sum}"
            checksum = hashlib.sha256(text.encode()).hexdigest()[:32]
        checksums[r.id] = checksum
    return records, checksums


def _series_name(r: SeriesRecord) -> str:
    return r.series_uid or r.description or str(r.id)


def _series_items(records: list[SeriesRecord], checksums: dict[int, str]) -> Iterator[Item]:
    for r in records:
        yield Item(
            item_id=f"series-{r.id}",
            subject=r.subject or "",
            visit=r.visit or "",
            side=r.side or "",
            series=_series_name(r),
            path=r.path,
            input_checksum=checksums[r.id],
            labels_path=r.label_paths[0] if r.label_paths else None,
            from_catalog=True,
        )


def _radiograph_knee_items(
    records: list[SeriesRecord], checksums: dict[int, str]
) -> Iterator[Item]:
    for r in records:
        for side in (r.side,) if r.side else ("right", "left"):
            yield Item(
                item_id=f"series-{r.id}-{side}",
                subject=r.subject or "",
                visit=r.visit or "",
                side=side,
                series=_series_name(r),
                path=r.path,
                input_checksum=checksums[r.id],
                from_catalog=True,
                unit="radiograph_knee",
            )


def _full_leg_items(records: list[SeriesRecord], checksums: dict[int, str]) -> Iterator[Item]:
    for item in _series_items(records, checksums):
        yield _with(item, item.input_checksum, unit="full_leg")


def _part(r: SeriesRecord) -> ItemPart:
    return ItemPart(
        series=_series_name(r),
        path=r.path,
        visit=r.visit or "",
        side=r.side or "",
        sequence=r.sequence or "",
        kind=r.kind,
        labels_path=r.label_paths[0] if r.label_paths else None,
    )


def _parts_checksum(records: list[SeriesRecord], checksums: dict[int, str]) -> str:
    text = "|".join(f"{r.id}:{checksums[r.id]}" for r in records)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _subject_visit_items(records: list[SeriesRecord], checksums: dict[int, str]) -> Iterator[Item]:
    groups: dict[tuple[str, str], list[SeriesRecord]] = {}
    for r in records:
        if r.subject and r.visit:
            groups.setdefault((r.subject, r.visit), []).append(r)
    _log_left_out(len(records) - sum(map(len, groups.values())), "no subject or visit")
    for (subject, visit), members in sorted(groups.items()):
        yield Item(
            item_id=f"subject-{subject}-{visit}",
            subject=subject,
            visit=visit,
            input_checksum=_parts_checksum(members, checksums),
            from_catalog=True,
            unit="subject_visit",
            parts=tuple(_part(r) for r in members),
        )


def _knee_longitudinal_items(
    records: list[SeriesRecord], checksums: dict[int, str]
) -> Iterator[Item]:
    knees: dict[tuple[str, str], list[SeriesRecord]] = {}
    left_out = 0
    for r in records:
        if not (r.subject and r.visit) or not (r.side or r.kind == "radiograph"):
            left_out += 1
            continue
        for side in (r.side,) if r.side else ("right", "left"):
            knees.setdefault((r.subject, side), []).append(r)
    _log_left_out(left_out, "no subject, no visit, or no side")
    for (subject, side), members in sorted(knees.items()):
        members = sorted(members, key=lambda r: (r.visit or "", r.sequence or "", r.id))
        yield Item(
            item_id=f"knee-{subject}-{side}",
            subject=subject,
            side=side,
            input_checksum=_parts_checksum(members, checksums),
            from_catalog=True,
            unit="knee_longitudinal",
            parts=tuple(_part(r) for r in members),
        )


def _log_left_out(count: int, why: str) -> None:
    if count:
        log.warning("items: %d selected series left out (%s)", count, why)


_UNIT_BUILDERS: dict[str, Callable[[list[SeriesRecord], dict[int, str]], Iterator[Item]]] = {
    "series": _series_items,
    "radiograph_knee": _radiograph_knee_items,
    "full_leg": _full_leg_items,
    "subject_visit": _subject_visit_items,
    "knee_longitudinal": _knee_longitudinal_items,
}


def _csv_items(path: Path, base_dir: Path) -> Iterator[Item]:
    from kneescope.io.guards import require_regular_file

    require_regular_file(path, what="item list")  # a FIFO would block for ever
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read item list {path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"item_id", "path"} & set(reader.fieldnames):
            raise InputError(f"{path}: expected a CSV header with item_id and/or path columns")
        unknown = set(reader.fieldnames) - set(_CSV_FIELDS)
        if unknown:
            raise InputError(f"{path}: unknown columns {sorted(unknown)}; use {_CSV_FIELDS}")
        for line, row in enumerate(reader, start=2):
            item_path = _resolve(row.get("path"), path.parent)
            item_id = row.get("item_id") or (Path(item_path).name if item_path else "")
            if not item_id:
                raise InputError(f"{path}:{line}: row has neither item_id nor path")
            yield Item(
                item_id,
                row.get("subject") or "",
                row.get("visit") or "",
                row.get("side") or "",
                row.get("series") or "",
                item_path,
            )
    del base_dir


def checksum_from_cache(item: Item, manifest: Manifest | None) -> Item:
    """Like :func:`with_checksum` but read-only: cached checksums from a (read-only) manifest,
    computing (without storing) the rest."""
    if item.input_checksum or item.path is None or manifest is None:
        return with_checksum(item, None)
    try:
        st = os.stat(item.path)
    except OSError:
        return with_checksum(item, None)
    cached = manifest.cached_checksum(item.path, st.st_size, st.st_mtime_ns)
    if cached is None:
        return with_checksum(item, None)
    return _with(item, cached)


def with_checksum(item: Item, manifest: Manifest | None) -> Item:
    """The item with ``input_checksum`` set: file content hash (cached by size and mtime),
    or a hash of the item's fields when it has no file; ``missing`` when the file is absent."""
    if item.input_checksum:
        return item
    if item.path is None:
        fields = "|".join((item.item_id, item.subject, item.visit, item.side, item.series))
        checksum = "id:" + hashlib.sha256(fields.encode()).hexdigest()[:29]
    else:
        try:
            st = os.stat(item.path)
        except OSError:
            checksum = "missing"
        else:
            cached = (
                None
                if manifest is None
                else manifest.cached_checksum(item.path, st.st_size, st.st_mtime_ns)
            )
            if cached is None:
                try:
                    cached = file_checksum(Path(item.path))
                except InputError:
                    cached = "unreadable"
                else:
                    if manifest is not None:
                        manifest.store_checksum(item.path, st.st_size, st.st_mtime_ns, cached)
            checksum = cached
    return _with(item, checksum)


def _with(item: Item, checksum: str, unit: str | None = None) -> Item:
    """``item`` with ``input_checksum`` (and ``unit``) set (a direct copy:
    dataclasses.replace is slow)."""
    return Item(
        item.item_id,
        item.subject,
        item.visit,
        item.side,
        item.series,
        item.path,
        checksum,
        item.labels_path,
        item.from_catalog,
        item.unit if unit is None else unit,
        item.parts,
    )
