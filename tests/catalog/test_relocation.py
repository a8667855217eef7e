"""A copied or moved workspace keeps its catalog: no re-ingest under new ids, every reader
reads the moved files.

Paths inside the workspace are stored relative to it; a series found at a new path is the
known one when its files (names, sizes, mtimes) or its SeriesInstanceUID match a vanished
entry. The original workspace is deleted before the copy is used, so nothing can quietly
read the old files.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from oai_dicom_tree import OaiTree

from kneescope.catalog.convert import convert_catalog
from kneescope.catalog.database import Catalog
from kneescope.catalog.export import export_series
from kneescope.catalog.manifest import import_manifest
from kneescope.catalog.oai import import_oai_tree
from kneescope.catalog.queries import SeriesFilter, list_series
from kneescope.catalog.schema import SCHEMA_VERSION
from kneescope.cohort.pipeline_config import ExecutorConfig, PipelineConfig
from kneescope.cohort.runner import run_pipeline
from kneescope.core import Volume
from kneescope.errors import InputError
from kneescope.io.nifti import write_nifti
from kneescope.workspace import Workspace, from_stored, to_stored


def _tree_in(template: OaiTree, dest: Path) -> OaiTree:
    """A copy of the test tree at ``dest`` (mtimes kept), with a label map for dess_v00."""
    shutil.copytree(template.root, dest)
    truth = template.good["dess_v00"]
    labels = (truth.array > 2000).astype(np.uint8)
    (dest / "labels").mkdir()
    write_nifti(Volume(labels, truth.affine_ras), dest / "labels" / f"{truth.folder.name}.nii.gz")
    return OaiTree(dest, {}, dest, dest, dest)


def _snapshot(catalog: Catalog, root: Path) -> dict[int, tuple[str, str, tuple[str, ...]]]:
    """id -> (path relative to ``root``, status, label paths relative to ``root``); every path
    must lie inside ``root``."""
    return {
        r.id: (
            Path(r.path).relative_to(root).as_posix(),
            r.status,
            tuple(Path(p).relative_to(root).as_posix() for p in r.label_paths),
        )
        for r in list_series(catalog)
    }


def _copy_and_delete(src: Path, dst: Path) -> None:
    """Copy a workspace as ``cp -a`` does (mtimes kept), then delete the original."""
    shutil.copytree(src, dst, symlinks=True)
    shutil.rmtree(src)


def test_moved_workspace_keeps_ids_and_reads_moved_files(
    catalog_url: str, oai_tree_template: OaiTree, tmp_path: Path
) -> None:
    """The catalog database lies outside the workspace (``--catalog URL``, SQLite or
    PostgreSQL): the workspace root is the ``-w`` folder, so the same database serves the
    moved workspace."""
    a, b = tmp_path / "A", tmp_path / "B"
    _tree_in(oai_tree_template, a / "OAI")
    with Catalog.open(catalog_url, root=a) as catalog:
        first = import_oai_tree(catalog, a / "OAI")
        assert (first.added, first.labels) == (7, 1)
        convert_catalog(catalog, a / "store")
        before = _snapshot(catalog, a)
    _copy_and_delete(a, b)

    with Catalog.open(catalog_url, root=b) as catalog:
        again = import_oai_tree(catalog, b / "OAI")
        assert (again.added, again.updated, again.moved, again.missing) == (0, 0, 0, 0)
        assert again.unchanged == 7
        assert _snapshot(catalog, b) == before  # same ids, same places, now under B
        dess = next(i for i, (_, _, labels) in before.items() if labels)

        skipped = convert_catalog(catalog, b / "store")
        assert (skipped.converted, skipped.failed, skipped.skipped) == (0, 0, 5)
        forced = convert_catalog(catalog, b / "store", force=True)  # reads B's files: A is gone
        assert (forced.converted, forced.failed) == (5, 0)

        (tmp_path / "out").mkdir()  # export creates no folder for a given file
        image = export_series(catalog, str(dess), "nifti", tmp_path / "out" / "dess.nii.gz")
        truth = oai_tree_template.good["dess_v00"]
        assert np.array_equal(np.asarray(nib.load(image.path).dataobj), truth.array)
        label = export_series(catalog, str(dess), "nifti", tmp_path / "out" / "l.nii", labels=True)
        assert np.array_equal(
            np.asarray(nib.load(label.path).dataobj), (truth.array > 2000).astype(np.uint8)
        )


def _run_table(ws: Workspace) -> pd.DataFrame:
    config = PipelineConfig.model_validate(
        {
            "name": "moved",
            "items": {"catalog": {"kind": "mri"}},
            "steps": [{"name": "load_volume"}],
            "executor": ExecutorConfig().model_dump(),
        }
    )
    return pd.read_parquet(run_pipeline(config, ws).results_path)


def test_copied_workspace_run_has_one_row_per_series(
    oai_tree_template: OaiTree, tmp_path: Path
) -> None:
    """The default layout (WS/catalog.sqlite, cohort inside WS), as ``kneescope demo``
    leaves it: after ``cp -a A B; rm -r A`` the ingest adds nothing and the next run's
    results table still has one row per series, under the same item ids."""
    ws_a = Workspace.resolve(tmp_path / "A").ensure()
    _tree_in(oai_tree_template, ws_a.root / "cohort")
    with Catalog.for_workspace(ws_a, create=True) as catalog:
        import_oai_tree(catalog, ws_a.root / "cohort")
        before = _snapshot(catalog, ws_a.root)
        mri_ok = {f"series-{r.id}" for r in list_series(catalog, SeriesFilter(kind="mri"))}
        mri_ok &= {f"series-{i}" for i, (_, status, _) in before.items() if status == "ok"}
    first = _run_table(ws_a)
    assert len(mri_ok) == 4
    assert sorted(first["item_id"]) == sorted(mri_ok)
    _copy_and_delete(ws_a.root, tmp_path / "B")

    ws_b = Workspace.resolve(tmp_path / "B")
    with Catalog.for_workspace(ws_b, create=False) as catalog:
        again = import_oai_tree(catalog, ws_b.root / "cohort")
    table = _run_table(ws_b)
    assert len(table) == len(first) == 4  # one row per series, not one per series and copy
    assert table["item_id"].is_unique
    assert sorted(table["item_id"]) == sorted(first["item_id"])
    assert set(table["image_shape"]) == set(first["image_shape"])
    assert (again.added, again.missing, again.unchanged) == (0, 0, 7)
    with Catalog.for_workspace(ws_b, create=False) as catalog:
        assert _snapshot(catalog, ws_b.root) == before


def test_series_moved_outside_the_workspace_keep_their_ids(
    oai_tree_template: OaiTree, tmp_path: Path
) -> None:
    """A tree outside the workspace is stored with absolute paths; moved elsewhere it is
    recognised by its files, or (mtimes changed, DICOM) by SeriesInstanceUID."""
    ws = Workspace.resolve(tmp_path / "ws").ensure()
    _tree_in(oai_tree_template, tmp_path / "data1" / "OAI")
    with Catalog.for_workspace(ws, create=True) as catalog:
        import_oai_tree(catalog, tmp_path / "data1" / "OAI")
        before = {r.id: Path(r.path).relative_to(tmp_path / "data1") for r in list_series(catalog)}
        shutil.move(tmp_path / "data1", tmp_path / "data2")
        report = import_oai_tree(catalog, tmp_path / "data2" / "OAI")
        assert (report.added, report.missing, report.unchanged) == (0, 0, 0)
        assert report.moved == 7
        after = {r.id: Path(r.path).relative_to(tmp_path / "data2") for r in list_series(catalog)}
        assert after == before
        assert all(len(r.label_paths) <= 1 for r in list_series(catalog))

        # moved again, with every file touched: the DICOM series are known by their UID
        shutil.move(tmp_path / "data2", tmp_path / "data3")
        for folder, _, files in os.walk(tmp_path / "data3"):
            for name in files:
                path = Path(folder) / name
                os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
        ok = {r.id for r in list_series(catalog) if r.status == "ok"}
        report = import_oai_tree(catalog, tmp_path / "data3" / "OAI")
        assert report.moved == len(ok) == 5
        records = {r.id: r for r in list_series(catalog)}
        for series_id in ok:
            assert (
                Path(records[series_id].path).relative_to(tmp_path / "data3") == before[series_id]
            )
        assert sum(1 for r in records.values() if r.label_paths) == 1
        label_owner = next(r for r in records.values() if r.label_paths)
        assert Path(label_owner.label_paths[0]).is_file()


def test_moved_manifest_images_keep_their_ids(tmp_path: Path) -> None:
    """NIfTI files listed in a manifest, moved with their folder: same ids, no new rows."""
    data = tmp_path / "images"
    data.mkdir()
    rng = np.random.default_rng(3)
    lines = ["path,subject,visit,side,sequence"]
    for i in range(2):
        array = rng.integers(0, 500, size=(6, 7, 5), dtype=np.int16)
        write_nifti(Volume(array, np.diag([0.5, 0.5, 1.0, 1.0])), data / f"case{i}.nii.gz")
        lines.append(f"case{i}.nii.gz,S{i},V00,right,DESS")
    (data / "manifest.csv").write_text("\n".join(lines) + "\n")
    ws = Workspace.resolve(tmp_path / "ws").ensure()
    with Catalog.for_workspace(ws, create=True) as catalog:
        assert import_manifest(catalog, data).added == 2
        before = {r.id: Path(r.path).name for r in list_series(catalog)}
        shutil.move(data, tmp_path / "elsewhere")
        report = import_manifest(catalog, tmp_path / "elsewhere")
        assert (report.added, report.unchanged) == (0, 0)
        assert report.moved == 2
        records = list_series(catalog)
        assert {r.id: Path(r.path).name for r in records} == before
        assert all(Path(r.path).parent == tmp_path / "elsewhere" for r in records)


def test_catalog_with_absolute_paths_still_works_and_moves(
    oai_tree_template: OaiTree, tmp_path: Path
) -> None:
    """A catalog written before paths were relative (schema version 1, absolute paths)
    opens and reads as it is; ingested in place its paths become relative; a copy of its
    workspace (original kept) adopts the copied entries instead of adding them again."""
    ws_a = Workspace.resolve(tmp_path / "A").ensure()
    _tree_in(oai_tree_template, ws_a.root / "cohort")
    with Catalog.for_workspace(ws_a, create=True) as catalog:
        import_oai_tree(catalog, ws_a.root / "cohort")
        before = _snapshot(catalog, ws_a.root)
    with sqlite3.connect(ws_a.catalog_path) as db:  # what an older kneescope wrote
        for table in ("series", "label_maps"):
            db.execute(f"UPDATE {table} SET path = ? || '/' || path", (str(ws_a.root),))
        db.execute("UPDATE catalog_meta SET value = '1' WHERE key = 'schema_version'")
    shutil.copytree(ws_a.root, tmp_path / "B")
    ws_b = Workspace.resolve(tmp_path / "B")

    with Catalog.for_workspace(ws_a, create=False) as catalog:
        assert _snapshot(catalog, ws_a.root) == before  # absolute paths read as they are
        report = import_oai_tree(catalog, ws_a.root / "cohort")
        assert (report.added, report.unchanged) == (0, 7)
        assert report.moved == 0
        assert _snapshot(catalog, ws_a.root) == before
    with sqlite3.connect(ws_a.catalog_path) as db:
        paths = [
            p for (p,) in db.execute("SELECT path FROM series UNION SELECT path FROM label_maps")
        ]
        version = db.execute("SELECT value FROM catalog_meta WHERE key = 'schema_version'")
        assert version.fetchone() == (str(SCHEMA_VERSION),)
    assert paths and not any(p.startswith("/") for p in paths)

    with Catalog.for_workspace(ws_b, create=False) as catalog:
        report = import_oai_tree(catalog, ws_b.root / "cohort")
        assert report.added == 0
        assert report.moved == 7
        assert _snapshot(catalog, ws_b.root) == before


def test_a_second_copy_that_still_exists_is_a_second_series(
    oai_tree_template: OaiTree, tmp_path: Path
) -> None:
    """Only a vanished entry is taken over: two copies of a tree, both on disk, ingested into
    one catalog are two sets of series, and re-ingesting either changes nothing."""
    ws = Workspace.resolve(tmp_path / "ws").ensure()
    _tree_in(oai_tree_template, tmp_path / "one" / "OAI")
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    with Catalog.for_workspace(ws, create=True) as catalog:
        assert import_oai_tree(catalog, tmp_path / "one" / "OAI").added == 7
        second = import_oai_tree(catalog, tmp_path / "two" / "OAI")
        assert (second.added, second.moved) == (7, 0)
        for tree in ("one", "two"):
            again = import_oai_tree(catalog, tmp_path / tree / "OAI")
            assert (again.added, again.moved, again.unchanged) == (0, 0, 7)
        records = list_series(catalog)
        assert len(records) == 14
        assert {Path(r.path).relative_to(tmp_path).parts[0] for r in records} == {"one", "two"}
        for record in records:
            assert all(
                Path(p).is_relative_to(Path(record.path).parents[3]) for p in record.label_paths
            )


def test_stored_paths_are_relative_inside_the_workspace(tmp_path: Path) -> None:
    """Inside the workspace (also through a symlinked -w folder): relative; outside: absolute."""
    real = tmp_path / "real"
    (real / "cohort").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    assert to_stored(real / "cohort" / "x", real) == "cohort/x"
    assert to_stored(real / "cohort" / ".." / "y", real) == "y"
    assert to_stored(real, real) == "."
    assert to_stored(real / "cohort", tmp_path / "link") == "cohort"
    assert to_stored(tmp_path / "realx" / "z", real) == str(tmp_path / "realx" / "z")
    assert to_stored(real / "cohort", None) == str(real / "cohort")
    assert from_stored("cohort/x", tmp_path / "moved") == tmp_path / "moved" / "cohort" / "x"
    assert from_stored("/data/x", tmp_path) == Path("/data/x")
    with pytest.raises(InputError, match="-w WORKSPACE"):
        from_stored("cohort/x", None)
