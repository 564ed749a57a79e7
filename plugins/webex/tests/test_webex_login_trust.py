"""Issue 17, items 6 and 7: who may start a login, finish it, and decide the organisation.

- The login link changes nothing by itself (a page with a button); the button's form carries
  an HMAC of a nonce only the browser's cookie holds.
- A ``state`` is accepted once, only in the browser that started the login, until it expires.
- A connection without ``org_id`` takes no user logins until the tenant's admin ties it to
  their organisation through a single-use pin link (or sets ``org_id``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from yarl import URL

from gateway.testing import ADMIN_TOKEN
from gateway_webex import oauth, once
from webex_fixtures import (
    CLIENT_SECRET,
    ENV,
    ORG,
    PERSON,
    FakeWebex,
    Webex,
    fake_webex,  # noqa: F401  (fixture)
    form_of,
    login,
    start,
    webex,  # noqa: F401  (fixture)
)

COOKIE = "callgate_webex"
OTHER_TENANT_TOKEN = "other:other-tenant-token-0123456789"


def exchanges(fake: FakeWebex) -> int:
    return len(fake.requests("POST", "/access_token"))


async def callback(client: Any, state: str, code: str = "auth-code-x") -> Any:
    return await client.get("/apps/webex/callback", params={"code": code, "state": state})


@pytest.fixture
async def unpinned(gateway_harness: Any, fake_webex: tuple[FakeWebex, str]) -> Webex:  # noqa: F811
    """A tenant with a Webex connection created without ``org_id``; nobody logged in."""
    fake, api = fake_webex
    h = await gateway_harness(env={**ENV, "GATEWAY_WEBEX_API_URL": api,
                                   "GATEWAY_ADMIN_TOKEN": f"{ADMIN_TOKEN},{OTHER_TENANT_TOKEN}"})
    await h.create_tenant("acme")
    conn = await h.connect("acme", "webex", {})
    return Webex(h=h, fake=fake, api=api, connection_id=conn["id"])


async def org_of(w: Webex) -> Any:
    return (await w.h.gw.tenancy.connection(w.connection_id)).settings.get("org_id")


async def pin_link(w: Webex) -> str:
    made = await w.h.admin("POST", f"/plugins/webex/tenants/acme/connections/{w.connection_id}/pin-link",
                           expect=201)
    assert made["expires_in"] > 0
    return URL(made["url"]).query["pin"]


# --- item 7: starting a login is no cross-site side effect; the state is the browser's, once ----

@pytest.mark.parametrize("path", ["/apps/webex/login", "/apps/webex/logout"])
async def test_the_link_shows_a_page_and_changes_nothing(webex: Webex, path: str) -> None:
    before = exchanges(webex.fake)
    page = await webex.h.client.get(path, params={"connection": webex.connection_id}, allow_redirects=False)
    assert page.status == 200 and "Location" not in page.headers
    assert f'<form method="post" action="{path.rsplit("/", 1)[1]}">' in await page.text()  # the same path
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    cookie = page.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/apps/webex/"
    assert exchanges(webex.fake) == before


@pytest.mark.parametrize("path", ["/apps/webex/login", "/apps/webex/logout"])
async def test_a_post_from_another_site_starts_nothing(webex: Webex, aiohttp_client: Any, path: str) -> None:
    page = await webex.h.client.get(path, params={"connection": webex.connection_id})
    stolen = form_of(await page.text())  # even a form token seen elsewhere is tied to its browser
    stranger = await aiohttp_client(webex.h.client.server)
    for form in (stolen, {"connection": webex.connection_id}, {"connection": webex.connection_id, "token": "x"}):
        resp = await stranger.post(path, data=form, allow_redirects=False)
        assert resp.status in (400, 403) and "Location" not in resp.headers
    # nor does the page's own browser with a token altered to another connection
    other = await webex.h.connect("acme", "webex", {"org_id": ORG})
    resp = await webex.h.client.post(path, data={**stolen, "connection": other["id"]}, allow_redirects=False)
    assert resp.status == 403 and "Location" not in resp.headers


async def test_a_state_is_accepted_once(webex: Webex) -> None:
    state = await start(webex.h, webex.connection_id)
    assert (await callback(webex.h.client, state, "auth-code-a")).status == 200
    before = exchanges(webex.fake)
    replay = await callback(webex.h.client, state, "auth-code-b")
    assert replay.status == 400 and "completed already" in await replay.text()
    assert exchanges(webex.fake) == before
    # remembered in the store (so another process sharing it refuses it too), not in memory
    used = await webex.h.context("webex").storage("acme").all("used")
    assert len(used) == 2  # the fixture's login and this one


async def test_a_state_taken_to_another_browser_is_refused(webex: Webex, aiohttp_client: Any) -> None:
    state = await start(webex.h, webex.connection_id)
    other_browser = await aiohttp_client(webex.h.client.server)
    before = exchanges(webex.fake)
    resp = await callback(other_browser, state)  # no cookie at all
    assert resp.status == 400 and "another browser" in await resp.text()
    await other_browser.get("/apps/webex/login", params={"connection": webex.connection_id})  # its own cookie
    resp = await callback(other_browser, state)
    assert resp.status == 400
    assert exchanges(webex.fake) == before
    assert (await callback(webex.h.client, state)).status == 200  # still good where it started


async def test_an_expired_state_is_refused(webex: Webex) -> None:
    page = await webex.h.client.get("/apps/webex/login", params={"connection": webex.connection_id})
    nonce = page.cookies[COOKIE].value
    old = oauth.make_state(CLIENT_SECRET, webex.connection_id, "login", 60, browser=nonce, now=time.time() - 61)
    before = exchanges(webex.fake)
    resp = await callback(webex.h.client, old)
    assert resp.status == 400 and "expired" in await resp.text()
    assert exchanges(webex.fake) == before


async def test_used_states_are_forgotten_once_expired(webex: Webex) -> None:
    ctx = webex.h.context("webex")
    assert await once.use(ctx, "acme", "state", "old", time.time() - 1)
    assert await once.use(ctx, "acme", "state", "new", time.time() + 60)
    assert not await once.use(ctx, "acme", "state", "new", time.time() + 60)
    keys = [key for key, _ in await ctx.storage("acme").all("used")]
    assert "state:old" not in keys and "state:new" in keys


# --- item 6: the organisation is set by someone the tenant trusts --------------------------------

async def test_an_unpinned_connection_takes_no_user_logins(unpinned: Webex) -> None:
    page = await unpinned.h.client.get("/apps/webex/login", params={"connection": unpinned.connection_id})
    assert page.status == 403 and "not tied to a Webex organisation" in await page.text()
    # a state made without the page (as if forged with the secret) still pins nothing
    await unpinned.h.client.get("/apps/webex/logout", params={"connection": unpinned.connection_id})
    nonce = unpinned.h.client.session.cookie_jar.filter_cookies(unpinned.h.client.make_url("/apps/webex/"))[COOKIE].value
    state = oauth.make_state(CLIENT_SECRET, unpinned.connection_id, "login", 60, browser=nonce)
    resp = await callback(unpinned.h.client, state)
    assert resp.status == 403
    assert await org_of(unpinned) is None
    users = await unpinned.h.admin("GET", f"/tenants/acme/connections/{unpinned.connection_id}/users", expect=200)
    assert users["users"] == []
    assert unpinned.fake.webhooks == {}


async def test_the_admins_pin_link_ties_the_connection_to_their_organisation(unpinned: Webex) -> None:
    pin = await pin_link(unpinned)
    resp = await login(unpinned.h, unpinned.connection_id, pin=pin)
    assert resp.status == 200, await resp.text()
    assert await org_of(unpinned) == ORG
    audit = await unpinned.h.admin("GET", "/audit", expect=200)
    assert "webex.org_pinned" in [e["action"] for e in audit["entries"]]
    # from now on: people of that organisation log in with the plain link, others do not
    unpinned.fake.profile = {**unpinned.fake.profile, "id": "SECOND-PERSON"}
    assert (await login(unpinned.h, unpinned.connection_id, code="auth-code-2")).status == 200
    unpinned.fake.profile = {**unpinned.fake.profile, "id": "STRANGER", "orgId": "OTHER-ORG"}
    assert (await login(unpinned.h, unpinned.connection_id, code="auth-code-3")).status == 403
    assert await org_of(unpinned) == ORG
    # the pin link is spent: the connection is tied now
    page = await unpinned.h.client.get("/apps/webex/login", params={"connection": unpinned.connection_id, "pin": pin})
    assert page.status == 400
    await unpinned.h.admin("POST", f"/plugins/webex/tenants/acme/connections/{unpinned.connection_id}/pin-link",
                           expect=409)


async def test_a_pin_link_pins_once(unpinned: Webex) -> None:
    pin = await pin_link(unpinned)
    first = await start(unpinned.h, unpinned.connection_id, pin=pin)
    second = await start(unpinned.h, unpinned.connection_id, pin=pin)  # both pages opened before either login
    unpinned.fake.profile = {**unpinned.fake.profile, "orgId": "OTHER-ORG"}
    assert (await callback(unpinned.h.client, first, "auth-code-1")).status == 200
    unpinned.fake.profile = {**unpinned.fake.profile, "id": "SECOND", "orgId": ORG}
    resp = await callback(unpinned.h.client, second, "auth-code-2")
    assert resp.status == 400 and "used already" in await resp.text()
    assert await org_of(unpinned) == "OTHER-ORG"


async def test_pin_links_are_for_one_connection_and_expire(unpinned: Webex) -> None:
    other = await unpinned.h.connect("acme", "webex", {})
    pin = await pin_link(unpinned)
    expired = oauth.make_pin(CLIENT_SECRET, unpinned.connection_id, 60, now=time.time() - 61)
    state_as_pin = oauth.make_state(CLIENT_SECRET, unpinned.connection_id, "login", 60, browser="x")
    for connection, token in ((other["id"], pin), (unpinned.connection_id, expired),
                              (unpinned.connection_id, state_as_pin), (unpinned.connection_id, "forged.pin")):
        page = await unpinned.h.client.get("/apps/webex/login", params={"connection": connection, "pin": token})
        assert page.status == 400
    assert await org_of(unpinned) is None and exchanges(unpinned.fake) == 0


async def test_only_the_tenants_admin_gets_a_pin_link(unpinned: Webex) -> None:
    path = f"/admin/v1/plugins/webex/tenants/acme/connections/{unpinned.connection_id}/pin-link"
    assert (await unpinned.h.client.post(path)).status == 401
    other = {"Authorization": "Bearer other-tenant-token-0123456789"}
    assert (await unpinned.h.client.post(path, headers=other)).status == 403
    other_path = f"/admin/v1/plugins/webex/tenants/other/connections/{unpinned.connection_id}/pin-link"
    assert (await unpinned.h.client.post(other_path, headers=other)).status == 404
    listing = await unpinned.h.admin("GET", "/audit", expect=200)
    assert "webex.pin_link" not in [e["action"] for e in listing["entries"]]


async def test_logins_and_refusals_name_no_person_in_the_audit_log(unpinned: Webex) -> None:
    await login(unpinned.h, unpinned.connection_id, pin=await pin_link(unpinned))
    dumped = str((await unpinned.h.admin("GET", "/audit", expect=200))["entries"])
    assert PERSON not in dumped and ORG not in dumped
