"""Fixtures for the Bitrix24 app's browser tests (see ``app_browser.py``).

One headless Chromium per test session; each test connects Playwright to it and gets a fresh
browser context (no shared state) as wide as a usual desktop window, in which Bitrix24's
``BX24`` library is answered by a local stand-in instead of the network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from app_browser import CHROMIUM, SCREENSHOTS_ENV, WINDOW_WIDTH, start_chromium, stop_chromium

BX24_STANDIN = Path(__file__).with_name("bx24_standin.js")


def _unavailable(why: str) -> None:
    """Without a browser the browser tests cannot run: a failure in CI, a skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run in CI: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Chromium, started once; its DevTools address (never ``playwright install``)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    proc, endpoint = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield endpoint
    finally:
        stop_chromium(proc)


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder for the screenshots: ``$CALLGATE_SCREENSHOTS`` or a temporary one."""
    wanted = os.environ.get(SCREENSHOTS_ENV)
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser_context(chromium: str) -> Iterator[Any]:
    """A fresh context; requests for Bitrix24's library get the local stand-in."""
    from playwright.sync_api import sync_playwright

    standin = BX24_STANDIN.read_text(encoding="utf-8")
    with sync_playwright() as pw:
        browser = pw.chromium.connect_over_cdp(chromium)
        context = browser.new_context(viewport={"width": WINDOW_WIDTH, "height": 800}, locale="en-US",
                                      timezone_id="UTC", reduced_motion="reduce")
        context.set_default_timeout(10_000)
        context.route("https://api.bitrix24.com/**",
                      lambda route: route.fulfill(status=200, content_type="text/javascript", body=standin))
        try:
            yield context
        finally:
            context.close()
            browser.close()  # disconnects; the browser keeps running for the next test
