"""The app on the real gateway, over HTTP without a browser: who may open it, what each token
allows, what the forms change. Bitrix24, Placetel and Webex are the fakes of ``app_fakes.py``
(a local server); the browser tests (``test_bitrix24_app_browser.py``) walk the same app."""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from app_fakes import (
    WEBEX_ORG,
    ADMIN_AUTH,
    CLIENT_SECRET,
    EXPIRED_AUTH,
    MEMBER,
    PLACETEL_KEY,
    USER_AUTH,
    Vendors,
)
from app_gateway import (
    APP,
    error_of,
    form_tokens,
    gateway_env,
    mapping_rows,
    install_form,
    open_query,
    post_form,
    view_token,
)

from webex_fixtures import form_of

from gateway import TelephonyUser
from gateway.testing import Harness
from gateway_bitrix24.app import token
from gateway_bitrix24.records import get_settings
from gateway_bitrix24.users import list_overrides


@pytest.fixture
async def vendors(aiohttp_server: Any) -> tuple[Vendors, str]:
    fake = Vendors()
    server = await aiohttp_server(fake.app())
    fake.base = str(server.make_url("")).rstrip("/")
    return fake, fake.base


@pytest.fixture
async def gw(gateway_harness: Any, vendors: tuple[Vendors, str]) -> Harness:
    """A gateway on which the app is installed (through its install page)."""
    _, base = vendors
    h: Harness = await gateway_harness(env=gateway_env(base))
    resp = await post_form(h.client, f"{APP}/install", install_form(), params=open_query(base))
    assert resp.status == 200, await resp.text()
    return h


async def open_app(h: Harness, base: str, auth: str = ADMIN_AUTH, **query: str) -> tuple[int, str, Any]:
    resp = await post_form(h.client, f"{APP}/", {**install_form(auth), **query.pop("form", {})},
                           params={**open_query(base), **query})
    return resp.status, await resp.text(), resp


async def test_install_page_finishes_the_install_and_leads_to_the_app(gateway_harness: Any,
                                                                     vendors: tuple[Vendors, str]) -> None:
    fake, base = vendors
    h = await gateway_harness(env=gateway_env(base))
    resp = await post_form(h.client, f"{APP}/install", install_form(), params=open_query(base, lang="de"))
    page = await resp.text()
    assert resp.status == 200 and "Telefonie-App installiert" in page and "data-install-finish" in page
    assert resp.headers["Content-Security-Policy"].endswith(f"frame-ancestors {base}")
    assert "script-src 'self' https://api.bitrix24.com/api/v1/;" in resp.headers["Content-Security-Policy"]
    assert "<script>" not in page  # no inline script: BX24.installFinish is called by app.js
    claims = token.verify(token.derive_key(CLIENT_SECRET), view_token(page), token.VIEW)
    assert claims.identity == token.Identity(MEMBER, 1, True, "de")
    assert [m for m, _ in fake.rest].count("event.bind") == 4  # ONAPPINSTALL too: it brings the app token
    assert (await h.gw.tenancy.binding(MEMBER, "bitrix24")) is not None


async def test_an_administrator_opens_the_set_up_page(gw: Harness, vendors: tuple[Vendors, str]) -> None:
    _, base = vendors
    status, page, resp = await open_app(gw, base)
    assert status == 200 and "Set-up and status" in page and "Placetel API key" in page
    assert "Anna Schmidt" in page and "Lukas Becker" in page  # the portal's users to choose from
    policy = resp.headers["Content-Security-Policy"]
    assert f"frame-ancestors {base}" in policy and "unsafe-inline" not in policy
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["Referrer-Policy"] == "no-referrer"
    assert "Set-Cookie" not in resp.headers
    tokens = form_tokens(page)
    assert set(tokens) == {f"{APP}/placetel/connect", f"{APP}/settings"}  # no telephone users, no failures yet


async def test_a_user_gets_their_own_page_and_no_administrator_token(gw: Harness,
                                                                     vendors: tuple[Vendors, str]) -> None:
    _, base = vendors
    status, page, _ = await open_app(gw, base, USER_AUTH)
    assert status == 200 and "My telephony" in page and "Hello Jonas Weber" in page
    assert "Placetel API key" not in page and "Set-up and status" not in page
    assert set(form_tokens(page)) == {f"{APP}/me/erase"}
    assert "/apps/webex/login" not in page  # no Webex connection on this gateway yet


