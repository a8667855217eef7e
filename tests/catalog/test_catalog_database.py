from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from kneescope.catalog.database import Catalog
from kneescope.catalog.queries import SeriesFilter, get_series, list_series, summarize
from kneescope.catalog.rows import RowWriter
from kneescope.catalog.schema import STATUS_FAILED, STATUS_OK, LabelMap, StoreEntry
from kneescope.errors import CatalogError, InputError, NotFoundError

TABLES = {
    "catalog_meta",
    "subjects",
    "visits",
    "knees",
    "series",
    "label_maps",
    "clinical_values",
    "store_entries",
}


def _fill(catalog: Catalog) -> None:
    with catalog.session() as session:
        w = RowWriter(session, cohort="oai")
        for code in ("9000001", "9000002"):
            subject = w.subject(code)
            for visit_code in ("V00", "V01"):
                visit = w.visit(subject, visit_code, "20040101")
                for side in ("right", "left"):
                    w.upsert_series(
                        f"/data/{code}/{visit_code}/{side}",
                        source="oai",
                        subject_id=subject.id,
                        visit_id=visit.id,
                        knee_id=w.knee(subject, side).id,
                        kind="mri",
                        modality="MR",
                        sequence="DESS",
                        series_uid=f"1.2.3.{code}.{visit_code[1:]}.{len(side)}",
                        shape=[8, 32, 32],
                        spacing_mm=[0.7, 0.36, 0.36],
                        files_checksum="x" * 64,
                        status=STATUS_OK,
                    )
        xr = w.upsert_series(
            "/data/9000001/V00/xr",
            source="oai",
            subject_id=w.subject("9000001").id,
            visit_id=w.visit(w.subject("9000001"), "V00").id,
            kind="radiograph",
            modality="CR",
            sequence="XR_PA",
            files_checksum="y" * 64,
            status=STATUS_FAILED,
            reason="truncated file",
        )
        session.add(LabelMap(series_id=xr.id, path="/labels/xr.nii.gz", files_checksum="z"))
        session.add(
            StoreEntry(series_id=xr.id, store_key="k", checksum="c", bytes_in=10, bytes_out=5)
        )


def test_schema_created_idempotently_and_data_survives_reopen(catalog_url: str) -> None:
    first = Catalog.open(catalog_url)
    assert set(inspect(first.engine).get_table_names()) >= TABLES
    _fill(first)
    first.close()
    again = Catalog.open(catalog_url)  # create_all again: nothing dropped, nothing duplicated
    try:
        assert summarize(again).series == 9
        assert summarize(again).subjects == 2
    finally:
        again.close()


def test_filters_and_summary(catalog: Catalog) -> None:
    _fill(catalog)
    assert len(list_series(catalog)) == 9
    right_v01 = list_series(catalog, SeriesFilter(visit="V01", side="right"))
    assert [(r.subject, r.visit, r.side) for r in right_v01] == [
        ("9000001", "V01", "right"),
        ("9000002", "V01", "right"),
    ]
    assert len(list_series(catalog, SeriesFilter(visit="1", side="R", sequence="dess"))) == 2
    failed = list_series(catalog, SeriesFilter(status="failed"))
    assert len(failed) == 1
    assert failed[0].reason == "truncated file"
    assert failed[0].side is None
    assert failed[0].label_paths == ("/labels/xr.nii.gz",)
    assert failed[0].store_key == "k"
    assert len(list_series(catalog, SeriesFilter(modality="cr"))) == 1
    assert len(list_series(catalog, SeriesFilter(kind="mri", subject="9000002"))) == 4
    assert list_series(catalog, SeriesFilter(limit=3))[0].shape in {(8, 32, 32), None}
    s = summarize(catalog)
    assert (s.subjects, s.visits, s.knees, s.series) == (2, 4, 4, 9)
    assert s.series_by_status == {"failed": 1, "ok": 8}
    assert s.series_by_sequence == {"DESS": 8, "XR_PA": 1}
    assert s.series_by_visit == {"V00": 5, "V01": 4}
    assert (s.label_maps, s.store_entries) == (1, 1)


@pytest.mark.parametrize(
    ("where", "listed"),
    [
        (SeriesFilter(status="broken"), "is not one of ok, failed"),
        (SeriesFilter(kind="mr"), "is not one of mri, radiograph, unknown"),
        (SeriesFilter(sequence="DES"), "it holds DESS, XR_PA (also valid: FLASH, IW_TSE"),
        (SeriesFilter(modality="MRI"), "it holds CR, MR (also valid: CT, DR, DX, OT, RG)"),
    ],
)
def test_filter_values_that_are_no_values_are_refused(
    catalog: Catalog, where: SeriesFilter, listed: str
) -> None:
    """A typo is an error listing the valid values, never an empty answer."""
    _fill(catalog)
    with pytest.raises(InputError, match="is not") as info:
        list_series(catalog, where)
    assert listed in str(info.value)
    assert "\n" not in str(info.value)


