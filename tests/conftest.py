"""Shared fixtures: service URLs (PostgreSQL, Slurm) and temporary workspaces."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def require_service(env_var: str, what: str) -> str:
    """Value of ``env_var``; skip the test when unset, or fail in CI (services required)."""
    value = os.environ.get(env_var, "")
    if value:
        return value
    message = f"{what} not available: run `source scripts/services.sh start` (sets {env_var})"
    if os.environ.get("KNEESCOPE_REQUIRE_SERVICES"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def pg_url() -> str:
    """SQLAlchemy URL of the throwaway PostgreSQL server started by scripts/services.sh."""
    return require_service("KNEESCOPE_TEST_PG_URL", "PostgreSQL")


@pytest.fixture
def slurm_available() -> bool:
    """True when a one-node Slurm cluster runs on localhost (scripts/services.sh)."""
    require_service("KNEESCOPE_TEST_SLURM", "Slurm")
    return True


@pytest.fixture
def workspace_dir(tmp_path: Path) -> Path:
    """An empty workspace folder."""
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws
