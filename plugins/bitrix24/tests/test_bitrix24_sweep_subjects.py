"""The periodic click-to-call sweep, and subject export/erasure by phone number and e-mail."""

from __future__ import annotations

import time
from typing import Any

import pytest
from bitrix24_fakes import (
    EMAIL,
    MEMBER,
    PORTAL,
    SECRET,
    BitrixMock,
    FakeSourcePlugin,
    call_event,
    calls,
    click_body,
    install_with_user,
    ok,
    wait_until,
)
from gateway_bitrix24.plugin import subject_erase, subject_export
from gateway_bitrix24.sweep import STALE_AFTER

from gateway import Subject

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json", "X-Fake-Secret": SECRET}
B24_USER = {"ID": "1269", "ACTIVE": True, "EMAIL": EMAIL, "UF_PHONE_INNER": "101"}
DIALED = "+494951234567"
CALLER = "+4922112345678"
LATER = STALE_AFTER + 5


@pytest.fixture
def mock() -> Any:
    with BitrixMock(passthrough=["http://127.0.0.1"]) as m:
        yield m


async def installed(gateway_harness: Any, mock: Any) -> tuple[Any, FakeSourcePlugin, str]:
    h, fake, conn = await install_with_user(gateway_harness, mock)
    mock.post(PORTAL + "user.get", payload=ok([B24_USER]), repeat=True)
    return h, fake, conn


def sweep_task(h: Any) -> Any:
    (task,) = [t for t in h.gw.registry.tasks if t.name == "bitrix24-click-to-call-sweep"]
    assert task.interval > 0
    return task.func


async def click(h: Any, crm_call: str, number: str = DIALED) -> None:
    resp = await h.client.post("/hooks/bitrix24/events", data=click_body(crm_call, number=number), headers=FORM)
    assert resp.status == 200


async def test_event_bind_uses_the_cores_hook_url(gateway_harness: Any, mock: Any) -> None:
    h, _, _ = await installed(gateway_harness, mock)
    handlers = {b["handler"] for b in calls(mock, "event.bind")}
    assert handlers == {h.gw.contexts["bitrix24"].hook_url("/events")}