def test_known_or_cataloged_filter_values_are_accepted(catalog: Catalog) -> None:
    _fill(catalog)
    # known to kneescope but absent here: a true empty answer
    assert list_series(catalog, SeriesFilter(sequence="T2_MAP", modality="DX")) == []
    assert len(list_series(catalog, SeriesFilter(sequence="xr_pa", status="FAILED"))) == 1
    with catalog.session() as session:  # a manifest may bring its own sequence names
        RowWriter(session, cohort="oai").upsert_series(
            "/data/x/cube",
            source="manifest",
            sequence="CUBE_3D",
            modality="MR",
            files_checksum="w" * 64,
            status=STATUS_OK,
        )
    assert [r.path for r in list_series(catalog, SeriesFilter(sequence="cube_3d"))] == [
        "/data/x/cube"
    ]


def test_get_series_by_id_and_uid(catalog: Catalog) -> None:
    _fill(catalog)
    rec = list_series(catalog, SeriesFilter(visit="V00", side="left", subject="9000002"))[0]
    assert get_series(catalog, rec.id) == rec
    assert rec.series_uid is not None
    assert get_series(catalog, rec.series_uid).id == rec.id
    with pytest.raises(NotFoundError, match="no series '999'"):
        get_series(catalog, "999")
    with pytest.raises(NotFoundError):
        get_series(catalog, "1.2.999")


def test_upsert_resets_stale_columns(catalog: Catalog) -> None:
    _fill(catalog)
    with catalog.session() as session:
        RowWriter(session).upsert_series(
            "/data/9000001/V00/xr", source="oai", files_checksum="w" * 64, status=STATUS_OK
        )
    rec = list_series(catalog, SeriesFilter(status="ok", sequence=None, limit=None))
    fixed = next(r for r in rec if r.path == "/data/9000001/V00/xr")
    assert fixed.reason is None
    assert fixed.sequence is None
    assert summarize(catalog).series == 9


def test_bad_filters_raise_input_errors(catalog: Catalog) -> None:
    with pytest.raises(InputError, match="visit"):
        list_series(catalog, SeriesFilter(visit="baseline"))
    with pytest.raises(InputError, match="side"):
        list_series(catalog, SeriesFilter(side="both"))


def test_open_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a database URL"):
        Catalog.open("not a url")
    with pytest.raises(CatalogError, match="does not exist"):
        Catalog.open(f"sqlite:///{tmp_path / 'missing' / 'c.sqlite'}")
    with pytest.raises(CatalogError, match="cannot open catalog") as info:
        Catalog.open("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert "\n" not in str(info.value)


def test_database_errors_become_one_line_catalog_errors(tmp_path: Path) -> None:
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    catalog = Catalog.open(url)
    with catalog.engine.begin() as conn:
        conn.execute(text("DROP TABLE store_entries"))
    with pytest.raises(CatalogError, match="no such table") as info:
        list_series(catalog)
    assert "\n" not in str(info.value)
    catalog.close()
    (tmp_path / "junk.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(CatalogError, match="cannot open catalog"):
        Catalog.open(f"sqlite:///{tmp_path / 'junk.sqlite'}")


def test_foreign_database_with_a_series_table_is_refused_untouched(catalog_url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(catalog_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE series (id INTEGER PRIMARY KEY, title TEXT)"))
        conn.execute(text("INSERT INTO series (id, title) VALUES (1, 'season 1')"))
    try:
        for create in (True, False):
            with pytest.raises(CatalogError, match="not a kneescope catalog") as info:
                Catalog.open(catalog_url, create=create)
            assert "series" in str(info.value)
        assert inspect(engine).get_table_names() == ["series"]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT title FROM series")).all() == [("season 1",)]
    finally:
        engine.dispose()


def test_catalog_without_its_marker_row_still_opens(catalog_url: str) -> None:
    from sqlalchemy import delete, select

    from kneescope.catalog.schema import CatalogMeta

    with Catalog.open(catalog_url) as catalog, catalog.session() as session:
        RowWriter(session, cohort="oai").subject_ids({"9000001"})
        session.execute(delete(CatalogMeta))
    with Catalog.open(catalog_url) as catalog:
        assert summarize(catalog).subjects == 1
        with catalog.session() as session:
            assert session.scalar(select(CatalogMeta.value)) is not None


def test_opening_an_empty_database_without_create_says_there_is_no_catalog(tmp_path: Path) -> None:
    """A database with no kneescope tables (e.g. a fresh PostgreSQL database given with
    --catalog) is 'no catalog yet' with the command that makes one, not a SQL error."""
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    with pytest.raises(NotFoundError, match=r"holds no kneescope catalog yet.*kneescope ingest"):
        Catalog.open(url, create=False)
    Catalog.open(url, create=True).close()
    Catalog.open(url, create=False).close()
