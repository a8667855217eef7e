"""The browser checks themselves, on tiny pages with known faults: each check must find the
fault it is for (a broken image, a too-wide element, a header string that runs as script) and
nothing on a clean page. The report pages are checked in test_report_pages.py."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from browser_checks import (
    INJECTIONS,
    WatchedPage,
    broken_images,
    horizontal_overflow,
    image_count,
    injection_ran,
    open_file,
    screenshot,
)
from matplotlib import image as mpl_image

_CSS = "body { margin: 0; font-family: sans-serif; } .scroll { overflow-x: auto; }"


def _page(folder: Path, body: str) -> Path:
    """An HTML page with ``body`` and a real 8x6 PNG ``ok.png`` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    mpl_image.imsave(folder / "ok.png", np.linspace(0, 1, 48).reshape(6, 8), cmap="viridis")
    path = folder / "page.html"
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>",
        encoding="utf-8",
    )
    return path


def test_clean_page_passes_every_check(browser_page: WatchedPage, tmp_path: Path) -> None:
    escaped = "".join(f"<p class='desc'>{html.escape(s)}</p>" for s in INJECTIONS)
    wide_table = "<div class='scroll'><table style='width:3000px'><tr><td>x</td></tr></table></div>"
    path = _page(tmp_path, f"<img src='ok.png' alt='ok'>{escaped}{wide_table}")
    load_s = open_file(browser_page, path)
    page = browser_page.page
    assert 0.0 < load_s < 60.0
    assert image_count(page) == 1
    assert broken_images(page) == []
    assert horizontal_overflow(page) == []
    assert not injection_ran(page)
    assert page.locator("p.desc").all_inner_texts() == list(INJECTIONS)
    assert browser_page.failed_requests == []
    assert browser_page.page_errors == [] and browser_page.dialogs == []
    shot = screenshot(page, tmp_path / "shots" / "clean.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checks_find_each_fault(browser_page: WatchedPage, tmp_path: Path) -> None:
    unescaped = "".join(f"<p class='desc'>{s}</p>" for s in INJECTIONS)
    body = (
        "<img src='ok.png'><img src='missing.png'>"
        "<div id='wide' style='width:1500px'>too wide</div>" + unescaped
    )
    open_file(browser_page, _page(tmp_path, body))
    page = browser_page.page
    assert broken_images(page) == ["missing.png", "nonexistent-injected.png"]
    overflow = horizontal_overflow(page)
    assert any(p.startswith("document scrollWidth") for p in overflow)
    assert any(p.startswith("div#wide spans 0..1500") for p in overflow)
    assert injection_ran(page)
    assert browser_page.dialogs == ["alert: 1"]
    assert any("missing.png" in r for r in browser_page.failed_requests)