@pytest.mark.parametrize("purpose", sorted(token.ADMIN_PURPOSES))
async def test_administrator_forms_are_refused_to_a_user_sent_by_hand(gw: Harness, vendors: tuple[Vendors, str],
                                                                     purpose: str) -> None:
    _, base = vendors
    _, page, _ = await open_app(gw, base, USER_AUTH)
    held = [form_tokens(page)[f"{APP}/me/erase"], view_token(page)]
    key = token.derive_key(CLIENT_SECRET)
    forged = token.issue(token.derive_key("another-secret-of-somebody-else"),
                         token.Identity(MEMBER, 7, True), purpose)
    path = APP + {token.PLACETEL_CONNECT: "/placetel/connect", token.PLACETEL_DISCONNECT: "/placetel/disconnect",
                  token.SETTINGS: "/settings", token.MAPPING: "/mapping", token.RETRY: "/retry"}[purpose]
    for held_token in held:
        resp = await post_form(gw.client, path, {"t": held_token, "responsible_user_id": "7"})
        assert resp.status == 403 and error_of(await resp.text()) == "This needs a portal administrator."
    resp = await post_form(gw.client, path, {"t": forged, "responsible_user_id": "7"})
    assert resp.status == 401
    assert token.verify(key, held[1], token.VIEW).identity.is_admin is False
    assert (await get_settings(gw.context("bitrix24").storage(MEMBER))).responsible_user_id is None


async def test_forged_expired_and_foreign_openings_get_a_clear_page_and_no_data(
        gw: Harness, vendors: tuple[Vendors, str]) -> None:
    _, base = vendors
    for auth, reason in (("forged-auth-id", "could not be confirmed"), (EXPIRED_AUTH, "could not be confirmed")):
        status, page, resp = await open_app(gw, base, auth)
        assert status == 401 and reason in error_of(page)
        assert "Anna" not in page and "<form" not in page and "?t=" not in page
        assert "frame-ancestors http://127.0.0.1:*" in resp.headers["Content-Security-Policy"]
    status, page, _ = await open_app(gw, base, DOMAIN="other.bitrix24.de")
    assert status == 403 and error_of(page) == "This sign-in belongs to another Bitrix24 portal."
    status, page, _ = await open_app(gw, base, form={"member_id": "0" * 32}, LANG="de")
    assert status == 404 and "nicht installiert" in error_of(page)
    resp = await gw.client.post(f"{APP}/", data="AUTH_ID=x", headers={"Content-Type": "text/plain"})
    assert resp.status == 400 and "could not be read" in error_of(await resp.text())


async def test_an_expired_or_altered_token_is_refused(gw: Harness, vendors: tuple[Vendors, str]) -> None:
    _, base = vendors
    key = token.derive_key(CLIENT_SECRET)
    admin = token.Identity(MEMBER, 1, True)
    old = token.issue(key, admin, token.VIEW, now=time.time() - token.DEFAULT_TTL - 1)
    resp = await gw.client.get(f"{APP}/", params={"t": old})
    assert resp.status == 401 and error_of(await resp.text()) == "Your session in this app has expired."
    fresh = token.issue(key, admin, token.VIEW)
    assert (await gw.client.get(f"{APP}/", params={"t": fresh})).status == 200
    body, sig = fresh.split(".")
    assert (await gw.client.get(f"{APP}/", params={"t": body + "." + sig[::-1]})).status == 401
    assert (await gw.client.get(f"{APP}/privacy")).status == 401


async def test_without_app_credentials_the_app_says_so(gateway_harness: Any, vendors: tuple[Vendors, str]) -> None:
    _, base = vendors
    env = gateway_env(base)
    env["GATEWAY_BITRIX24_CLIENT_SECRET"] = ""
    h = await gateway_harness(env=env)
    status, page, _ = await open_app(h, base)
    assert status == 503 and "has not set up the Bitrix24 app" in error_of(page)
    resp = await post_form(h.client, f"{APP}/install", install_form(), params=open_query(base))
    assert resp.status == 503