async def test_sweep_finishes_a_lost_click_to_call_and_deletes_its_records(gateway_harness: Any, mock: Any) -> None:
    h, fake, _ = await installed(gateway_harness, mock)
    crm_call = "externalCall.lost.1773236989"
    await click(h, crm_call)
    assert fake.source.originated == [("u1", DIALED)]
    st = h.gw.contexts["bitrix24"].storage(MEMBER)
    assert (await st.get("c2c", crm_call))["state"] == "dialed"
    assert await h.gw.store.clicktocall.get(MEMBER, crm_call) is not None  # the core's correlation
    sweep = sweep_task(h)

    assert await sweep(h.gw.contexts["bitrix24"]) == 0  # fresh: the telephone system may still report it
    assert calls(mock, "telephony.externalCall.finish") == []

    mock.post(PORTAL + "telephony.externalCall.finish", status=503,
              payload={"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})
    assert await sweep(h.gw.contexts["bitrix24"], now=time.time() + LATER) == 0  # Bitrix24 busy: kept for the next round
    assert await st.get("c2c", crm_call) is not None

    mock.post(PORTAL + "telephony.externalCall.finish", payload=ok({"CALL_ID": crm_call}))
    assert await sweep(h.gw.contexts["bitrix24"], now=time.time() + LATER) == 1
    fin = calls(mock, "telephony.externalCall.finish")[-1]
    assert fin["CALL_ID"] == crm_call and fin["USER_ID"] == 1269 and fin["STATUS_CODE"] == "503"
    assert fin["DURATION"] == 0 and fin["FAILED_REASON"]
    assert await st.get("c2c", crm_call) is None
    assert await sweep(h.gw.contexts["bitrix24"], now=time.time() + LATER) == 0  # nothing left to close
    assert len(calls(mock, "telephony.externalCall.finish")) == 2


async def test_sweep_leaves_adopted_click_to_calls_and_paused_tenants_alone(gateway_harness: Any, mock: Any) -> None:
    h, _, conn = await installed(gateway_harness, mock)
    adopted, other = "externalCall.adopted.1", "externalCall.other.1"
    await click(h, adopted)
    await click(h, other, number=CALLER)
    # the telephone system reports the first call (still ringing): adopted, no register
    resp = await h.post_hook("fakesrc", conn, call_event("o1", "out1", "ringing", dir="out",
                                                          **{"from": DIALED, "user": "u1"}), JSON)
    assert resp.status == 200
    st = h.gw.contexts["bitrix24"].storage(MEMBER)
    await wait_until(lambda: h.gw.dispatcher.depth == 0)
    assert (await st.get("c2c", adopted))["state"] == "adopted"
    assert calls(mock, "telephony.externalCall.register") == []

    await h.gw.tenancy.set_status(MEMBER, "paused", "reinstall_required")
    assert await sweep_task(h)(h.gw.contexts["bitrix24"], now=time.time() + LATER) == 0
    await h.gw.tenancy.set_status(MEMBER, "active", None)
    mock.post(PORTAL + "telephony.externalCall.finish", payload=ok({"CALL_ID": other}), repeat=True)
    assert await sweep_task(h)(h.gw.contexts["bitrix24"], now=time.time() + LATER) == 1
    assert [f["CALL_ID"] for f in calls(mock, "telephony.externalCall.finish")] == [other]
    assert (await st.get("c2c", adopted))["state"] == "adopted"


async def test_subject_export_and_erase_by_phone_number(gateway_harness: Any, mock: Any) -> None:
    h, _, conn = await installed(gateway_harness, mock)
    mock.post(PORTAL + "telephony.externalCall.register", payload=ok({"CALL_ID": "externalCall.in.1"}))
    resp = await h.post_hook("fakesrc", conn, call_event("e1", "pc1", "ringing",
                                                          **{"from": "0221 12345678", "user": "u1"}), JSON)
    assert resp.status == 200
    await wait_until(lambda: len(calls(mock, "telephony.externalCall.register")) == 1)
    await wait_until(lambda: h.gw.dispatcher.depth == 0)
    await click(h, "externalCall.c2c.1", number=CALLER)  # the same person, called back
    await click(h, "externalCall.c2c.2", number=DIALED)  # someone else
    person = Subject.parse(phone="0221 12345678")
    assert person.value == CALLER

    async def export(phone: str) -> dict[str, Any]:
        doc = await h.admin("POST", f"/tenants/{MEMBER}/subjects/export", {"phone": phone}, expect=200)
        return {r["kind"]: r["value"] for r in doc["plugins"].get("bitrix24", {}).get("records", [])}

    exported = await export(CALLER)
    assert exported["call"] == {"crm_call_id": "externalCall.in.1", "user_id": 1269, "shown": [1269]}
    assert exported["c2c"]["state"] == "dialed"
    erased = await h.admin("POST", f"/tenants/{MEMBER}/subjects/erase", {"phone": CALLER}, expect=200)
    assert erased["erased"]["plugins"]["bitrix24"] == 2
    assert await export(CALLER) == {}
    st = h.context("bitrix24").storage(MEMBER)
    assert await st.get("call", f"{conn}|pc1") is None and await st.get("c2c", "externalCall.c2c.1") is None
    # the other person's records stay
    assert (await st.get("c2c", "externalCall.c2c.2"))["state"] == "dialed"
    assert set(await export(DIALED)) == {"c2c"}


async def test_subject_export_and_erase_by_email(gateway_harness: Any, mock: Any) -> None:
    h, _, _ = await installed(gateway_harness, mock)
    await h.admin("PUT", f"/plugins/bitrix24/tenants/{MEMBER}/user-map",
                  {"entries": [{"email": EMAIL, "bitrix24_user_id": 42}, {"extension": "7", "bitrix24_user_id": 5}]},
                  expect=200)
    person = Subject.parse(email=EMAIL.upper())
    assert await subject_export(context=h.gw.contexts["bitrix24"], tenant=MEMBER, subject=person) == {
        "user_map": {"email": EMAIL, "bitrix24_user_id": 42}}
    assert await subject_erase(context=h.gw.contexts["bitrix24"], tenant=MEMBER, subject=person) == 1
    got = await h.admin("GET", f"/plugins/bitrix24/tenants/{MEMBER}/user-map", expect=200)
    assert got == {"entries": [{"extension": "7", "bitrix24_user_id": 5}]}
