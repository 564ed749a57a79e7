"""The app end to end in a real headless Chromium: the real gateway (``create_app`` with the real
plugins) inside a page that plays the Bitrix24 portal, the vendors played by ``app_fakes.py``.

Every page is photographed (``app_browser.py`` says where; ``make screenshots`` refreshes
``docs/app``, which ``docs/app.md`` shows a customer's administrator step by step).
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from app_browser import ServedApp, fit_window, free_port, screenshot
from app_fakes import ADMIN_AUTH, CLIENT_SECRET, MEMBER, OUR_LINE, PLACETEL_KEY, USER_AUTH, WEBEX_ORG, Vendors
from app_gateway import gateway_env
from webex_fixtures import form_of

from gateway.app import create_app
from gateway.appkeys import GATEWAY
from gateway.runtime import Gateway
from gateway.testing import ADMIN_TOKEN, make_config
from gateway_bitrix24.app import token
from gateway_placetel.signature import sign

expect: Any = pytest.importorskip("playwright.sync_api").expect


@dataclass
class World:
    """The fake vendors and the gateway, each served from a thread of its own."""

    vendors: Vendors
    fake: ServedApp
    gateway: ServedApp

    @property
    def gw(self) -> Gateway:
        gw: Gateway = self.gateway.app[GATEWAY]
        return gw

    def url(self, path: str) -> str:
        return self.gateway.url(path)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    vendors = Vendors()
    with ServedApp(vendors.app) as fake:
        vendors.base = fake.url("").rstrip("/")
        port = free_port()
        vendors.gateway = f"http://127.0.0.1:{port}"
        config = make_config(tmp_path, gateway_env(vendors.base, public_url=vendors.gateway))
        with ServedApp(lambda: create_app(config), port=port) as gateway:
            yield World(vendors, fake, gateway)


@pytest.fixture
def installed(world: World, browser_context: Any, screenshots: Path) -> World:
    """The app installed from its install page inside the portal (photographed)."""
    portal = Portal(browser_context, world, path="/install")
    expect(portal.page.locator("body")).to_have_attribute("data-installed", "1")
    expect(portal.app.get_by_role("heading", name="Telephony app installed")).to_be_visible()
    expect(portal.app.get_by_role("link", name="Open the app")).to_be_visible()
    portal.settled().shot(screenshots, "install")
    portal.page.close()
    return world


class Portal:
    """A portal page with the app in its frame; ``app`` locates inside the frame."""

    def __init__(self, context: Any, world: World, *, auth: str = ADMIN_AUTH, lang: str = "en", path: str = "/",
                 member: str = MEMBER, host: str = "127.0.0.1") -> None:
        self.page = context.new_page()
        self.fits = 0
        query = urlencode({"auth": auth, "lang": lang, "path": path, "member": member})
        self.page.goto(world.fake.url(f"/portal?{query}", host=host))
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


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """A request sent by hand (no browser): what a telephone system or an attacker sends."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - a local test server
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def placetel(notify_url: str, secret: str, *bodies: str) -> None:
    """Notifications as Placetel sends them, signed with the shared secret shown in the app."""
    for body in bodies:
        raw = body.encode()
        status, _ = post(notify_url, raw, {"Content-Type": "application/x-www-form-urlencoded",
                                           "X-PLACETEL-SIGNATURE": sign(secret, raw)})
        assert status == 200


def outgoing_call(call_id: str, peer: str, to: str = "022112345678") -> tuple[str, str]:
    """A call a Placetel user made, answered, 95 seconds."""
    return (f"event=OutgoingCall&from={OUR_LINE}&to={to}&peer={peer}&call_id={call_id}&direction=out",
            f"event=HungUp&from={OUR_LINE}&to={to}&call_id={call_id}&type=accepted&duration=95&direction=out")


