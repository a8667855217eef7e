"""Shared fixtures: service URLs (PostgreSQL, Slurm) and temporary workspaces."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
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


# DICOM Segmentation and Comprehensive 3D SR storage classes: what kneescope's exports write
_CHECKED_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34")


def _is_checked_dicom(path: Path) -> bool:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except pydicom.errors.InvalidDicomError:
        return False
    return str(ds.get("SOPClassUID", "")) in _CHECKED_SOP_CLASSES


@pytest.fixture
def dicom_objects_pass_dciodvfy(tmp_path: Path) -> Iterator[None]:
    """After the test: every DICOM SEG and SR it left under ``tmp_path`` has 0 ``dciodvfy``
    errors (dicom3tools; required when ``KNEESCOPE_REQUIRE_SERVICES`` is set)."""
    yield
    objects = [p for p in sorted(tmp_path.rglob("*.dcm")) if _is_checked_dicom(p)]
    if not objects:
        return
    if shutil.which("dciodvfy") is None:
        if os.environ.get("KNEESCOPE_REQUIRE_SERVICES"):
            pytest.fail("dciodvfy (dicom3tools) is required but not installed")
        return
    for path in objects:
        out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
        errors = [x for x in (out.stdout + out.stderr).splitlines() if x.startswith("Error")]
        assert errors == [], path
