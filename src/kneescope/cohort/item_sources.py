"""Turn an :class:`ItemsConfig` into items: a CSV list, a file pattern, inline rows, or a
catalog selection. Items stream (one at a time), so 20,000 of them cost no memory spike."""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from kneescope.cohort.item import Item, file_checksum
from kneescope.cohort.manifest import Manifest
from kneescope.cohort.pipeline_config import ItemsConfig
from kneescope.errors import ConfigError, InputError

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
        yield from catalog_items(config.catalog or {}, catalog_url, catalog_root)


def catalog_items(
    selection: dict[str, str], catalog_url: str | None, root: Path | None = None
) -> Iterator[Item]:
    """Series of the catalog matching ``selection`` (fields of the catalog's SeriesFilter:
    subject, visit, side, sequence, status, modality, kind, limit). Only series with status
    ``ok`` unless ``status`` is given; radiographs only when ``kind`` asks for them. The
    catalog's own file checksum is the item's input checksum. ``root`` is the catalog's
    workspace folder (default: a SQLite catalog's folder); item paths are real paths in it."""
    from sqlalchemy import select

    from kneescope.catalog.database import Catalog
    from kneescope.catalog.queries import SeriesFilter, list_series
    from kneescope.catalog.schema import LabelMap
    from kneescope.config import validate_config

    if catalog_url is None:
        raise ConfigError("a catalog selection needs a workspace catalog; pass -w or --catalog")
    where = validate_config(SeriesFilter, {"status": "ok", **selection}, "items.catalog")
    catalog = Catalog.open(catalog_url, create=False, root=root)
    try:
        records = list_series(catalog, where)
        with catalog.session() as session:
            # real path -> (stored path, checksum): the stored one (workspace-relative) goes
            # into the input checksum, so a moved workspace does not re-run every item
            label_checksums = {
                str(catalog.resolve(path)): (path, checksum)
                for path, checksum in session.execute(
                    select(LabelMap.path, LabelMap.files_checksum)
                )
            }
    finally:
        catalog.close()
    if not records:
        raise InputError(
            f"the catalog selection {selection} matches no series; "
            "check it with `kneescope catalog`"
        )
    for r in records:
        if r.kind == "radiograph" and not where.kind:
            continue
        labels = r.label_paths[0] if r.label_paths else None
        checksum = r.files_checksum
        if labels is not None:
            # The attached label map is part of the input: a new label map re-runs the item.
            stored, label_sum = label_checksums.get(labels, (labels, ""))
            text = f"{r.files_checksum}|{stored}|{label_sum}"
            checksum = hashlib.sha256(text.encode()).hexdigest()[:32]
        yield Item(
            item_id=f"series-{r.id}",
            subject=r.subject or "",
            visit=r.visit or "",
            side=r.side or "",
            series=r.series_uid or r.description or str(r.id),
            path=r.path,
            input_checksum=checksum,
            labels_path=labels,
            from_catalog=True,
        )


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


def _with(item: Item, checksum: str) -> Item:
    """``item`` with ``input_checksum`` set (a direct copy: dataclasses.replace is slow)."""
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
    )
