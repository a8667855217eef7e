"""Shipped models: the pretrained model files that come inside the kneescope package.

They live in ``src/kneescope/pretrained/`` (package data, no download at run time) as
``<name>.pt`` (a version-2 model file, weights stored in float16) + ``<name>.md`` (its model
card), listed by ``index.json``::

    {"format": "kneescope-pretrained", "version": 1,
     "aliases": {"knee-seg": "knee-seg-2d"},
     "models": [{"name": "knee-seg-2d", "file": "knee-seg-2d.pt", "card": "knee-seg-2d.md",
                 "sha256": "<64 hex>", "size_bytes": 1234, "kind": "segmentation",
                 "task": "...", "summary": "...", "default_for": ["kneescope segment", ...]}]}

``benchmarks/release_models.py`` writes the folder; nothing else does. A shipped file is
checked against its recorded sha256 whenever a name resolves to it.

The one rule that turns a ``-m/--model`` value (``kneescope segment``, a run config's
``segment`` step) into a file is :func:`resolve_model`: a file path, else a name in
``WS/models/``, else a shipped name; no value means :data:`DEFAULT_MODEL`.

The environment variable ``KNEESCOPE_PRETRAINED_DIR`` replaces the package folder (a folder
of the same layout), e.g. to try a model release before it is installed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from kneescope.config import FROZEN
from kneescope.errors import ModelError, NotFoundError
from kneescope.io.atomic import atomic_write_text
from kneescope.io.digest import file_sha256
from kneescope.workspace import Workspace

DEFAULT_MODEL = "knee-seg"
"""The model ``kneescope segment`` and the ``segment`` step use when none is given (an alias
of the shipped 2D segmentation model)."""

PRETRAINED_DIR_ENV = "KNEESCOPE_PRETRAINED_DIR"
"""Environment variable naming a folder to use instead of the package's shipped models."""

INDEX_NAME = "index.json"
INDEX_FORMAT = "kneescope-pretrained"
INDEX_VERSION = 1

_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_FILE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class ShippedEntry(BaseModel):
    """One shipped model as ``index.json`` lists it.

    Attributes:
        name: the name ``-m/--model`` takes (``knee-seg-2d``).
        file: the model file, in the shipped folder (``knee-seg-2d.pt``).
        card: its model card, in the shipped folder (``knee-seg-2d.md``).
        sha256: SHA-256 of ``file``'s bytes, 64 hex digits (also printed in the card).
        size_bytes: ``file``'s size in bytes.
        kind: the model-file kind (``segmentation``).
        task: what it does, in a few words (``2d knee MRI, 9 structures``).
        summary: one sentence for ``kneescope models list``.
        default_for: what uses it when no model is given (``kneescope segment``, ...).
        kneescope_version: the kneescope version that released it (``0.1.0``; also in its
            card); "" in an index written before versions were recorded.
    """

    model_config = FROZEN

    name: str = Field(pattern=_NAME)
    file: str = Field(pattern=_FILE)
    card: str = Field(pattern=_FILE)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    kind: str
    task: str = ""
    summary: str = ""
    default_for: tuple[str, ...] = ()
    kneescope_version: str = ""


class PretrainedIndex(BaseModel):
    """``index.json`` of a shipped-model folder (see the module docstring)."""

    model_config = FROZEN

    format: Literal["kneescope-pretrained"] = "kneescope-pretrained"
    version: Literal[1] = 1
    aliases: dict[str, str] = Field(default_factory=dict)
    models: tuple[ShippedEntry, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> PretrainedIndex:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"a model name is listed twice: {sorted(names)}")
        for alias, target in self.aliases.items():
            if not re.match(_NAME, alias):
                raise ValueError(f"alias {alias!r} is not a valid model name")
            if alias in names:
                raise ValueError(f"alias {alias!r} is also a model name")
            if target not in names:
                raise ValueError(f"alias {alias!r} names {target!r}, which is not listed")
        return self


@dataclass(frozen=True)
class ShippedModel:
    """A shipped model and where its files are.

    Attributes:
        entry: its ``index.json`` record.
        path: the model file.
        card_path: the model card (Markdown).
        aliases: other names that resolve to it (``knee-seg``).
    """

    entry: ShippedEntry
    path: Path
    card_path: Path
    aliases: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.entry.name

    def card_text(self) -> str:
        """The model card (Markdown).

        Raises:
            ModelError: the card file is missing (a broken installation).
        """
        try:
            return self.card_path.read_text(encoding="utf-8")
        except OSError:
            raise ModelError(
                f"model card {self.card_path} of shipped model {self.name} is missing; "
                "reinstall kneescope"
            ) from None

    def verified_path(self) -> Path:
        """:attr:`path`, after checking that the file's sha256 is the recorded one.

        Raises:
            ModelError: the file is missing or its contents changed.
        """
        try:
            digest = file_sha256(self.path)
        except OSError:
            raise ModelError(
                f"shipped model file {self.path} ({self.name}) is missing; reinstall kneescope"
            ) from None
        if digest != self.entry.sha256:
            raise ModelError(
                f"shipped model file {self.path} ({self.name}) has sha256 {digest[:16]}..., "
                f"its index records {self.entry.sha256[:16]}...; the file was changed or "
                "damaged: reinstall kneescope"
            )
        return self.path