async def test_placetel_is_connected_with_a_key_placetel_accepts(gw: Harness, vendors: tuple[Vendors, str]) -> None:
    fake, base = vendors
    _, page, _ = await open_app(gw, base)
    connect = form_tokens(page)[f"{APP}/placetel/connect"]
    resp = await post_form(gw.client, f"{APP}/placetel/connect", {"t": connect, "api_key": "wrong-key"})
    assert resp.status == 303
    assert parse_qs(urlsplit(resp.headers["Location"]).query)["p"] == ["problem.placetel_key_refused"]
    assert await gw.context("bitrix24").connections.of_tenant(MEMBER) == []

    resp = await post_form(gw.client, f"{APP}/placetel/connect", {"t": connect, "api_key": PLACETEL_KEY})
    assert resp.status == 303
    page = await (await gw.client.get(resp.headers["Location"])).text()
    assert "Placetel is connected." in page
    [conn] = await gw.gw.tenancy.connections(MEMBER)
    assert f'value="{gw.gw.webhook_url(conn)}"' in page
    assert f'value="{conn.settings["secret"]}"' in page and conn.settings["api_key"] == PLACETEL_KEY
    assert ("PUT", "/subscriptions") in fake.placetel  # Placetel's API subscribed the Notify URL
    assert PLACETEL_KEY not in page
    assert "compared with the call list" not in page
    await gw.gw.reconciliation.run(conn)  # the status shows when calls were last looked for
    _, page, _ = await open_app(gw, base)
    assert "compared with the call list" in page

    disconnect = form_tokens(page)[f"{APP}/placetel/disconnect"]
    resp = await post_form(gw.client, f"{APP}/placetel/disconnect", {"t": disconnect})
    assert resp.status == 303 and await gw.gw.tenancy.connections(MEMBER) == []
    assert ("DELETE", "/subscriptions/sub-1") in fake.placetel
    resp = await post_form(gw.client, f"{APP}/placetel/disconnect", {"t": connect})  # another form's token
    assert resp.status == 403


async def test_settings_and_mapping_are_what_the_sink_reads(gw: Harness, vendors: tuple[Vendors, str]) -> None:
    _, base = vendors
    _, page, _ = await open_app(gw, base)
    connect = form_tokens(page)[f"{APP}/placetel/connect"]
    await post_form(gw.client, f"{APP}/placetel/connect", {"t": connect, "api_key": PLACETEL_KEY})
    _, page, _ = await open_app(gw, base)
    tokens = form_tokens(page)
    resp = await post_form(gw.client, f"{APP}/settings", {"t": tokens[f"{APP}/settings"],
                                                           "responsible_user_id": "12", "log_internal": "on"})
    assert resp.status == 303
    st = gw.context("bitrix24").storage(MEMBER)
    saved = await get_settings(st)
    assert (saved.responsible_user_id, saved.crm_create, saved.show_card, saved.log_internal) == (12, False, False, True)
    resp = await post_form(gw.client, f"{APP}/settings", {"t": tokens[f"{APP}/settings"], "responsible_user_id": "99"})
    assert resp.status == 400  # not a portal user that was offered
    assert (await get_settings(st)).responsible_user_id == 12

    _, page, _ = await open_app(gw, base)
    rows = mapping_rows(page)
    assert set(rows) == {"Anna Schmidt", "Empfang", "Lager"}
    assert "By extension" in page  # Anna: Placetel extension 201 is the portal user's
    resp = await post_form(gw.client, f"{APP}/mapping", {"t": form_tokens(page)[f"{APP}/mapping"],
                                                          rows["Empfang"]: "15", rows["Lager"]: "auto"})
    assert resp.status == 303
    assert [o.to_dict() for o in await list_overrides(st)] == [{"bitrix24_user_id": 15, "extension": "200"}]
    _, page, _ = await open_app(gw, base)
    assert page.count("Set by hand") == 1
    resp = await post_form(gw.client, f"{APP}/mapping", {"t": form_tokens(page)[f"{APP}/mapping"],
                                                          "map.not-a-row": "15"})
    assert resp.status == 400
    resp = await post_form(gw.client, f"{APP}/mapping", {"t": form_tokens(page)[f"{APP}/mapping"],
                                                          rows["Empfang"]: "auto"})
    assert resp.status == 303 and await list_overrides(st) == []


async def _connect_placetel(h: Harness, base: str) -> Any:
    _, page, _ = await open_app(h, base)
    connect = form_tokens(page)[f"{APP}/placetel/connect"]
    assert (await post_form(h.client, f"{APP}/placetel/connect", {"t": connect, "api_key": PLACETEL_KEY})).status == 303
    [conn] = await h.gw.tenancy.connections(MEMBER)
    return conn


