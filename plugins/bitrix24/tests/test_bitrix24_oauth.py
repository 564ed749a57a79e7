"""OAuth: single-flight refresh, expired tokens, revoked grants; UI install and app update."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from bitrix24_fakes import (
    ACCESS_1,
    APP_TOKEN,
    ENV,
    MEMBER,
    OAUTH_RE,
    PORTAL,
    REFRESH_1,
    SECRET,
    BitrixMock,
    FakeSourcePlugin,
    auth,
    call_event,
    calls,
    form,
    install_body,
    ui_install_body,
    oauth_answer,
    oauth_calls,
    ok,
    wait_until,
)
from gateway_bitrix24.api import Bitrix24Client
from gateway_bitrix24.records import Tokens, get_tokens, put_tokens

from gateway import TelephonyUser
from gateway.testing import ADMIN_TOKEN

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
B24_USER = {"ID": "1269", "EMAIL": "anna@example.com", "UF_PHONE_INNER": "101"}


@pytest.fixture
def mock() -> Any:
    with BitrixMock(passthrough=["http://127.0.0.1"]) as m:
        yield m


async def installed(gateway_harness: Any, mock: Any, env: dict[str, str] | None = None) -> tuple[Any, str]:
    fake = FakeSourcePlugin()
    h = await gateway_harness(env={**ENV, **(env or {})}, plugins=[("fakesrc", fake)])
    mock.get(OAUTH_RE, payload=oauth_answer())
    mock.post(PORTAL + "event.bind", payload=ok(True), repeat=True)
    resp = await h.client.post("/hooks/bitrix24/events", data=install_body(), headers=FORM)
    assert resp.status == 200
    conn = await h.connect(MEMBER, "fakesrc")
    await h.gw.directory.put(await h.gw.tenancy.connection(conn["id"]), TelephonyUser("u1", email="anna@example.com", extension="101"))
    return h, conn["id"]


async def expire_tokens(h: Any) -> None:
    await put_tokens(h.gw.contexts["bitrix24"].storage(MEMBER), Tokens(ACCESS_1, REFRESH_1, int(time.time()) - 5))


async def test_expired_token_refreshes_exactly_once_for_concurrent_deliveries(gateway_harness: Any, mock: Any) -> None:
    h, conn = await installed(gateway_harness, mock)
    await expire_tokens(h)
    mock.get(OAUTH_RE, payload=oauth_answer(access="access-2", refresh="refresh-2"))
    mock.post(PORTAL + "user.get", payload=ok([B24_USER]), repeat=True)
    mock.post(PORTAL + "telephony.externalCall.register", payload=ok({"CALL_ID": "externalCall.x.1"}), repeat=True)
    for i in range(6):  # six calls: six lanes delivered in parallel
        resp = await h.post_hook("fakesrc", conn, call_event(f"e{i}", f"call{i}", "ringing", **{"from": "+4922112345678", "user": "u1"}),
                                 {"Content-Type": "application/json", "X-Fake-Secret": SECRET})
        assert resp.status == 200
    await wait_until(lambda: len(calls(mock, "telephony.externalCall.register")) == 6)
    refreshes = oauth_calls(mock)
    assert len(refreshes) == 2  # one at install, exactly one for the expiry
    assert refreshes[1].kwargs["params"]["refresh_token"] == REFRESH_1
    assert {c["auth"] for c in calls(mock, "telephony.externalCall.register")} == {"access-2"}
    tokens = await get_tokens(h.gw.contexts["bitrix24"].storage(MEMBER))
    assert tokens is not None and tokens.refresh_token == "refresh-2"


async def test_concurrent_refreshes_single_flight_across_clients(gateway_harness: Any, mock: Any) -> None:
    """Two clients (as two processes would) both see the stale token; one refresh happens."""
    h, _ = await installed(gateway_harness, mock)
    mock.get(OAUTH_RE, payload=oauth_answer(access="access-2", refresh="refresh-2"))
    a, b = Bitrix24Client(h.gw.contexts["bitrix24"], MEMBER), Bitrix24Client(h.gw.contexts["bitrix24"], MEMBER)
    results = await asyncio.gather(a.refresh(stale=ACCESS_1), b.refresh(stale=ACCESS_1))
    assert {r.access_token for r in results} == {"access-2"}
    assert len(oauth_calls(mock)) == 2  # install + one


async def test_expired_token_answer_refreshes_and_retries(gateway_harness: Any, mock: Any) -> None:
    h, conn = await installed(gateway_harness, mock)
    mock.get(OAUTH_RE, payload=oauth_answer(access="access-2", refresh="refresh-2"))
    mock.post(PORTAL + "user.get", status=401,
              payload={"error": "expired_token", "error_description": "The access token provided has expired."})
    mock.post(PORTAL + "user.get", payload=ok([B24_USER]))
    mock.post(PORTAL + "telephony.externalCall.register", payload=ok({"CALL_ID": "externalCall.y.1"}))
    await h.post_hook("fakesrc", conn, call_event("e1", "c1", "ringing", **{"from": "+4922112345678", "user": "u1"}),
                      {"Content-Type": "application/json", "X-Fake-Secret": SECRET})
    await wait_until(lambda: len(calls(mock, "telephony.externalCall.register")) == 1)
    assert [c["auth"] for c in calls(mock, "user.get")] == [ACCESS_1, "access-2"]
    assert len(oauth_calls(mock)) == 2


async def test_revoked_grant_pauses_tenant_and_keeps_the_delivery(gateway_harness: Any, mock: Any) -> None:
    h, conn = await installed(gateway_harness, mock)
    await expire_tokens(h)
    mock.get(OAUTH_RE, status=400, payload={"error": "invalid_grant", "error_description": "Invalid grant"})
    await h.post_hook("fakesrc", conn, call_event("e1", "c1", "ringing", **{"from": "+4922112345678", "user": "u1"}),
                      {"Content-Type": "application/json", "X-Fake-Secret": SECRET})

    async def paused() -> bool:
        t = await h.admin("GET", f"/tenants/{MEMBER}", expect=200)
        return t["status"] == "paused"
    for _ in range(200):
        if await paused():
            break
        await asyncio.sleep(0.02)
    tenant = await h.admin("GET", f"/tenants/{MEMBER}", expect=200)
    assert (tenant["status"], tenant["status_reason"]) == ("paused", "reinstall_required")
    assert h.gw.dispatcher.depth == 1  # kept, not dropped
    assert await h.admin("GET", "/deadletters", expect=200) in ([], {"dead_letters": []}, {"items": []})
    assert calls(mock, "telephony.externalCall.register") == []


async def test_ui_install_then_install_event_brings_the_application_token(gateway_harness: Any, mock: Any) -> None:
    h = await gateway_harness(env=ENV)
    mock.get(OAUTH_RE, payload=oauth_answer())
    mock.post(PORTAL + "event.bind", payload=ok(True), repeat=True)
    resp = await h.client.post("/apps/bitrix24/install", data=ui_install_body(), headers=FORM)
    assert resp.status == 200 and "data-install-finish" in await resp.text()  # app.js calls BX24.installFinish
    assert "ONAPPINSTALL" in {c["event"] for c in calls(mock, "event.bind")}
    info = await h.admin("GET", f"/plugins/bitrix24/tenants/{MEMBER}", expect=200)
    assert info["application_token_known"] is False  # APP_SID is not the application token
    # events before ONAPPINSTALL are refused, also one carrying the APP_SID
    for token in ("frame-sid-1", APP_TOKEN):
        a = auth()
        a["auth[application_token]"] = token
        resp = await h.client.post("/hooks/bitrix24/events", headers=FORM, data=form({"event": "ONCRMLEADADD", **a}))
        assert resp.status == 401
    # ONAPPINSTALL follows installFinish: its grant is exchanged with our client secret, and
    # app.info at the stored portal names our app for its access token (test_bitrix24_install_trust.py)
    mock.get(OAUTH_RE, payload=oauth_answer())
    mock.post(PORTAL + "app.info", payload=ok({"ID": 12, "CODE": "app.abc123", "INSTALLED": True}), repeat=True)
    resp = await h.client.post("/hooks/bitrix24/events", data=install_body(), headers=FORM)
    assert resp.status == 200 and (await resp.json())["status"] == "completed"
    assert "s6p6eclrvim6da22ft9ch94ekreb52lv" in [c["auth"] for c in calls(mock, "app.info")]
    info = await h.admin("GET", f"/plugins/bitrix24/tenants/{MEMBER}", expect=200)
    assert info["application_token_known"] is True
    assert len(oauth_calls(mock)) == 2  # the UI install's exchange, then the event's


async def test_app_update_stores_the_new_application_token_and_rebinds(gateway_harness: Any, mock: Any) -> None:
    h, _ = await installed(gateway_harness, mock)
    mock.get(OAUTH_RE, payload=oauth_answer(access="access-u", refresh="refresh-u"))
    binds_before = len(calls(mock, "event.bind"))
    a = auth(access_token="upd-access", refresh_token="upd-refresh", expires_in="3600")
    a["auth[application_token]"] = "newapptoken0000000000000000000000"
    resp = await h.client.post("/hooks/bitrix24/events", headers=FORM, data=form(
        {"event": "ONAPPUPDATE", "data[VERSION]": "2", "data[PREVIOUS_VERSION]": "1", **a}))
    assert resp.status == 200
    assert len(calls(mock, "event.bind")) > binds_before
    tokens = await get_tokens(h.gw.contexts["bitrix24"].storage(MEMBER))
    assert tokens is not None and tokens.access_token == "access-u"
    # the old application token no longer passes; the new one does
    from bitrix24_fakes import uninstall_body
    resp = await h.client.post("/hooks/bitrix24/events", data=uninstall_body(APP_TOKEN), headers=FORM)
    assert resp.status == 401
    resp = await h.client.post("/hooks/bitrix24/events", data=uninstall_body("newapptoken0000000000000000000000"), headers=FORM)
    assert resp.status == 200
    await h.admin("GET", f"/tenants/{MEMBER}", expect=404)


async def test_update_with_foreign_tokens_is_refused(gateway_harness: Any, mock: Any) -> None:
    h, _ = await installed(gateway_harness, mock)
    mock.get(OAUTH_RE, status=400, payload={"error": "invalid_grant"})
    a = auth(refresh_token="stolen")
    a["auth[application_token]"] = "attacker0000000000000000000000000"
    resp = await h.client.post("/hooks/bitrix24/events", headers=FORM, data=form({"event": "ONAPPUPDATE", **a}))
    assert resp.status == 401
    info = await h.admin("GET", f"/plugins/bitrix24/tenants/{MEMBER}", expect=200)
    assert info["application_token_known"] is True


async def test_admin_routes_respect_the_token_scope(gateway_harness: Any, mock: Any) -> None:
    h, _ = await installed(gateway_harness, mock, env={"GATEWAY_ADMIN_TOKEN": f"{ADMIN_TOKEN},othertenant:scoped-token-123456"})
    headers = {"Authorization": "Bearer scoped-token-123456"}
    for method, path, body in (("GET", "/settings", None), ("PUT", "/settings", {"crm_create": True}),
                               ("PUT", "/user-map", {"entries": []})):
        resp = await h.client.request(method, f"/admin/v1/plugins/bitrix24/tenants/{MEMBER}{path}", json=body, headers=headers)
        assert resp.status == 403
    resp = await h.client.get(f"/admin/v1/plugins/bitrix24/tenants/{MEMBER}/settings")
    assert resp.status == 401
    got = await h.admin("PUT", f"/plugins/bitrix24/tenants/{MEMBER}/settings", {"crm_create": "yes"}, expect=400)
    assert "error" in got


async def test_refresh_waits_for_another_process_holding_the_lease(gateway_harness: Any, mock: Any) -> None:
    """Another process holds the refresh lease and rotates the tokens: we use its result."""
    h, _ = await installed(gateway_harness, mock)
    st = h.gw.contexts["bitrix24"].storage(MEMBER)
    client = Bitrix24Client(h.gw.contexts["bitrix24"], MEMBER)
    async with st.lease("oauth-refresh"):
        task = asyncio.create_task(client.refresh(stale=ACCESS_1))
        await asyncio.sleep(0.1)
        assert not task.done()  # blocked by the lease, whatever the scheduling
        await put_tokens(st, Tokens("from-other-process", "rotated", int(time.time()) + 3600))
    fresh = await task
    assert fresh.access_token == "from-other-process"
    assert len(oauth_calls(mock)) == 1  # only the install's exchange
