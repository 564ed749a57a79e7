"""The app's pages in a real headless Chromium, inside a page that looks like a Bitrix24 portal.

Served by the stand-in wiring in ``app_testapp.py``. Every page is photographed (see
``app_browser.py`` for where the screenshots go; ``make screenshots`` refreshes ``docs/app``).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from app_browser import ServedApp, fit_window, screenshot
from app_samples import KEY, MEMBER, NOW
from app_testapp import PORTAL_HOST, STATE, make_app

from gateway_bitrix24.app import token

expect: Any = pytest.importorskip("playwright.sync_api").expect

ADMIN = token.Identity(MEMBER, 1, True, "en")
USER = token.Identity(MEMBER, 7, False, "en")


@pytest.fixture
def served() -> Iterator[ServedApp]:
    with ServedApp(make_app) as app:
        yield app


class Portal:
    """A portal page with the app in its frame; ``app`` locates inside the frame."""

    def __init__(self, context: Any, served: ServedApp, *, auth: str = "admin-auth", lang: str = "en",
                 path: str = "/", member: str = MEMBER, host: str = PORTAL_HOST) -> None:
        self.page = context.new_page()
        self.fits = 0
        query = urlencode({"auth": auth, "lang": lang, "path": path, "member": member})
        self.page.goto(served.url(f"/portal?{query}", host=host))
        self.app = self.page.frame_locator("#app")

    def settled(self) -> Portal:
        """Wait until the page in the frame asked the portal to fit the frame to it (BX24)."""
        self.fits += 1
        self.page.wait_for_function(f"Number(document.getElementById('app').dataset.fits || 0) >= {self.fits}")
        return self

    def shot(self, folder: Path, name: str) -> Path:
        return screenshot(self.page, folder, name)

    def section(self, folder: Path, name: str, selector: str) -> None:
        """A screenshot of one part of the app (the window grown first, so it is all in view)."""
        fit_window(self.page)
        self.app.locator(selector).screenshot(path=str(folder / f"{name}.png"), animations="disabled")


def open_page(context: Any, served: ServedApp, identity: token.Identity, path: str = "/") -> Any:
    """A page of the app on its own (not framed), opened with a view token."""
    page = context.new_page()
    view = token.issue(KEY, identity, token.VIEW, now=NOW.timestamp())
    response = page.goto(served.url(f"/apps/bitrix24{path}?t={view}"))
    assert response is not None and response.status == 200
    return page


def test_an_administrator_sets_the_app_up_inside_the_portal(browser_context: Any, served: ServedApp,
                                                            screenshots: Path) -> None:
    portal = Portal(browser_context, served).settled()
    app = portal.app
    expect(app.get_by_role("heading", name="Set-up and status", level=1)).to_be_visible()
    portal.section(screenshots, "placetel-connect", "#placetel")

    app.get_by_label("Placetel API key").fill("3f9c1e0a7b")
    app.get_by_role("button", name="Connect Placetel").click()
    expect(app.get_by_role("status")).to_have_text("Placetel is connected.")
    portal.settled()
    expect(app.get_by_label("Notify URL")).to_have_value(re.compile(r"^https://.+/hooks/placetel/"))
    expect(app.get_by_label("Shared secret")).not_to_be_empty()
    portal.shot(screenshots, "admin")
    portal.section(screenshots, "placetel-connected", "#placetel")

    app.get_by_label("Responsible for calls nobody answered").select_option(label="Mia Fischer")
    app.get_by_label("Log internal calls").check()
    app.get_by_role("button", name="Save settings").click()
    expect(app.get_by_role("status")).to_have_text("Settings saved.")
    expect(app.get_by_label("Responsible for calls nobody answered")).to_have_value("12")
    expect(app.get_by_label("Log internal calls")).to_be_checked()
    portal.settled()
    portal.section(screenshots, "settings", "#settings")

    app.get_by_label("Portal user for Lager").select_option(label="Lukas Becker")
    app.get_by_role("button", name="Save mapping").click()
    expect(app.get_by_role("status")).to_have_text("Mapping saved.")
    row = app.get_by_role("row", name=re.compile("Lager"))
    expect(row).to_contain_text("Set by hand")
    expect(app.get_by_label("Portal user for Lager")).to_have_value("15")
    portal.settled()
    portal.section(screenshots, "mapping", "#mapping")

    chart = app.get_by_role("img", name=re.compile(r"^Calls per day, last 7 days: 224 calls written, 6 failed"))
    expect(chart).to_be_visible()
    portal.section(screenshots, "status", "#status")
    app.get_by_role("button", name="Retry all").click()
    expect(app.get_by_role("status")).to_have_text("The failed deliveries are being retried.")


def test_the_german_portal_gets_german(browser_context: Any, served: ServedApp, screenshots: Path) -> None:
    portal = Portal(browser_context, served, lang="de").settled()
    expect(portal.app.get_by_role("heading", name="Einrichtung und Status", level=1)).to_be_visible()
    expect(portal.app.get_by_label("Placetel-API-Schlüssel")).to_be_visible()
    expect(portal.app.locator("html")).to_have_attribute("lang", "de")
    portal.shot(screenshots, "admin-de")
    portal.app.get_by_role("link", name="Meine Telefonie").click()
    expect(portal.app.get_by_role("heading", name="Meine Telefonie", level=1)).to_be_visible()


def test_keyboard_reaches_every_control_and_submits_a_form(browser_context: Any, served: ServedApp) -> None:
    page = open_page(browser_context, served, ADMIN)
    count = page.evaluate("""() => {
        const els = document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea');
        els.forEach((el, i) => el.setAttribute('data-k', String(i)));
        return els.length; }""")
    assert count > 20
    reached = set()
    for _ in range(count + 3):
        page.keyboard.press("Tab")
        k = page.evaluate("() => document.activeElement && document.activeElement.getAttribute('data-k')")
        if k is not None:
            reached.add(int(k))
    assert reached == set(range(count))

    page.get_by_label("Responsible for calls nobody answered").focus()
    page.keyboard.press("ArrowDown")  # Jonas Weber, the next portal user
    for _ in range(4):  # the three switches, then the button
        page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Save settings"
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Settings saved.")
    expect(page.get_by_label("Responsible for calls nobody answered")).to_have_value("7")


def test_every_control_has_a_label(browser_context: Any, served: ServedApp) -> None:
    page = open_page(browser_context, served, ADMIN)
    for label in ("Placetel API key", "Responsible for calls nobody answered", "Create a lead for unknown callers",
                  "Show the call card", "Log internal calls", "Portal user for Anna Schmidt",
                  "Portal user for Empfang", "Portal user for Jonas Weber", "Portal user for Lager"):
        expect(page.get_by_label(label, exact=True)).to_have_count(1)
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select')]
        .filter(el => !el.labels || el.labels.length === 0).length""")
    assert unlabelled == 0
    user = open_page(browser_context, served, USER, "/me")
    expect(user.get_by_label("Yes, delete what the app keeps about me")).to_have_count(1)