async def test_a_user_sees_and_deletes_what_the_app_keeps_about_them(gw: Harness,
                                                                     vendors: tuple[Vendors, str]) -> None:
    _, base = vendors
    conn = await _connect_placetel(gw, base)
    await gw.gw.directory.put(conn, TelephonyUser("777jonas@fpbx.de", "Jonas Weber", "jonas.weber@example.de", "207"))
    _, page, _ = await open_app(gw, base, USER_AUTH)
    assert "Your Placetel account" in page and "jonas.weber@example.de" in page
    erase = form_tokens(page)[f"{APP}/me/erase"]
    resp = await post_form(gw.client, f"{APP}/me/erase", {"t": erase})
    assert resp.status == 400  # not confirmed
    assert await gw.gw.directory.get(conn, "777jonas@fpbx.de") is not None
    resp = await post_form(gw.client, f"{APP}/me/erase", {"t": erase, "confirm": "yes"})
    assert resp.status == 303 and urlsplit(resp.headers["Location"]).path == f"{APP}/me"
    page = await (await gw.client.get(resp.headers["Location"])).text()
    assert "Your data was deleted." in page and "The app keeps nothing about you." in page
    assert await gw.gw.directory.get(conn, "777jonas@fpbx.de") is None
    assert await gw.gw.directory.get(conn, "777anna@fpbx.de") is not None  # nobody else's
    actions = [e.action for e in await gw.gw.store.audit.entries()]
    assert "subject.export" in actions and "subject.erase" in actions


async def test_webex_logout_goes_through_the_webex_plugins_own_flow(gw: Harness, vendors: tuple[Vendors, str]) -> None:
    _, base = vendors
    webex = await gw.connect(MEMBER, "webex", {"org_id": WEBEX_ORG})
    await gw.gw.directory.put(await gw.gw.tenancy.connection(webex["id"]),
                              TelephonyUser("person-jonas", "Jonas Weber", "jonas.weber@example.de", "207"))
    _, page, _ = await open_app(gw, base, USER_AUTH)
    logout = f"/apps/webex/logout?connection={webex['id']}"
    assert "Logged in" in page and f'href="{logout}" target="_blank"' in page
    page = await gw.client.get(logout)  # the Webex plugin's page: one button, then Webex
    assert page.status == 200
    resp = await gw.client.post(logout, data=form_of(await page.text()), allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith(f"{base}/webex/v1/authorize?")
    await gw.gw.directory.logout(await gw.gw.tenancy.connection(webex["id"]), "person-jonas")
    _, page, _ = await open_app(gw, base, USER_AUTH)
    assert f'href="/apps/webex/login?connection={webex["id"]}" target="_blank"' in page


async def test_retrying_is_only_for_the_tenants_own_failures(gw: Harness, vendors: tuple[Vendors, str]) -> None:
    _, base = vendors
    view = view_token((await open_app(gw, base))[1])
    retry = token.issue(token.derive_key(CLIENT_SECRET), token.Identity(MEMBER, 1, True), token.RETRY)
    for delivery in ("4711", "x; drop"):
        resp = await post_form(gw.client, f"{APP}/retry", {"t": retry, "delivery": delivery})
        assert resp.status in (400, 404)
    resp = await post_form(gw.client, f"{APP}/retry", {"t": retry, "delivery": "all"})
    assert resp.status == 303
    assert (await gw.client.get(f"{APP}/", params={"t": view})).status == 200


async def test_static_files_and_unknown_pages(gw: Harness) -> None:
    css = await gw.client.get(f"{APP}/static/app.css")
    assert css.status == 200 and css.content_type == "text/css"
    assert (await gw.client.get(f"{APP}/static/../routes.py")).status == 404
    assert (await gw.client.get(f"{APP}/static/secrets.txt")).status == 404


async def test_after_an_uninstall_the_app_shows_nothing(gw: Harness, vendors: tuple[Vendors, str]) -> None:
    _, base = vendors
    view = view_token((await open_app(gw, base))[1])
    await gw.gw.tenancy.remove(MEMBER)
    resp = await gw.client.get(f"{APP}/", params={"t": view})
    assert resp.status == 404 and "not installed" in error_of(await resp.text())
    assert (await open_app(gw, base))[0] == 404


async def test_no_personal_data_or_secrets_in_the_logs(gw: Harness, vendors: tuple[Vendors, str],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    _, base = vendors
    caplog.set_level(logging.DEBUG)
    conn = await _connect_placetel(gw, base)
    await open_app(gw, base, "forged-auth-id")
    await open_app(gw, base, USER_AUTH)
    _, page, _ = await open_app(gw, base)
    await post_form(gw.client, f"{APP}/settings", {"t": form_tokens(page)[f"{APP}/settings"], "responsible_user_id": "12"})
    text = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    for secret in (ADMIN_AUTH, USER_AUTH, "forged-auth-id", PLACETEL_KEY, conn.settings["secret"],
                   "anna.schmidt@example.de", "jonas.weber@example.de", "Jonas", view_token(page)):
        assert secret not in text
