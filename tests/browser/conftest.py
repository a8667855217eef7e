"""Headless Chromium for the report pages' browser tests (issue 18, item 3).

The browser is Debian's ``chromium`` package (``scripts/services.sh start`` installs it and
exports ``KNEESCOPE_TEST_CHROMIUM``), driven by Playwright with ``executable_path``: Playwright's
own browser downloads are never used. Without Chromium the tests skip with the reason, except
under ``KNEESCOPE_REQUIRE_SERVICES`` (CI), where they fail unless services.sh reported Chromium
as uninstallable (``KNEESCOPE_CHROMIUM_UNAVAILABLE``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_checks import CHROMIUM_ARGS, VIEWPORT_WIDTH_PX, WatchedPage, watch_page

# the report tests' shared small run (tests/reports/report_run_builder.py), built once per process
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reports"))


def chromium_executable() -> str:
    """Path of the Chromium binary to drive, or skip/fail (see the module docstring)."""
    path = os.environ.get("KNEESCOPE_TEST_CHROMIUM", "") or shutil.which("chromium") or ""
    if path and Path(path).is_file():
        return path
    why = os.environ.get("KNEESCOPE_CHROMIUM_UNAVAILABLE", "")
    message = (
        "headless Chromium not available: run `source scripts/services.sh start` (installs "
        "Debian's chromium and sets KNEESCOPE_TEST_CHROMIUM)" + (f" ({why})" if why else "")
    )
    if os.environ.get("KNEESCOPE_REQUIRE_SERVICES") and not why:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[object]:
    """One headless Chromium per test module (a ``playwright.sync_api.Browser``), closed with
    the module: no browser or Playwright event loop outlives the browser tests."""
    executable = chromium_executable()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium_browser: object) -> Iterator[WatchedPage]:
    """A fresh page (own context: own localStorage, downloads accepted) 1280 px wide, with
    every failed request, page error, console error and dialog recorded."""
    from playwright.sync_api import Browser

    assert isinstance(chromium_browser, Browser)
    context = chromium_browser.new_context(
        viewport={"width": VIEWPORT_WIDTH_PX, "height": 900}, accept_downloads=True
    )
    try:
        yield watch_page(context.new_page())
    finally:
        context.close()
