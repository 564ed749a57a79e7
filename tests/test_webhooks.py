"""The webhook status policy, one test per rule, and "bad input stores nothing"."""

from __future__ import annotations

import orjson
import pytest
from demo_secret import SECRET
from demo_source import sign

NUMBER = "+4922112345678"


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Demo-Signature": sign(secret, body)}


def event(eid: str = "e1", call: str = "c1", state: str = "ringing", **more: object) -> bytes:
    return orjson.dumps({"id": eid, "call": call, "state": state, "from": NUMBER, **more})


async def stored_events(h) -> int:
    rows = await h.gw.store.db.all("SELECT COUNT(*) FROM events")
    return rows[0][0]


async def journaled(h) -> int:
    rows = await h.gw.store.db.all("SELECT COUNT(*) FROM journal")
    return rows[0][0]


async def test_accepted_is_200_after_durable_store(demo):
    resp = await demo.post_hook("demo", demo.connection_id, event(), signed(event()), settle=False)
    assert resp.status == 200
    assert (await resp.json())["status"] == "accepted"  # with "events" when interpreted before it
    # committed before the answer: in the journal, or interpreted into an event already
    assert await journaled(demo) + await stored_events(demo) == 1
    await demo.settled()
    assert (await journaled(demo), await stored_events(demo)) == (0, 1)


async def test_a_source_that_is_not_deferred_stores_its_events_before_the_answer(demo, monkeypatch):
    monkeypatch.setattr(type(demo.gw.sources["demo"]), "deferred", False)
    resp = await demo.post_hook("demo", demo.connection_id, event(), signed(event()), settle=False)
    assert (await resp.json()) == {"status": "accepted", "events": 1}
    assert (await journaled(demo), await stored_events(demo)) == (0, 1)


async def test_duplicate_is_200_and_has_no_second_effect(demo):
    for _ in range(3):
        resp = await demo.post_hook("demo", demo.connection_id, event(), signed(event()))
        assert resp.status == 200
    await demo.recorder.wait_for(1)
    assert await stored_events(demo) == 1
    assert (await demo.gw.store.db.all("SELECT COUNT(*) FROM deliveries"))[0][0] == 1
    assert len(demo.recorder.deliveries) == 1


async def test_unparseable_is_400(demo):
    body = b'{"id": "e1", "call": '
    resp = await demo.post_hook("demo", demo.connection_id, body, signed(body))
    assert resp.status == 400
    assert await stored_events(demo) == 0


@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/json"},
    {"Content-Type": "application/json", "X-Demo-Signature": "0" * 64},
    {"Content-Type": "application/json", "X-Demo-Signature": sign("wrong-secret", event())},
    {"Content-Type": "application/json", "X-Demo-Signature": "not hex ✓"},
])
async def test_missing_or_bad_signature_is_401(demo, headers):
    resp = await demo.post_hook("demo", demo.connection_id, event(), headers)
    assert resp.status == 401
    assert await stored_events(demo) == 0


@pytest.mark.parametrize("plugin,connection", [
    ("demo", "no-such-connection"), ("nosuchplugin", "x"), ("demo", "bad%20chars"), ("demo", "x" * 65)])
async def test_unknown_connection_or_plugin_is_404(demo, plugin, connection):
    resp = await demo.post_hook(plugin, connection, event(), signed(event()))
    assert resp.status == 404


async def test_connection_of_another_plugin_is_404(demo):
    resp = await demo.post_hook("placetel", demo.connection_id, event(), signed(event()))
    assert resp.status == 404


async def test_body_over_the_limit_is_413(demo):
    body = event(padding="x" * (256 * 1024))
    resp = await demo.post_hook("demo", demo.connection_id, body, signed(body))
    assert resp.status == 413
    assert await stored_events(demo) == 0


async def test_body_limit_is_configurable(gateway_harness):
    h = await gateway_harness(env={"GATEWAY_MAX_BODY": "2048"})
    await h.create_tenant("acme")
    conn = await h.connect("acme", "demo", {"secret": SECRET})
    body = event(padding="x" * 3000)
    assert (await h.post_hook("demo", conn["id"], body, signed(body))).status == 413
    assert (await h.post_hook("demo", conn["id"], event(), signed(event()))).status == 200


async def test_wrong_content_type_is_415(demo):
    headers = signed(event()) | {"Content-Type": "application/x-www-form-urlencoded"}
    resp = await demo.post_hook("demo", demo.connection_id, event(), headers)
    assert resp.status == 415
    assert await stored_events(demo) == 0


async def test_responses_never_echo_the_input(demo):
    marker = "ECHO-MARKER-4711"
    bodies = [event(call=marker), b"{" + marker.encode(), event(state=marker)]
    for body in bodies:
        for headers in (signed(body), {"Content-Type": "application/json"}):
            resp = await demo.post_hook("demo", demo.connection_id, body, headers)
            assert resp.status < 500
            assert marker not in await resp.text()


async def test_get_on_webhook_is_405_not_500(demo):
    resp = await demo.client.get(f"/hooks/demo/{demo.connection_id}")
    assert resp.status == 405


async def test_health_and_readiness(demo):
    assert (await demo.client.get("/healthz")).status == 200
    resp = await demo.client.get("/readyz")
    assert resp.status == 200
    body = await resp.json()
    assert body["store"] is True and "demo" in body["plugins"]
    assert body["database"]["backend"] == "sqlite" and body["database"]["reachable"] is True
