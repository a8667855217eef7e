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


# Under pytest-xdist (scripts/test.sh: -n 2 --dist loadgroup) the tests of one shared outside
# resource run on one worker, one after another: the one-node Slurm cluster and the PostgreSQL
# server (a test may create and drop what another reads), and the headless browser.
_SERVICE_FIXTURES = frozenset({"pg_url", "slurm_available", "catalog_url"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the tests of a shared outside resource into one xdist group each."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        node = item.nodeid.lower()
        if names & _SERVICE_FIXTURES or "slurm" in node or "postgres" in node:
            item.add_marker(pytest.mark.xdist_group("services"))
        elif node.startswith("tests/browser/"):
            item.add_marker(pytest.mark.xdist_group("browser"))


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
