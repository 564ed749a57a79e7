"""What a CRM plugin's own app gets from its context: connect a telephone system for its tenant,
see when webhooks arrived and how connections are, its sink's deliveries, its users' rights."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from demo_secret import SECRET
from demo_source import SOURCE, sign

from gateway import BadRequest, CallState, ConnectionHealth, NotFound, Subject, TelephonyUser
from gateway.testing import Harness

NUMBER = "+4922112345678"


def hook(eid: str, call: str = "c1", state: str = "ringing", **more: Any) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps({"id": eid, "call": call, "state": state, "from": NUMBER, **more})
    return body, {"Content-Type": "application/json", "X-Demo-Signature": sign(SECRET, body)}


async def post(h: Harness, eid: str, **more: Any) -> int:
    body, headers = hook(eid, **more)
    resp = await h.post_hook("demo", h.connection_id, body, headers)  # type: ignore[attr-defined]
    return resp.status


async def test_a_crm_connects_and_disconnects_a_telephone_system_for_its_own_tenant(demo: Harness) -> None:
    crm = demo.context("recorder")
    created = await crm.connections.create("acme", "demo", {"secret": "another-secret"})
    assert created.plugin == "demo" and created.tenant == "acme" and created.settings == {}
    stored = await demo.gw.tenancy.connection(created.id)
    assert stored.settings == {"secret": "another-secret"}  # the source's connect chose what to keep
    assert {c.id for c in await crm.connections.of_tenant("acme")} == {demo.connection_id, created.id}  # type: ignore[attr-defined]
    assert all(c.settings == {} for c in await crm.connections.of_tenant("acme"))
    with pytest.raises(BadRequest):  # the source refuses the settings: nothing is stored
        await crm.connections.create("acme", "demo", {"secret": "short"})
    assert len(await crm.connections.of_tenant("acme")) == 2

    await crm.connections.remove(created.id)
    with pytest.raises(NotFound):
        await demo.gw.tenancy.connection(created.id)
    actions = [e.action for e in await demo.gw.store.audit.entries()]
    assert "connection.created" in actions and "connection.removed" in actions


async def test_only_tenants_bound_to_the_plugins_sink(demo: Harness) -> None:
    await demo.create_tenant("beta", record=False)
    beta = await demo.connect("beta", "demo", {"secret": SECRET})
    crm, source = demo.context("recorder"), demo.context("demo")
    with pytest.raises(NotFound):
        await crm.connections.create("beta", "demo", {"secret": SECRET})
    with pytest.raises(NotFound):
        await crm.connections.remove(beta["id"])
    with pytest.raises(NotFound):  # a plugin without a sink has no tenants of its own
        await source.connections.create("acme", "demo", {"secret": SECRET})
    with pytest.raises(NotFound):
        await crm.deliveries.failed("beta")
    with pytest.raises(NotFound):
        await crm.subjects.export("beta", Subject.parse(phone=NUMBER))
    assert (await demo.gw.tenancy.connection(beta["id"])).tenant == "beta"


async def test_last_webhook_is_noted_in_memory_and_written_in_batches(demo: Harness) -> None:
    crm = demo.context("recorder")
    cid = demo.connection_id  # type: ignore[attr-defined]
    assert await crm.connections.last_webhooks("acme") == {}
    body, headers = hook("e0")
    headers["X-Demo-Signature"] = "0" * 64
    assert (await demo.post_hook("demo", cid, body, headers)).status == 401  # refused: not noted
    assert await crm.connections.last_webhooks("acme") == {}

    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    assert await post(demo, "e1") == 200
    seen = await crm.connections.last_webhooks("acme")
    assert list(seen) == [cid] and seen[cid] >= before
    assert await demo.gw.store.connections.last_seen("acme") == {}  # no write on the hot path
    await demo.gw.activity.flush()
    assert await demo.gw.store.connections.last_seen("acme") == {cid: int(seen[cid].timestamp() * 1000)}
    assert await crm.connections.last_webhooks("acme") == seen
    await demo.create_tenant("beta")
    assert await crm.connections.last_webhooks("beta") == {}


async def test_last_webhook_times_are_written_when_the_gateway_stops(gateway_harness: Any) -> None:
    h = await gateway_harness()
    await h.create_tenant("acme")
    conn = await h.connect("acme", "demo", {"secret": SECRET})
    h.connection_id = conn["id"]
    assert await post(h, "e1") == 200
    store = h.gw.store
    await h.client.close()  # the app's clean-up closes the gateway
    await store.open()
    try:
        assert list(await store.connections.last_seen("acme")) == [conn["id"]]
    finally:
        await store.close()


async def test_health_comes_from_the_source(demo: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    crm = demo.context("recorder")
    cid = demo.connection_id  # type: ignore[attr-defined]
    assert await crm.connections.health(cid) == ConnectionHealth("unknown")
    await demo.context("demo").connections.update(cid, status="broken", reason="api_key_rejected")
    assert await crm.connections.health(cid) == ConnectionHealth("failing", "api_key_rejected")

    async def fails(ctx: Any, connection: Any) -> ConnectionHealth:
        raise RuntimeError("vendor says +4922112345678")
    monkeypatch.setattr(SOURCE, "health", fails)
    assert await crm.connections.health(cid) == ConnectionHealth("unknown", "check_failed")

    async def slow(ctx: Any, connection: Any) -> ConnectionHealth:
        await asyncio.sleep(10)
        return ConnectionHealth("ok")
    monkeypatch.setattr(SOURCE, "health", slow)
    monkeypatch.setattr("gateway.context.HEALTH_TIMEOUT", 0.05)
    assert await crm.connections.health(cid) == ConnectionHealth("unknown", "check_failed")
    with pytest.raises(NotFound):
        await crm.connections.health("no-such-connection")


def test_health_reasons_are_codes_not_messages() -> None:
    with pytest.raises(ValueError):
        ConnectionHealth("ok", "Key of anna@example.com refused")
    with pytest.raises(ValueError):
        ConnectionHealth("fine")  # type: ignore[arg-type]


async def test_a_sink_sees_its_calls_and_failures_and_retries_them(gateway_harness: Any) -> None:
    h = await gateway_harness(env={"GATEWAY_DELIVERY_HORIZON": "0"})
    await h.create_tenant("acme")
    h.connection_id = (await h.connect("acme", "demo", {"secret": SECRET}))["id"]
    crm = h.context("recorder")
    start = datetime.now(timezone.utc) - timedelta(minutes=1)
    assert await post(h, "e1", call="c1") == 200
    assert await post(h, "e2", call="c1", state="ended", outcome="answered") == 200
    await h.recorder.wait_for(2)
    h.recorder.fail_times = 1  # with no horizon, the first failure is a dead letter
    assert await post(h, "e3", call="c2", state="ended", outcome="missed") == 200
    for _ in range(200):
        if await crm.deliveries.failed("acme"):
            break
        await asyncio.sleep(0.02)
    [failed] = await crm.deliveries.failed("acme")
    assert (failed.reason, failed.attempts, failed.state) == ("RetryableError:TEST_FAILURE", 1, CallState.ENDED)
    days = await crm.deliveries.counts("acme", since=start, period="day")
    hours = await crm.deliveries.counts("acme", since=start, period="hour")
    assert sum(c.written for c in days) == sum(c.written for c in hours) == 1  # two events, one call
    assert sum(c.failed for c in days) == 1
    assert hours[-1].start.minute == 0 and hours[-1].start.tzinfo is not None
    with pytest.raises(BadRequest):
        await crm.deliveries.counts("acme", since=start, period="week")  # type: ignore[arg-type]

    with pytest.raises(NotFound):
        await crm.deliveries.retry("acme", failed.id + 1000)
    await crm.deliveries.retry("acme", failed.id)
    await h.recorder.wait_for(3)
    assert await crm.deliveries.failed("acme") == []
    for _ in range(200):  # the row is marked done right after the sink returned
        days = await crm.deliveries.counts("acme", since=start)
        if sum(c.written for c in days) == 2:
            break
        await asyncio.sleep(0.02)
    assert (sum(c.written for c in days), sum(c.failed for c in days)) == (2, 0)
    assert "deadletter.replayed" in [e.action for e in await h.gw.store.audit.entries()]


async def test_a_crm_app_exercises_its_users_rights_through_the_core(demo: Harness) -> None:
    crm = demo.context("recorder")
    conn = await demo.gw.tenancy.connection(demo.connection_id)  # type: ignore[attr-defined]
    await demo.gw.directory.put(conn, TelephonyUser("u7", "Jonas Weber", "jonas@example.com", "207"))
    assert await post(demo, "e1", user="u7") == 200
    await demo.recorder.wait_for(1)
    me = Subject.parse(email="Jonas@Example.com")
    kept = await crm.subjects.export("acme", me)
    assert [u["user_id"] for u in kept["gateway"]["telephony_users"]] == ["u7"]
    assert len(kept["gateway"]["call_events"]) == 1
    erased = await crm.subjects.erase("acme", me)
    assert erased["erased"]["telephony_users"] == 1 and erased["erased"]["events"] == 1
    assert await demo.gw.directory.get(conn, "u7") is None
    assert (await crm.subjects.export("acme", me))["gateway"]["telephony_users"] == []
    actions = [e.action for e in await demo.gw.store.audit.entries()]
    assert "subject.erase" in actions
