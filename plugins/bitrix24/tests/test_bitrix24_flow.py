"""End to end through the real HTTP endpoints: install → calls → click-to-call → uninstall."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from bitrix24_fakes import (
    ACCESS_1,
    APP_TOKEN,
    EMAIL,
    ENV,
    EVENT_ACCESS,
    EVENT_REFRESH,
    FORM,
    MEMBER,
    OAUTH_RE,
    PORTAL,
    RECORDING_LINK,
    REFRESH_1,
    SECRET,
    BitrixMock,
    batch_answer,
    batches,
    call_event,
    calls,
    click_body,
    install_body,
    install_with_user,
    oauth_answer,
    oauth_calls,
    ok,
    rest_methods,
    uninstall_body,
    wait_until,
)
from gateway_bitrix24.records import get_tokens

from gateway import NotFound

CALLER = "+4922112345678"
B24_USER = {"ID": "1269", "ACTIVE": True, "EMAIL": EMAIL, "UF_PHONE_INNER": "101", "NAME": "Anna"}


@pytest.fixture
def mock() -> Any:
    with BitrixMock(passthrough=["http://127.0.0.1"]) as m:
        yield m


async def post_call(h: Any, conn_id: str, body: bytes) -> None:
    resp = await h.post_hook("fakesrc", conn_id, body, {"Content-Type": "application/json", "X-Fake-Secret": SECRET})
    assert resp.status == 200, await resp.text()


async def test_install_creates_tenant_stores_tokens_and_binds_events(gateway_harness: Any, mock: Any) -> None:
    h, _, _ = await install_with_user(gateway_harness, mock)
    tenant = await h.admin("GET", f"/tenants/{MEMBER}", expect=200)
    assert tenant["sinks"] == ["bitrix24"] and tenant["status"] == "active"
    info = await h.admin("GET", f"/plugins/bitrix24/tenants/{MEMBER}", expect=200)
    assert info == {"tenant": MEMBER, "domain": "example.bitrix24.de", "application_token_known": True}
    # the install was verified by exchanging its refresh token with our client credentials
    (refresh,) = oauth_calls(mock)
    assert refresh.kwargs["params"]["refresh_token"] == EVENT_REFRESH
    assert refresh.kwargs["params"]["client_id"] == ENV["GATEWAY_BITRIX24_CLIENT_ID"]
    tokens = await get_tokens(h.gw.contexts["bitrix24"].storage(MEMBER))
    assert tokens is not None and tokens.access_token == ACCESS_1 and tokens.refresh_token == REFRESH_1
    bound = calls(mock, "event.bind")
    assert {b["event"] for b in bound} >= {"ONEXTERNALCALLSTART", "ONEXTERNALCALLBACKSTART"}
    assert all(b["handler"].endswith("/hooks/bitrix24/events") and b["auth"] == ACCESS_1 for b in bound)
    # a duplicate delivery of the install changes nothing and refreshes nothing
    resp = await h.client.post("/hooks/bitrix24/events", data=install_body(), headers=FORM)
    assert resp.status == 200 and (await resp.json())["status"] == "duplicate"
    assert len(oauth_calls(mock)) == 1


async def test_install_for_another_portals_member_id_is_refused(gateway_harness: Any, mock: Any) -> None:
    h = await gateway_harness(env=ENV)
    mock.get(OAUTH_RE, payload=oauth_answer(member="someoneelse0000000000000000000000"))
    resp = await h.client.post("/hooks/bitrix24/events", data=install_body(), headers=FORM)
    assert resp.status == 401
    await h.admin("GET", f"/tenants/{MEMBER}", expect=404)


async def test_install_from_a_portal_outside_the_allow_list_is_refused(gateway_harness: Any, mock: Any) -> None:
    h = await gateway_harness(env=ENV)
    resp = await h.client.post("/hooks/bitrix24/events", headers=FORM,
                               data=install_body(client_endpoint="https://evil.example.com/rest/"))
    assert resp.status == 403
    assert oauth_calls(mock) == []  # not even the token exchange happened
    await h.admin("GET", f"/tenants/{MEMBER}", expect=404)


async def test_whole_inbound_call_then_uninstall_leaves_nothing(gateway_harness: Any, mock: Any,
                                                                caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="gateway_bitrix24")
    h, _, conn = await install_with_user(gateway_harness, mock)
    call_id = "externalCall.716f1cb73def9700a23842adf9c4c568.1773130779"
    mock.post(PORTAL + "user.get", payload=ok([B24_USER]))
    mock.post(PORTAL + "telephony.externalCall.register", payload=ok(
        {"CALL_ID": call_id, "CRM_CREATED_LEAD": None, "CRM_CREATED_ENTITIES": [],
         "CRM_ENTITY_TYPE": "", "CRM_ENTITY_ID": None,
         "LEAD_CREATION_ERROR": "Lead creation is disabled for local users"}))
    mock.post(PORTAL + "batch", payload=batch_answer({"finish": {"ID": "3291", "CALL_ID": call_id},
                                                      "attach": {"FILE_ID": 5}}))

    await post_call(h, conn, call_event("e1", "pc1", "ringing", **{"from": "0221 12345678", "to": "+4922199998560", "user": "u1"}))
    await wait_until(lambda: len(calls(mock, "telephony.externalCall.register")) == 1)
    await post_call(h, conn, call_event("e2", "pc1", "answered", **{"from": "0221 12345678", "user": "u1"}))
    await post_call(h, conn, call_event("e3", "pc1", "ended", outcome="answered", duration=95, recording="r-1",
                                        **{"from": "0221 12345678", "user": "u1"}))
    await wait_until(lambda: len(batches(mock)) == 1)
    await wait_until(lambda: h.gw.dispatcher.depth == 0)

    (reg,) = calls(mock, "telephony.externalCall.register")
    assert reg["USER_ID"] == 1269 and reg["PHONE_NUMBER"] == CALLER and reg["TYPE"] == 2
    assert reg["CALL_START_DATE"].endswith("+00:00") and reg["LINE_NUMBER"] == "+4922199998560"
    assert reg["SHOW"] == 1 and reg["CRM_CREATE"] == 0 and reg["EXTERNAL_CALL_ID"].startswith("fakesrc-")
    (user_query,) = calls(mock, "user.get")
    assert user_query["FILTER"]["UF_PHONE_INNER"] == "101"
    # finish and attachRecord of the ended call go in one batch, finish first, halting on error
    ((halt, cmds),) = batches(mock)
    assert halt == 1 and list(cmds) == ["finish", "attach"]
    assert cmds["finish"] == ("telephony.externalCall.finish",
                              {"CALL_ID": call_id, "USER_ID": "1269", "DURATION": "95", "STATUS_CODE": "200"})
    # the file name comes from the recording's id and stated format, never from the link
    assert cmds["attach"] == ("telephony.externalCall.attachRecord",
                              {"CALL_ID": call_id, "RECORD_URL": RECORDING_LINK, "FILENAME": "fakesrc-r-1.mp3"})
    assert calls(mock, "batch")[0]["auth"] == ACCESS_1
    assert await h.gw.contexts["bitrix24"].storage(MEMBER).get("call", f"{conn}|pc1") == {
        "crm_call_id": call_id, "user_id": 1269, "agent": 1269, "finished": True, "recording": True, "shown": []}
    assert calls(mock, "telephony.externalCall.finish") == []
    assert any(getattr(r, "code", None) == "LEAD_CREATION_ERROR" for r in caplog.records)  # logged, not ignored

    # uninstall: the tenant and everything of it goes
    resp = await h.client.post("/hooks/bitrix24/events", data=uninstall_body(), headers=FORM)
    assert resp.status == 200
    await h.admin("GET", f"/tenants/{MEMBER}", expect=404)
    await h.admin("GET", f"/plugins/bitrix24/tenants/{MEMBER}", expect=404)
    await h.admin("GET", f"/plugins/bitrix24/tenants/{MEMBER}/user-map", expect=404)
    for kind in ("portal", "oauth", "call", "usercache"):
        with pytest.raises(NotFound):  # the tenant's key and records are gone
            await h.gw.contexts["bitrix24"].storage(MEMBER).all(kind)
    rows = await h.gw.store.db.all("SELECT COUNT(*) FROM records WHERE tenant=?", (MEMBER,))
    assert rows[0][0] == 0
    await h.gw.store.checkpoint()
    blobs = b"".join(open(p, "rb").read() for p in h.gw.store.file_paths())
    for secret in (ACCESS_1, REFRESH_1, APP_TOKEN, EVENT_ACCESS, CALLER, EMAIL, call_id):
        assert secret.encode() not in blobs

    # privacy: nothing personal or secret in the logs of the whole flow (messages and extras)
    logged = caplog.text + "".join(repr(vars(r)) for r in caplog.records)
    for secret in (ACCESS_1, REFRESH_1, APP_TOKEN, EVENT_ACCESS, EVENT_REFRESH, CALLER, "12345678",
                   EMAIL, "Anna", RECORDING_LINK, "secret-recording", ENV["GATEWAY_BITRIX24_CLIENT_SECRET"]):
        assert secret not in logged


async def test_call_first_seen_at_its_end_is_registered_then_finished(gateway_harness: Any, mock: Any) -> None:
    h, _, conn = await install_with_user(gateway_harness, mock)
    mock.post(PORTAL + "user.get", payload=ok([B24_USER]))
    mock.post(PORTAL + "batch", payload=batch_answer(
        {"register": {"CALL_ID": "externalCall.a.1", "CRM_ENTITY_TYPE": "CONTACT", "CRM_ENTITY_ID": 797}},
        {"finish": {"error": "", "error_description": "Call is not found (call should be registered prior to finishing"}}))
    await post_call(h, conn, call_event("e1", "pc2", "ended", outcome="missed", **{"from": CALLER, "user": "u1"}))
    await wait_until(lambda: len(batches(mock)) == 1)
    ((halt, cmds),) = batches(mock)
    assert halt == 1 and list(cmds) == ["register", "finish"]  # one request, register first
    method, reg = cmds["register"]
    assert method == "telephony.externalCall.register" and reg["SHOW"] == "0"  # no card for a call that is over
    assert reg["PHONE_NUMBER"] == CALLER and reg["EXTERNAL_CALL_ID"].startswith("fakesrc-")
    method, fin = cmds["finish"]
    assert method == "telephony.externalCall.finish"
    assert fin == {"CALL_ID": "$result[register][CALL_ID]", "USER_ID": "1269", "DURATION": "0", "STATUS_CODE": "304"}
    # the unknown-call answer (empty error code) is handled: nothing is retried or dead-lettered
    await wait_until(lambda: h.gw.dispatcher.depth == 0)
    assert await h.admin("GET", "/deadletters", expect=200) in ([], {"dead_letters": []}, {"items": []})
    assert len(batches(mock)) == 1 and calls(mock, "telephony.externalCall.register") == []
    record = await h.gw.contexts["bitrix24"].storage(MEMBER).get("call", f"{conn}|pc2")
    assert record == {"crm_call_id": "externalCall.a.1", "user_id": 1269, "finished": True, "shown": []}


async def test_batch_failing_after_register_keeps_the_call_id_and_retries_only_finish(
        gateway_harness: Any, mock: Any) -> None:
    h, _, conn = await install_with_user(gateway_harness, mock)
    mock.post(PORTAL + "user.get", payload=ok([B24_USER]))
    mock.post(PORTAL + "batch", payload=batch_answer(
        {"register": {"CALL_ID": "externalCall.p.1"}},
        {"finish": {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}}))
    mock.post(PORTAL + "telephony.externalCall.finish", payload=ok({"CALL_ID": "externalCall.p.1"}))
    await post_call(h, conn, call_event("e1", "pc9", "ended", outcome="answered", duration=30,
                                        **{"from": CALLER, "user": "u1"}))
    await wait_until(lambda: len(calls(mock, "telephony.externalCall.finish")) == 1, timeout=15)
    (fin,) = calls(mock, "telephony.externalCall.finish")
    assert fin["CALL_ID"] == "externalCall.p.1" and fin["STATUS_CODE"] == "200" and fin["DURATION"] == 30
    assert len(batches(mock)) == 1 and calls(mock, "telephony.externalCall.register") == []
    await wait_until(lambda: h.gw.dispatcher.depth == 0)
    assert (await h.gw.contexts["bitrix24"].storage(MEMBER).get("call", f"{conn}|pc9"))["finished"] is True


async def test_rate_limit_answer_is_retried_without_registering_twice(gateway_harness: Any, mock: Any) -> None:
    h, _, conn = await install_with_user(gateway_harness, mock)
    mock.post(PORTAL + "user.get", payload=ok([B24_USER]))
    mock.post(PORTAL + "telephony.externalCall.register", status=503, body="<html><body>503</body></html>",
              content_type="text/html")
    mock.post(PORTAL + "telephony.externalCall.register", status=503,
              payload={"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})
    mock.post(PORTAL + "telephony.externalCall.register", payload=ok({"CALL_ID": "externalCall.b.1"}))
    await post_call(h, conn, call_event("e1", "pc3", "ringing", **{"from": CALLER, "user": "u1"}))
    await wait_until(lambda: h.gw.dispatcher.depth == 0, timeout=15)
    regs = calls(mock, "telephony.externalCall.register")
    assert len(regs) == 3 and len({r["EXTERNAL_CALL_ID"] for r in regs}) == 1
    record = await h.gw.contexts["bitrix24"].storage(MEMBER).get("call", f"{conn}|pc3")
    assert record["crm_call_id"] == "externalCall.b.1"


async def test_unmapped_user_goes_to_default_user(gateway_harness: Any, mock: Any) -> None:
    h, _, conn = await install_with_user(gateway_harness, mock)
    await h.admin("PUT", f"/plugins/bitrix24/tenants/{MEMBER}/settings",
                  {"responsible_user_id": 7, "crm_create": True}, expect=200)
    mock.post(PORTAL + "user.get", payload=ok([]), repeat=True)
    mock.post(PORTAL + "telephony.externalCall.register", payload=ok({"CALL_ID": "externalCall.c.1"}))
    await post_call(h, conn, call_event("e1", "pc4", "ringing", **{"from": CALLER, "user": "u1"}))
    await wait_until(lambda: len(calls(mock, "telephony.externalCall.register")) == 1)
    (reg,) = calls(mock, "telephony.externalCall.register")
    assert reg["USER_ID"] == 7 and reg["CRM_CREATE"] == 1


async def test_user_map_override_and_admin_scope(gateway_harness: Any, mock: Any) -> None:
    h, _, conn = await install_with_user(gateway_harness, mock)
    await h.admin("PUT", f"/plugins/bitrix24/tenants/{MEMBER}/user-map",
                  {"entries": [{"email": EMAIL.upper(), "bitrix24_user_id": 42}]}, expect=200)
    got = await h.admin("GET", f"/plugins/bitrix24/tenants/{MEMBER}/user-map", expect=200)
    assert got == {"entries": [{"email": EMAIL, "bitrix24_user_id": 42}]}
    await h.admin("PUT", f"/plugins/bitrix24/tenants/{MEMBER}/user-map", {"entries": [{"bitrix24_user_id": 1}]}, expect=400)
    mock.post(PORTAL + "telephony.externalCall.register", payload=ok({"CALL_ID": "externalCall.d.1"}))
    await post_call(h, conn, call_event("e1", "pc5", "ringing", **{"from": CALLER, "user": "u1"}))
    await wait_until(lambda: len(calls(mock, "telephony.externalCall.register")) == 1)
    assert calls(mock, "telephony.externalCall.register")[0]["USER_ID"] == 42
    assert calls(mock, "user.get") == []  # the override needs no lookup


async def test_invalid_application_token_is_401_and_changes_nothing(gateway_harness: Any, mock: Any) -> None:
    h, fake, _ = await install_with_user(gateway_harness, mock)
    before = rest_methods(mock)
    for body in (click_body("externalCall.e.1", token="0" * 32), uninstall_body(token="f" * 32)):
        resp = await h.client.post("/hooks/bitrix24/events", data=body, headers=FORM)
        assert resp.status == 401
        assert APP_TOKEN not in await resp.text()
    resp = await h.client.post("/hooks/bitrix24/events", data=uninstall_body().replace(MEMBER.encode(), b"unknownmember"),
                               headers=FORM)
    assert resp.status == 401
    await h.admin("GET", f"/tenants/{MEMBER}", expect=200)
    assert fake.source.originated == [] and rest_methods(mock) == before
    assert await h.gw.contexts["bitrix24"].storage(MEMBER).get("c2c", "externalCall.e.1") is None
    # bad input: 415 and 400, never 5xx
    resp = await h.client.post("/hooks/bitrix24/events", data=b"{}", headers={"Content-Type": "application/json"})
    assert resp.status == 415
    resp = await h.client.post("/hooks/bitrix24/events", data=b"event=X&auth[member_id]=../x", headers=FORM)
    assert resp.status == 400


async def test_click_to_call_originates_once_and_adopts_the_crm_call(gateway_harness: Any, mock: Any) -> None:
    h, fake, conn = await install_with_user(gateway_harness, mock)
    crm_call = "externalCall.89350264e026dace3f2b14d1f438257c.1773236989"
    mock.post(PORTAL + "user.get", payload=ok([B24_USER]), repeat=True)
    mock.post(PORTAL + "telephony.externalCall.finish", payload=ok({"CALL_ID": crm_call}))
    for _ in range(2):  # Bitrix24 repeats events now and then
        resp = await h.client.post("/hooks/bitrix24/events", data=click_body(crm_call, is_mobile="N"), headers=FORM)
        assert resp.status == 200
    assert fake.source.originated == [("u1", "+494951234567")]
    (lookup,) = calls(mock, "user.get")
    assert lookup["ID"] == 1269

    # the telephone system reports the call it placed: adopted, never registered again
    await post_call(h, conn, call_event("o1", "out1", "ringing", dir="out", **{"from": "+494951234567", "user": "u1"}))
    await post_call(h, conn, call_event("o2", "out1", "ended", dir="out", outcome="busy",
                                        **{"from": "+494951234567", "user": "u1"}))
    await wait_until(lambda: len(calls(mock, "telephony.externalCall.finish")) == 1)
    assert calls(mock, "telephony.externalCall.register") == []
    (fin,) = calls(mock, "telephony.externalCall.finish")
    assert fin["CALL_ID"] == crm_call and fin["USER_ID"] == 1269 and fin["STATUS_CODE"] == "486"


async def test_failed_originate_closes_the_card(gateway_harness: Any, mock: Any) -> None:
    h, fake, _ = await install_with_user(gateway_harness, mock)
    fake.source.fail_originate = True
    crm_call = "externalCall.ffff.1773236989"
    mock.post(PORTAL + "user.get", payload=ok([B24_USER]))
    mock.post(PORTAL + "telephony.externalCall.finish", payload=ok({"CALL_ID": crm_call}))
    resp = await h.client.post("/hooks/bitrix24/events", data=click_body(crm_call, is_mobile="1"), headers=FORM)
    assert resp.status == 200
    await wait_until(lambda: len(calls(mock, "telephony.externalCall.finish")) == 1)
    (fin,) = calls(mock, "telephony.externalCall.finish")
    assert fin["CALL_ID"] == crm_call and fin["STATUS_CODE"] == "503" and fin["DURATION"] == 0
    assert calls(mock, "telephony.externalCall.register") == []


async def test_callback_form_registers_type_4_and_originates(gateway_harness: Any, mock: Any) -> None:
    h, fake, _ = await install_with_user(gateway_harness, mock)
    from bitrix24_fakes import auth, form
    mock.post(PORTAL + "telephony.externalCall.searchCrmEntities", payload=ok([
        {"CRM_ENTITY_TYPE": "CONTACT", "CRM_ENTITY_ID": 797, "ASSIGNED_BY_ID": 1269, "NAME": "Max",
         "ASSIGNED_BY": {"ID": "1269", "TIMEMAN_STATUS": "OPENED"}}]))
    mock.post(PORTAL + "telephony.externalCall.register", payload=ok({"CALL_ID": "externalCall.cb.1"}))
    mock.post(PORTAL + "user.get", payload=ok([B24_USER]))
    body = form({"event": "ONEXTERNALCALLBACKSTART", "ts": str(int(time.time())), "data[PHONE_NUMBER]": CALLER,
                 "data[TEXT]": "Bitte zurückrufen", "data[VOICE]": "ruinternalfemale",
                 "data[CRM_ENTITY_TYPE]": "CONTACT", "data[CRM_ENTITY_ID]": "797",
                 "data[LINE_NUMBER]": "022199998560", **auth()})
    for _ in range(2):
        resp = await h.client.post("/hooks/bitrix24/events", data=body, headers=FORM)
        assert resp.status == 200
    (reg,) = calls(mock, "telephony.externalCall.register")
    assert reg["TYPE"] == 4 and reg["USER_ID"] == 1269 and reg["CRM_ENTITY_ID"] == 797
    assert fake.source.originated == [("u1", CALLER)]


async def test_recording_event_attaches_after_finish_only(gateway_harness: Any, mock: Any) -> None:
    h, _, conn = await install_with_user(gateway_harness, mock)
    mock.post(PORTAL + "user.get", payload=ok([B24_USER]))
    mock.post(PORTAL + "batch", payload=batch_answer({"register": {"CALL_ID": "externalCall.r.1"},
                                                      "finish": {"CALL_ID": "externalCall.r.1"}}))
    mock.post(PORTAL + "telephony.externalCall.attachRecord", payload=ok({"FILE_ID": 9}))
    await post_call(h, conn, call_event("e1", "pr1", "ended", outcome="voicemail", duration=12,
                                        **{"from": CALLER, "user": "u1"}))
    await post_call(h, conn, call_event("e2", "pr1", "recording", recording="ref-9", **{"from": CALLER, "user": "u1"}))
    await wait_until(lambda: len(calls(mock, "telephony.externalCall.attachRecord")) == 1)
    ((_, cmds),) = batches(mock)
    assert cmds["finish"][1]["STATUS_CODE"] == "304"
    assert rest_methods(mock)[-1] == "telephony.externalCall.attachRecord"
    assert calls(mock, "telephony.externalCall.attachRecord")[0]["CALL_ID"] == "externalCall.r.1"
    # a recording for a call never finished in Bitrix24 is dropped, not attached
    await post_call(h, conn, call_event("e3", "pr2", "recording", recording="ref-10", **{"from": CALLER, "user": "u1"}))
    await wait_until(lambda: h.gw.dispatcher.depth == 0)
    assert len(calls(mock, "telephony.externalCall.attachRecord")) == 1


async def test_auth_error_inside_a_batch_pauses_the_tenant(gateway_harness: Any, mock: Any) -> None:
    h, _, conn = await install_with_user(gateway_harness, mock)
    mock.post(PORTAL + "user.get", payload=ok([B24_USER]))
    mock.post(PORTAL + "batch", payload=batch_answer(
        {}, {"register": {"error": "insufficient_scope", "error_description": "The request requires higher privileges"}}))
    await post_call(h, conn, call_event("e1", "pa1", "ended", outcome="answered", duration=5,
                                        **{"from": CALLER, "user": "u1"}))
    await wait_until(lambda: len(batches(mock)) == 1)

    async def paused() -> bool:
        return (await h.admin("GET", f"/tenants/{MEMBER}", expect=200))["status"] == "paused"
    for _ in range(200):
        if await paused():
            break
        await asyncio.sleep(0.02)
    assert await paused()
    assert await h.gw.contexts["bitrix24"].storage(MEMBER).get("call", f"{conn}|pa1") is None  # nothing half-written
