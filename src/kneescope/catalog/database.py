"""Open a catalog database by SQLAlchemy URL and create its schema idempotently.

SQLite files are the default (``WORKSPACE/catalog.sqlite``); any SQLAlchemy URL works
(``postgresql+psycopg://user@host:5432/db``). Opening creates missing tables and never
touches existing rows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from kneescope.catalog.schema import SCHEMA_VERSION, UPGRADABLE_VERSIONS, Base, CatalogMeta
from kneescope.errors import CatalogError, InputError, NotFoundError
from kneescope.workspace import Workspace, from_stored, to_stored

log = logging.getLogger(__name__)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _first_arg(exc: Exception) -> str:
    """The first line of an exception's message, passwords masked."""
    lines = str(exc).strip().splitlines()
    return _mask_password(lines[0]) if lines else type(exc).__name__


def _first_line(exc: SQLAlchemyError) -> str:
    """The driver's message (or SQLAlchemy's) as one line."""
    orig = getattr(exc, "orig", None)
    lines = str(orig if orig is not None else exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _mask_password(url: str) -> str:
    """``url`` with the password of ``scheme://user:password@host`` (and ``password=``) as ***.

    For text that SQLAlchemy cannot parse; masks generously (up to the last ``@``).
    """
    url = re.sub(r"(?i)(password=)[^&]*", r"\1***", url)
    if "@" not in url:
        return url
    head, _, tail = url.rpartition("@")
    scheme, sep, userinfo = head.partition("://") if "://" in head else ("", "", head)
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{userinfo}@{tail}"


def _safe_url(url: str) -> str:
    try:  # a password in the query string (?password=...) is masked too
        return _mask_password(make_url(url).render_as_string(hide_password=True))
    except (ArgumentError, ValueError, TypeError):
        return _mask_password(url)


def display_url(url: str) -> str:
    """``url`` safe to print: its password (parsed or not) shown as ``***``."""
    return _safe_url(url)


class Catalog:
    """A cohort catalog in one SQL database.

    Use :meth:`open`; then :meth:`session` for a unit of work (commits on success, rolls back
    on error). Query helpers live in :mod:`kneescope.catalog.queries`.

    ``root`` is the workspace folder: paths of files inside it are stored relative to it
    (:meth:`stored`) and resolved against it when read (:meth:`resolve`), so a copied or moved
    workspace keeps its catalog. None (a database opened without a workspace, other than a
    SQLite file) stores absolute paths.
    """

    def __init__(self, engine: Engine, root: Path | None = None) -> None:
        self.engine = engine
        self.root = root
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def stored(self, path: Path) -> str:
        """``path`` as the catalog stores it (workspace-relative when inside the workspace)."""
        return to_stored(path, self.root)

    def resolve(self, stored: str) -> Path:
        """The real path of a stored path (relative ones resolved against the workspace).

        Raises:
            InputError: a relative path in a catalog opened without a workspace root.
        """
        return from_stored(stored, self.root)

    @property
    def url(self) -> str:
        """The database URL with any password hidden."""
        return _mask_password(self.engine.url.render_as_string(hide_password=True))

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @classmethod
    def open(cls, url: str, *, create: bool = True, root: Path | None = None) -> Catalog:
        """Open the catalog at ``url``, creating the schema when ``create`` (idempotent).

        ``root`` is the workspace folder that stored paths are relative to; for a SQLite file
        it defaults to the file's folder (``WORKSPACE/catalog.sqlite``), otherwise to None.

        Raises:
            InputError: the URL is malformed (the message hides its password).
            CatalogError: its driver is missing, the database cannot be reached, it holds a
                catalog of another schema version, or it is not a kneescope catalog (a
                database with tables of its own, e.g. a foreign ``series`` table).
        """
        shown = _safe_url(url)
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError, TypeError) as exc:
            raise InputError(
                f"catalog URL {shown!r} is not a database URL ({_first_arg(exc)}); expected "
                "e.g. sqlite:///catalog.sqlite or postgresql+psycopg://user@host/db"
            ) from None
        if parsed.port is not None and not 0 < parsed.port < 65536:
            raise InputError(
                f"catalog URL {shown!r} is not a database URL (port {parsed.port} is outside "
                "1-65535); check the URL"
            )
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            parent = Path(str(parsed.database)).expanduser().absolute().parent
            if root is None:
                root = parent
            if not parent.is_dir():
                raise CatalogError(
                    f"catalog folder {parent} does not exist; create the workspace first"
                )
        try:
            engine = create_engine(parsed, pool_pre_ping=True)
        except (NoSuchModuleError, ImportError) as exc:
            raise CatalogError(
                f"cannot open catalog {shown}: database driver missing ({exc}); "
                "install it, e.g. pip install 'kneescope[postgres]'"
            ) from None
        except (ArgumentError, ValueError, TypeError) as exc:
            raise InputError(
                f"catalog URL {shown!r} is not a usable database URL ({_first_arg(exc)}); "
                "check its options"
            ) from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        catalog = cls(engine, root.absolute() if root is not None else None)
        try:
            if create:
                catalog._create_schema()
            else:
                catalog._check_version()
        except CatalogError:
            engine.dispose()
            raise
        except SQLAlchemyError as exc:
            engine.dispose()
            raise CatalogError(f"cannot open catalog {shown}: {_first_line(exc)}") from None
        return catalog

    @classmethod
    def for_workspace(cls, ws: Workspace, *, create: bool) -> Catalog:
        """The workspace's catalog; with ``create`` the workspace folder and schema are made.

        Raises:
            NotFoundError: ``create`` is False and the default SQLite catalog does not exist.
            CatalogError: see :meth:`open`.
        """
        if create:
            ws.ensure()
        elif ws.catalog_url_override is None and not ws.catalog_path.is_file():
            raise NotFoundError(
                f"no catalog in workspace {ws.root}; run `kneescope ingest SOURCE -w {ws.root}` "
                "first (or give --catalog URL)"
            )
        return cls.open(ws.catalog_url, create=True, root=ws.root)

    def _refuse_foreign(self) -> None:
        """Raise unless the database is empty or holds a kneescope catalog.

        A kneescope catalog has a ``catalog_meta`` row ``schema_version`` (written with the
        schema). Without it (a catalog whose creation was interrupted), every table named like
        one of ours must have all our columns and, in a SQLite file, no other table may exist.
        Anything else (a foreign ``series`` table) is refused before anything is written.

        Raises:
            CatalogError: the database holds tables of something else.
        """
        present = set(inspect(self.engine).get_table_names())
        if not present:
            return
        if CatalogMeta.__tablename__ in present:
            try:
                with self.engine.connect() as conn:
                    version = conn.execute(
                        select(CatalogMeta.value).where(CatalogMeta.key == "schema_version")
                    ).scalar()
            except SQLAlchemyError:
                version = None
            if version is not None:
                return
        inspector = inspect(self.engine)
        foreign = sorted(present - set(Base.metadata.tables)) if self.is_sqlite else []
        for name in sorted(present & set(Base.metadata.tables)):
            have = {column["name"] for column in inspector.get_columns(name)}
            if not set(Base.metadata.tables[name].columns.keys()) <= have:
                foreign.append(name)
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise CatalogError(
                f"{self.url} is not a kneescope catalog (it holds other tables: {shown}); "
                "nothing was written to it; give a new catalog file or --catalog URL"
            )

    def _create_schema(self) -> None:
        self._refuse_foreign()
        Base.metadata.create_all(self.engine, checkfirst=True)
        with self.session() as session:
            row = session.get(CatalogMeta, "schema_version")
            if row is None:
                session.add(CatalogMeta(key="schema_version", value=str(SCHEMA_VERSION)))
            elif row.value in UPGRADABLE_VERSIONS:
                # create_all above added the tables the older version lacked (run results);
                # existing tables are unchanged, their paths may now be relative.
                log.info(
                    "catalog %s: schema %s upgraded to %s", self.url, row.value, SCHEMA_VERSION
                )
                row.value = str(SCHEMA_VERSION)
            elif row.value != str(SCHEMA_VERSION):
                raise CatalogError(
                    f"catalog {self.url} has schema version {row.value}, this kneescope "
                    f"writes version {SCHEMA_VERSION}; use a new workspace or catalog URL"
                )

    def _check_version(self) -> None:
        self._refuse_foreign()
        if CatalogMeta.__tablename__ not in set(inspect(self.engine).get_table_names()):
            raise NotFoundError(
                f"catalog {self.url} holds no kneescope catalog yet (an empty database); "
                "create it with `kneescope ingest SOURCE --catalog URL`"
            )
        with self.session() as session:
            value = session.scalar(
                select(CatalogMeta.value).where(CatalogMeta.key == "schema_version")
            )
        if value != str(SCHEMA_VERSION) and value not in UPGRADABLE_VERSIONS:
            raise CatalogError(
                f"catalog {self.url} has schema version {value}, expected {SCHEMA_VERSION}"
            )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block ends normally and rolls back otherwise."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise CatalogError(f"catalog {self.url}: {_first_line(exc)}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
