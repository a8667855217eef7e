"""What the browser tests check on a page in headless Chromium (Playwright's sync API).

Each check returns a list of human-readable problems (empty when the page is fine), so an
assertion failure names the offending image, element or request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
VIEWPORT_WIDTH_PX = 1280
INJECTION_FLAG = "__kneescopeInjected"
"""A window property that the injection payloads (``INJECTIONS``) set if they ever run."""
INJECTIONS = (
    f"<script>window.{INJECTION_FLAG}=1;alert(1)</script>",
    f'<img src="nonexistent-injected.png" onerror="window.{INJECTION_FLAG}=2">',
)
"""Header strings (series/patient descriptions) that must be shown as text, never run."""


@dataclass
class WatchedPage:
    """A Playwright page and everything that went wrong on it since it was opened."""

    page: Any
    failed_requests: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def watch_page(page: Any) -> WatchedPage:
    """Record failed requests (network failures and HTTP >= 400), uncaught page errors,
    console errors and dialogs (dismissed) of ``page``."""
    watched = WatchedPage(page)

    def on_response(response: Any) -> None:
        if response.status >= 400:
            watched.failed_requests.append(f"{response.url} (HTTP {response.status})")

    def on_dialog(dialog: Any) -> None:
        watched.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("requestfailed", lambda r: watched.failed_requests.append(f"{r.url} ({r.failure})"))
    page.on("response", on_response)
    page.on("pageerror", lambda e: watched.page_errors.append(str(e)))
    page.on(
        "console",
        lambda m: watched.console_errors.append(m.text) if m.type == "error" else None,
    )
    page.on("dialog", on_dialog)
    return watched


def open_file(watched: WatchedPage, path: Path) -> float:
    """Open ``path`` (file://) and wait for its load event and every image (lazy ones made
    eager). Returns the navigation's time to the load event in seconds (Navigation Timing:
    ``loadEventEnd - startTime``)."""
    page = watched.page
    page.goto(path.resolve().as_uri(), wait_until="load")
    wait_for_images(page)
    page.wait_for_function("() => performance.getEntriesByType('navigation')[0].loadEventEnd > 0")
    load_ms = page.evaluate(
        "() => { const n = performance.getEntriesByType('navigation')[0];"
        " return n.loadEventEnd - n.startTime; }"
    )
    return float(load_ms) / 1000.0


def wait_for_images(page: Any) -> None:
    """Make lazy images eager and wait until every ``<img>`` has loaded or failed."""
    page.evaluate(
        """async () => {
            const imgs = Array.from(document.images);
            for (const img of imgs) { if (img.loading === 'lazy') img.loading = 'eager'; }
            await Promise.all(imgs.map(img => img.complete ? null : new Promise(done => {
                img.addEventListener('load', done, {once: true});
                img.addEventListener('error', done, {once: true});
            })));
        }"""
    )


def broken_images(page: Any) -> list[str]:
    """The ``src`` of every ``<img>`` that did not load (``naturalWidth == 0``)."""
    wait_for_images(page)
    broken: list[str] = page.evaluate(
        "() => Array.from(document.images)"
        ".filter(img => !(img.complete && img.naturalWidth > 0))"
        ".map(img => img.getAttribute('src'))"
    )
    return broken


def image_count(page: Any) -> int:
    """Number of ``<img>`` elements on the page."""
    return int(page.evaluate("() => document.images.length"))


def horizontal_overflow(page: Any, width_px: int = VIEWPORT_WIDTH_PX) -> list[str]:
    """Everything that sticks out horizontally of a ``width_px`` wide window: the document's
    ``scrollWidth`` and each visible element whose right edge is beyond ``width_px`` (or whose
    left edge is left of 0). An element inside a scrolling or clipping container (a wide table
    in an ``overflow-x: auto`` box) counts only if that container itself sticks out."""
    problems: list[str] = page.evaluate(
        """(W) => {
            const out = [];
            const doc = document.documentElement;
            if (doc.scrollWidth > W) out.push(`document scrollWidth ${doc.scrollWidth} > ${W}`);
            const clips = (el) => {
                for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
                    const ox = getComputedStyle(p).overflowX;
                    if (ox !== 'visible') return true;
                }
                return false;
            };
            const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
                (typeof el.className === 'string' && el.className.trim()
                    ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
            for (const el of document.body.querySelectorAll('*')) {
                const r = el.getBoundingClientRect();
                if (r.width === 0 && r.height === 0) continue;
                const s = getComputedStyle(el);
                if (s.visibility === 'hidden' || s.display === 'none') continue;
                const right = r.right + window.scrollX, left = r.left + window.scrollX;
                if ((right > W + 0.5 || left < -0.5) && !clips(el)) {
                    out.push(`${name(el)} spans ${left.toFixed(0)}..${right.toFixed(0)} px`);
                }
            }
            return out;
        }""",
        width_px,
    )
    return problems


def injection_ran(page: Any) -> bool:
    """True when any of ``INJECTIONS`` executed on the page."""
    return bool(page.evaluate(f"() => window.{INJECTION_FLAG} !== undefined"))


def screenshot(page: Any, path: Path) -> Path:
    """A full-page PNG screenshot at ``path``; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path