def test_a_user_sees_no_administrator_controls_and_is_refused_them(browser_context: Any, served: ServedApp,
                                                                   screenshots: Path) -> None:
    portal = Portal(browser_context, served, auth="user-auth").settled()
    app = portal.app
    expect(app.get_by_role("heading", name="My telephony", level=1)).to_be_visible()
    expect(app.get_by_label("Placetel API key")).to_have_count(0)
    expect(app.get_by_role("link", name="Set-up and status")).to_have_count(0)
    portal.shot(screenshots, "user")
    app.get_by_role("link", name="Privacy").click()
    expect(app.get_by_role("heading", name="Privacy", level=1)).to_be_visible()
    portal.settled().shot(screenshots, "privacy")

    # by hand, without the browser: every token the user holds is refused for an admin form
    for purpose in sorted(token.USER_PURPOSES):
        held = token.issue(KEY, USER, purpose, now=NOW.timestamp())
        status, body = post(served, "/apps/bitrix24/settings", {"t": held, "responsible_user_id": "7"})
        assert status == 403 and "This needs a portal administrator." in body
    status, _ = post(served, "/apps/bitrix24/settings", {"t": "forged.token", "responsible_user_id": "7"})
    assert status == 401
    assert served.app[STATE]["admin"].settings.responsible_user_id == 1  # nothing changed


def post(served: ServedApp, path: str, form: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(served.url(path), data=urlencode(form).encode(), method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - a local test server
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_a_forged_or_foreign_auth_id_gets_a_clear_page_and_no_data(browser_context: Any, served: ServedApp,
                                                                   screenshots: Path) -> None:
    forged = Portal(browser_context, served, auth="forged-auth-id")
    expect(forged.app.get_by_role("heading", name="The app cannot be shown")).to_be_visible()
    expect(forged.app.locator("form")).to_have_count(0)
    expect(forged.app.locator("main")).not_to_contain_text("Anna")
    forged.settled().shot(screenshots, "error")
    foreign = Portal(browser_context, served, member="0" * 32, lang="de")
    expect(foreign.app.get_by_text("Diese Anmeldung gehört zu einem anderen Bitrix24-Portal.")).to_be_visible()


def test_an_expired_token_is_refused(browser_context: Any, served: ServedApp) -> None:
    page = open_page(browser_context, served, ADMIN)
    expect(page.get_by_role("heading", name="Set-up and status", level=1)).to_be_visible()
    served.app[STATE]["now"] += token.DEFAULT_TTL
    response = page.reload()
    assert response is not None and response.status == 401
    expect(page.get_by_text("Your session in this app has expired.")).to_be_visible()
    page.get_by_role("heading", name="The app cannot be shown").wait_for()


def test_the_frame_is_allowed_only_inside_the_portal(browser_context: Any, served: ServedApp) -> None:
    page = browser_context.new_page()
    view = token.issue(KEY, ADMIN, token.VIEW, now=NOW.timestamp())
    response = page.goto(served.url(f"/apps/bitrix24/privacy?t={view}"))
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert f"frame-ancestors http://{PORTAL_HOST}:{served.port}" in policy
    assert "script-src 'self' https://api.bitrix24.com/api/v1/;" in policy
    assert response.headers["referrer-policy"] == "no-referrer"

    framed = Portal(browser_context, served, auth="admin-auth", host="evil.localhost")
    framed.page.wait_for_timeout(500)  # the frame has loaded or been blocked by then; nothing to wait for
    assert framed.page.frame(name="app") is not None
    expect(framed.app.get_by_role("heading", name="Set-up and status")).to_have_count(0)
    allowed = Portal(browser_context, served, auth="admin-auth")
    expect(allowed.app.get_by_role("heading", name="Set-up and status")).to_be_visible()


def test_the_install_page_finishes_the_install(browser_context: Any, served: ServedApp, screenshots: Path) -> None:
    portal = Portal(browser_context, served, path="/install")
    expect(portal.page.locator("body")).to_have_attribute("data-installed", "1")
    expect(portal.app.get_by_role("heading", name="Telephony app installed")).to_be_visible()
    portal.settled().shot(screenshots, "install")
