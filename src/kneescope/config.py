"""Configuration conventions: frozen pydantic models loaded from TOML or YAML files.

Every configuration class uses :data:`FROZEN` as its ``model_config``; options are fields,
never subclasses. :func:`load_config` reads a file into any such model and turns validation
errors into one-line :class:`~kneescope.errors.ConfigError` messages.
"""

from __future__ import annotations

import hashlib
import json
import stat
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from kneescope.errors import ConfigError

FROZEN = ConfigDict(frozen=True, extra="forbid")
"""The ``model_config`` every kneescope configuration model uses."""

ModelT = TypeVar("ModelT", bound=BaseModel)


def read_mapping(path: Path) -> dict[str, Any]:
    """Read a TOML, JSON or YAML file into a dict.

    Raises:
        ConfigError: the file is missing, unreadable or not a mapping.
    """
    try:
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block
            raise ConfigError(f"config file {path} is not a regular file; give a TOML/JSON file")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix in {".yaml", ".yml"}:
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise ConfigError(
                    f"{path}: reading YAML needs PyYAML (pip install pyyaml); or use TOML"
                ) from None
            data = yaml.safe_load(text)
        else:
            raise ConfigError(f"{path}: unknown config format {suffix!r}; use .toml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of settings at the top level")
    return data


def validate_config(model: type[ModelT], data: dict[str, Any], source: str) -> ModelT:
    """Validate ``data`` as ``model``; report the first problem in one line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{source}: {where}: {first['msg']}{more}") from None


def load_config(model: type[ModelT], path: Path) -> ModelT:
    """Load a config file into a frozen model."""
    return validate_config(model, read_mapping(path), str(path))


def config_hash(config: BaseModel, exclude: set[str] | None = None) -> str:
    """A stable 16-hex-digit hash of a config's resolved values (for provenance), leaving out
    the fields named in ``exclude``."""
    payload = json.dumps(config.model_dump(mode="json", exclude=exclude), sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]
