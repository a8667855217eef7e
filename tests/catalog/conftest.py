"""Catalog fixtures: a fresh catalog URL on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from oai_dicom_tree import OaiTree, SeriesTruth, build_oai_tree
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from kneescope.catalog.database import Catalog


def fresh_pg_database(server_url: str) -> Iterator[str]:
    """Create a randomly named database on the server, yield its URL, drop it afterwards."""
    name = f"ks_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    else:
        server = request.getfixturevalue("pg_url")
        yield from fresh_pg_database(server)


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    """An opened, empty catalog on each backend."""
    cat = Catalog.open(catalog_url)
    try:
        yield cat
    finally:
        cat.close()


@pytest.fixture(scope="session")
def oai_tree_template(tmp_path_factory: pytest.TempPathFactory) -> OaiTree:
    """The tree, built once per session; copy it before modifying (see ``oai_tree``)."""
    return build_oai_tree(tmp_path_factory.mktemp("oai") / "OAI")


@pytest.fixture
def oai_tree(oai_tree_template: OaiTree, tmp_path: Path) -> OaiTree:
    """A private copy of the OAI tree (same relative layout, fresh paths)."""
    root = tmp_path / "OAI"
    shutil.copytree(oai_tree_template.root, root)

    def move(p: Path) -> Path:
        return root / p.relative_to(oai_tree_template.root)

    good = {
        k: SeriesTruth(move(t.folder), t.array, t.affine_ras, t.uid)
        for k, t in oai_tree_template.good.items()
    }
    return OaiTree(
        root,
        good,
        move(oai_tree_template.radiograph),
        move(oai_tree_template.truncated),
        move(oai_tree_template.not_dicom),
    )


@pytest.fixture
def sqlite_catalog(tmp_path: Path) -> Iterator[Catalog]:
    """A SQLite catalog, for checks that fail before any SQL is written (one backend is enough)."""
    cat = Catalog.open(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    try:
        yield cat
    finally:
        cat.close()