def missed_call(call_id: str, caller: str) -> tuple[str, str]:
    """A call nobody answered."""
    return (f"event=IncomingCall&from={caller}&to={OUR_LINE}&call_id={call_id}&direction=in",
            f"event=HungUp&from={caller}&to={OUR_LINE}&call_id={call_id}&type=missed&duration=0&direction=in")


def webex_login_by_hand(world: World, connection_id: str) -> str:
    """The Webex login a user starts from the app, without a browser: the Webex plugin's page,
    its button (the page's cookie kept), Webex, back to the gateway. The last page's text."""
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    path = world.url(f"/apps/webex/login?connection={connection_id}")
    with browser.open(path, timeout=10) as page:
        fields = form_of(page.read().decode())
    with browser.open(urllib.request.Request(world.url("/apps/webex/login"), data=urlencode(fields).encode()),
                      timeout=10) as done:
        return str(done.read().decode())


def offer_webex(world: World) -> str:
    """The operator offers Webex Calling to the portal (a Webex connection); its id."""
    status, body = post(world.url(f"/admin/v1/tenants/{MEMBER}/connections"),
                        json.dumps({"plugin": "webex", "settings": {"org_id": WEBEX_ORG}}).encode(),
                        {"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 201
    return str(json.loads(body)["id"])


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_an_administrator_sets_the_app_up_and_sees_calls_arrive(installed: World, browser_context: Any,
                                                                screenshots: Path) -> None:
    world = installed
    portal = Portal(browser_context, world).settled()
    app = portal.app
    expect(app.get_by_role("heading", name="Set-up and status", level=1)).to_be_visible()
    portal.section(screenshots, "placetel-connect", "#placetel")

    app.get_by_label("Placetel API key").fill("not-the-right-key")
    app.get_by_role("button", name="Connect Placetel").click()
    expect(app.get_by_role("alert")).to_have_text("Placetel did not accept this API key. Check it and try again.")
    portal.settled()
    app.get_by_label("Placetel API key").fill(PLACETEL_KEY)
    app.get_by_role("button", name="Connect Placetel").click()
    expect(app.get_by_role("status")).to_have_text("Placetel is connected.")
    portal.settled()
    notify_url = app.get_by_label("Notify URL").input_value()
    secret = app.get_by_label("Shared secret").input_value()
    assert re.fullmatch(rf"{world.vendors.gateway}/hooks/placetel/[\w-]+", notify_url) and len(secret) >= 24
    portal.section(screenshots, "placetel-connected", "#placetel")

    app.get_by_label("Responsible for calls nobody answered").select_option(label="Mia Fischer")
    app.get_by_label("Log internal calls").check()
    app.get_by_role("button", name="Save settings").click()
    expect(app.get_by_role("status")).to_have_text("Settings saved.")
    expect(app.get_by_label("Responsible for calls nobody answered")).to_have_value("12")
    expect(app.get_by_label("Log internal calls")).to_be_checked()
    portal.settled()
    portal.section(screenshots, "settings", "#settings")

    expect(app.get_by_role("row", name=re.compile("Anna Schmidt"))).to_contain_text("By extension")
    expect(app.get_by_role("row", name=re.compile("Empfang"))).to_contain_text("No match")
    app.get_by_label("Portal user for Empfang").select_option(label="Lukas Becker")
    app.get_by_role("button", name="Save mapping").click()
    expect(app.get_by_role("status")).to_have_text("Mapping saved.")
    expect(app.get_by_role("row", name=re.compile("Empfang"))).to_contain_text("Set by hand")
    expect(app.get_by_label("Portal user for Empfang")).to_have_value("15")
    portal.settled()
    portal.section(screenshots, "mapping", "#mapping")

    # calls: the reception phones out (its calls go to Lukas, chosen by hand); a call nobody
    # answered goes to the responsible user, but Bitrix24 refuses it
    placetel(notify_url, secret, *outgoing_call("c0ffee01", peer="777empfang@fpbx.de"))
    wait_for(lambda: len(world.vendors.registered()) == 1)
    assert world.vendors.registered()[0]["USER_ID"] == 15
    world.vendors.refuse_numbers.add("+4930123456")
    placetel(notify_url, secret, *missed_call("c0ffee02", caller="030123456"))
    wait_for(lambda: len(world.vendors.registered()) == 3)  # ringing, then ended: both refused
    crm = world.gw.contexts["bitrix24"]
    wait_for(lambda: len(world.gateway.run(crm.deliveries.failed(MEMBER))) == 2)
    wait_for(lambda: world.gateway.run(world.gw.store.events.count("done")) == 2)
    # Jonas logs in to Webex (on his own page, in a new tab: here by hand)
    assert "You are logged in" in webex_login_by_hand(world, offer_webex(world))
    world.gateway.run(world.gw.activity.flush())

    portal = Portal(browser_context, world).settled()  # opened again from the portal's menu
    app = portal.app
    chart = app.get_by_role("img", name=re.compile(r"^Calls per hour, last 24 hours: 1 calls written, 1 failed"))
    expect(chart).to_be_visible()
    expect(app.locator("#status .stat").first).to_contain_text("1")
    expect(app.get_by_role("row", name=re.compile("^Placetel connected"))).to_contain_text("Working")
    expect(app.get_by_role("row", name=re.compile("^Placetel connected"))).not_to_contain_text("Never")
    expect(app.get_by_role("row", name=re.compile("^Webex Calling connected"))).to_contain_text("Never")
    expect(app.get_by_role("row", name=re.compile("^Webex Calling connected"))).to_contain_text("Working")
    expect(app.locator("#webex")).to_contain_text("jonas.weber@example.de")
    failed = app.locator("#status tbody tr", has_text="ERROR_CORE")
    expect(failed).to_have_count(2)  # the refused call's two events: ringing and ended
    expect(failed.nth(0)).to_contain_text("Call ended")
    expect(failed.nth(1)).to_contain_text("Ringing")
    portal.section(screenshots, "status", "#status")
    portal.shot(screenshots, "admin")

    world.vendors.refuse_numbers.clear()  # the cause is fixed: retry
    app.get_by_role("button", name="Retry all").click()
    expect(app.get_by_role("status")).to_have_text("The failed deliveries are being retried.")
    finished = lambda: [p for m, p in world.vendors.rest if m == "telephony.externalCall.finish"]  # noqa: E731
    wait_for(lambda: len(finished()) == 2)
    assert finished()[1]["STATUS_CODE"] == "304"  # a missed call
    assert int(world.vendors.registered()[-1]["USER_ID"]) == 12  # Mia: responsible for calls nobody answered
    portal = Portal(browser_context, world).settled()
    expect(portal.app.get_by_text("Nothing failed. Every call event reached Bitrix24.")).to_be_visible()
    expect(portal.app.get_by_role("img", name=re.compile(r"^Calls per hour, last 24 hours: 2 calls written, 0 failed"))
           ).to_be_visible()
    german = Portal(browser_context, world, lang="de").settled()
    expect(german.app.get_by_role("heading", name="Einrichtung und Status", level=1)).to_be_visible()
    german.shot(screenshots, "admin-de")


def test_a_user_logs_in_to_webex_sees_and_deletes_their_data(installed: World, browser_context: Any,
                                                             screenshots: Path) -> None:
    world = installed
    offer_webex(world)
    portal = Portal(browser_context, world, auth=USER_AUTH).settled()
    app = portal.app
    expect(app.get_by_role("heading", name="My telephony", level=1)).to_be_visible()
    expect(app.locator("#webex")).to_contain_text("Not logged in")
    with portal.page.context.expect_page() as opened:
        app.get_by_role("link", name=re.compile("Log in to Webex")).click()
    login = opened.value
    login.get_by_role("button", name="Continue to Webex").click()  # the Webex plugin's own page
    expect(login.locator("body")).to_contain_text("You are logged in")
    login.close()
    assert len(world.vendors.webhooks) == 3  # Webex will notify the gateway of Jonas's calls

    portal = Portal(browser_context, world, auth=USER_AUTH).settled()
    app = portal.app
    expect(app.locator("#webex")).to_contain_text("Logged in")
    expect(app.locator("#kept")).to_contain_text("Your Webex Calling account")
    expect(app.locator("#kept")).to_contain_text("jonas.weber@example.de")
    portal.shot(screenshots, "user")
    admin = Portal(browser_context, world).settled()
    expect(admin.app.locator("#webex")).to_contain_text("Jonas Weber")
    admin.page.close()

    with portal.page.context.expect_page() as opened:  # Webex confirms who logs out, in a new tab
        app.get_by_role("link", name=re.compile("Log out of Webex")).click()
    logout = opened.value
    logout.get_by_role("button", name="Continue to Webex").click()
    expect(logout.locator("body")).to_contain_text("You are logged out")
    logout.close()
    assert world.vendors.webhooks == {}
    portal = Portal(browser_context, world, auth=USER_AUTH).settled()
    app = portal.app
    expect(app.locator("#webex")).to_contain_text("Not logged in")
    with portal.page.context.expect_page() as opened:
        app.get_by_role("link", name=re.compile("Log in to Webex")).click()
    opened.value.get_by_role("button", name="Continue to Webex").click()
    expect(opened.value.locator("body")).to_contain_text("You are logged in")
    opened.value.close()
    portal = Portal(browser_context, world, auth=USER_AUTH).settled()
    app = portal.app

    app.get_by_role("button", name="Delete my data").click()  # the confirmation is required first
    expect(app.get_by_role("heading", name="My telephony", level=1)).to_be_visible()
    app.get_by_label("Yes, delete what the app keeps about me").check()
    app.get_by_role("button", name="Delete my data").click()
    expect(app.get_by_role("status")).to_have_text("Your data was deleted.")
    expect(app.locator("#kept")).to_contain_text("The app keeps nothing about you.")
    expect(app.locator("#webex")).to_contain_text("Not logged in")
    assert world.vendors.webhooks == {}  # and Webex no longer notifies anybody of Jonas's calls

    app.get_by_role("link", name="Privacy").click()
    expect(app.get_by_role("heading", name="Privacy", level=1)).to_be_visible()
    expect(app.get_by_role("table")).to_contain_text("for 7 days")
    portal.settled().shot(screenshots, "privacy")


def test_a_user_sees_no_administrator_controls_and_is_refused_them(installed: World, browser_context: Any) -> None:
    world = installed
    portal = Portal(browser_context, world, auth=USER_AUTH).settled()
    app = portal.app
    expect(app.get_by_label("Placetel API key")).to_have_count(0)
    expect(app.get_by_role("link", name="Set-up and status")).to_have_count(0)
    held = app.locator("input[name=t]").first.get_attribute("value")
    view = re.search(r"\?t=([^&]+)", app.get_by_role("link", name="Privacy").get_attribute("href") or "")
    assert held and view
    for path in ("/settings", "/placetel/connect", "/mapping", "/retry"):  # by hand, without the browser
        for token_value in (held, view.group(1)):
            status, body = post(world.url(f"/apps/bitrix24{path}"),
                                urlencode({"t": token_value, "responsible_user_id": "7"}).encode(),
                                {"Content-Type": "application/x-www-form-urlencoded"})
            assert status == 403 and "This needs a portal administrator." in body
    page = browser_context.new_page()  # the user's view token does not show the admin page either
    page.goto(world.url(f"/apps/bitrix24/?t={view.group(1)}"))
    expect(page.get_by_role("heading", name="My telephony", level=1)).to_be_visible()


def test_a_forged_or_expired_auth_id_gets_a_clear_page_and_no_data(installed: World, browser_context: Any,
                                                                   screenshots: Path) -> None:
    world = installed
    forged = Portal(browser_context, world, auth="forged-auth-id")
    expect(forged.app.get_by_role("heading", name="The app cannot be shown")).to_be_visible()
    expect(forged.app.locator("form")).to_have_count(0)
    expect(forged.app.locator("main")).not_to_contain_text("Anna")
    forged.settled().shot(screenshots, "error")
    foreign = Portal(browser_context, world, member="0" * 32, lang="de")
    expect(foreign.app.get_by_text("Die App ist in diesem Portal noch nicht installiert")).to_be_visible()


def test_the_token_expires(installed: World, browser_context: Any) -> None:
    world = installed
    key = token.derive_key(CLIENT_SECRET)
    admin = token.Identity(MEMBER, 1, True)
    page = browser_context.new_page()
    fresh = token.issue(key, admin, token.VIEW, ttl=2)
    assert page.goto(world.url(f"/apps/bitrix24/?t={fresh}")).status == 200
    expect(page.get_by_role("heading", name="Set-up and status", level=1)).to_be_visible()
    time.sleep(2.1)
    response = page.reload()
    assert response is not None and response.status == 401
    expect(page.get_by_text("Your session in this app has expired.")).to_be_visible()


def test_the_frame_is_allowed_only_inside_the_tenants_portal(installed: World, browser_context: Any) -> None:
    world = installed
    page = browser_context.new_page()
    view = token.issue(token.derive_key(CLIENT_SECRET), token.Identity(MEMBER, 1, True), token.VIEW)
    response = page.goto(world.url(f"/apps/bitrix24/privacy?t={view}"))
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert f"frame-ancestors {world.vendors.base};" in policy + ";"
    assert "script-src 'self' https://api.bitrix24.com/api/v1/;" in policy
    framed = Portal(browser_context, world, host="evil.localhost")
    framed.page.wait_for_timeout(500)  # the frame has loaded or been blocked by then; nothing to wait for
    assert framed.page.frame(name="app") is not None
    expect(framed.app.get_by_role("heading", name="Set-up and status")).to_have_count(0)
    allowed = Portal(browser_context, world)
    expect(allowed.app.get_by_role("heading", name="Set-up and status")).to_be_visible()


def test_the_german_portal_gets_german(installed: World, browser_context: Any) -> None:
    portal = Portal(browser_context, installed, lang="de").settled()
    expect(portal.app.get_by_role("heading", name="Einrichtung und Status", level=1)).to_be_visible()
    expect(portal.app.get_by_label("Placetel-API-Schlüssel")).to_be_visible()
    expect(portal.app.locator("html")).to_have_attribute("lang", "de")
    portal.app.get_by_role("link", name="Meine Telefonie").click()
    expect(portal.app.get_by_role("heading", name="Meine Telefonie", level=1)).to_be_visible()


def test_keyboard_reaches_every_control_and_every_control_has_a_label(installed: World,
                                                                      browser_context: Any) -> None:
    page = browser_context.new_page()
    view = token.issue(token.derive_key(CLIENT_SECRET), token.Identity(MEMBER, 1, True), token.VIEW)
    page.goto(installed.url(f"/apps/bitrix24/?t={view}"))
    count = page.evaluate("""() => {
        const els = document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea');
        els.forEach((el, i) => el.setAttribute('data-k', String(i)));
        return els.length; }""")
    assert count > 10
    reached = set()
    for _ in range(count + 3):
        page.keyboard.press("Tab")
        k = page.evaluate("() => document.activeElement && document.activeElement.getAttribute('data-k')")
        if k is not None:
            reached.add(int(k))
    assert reached == set(range(count))
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select')]
        .filter(el => !el.labels || el.labels.length === 0).length""")
    assert unlabelled == 0

    page.get_by_label("Responsible for calls nobody answered").focus()
    page.keyboard.press("ArrowDown")  # the first portal user
    for _ in range(4):  # the three switches, then the button
        page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Save settings"
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Settings saved.")
    expect(page.get_by_label("Responsible for calls nobody answered")).to_have_value("1")