def pretrained_dir() -> Path:
    """The folder of shipped models: ``$KNEESCOPE_PRETRAINED_DIR`` when set, else the
    package's ``kneescope/pretrained``."""
    override = os.environ.get(PRETRAINED_DIR_ENV, "")
    if override:
        return Path(override).expanduser().absolute()
    return Path(__file__).resolve().parent.parent / "pretrained"


def read_index(folder: Path | None = None) -> PretrainedIndex:
    """The ``index.json`` of ``folder`` (default :func:`pretrained_dir`); a folder without one
    ships no model.

    Raises:
        ModelError: the index is not valid JSON or not a valid index (one line).
    """
    path = (folder or pretrained_dir()) / INDEX_NAME
    if not path.is_file():
        return PretrainedIndex()
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(
            f"shipped-model index {path} is unreadable ({str(exc)[:80]}); reinstall kneescope"
        ) from None
    try:
        return PretrainedIndex.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        at = f" at {where}" if where else ""
        reason = str(first["msg"]).removeprefix("Value error, ")
        raise ModelError(
            f"shipped-model index {path} is invalid{at}: {reason}; reinstall kneescope"
        ) from None


def shipped_models(folder: Path | None = None) -> tuple[ShippedModel, ...]:
    """Every shipped model, in index order."""
    folder = folder or pretrained_dir()
    index = read_index(folder)
    return tuple(
        ShippedModel(
            entry=e,
            path=folder / e.file,
            card_path=folder / e.card,
            aliases=tuple(sorted(a for a, t in index.aliases.items() if t == e.name)),
        )
        for e in index.models
    )


def find_shipped(name: str, folder: Path | None = None) -> ShippedModel | None:
    """The shipped model called ``name`` (or an alias of it), or None."""
    folder = folder or pretrained_dir()
    target = read_index(folder).aliases.get(name, name)
    for model in shipped_models(folder):
        if model.name == target:
            return model
    return None


def shipped_model(name: str, folder: Path | None = None) -> ShippedModel:
    """The shipped model called ``name`` (or an alias of it).

    Raises:
        NotFoundError: no shipped model has that name (exit code 3).
    """
    found = find_shipped(name, folder)
    if found is not None:
        return found
    raise NotFoundError(f"no shipped model {name!r}; {_available(folder)}")


def _names(folder: Path | None) -> list[str]:
    """Every shipped name and alias, sorted."""
    models = shipped_models(folder)
    return sorted([m.name for m in models] + [a for m in models for a in m.aliases])


def _available(folder: Path | None) -> str:
    names = _names(folder)
    if not names:
        return (
            f"this installation ships none ({(folder or pretrained_dir()) / INDEX_NAME} lists "
            "no model): reinstall kneescope or give a model file"
        )
    return "give one of " + ", ".join(names) + " (`kneescope models list`)"


def resolve_model(
    model: str | Path | None,
    workspace: Workspace | None = None,
    base_dir: Path | None = None,
) -> Path:
    """The model file a user means by ``model`` (``-m/--model``, a step's ``model`` option).

    Tried in order: ``model`` as a file path (relative to ``base_dir``, default the current
    folder), a name in ``WS/models/`` (``NAME`` or ``NAME.pt``; when ``workspace`` is given),
    a shipped model's name or alias (its file checked against its sha256). ``None`` means
    :data:`DEFAULT_MODEL`. Returns an absolute path.

    Raises:
        ModelError: nothing matches (the workspace's one-line message, naming the shipped
            models), or a shipped file is missing or changed.
    """
    wanted = DEFAULT_MODEL if model is None or str(model) == "" else model
    if workspace is not None:
        try:
            return workspace.resolve_model(wanted, base_dir)
        except ModelError as exc:
            not_found = str(exc)
    else:
        given = Path(wanted).expanduser()
        first = given if given.is_absolute() or base_dir is None else base_dir / given
        if first.is_file():
            return first.absolute()
        where = "the current folder" if base_dir is None else str(base_dir)
        not_found = (
            f"model {wanted} not found (looked in {where}); "
            "train one with `kneescope train` or give the model file's path"
        )
    shipped = find_shipped(str(wanted))
    if shipped is not None:
        return shipped.verified_path()
    names = _names(None)
    if names:  # today's line, plus the names that would have worked
        not_found += ", or a shipped model's name: " + ", ".join(names)
    raise ModelError(not_found)


def step_model_path(model: object, default: str) -> Path:
    """The model file a cohort step's option names. The runner has already resolved names in
    ``WS/models/`` and relative paths (:func:`resolve_model`); a step built directly still
    takes a file path or a shipped name, and no value means ``default`` (a shipped name). A
    path that exists nowhere is returned as given (the step's hash then says it cannot be
    read)."""
    name = default if model is None or str(model) == "" else str(model)
    path = Path(name).expanduser().absolute()
    if not path.is_file():
        shipped = find_shipped(name)
        if shipped is not None:
            return shipped.verified_path()
    return path


def write_index(folder: Path, index: PretrainedIndex) -> Path:
    """Write ``folder/index.json`` atomically (sorted keys, 2-space indent, LF)."""
    text = json.dumps(index.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    return atomic_write_text(folder / INDEX_NAME, text)
