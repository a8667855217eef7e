"""The workspace: one folder that holds a project's catalog, store, models and runs.

Layout (created on demand)::

    WS/catalog.sqlite     the catalog (unless --catalog URL names another database)
    WS/store/             the analysis-ready Zarr store
    WS/models/            trained model files
    WS/runs/              cohort runs: manifest, outputs, results tables
    WS/exports/           files written for viewers

The workspace folder is ``--workspace/-w``, else ``$KNEESCOPE_WORKSPACE``, else the
current directory. It stays the workspace root also when ``--catalog URL`` names a database
elsewhere (e.g. PostgreSQL).

Paths in the catalog of files inside the workspace are stored relative to its root
(:func:`to_stored`), so a workspace copied or moved elsewhere keeps working; paths outside it
stay absolute. Readers turn a stored path back into a real one with :func:`from_stored`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from kneescope.errors import InputError, ModelError

WORKSPACE_ENV = "KNEESCOPE_WORKSPACE"
CATALOG_ENV = "KNEESCOPE_CATALOG"


def _lexical(path: Path | str) -> str:
    """``path`` made absolute and normalised (``..`` folded) without following symlinks."""
    return os.path.abspath(os.path.expanduser(path))


def to_stored(path: Path, root: Path | None) -> str:
    """How the catalog stores ``path``: relative to the workspace ``root`` (POSIX ``/``) when
    the path lies inside it, else absolute; always absolute when ``root`` is None.

    Inside means inside by name (a symlink in the workspace stays a relative path), or inside
    the real folder of a workspace given through a symlink. String work plus one cached
    ``realpath`` of the root: an ingest calls it once per series.
    """
    full = _lexical(path)
    if root is None:
        return full
    base = _lexical(root)
    rel = _inside(full, base)
    if rel is None:
        real = _realpath(base)
        if real != base:
            rel = _inside(full, real)
    return full if rel is None else rel


@functools.lru_cache(maxsize=64)
def _realpath(path: str) -> str:
    return os.path.realpath(path)


def _inside(full: str, base: str) -> str | None:
    """``full`` relative to ``base`` (POSIX ``/``, ``.`` for itself), None when outside it."""
    if full == base:
        return "."
    prefix = base if base.endswith(os.sep) else base + os.sep
    if full.startswith(prefix):
        return full[len(prefix) :].replace(os.sep, "/")
    return None


def from_stored(stored: str, root: Path | None) -> Path:
    """The real path of a stored catalog path: absolute ones as they are, relative ones
    resolved against the workspace ``root``.

    Raises:
        InputError: a relative path but no workspace root to resolve it against.
    """
    if os.path.isabs(stored):
        return Path(stored)
    if root is None:
        raise InputError(
            f"catalog path {stored!r} is relative to its workspace, but no workspace was given; "
            "open the catalog with -w WORKSPACE"
        )
    return Path(_lexical(os.path.join(root, stored)))


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace. Constructing it touches nothing on disk."""

    root: Path
    catalog_url_override: str | None = None

    @classmethod
    def resolve(cls, root: Path | None = None, catalog_url: str | None = None) -> Workspace:
        """The workspace named by the argument, the environment, or the current directory."""
        if root is None:
            env = os.environ.get(WORKSPACE_ENV)
            root = Path(env) if env else Path.cwd()
        catalog_url = catalog_url or os.environ.get(CATALOG_ENV) or None
        root = root.expanduser().absolute()
        if root.exists() and not root.is_dir():
            raise InputError(f"workspace {root} is a file; give a folder with --workspace")
        return cls(root=root, catalog_url_override=catalog_url)

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.sqlite"

    @property
    def catalog_url(self) -> str:
        """SQLAlchemy URL of the catalog database."""
        if self.catalog_url_override:
            return self.catalog_url_override
        return f"sqlite:///{self.catalog_path}"

    @property
    def store_dir(self) -> Path:
        return self.root / "store"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    def resolve_model(self, model: str | Path, base_dir: Path | None = None) -> Path:
        """The model file a user means by ``model``: one rule for ``segment --model`` and the
        ``model`` option of a run config's steps.

        Tried in order: ``model`` as a file path (relative to ``base_dir``: the current folder
        on the command line, the config file's folder in a run config), then
        ``WS/models/<model>`` and ``WS/models/<model>.pt``. Returns an absolute path.

        Raises:
            ModelError: none of these is a file.
        """
        given = Path(model).expanduser()
        first = given if given.is_absolute() or base_dir is None else base_dir / given
        for candidate in (first, self.models_dir / given, self.models_dir / f"{given}.pt"):
            if candidate.is_file():
                return candidate.absolute()
        where = "the current folder" if base_dir is None else str(base_dir)
        raise ModelError(
            f"model {model} not found (looked in {where} and {self.models_dir}); "
            "train one with `kneescope train` or give the model file's path"
        )

    def ensure(self) -> Workspace:
        """Create the workspace root if needed and return self."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create workspace {self.root}: {exc.strerror}") from None
        return self
