"""Who a call is written for when no agent can be named, on every install path, and the
tenant's choices (responsible user, cards); recordings Bitrix24 cannot take. Through the real
endpoints with the test source ``fakesrc`` and Bitrix24 mocked at the HTTP boundary."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from bitrix24_fakes import (  # noqa: F401  (fixture mock)
    ENV,
    FORM,
    INSTALLER,
    MEMBER,
    OAUTH_RE,
    SECRET,
    FakePortal,
    FakeSourcePlugin,
    b24_user,
    mock,
    call_event,
    install,
    install_body,
    oauth_answer,
    wait_until,
)
from gateway_bitrix24.records import get_portal, put_portal

from gateway import TelephonyUser

CALLER = "+4922112345678"
USERS = [b24_user(1269, "101", "anna@example.com")]


async def gateway(gateway_harness: Any) -> Any:
    """A gateway with the test source ``fakesrc``; the app is not installed yet."""
    return await gateway_harness(env=ENV, plugins=[("fakesrc", FakeSourcePlugin())])


async def post(h: Any, conn: str, *bodies: bytes) -> None:
    for body in bodies:
        resp = await h.post_hook("fakesrc", conn, body, {"Content-Type": "application/json", "X-Fake-Secret": SECRET})
        assert resp.status == 200, await resp.text()
    await wait_until(lambda: h.gw.dispatcher.depth == 0)


async def missed_call(h: Any, conn: str, call: str = "m1") -> None:
    """A call to the company number that names no user (a ring group nobody answered)."""
    await post(h, conn, call_event(f"{call}-r", call, "ringing", **{"from": CALLER}),
               call_event(f"{call}-e", call, "ended", outcome="missed", **{"from": CALLER}))


async def test_event_install_records_the_installer_and_missed_calls_go_to_them(gateway_harness: Any, mock: Any) -> None:
    h = await gateway(gateway_harness)
    portal = await install(h, mock, USERS)
    stored = await get_portal(h.context("bitrix24").storage(MEMBER))
    assert stored is not None and stored.installer_user_id == INSTALLER
    conn = (await h.connect(MEMBER, "fakesrc"))["id"]
    await missed_call(h, conn)
    (reg,) = portal.called("telephony.externalCall.register")
    assert reg["USER_ID"] == INSTALLER and reg["SHOW"] == 0  # never dropped (was: call_skipped_no_user)
    (fin,) = portal.called("telephony.externalCall.finish")
    assert str(fin["USER_ID"]) == str(INSTALLER) and str(fin["STATUS_CODE"]) == "304"


async def test_ui_install_records_the_user_who_installed(gateway_harness: Any, mock: Any) -> None:
    h = await gateway(gateway_harness)
    mock.get(OAUTH_RE, payload={**oauth_answer(), "user_id": 67})
    portal = FakePortal(mock, USERS)
    body = urlencode({"DOMAIN": "example.bitrix24.de", "PROTOCOL": "1", "LANG": "de", "APP_SID": "frame-sid-1",
                      "AUTH_ID": "ui-access", "AUTH_EXPIRES": "3600", "REFRESH_ID": "ui-refresh",
                      "member_id": MEMBER, "status": "L", "PLACEMENT": "DEFAULT"}).encode()
    resp = await h.client.post("/apps/bitrix24/install", data=body, headers=FORM)
    assert resp.status == 200
    # the ONAPPINSTALL that follows installFinish keeps the installer (its refresh token is
    # exchanged once more: only our app's grant completes an install)
    mock.get(OAUTH_RE, payload={**oauth_answer(), "user_id": 67})
    resp = await h.client.post("/hooks/bitrix24/events", data=install_body(), headers=FORM)
    assert resp.status == 200 and (await resp.json())["status"] == "completed"
    stored = await get_portal(h.context("bitrix24").storage(MEMBER))
    assert stored is not None and stored.installer_user_id == 67
    conn = (await h.connect(MEMBER, "fakesrc"))["id"]
    await missed_call(h, conn)
    assert str(portal.called("telephony.externalCall.finish")[0]["USER_ID"]) == "67"


async def test_portal_installed_before_the_installer_was_recorded_asks_bitrix24_once(
        gateway_harness: Any, mock: Any) -> None:
    h = await gateway(gateway_harness)
    portal = await install(h, mock, USERS)
    st = h.context("bitrix24").storage(MEMBER)
    old = await get_portal(st)
    assert old is not None
    await put_portal(st, replace(old, installer_user_id=0))  # as a first-release install left it
    conn = (await h.connect(MEMBER, "fakesrc"))["id"]
    await missed_call(h, conn, "m1")
    await missed_call(h, conn, "m2")
    assert len(portal.called("profile")) == 1  # who authorised our tokens: the installer
    assert [str(p["USER_ID"]) for p in portal.called("telephony.externalCall.finish")] == [str(INSTALLER)] * 2


async def test_the_responsible_user_chosen_by_the_admin_wins(gateway_harness: Any, mock: Any) -> None:
    h = await gateway(gateway_harness)
    portal = await install(h, mock, USERS)
    await h.admin("PUT", f"/plugins/bitrix24/tenants/{MEMBER}/settings", {"responsible_user_id": 77}, expect=200)
    conn = (await h.connect(MEMBER, "fakesrc"))["id"]
    await missed_call(h, conn)
    assert portal.called("telephony.externalCall.register")[0]["USER_ID"] == 77
    assert str(portal.called("telephony.externalCall.finish")[0]["USER_ID"]) == "77"


async def test_without_cards_nothing_is_shown_or_hidden(gateway_harness: Any, mock: Any) -> None:
    h = await gateway(gateway_harness)
    portal = await install(h, mock, [*USERS, b24_user(1270, "102", "ben@example.com")])
    await h.admin("PUT", f"/plugins/bitrix24/tenants/{MEMBER}/settings", {"show_card": False}, expect=200)
    conn = (await h.connect(MEMBER, "fakesrc"))["id"]
    c = await h.gw.tenancy.connection(conn)
    await h.gw.directory.put(c, TelephonyUser("u1", email="anna@example.com", extension="101"))
    await h.gw.directory.put(c, TelephonyUser("u2", email="ben@example.com", extension="102"))
    await post(h, conn, call_event("r", "q1", "ringing", ringing=["u1", "u2"], **{"from": CALLER}),
               call_event("a", "q1", "answered", user="u2", **{"from": CALLER}),
               call_event("e", "q1", "ended", user="u2", outcome="answered", duration=5, **{"from": CALLER}))
    assert portal.called("telephony.externalCall.register")[0]["SHOW"] == 0
    assert portal.called("telephony.externalCall.show") == portal.called("telephony.externalCall.hide") == []
    assert str(portal.called("telephony.externalCall.finish")[0]["USER_ID"]) == "1270"


async def test_recording_in_a_format_bitrix24_refuses_is_not_attached(gateway_harness: Any, mock: Any) -> None:
    h = await gateway(gateway_harness)
    portal = await install(h, mock, USERS)
    conn = (await h.connect(MEMBER, "fakesrc"))["id"]
    await post(h, conn, call_event("r", "rec1", "ringing", **{"from": CALLER}),
               call_event("e", "rec1", "ended", outcome="answered", duration=5, recording="r-9", format="ogg",
                          **{"from": CALLER}))
    assert len(portal.called("telephony.externalCall.finish")) == 1
    assert portal.called("telephony.externalCall.attachRecord") == []
