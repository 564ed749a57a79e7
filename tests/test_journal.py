"""Journaled webhooks: acknowledged once checked and durable, interpreted in order right after."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from demo_secret import SECRET
from demo_source import sign

from gateway import (
    BadRequest,
    CallEvent,
    CallState,
    Connection,
    Direction,
    PluginContext,
    Source,
    WebhookRequest,
    hookimpl,
)
from gateway.app import build_gateway
from gateway.testing import Harness, SourcePlugin, make_config

NUMBER = "+4922112345678"


def body(eid: str, call: str = "c1", state: str = "ringing") -> bytes:
    return orjson.dumps({"id": eid, "call": call, "state": state, "from": NUMBER})


def headers(raw: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Demo-Signature": sign(SECRET, raw)}


async def journal_rows(h: Harness) -> int:
    return int((await h.gw.store.db.all("SELECT COUNT(*) FROM journal"))[0][0])


async def test_events_of_one_call_keep_their_order_through_the_journal(demo: Harness) -> None:
    demo.gw.ingest.inline_limit = 0  # every webhook journaled, as under a burst
    states = ("ringing", "answered", "ended")
    for i in range(30):
        for state in states:
            resp = await demo.post_hook("demo", demo.connection_id, body(f"{i}-{state}", f"call{i}", state),
                                        headers(body(f"{i}-{state}", f"call{i}", state)), settle=False)
            assert resp.status == 200
    events = await demo.recorder.wait_for(90, timeout=15)
    by_call: dict[str, list[str]] = {}
    for ev in events:
        by_call.setdefault(ev.call_id, []).append(ev.state.value)
    assert all(seen == list(states) for seen in by_call.values()) and len(by_call) == 30
    await demo.settled()
    assert await journal_rows(demo) == 0  # deleted once interpreted


async def test_what_a_crash_left_in_the_journal_is_interpreted_at_the_next_start(tmp_path: Any) -> None:
    config = make_config(tmp_path)
    first = build_gateway(config)
    await first.open()
    await first.tenancy.create("acme")
    conn = await first.tenancy.connect("acme", "demo", {"secret": SECRET})
    await first.tenancy.bind("acme", "example_crm", {"url": "http://127.0.0.1:9/calls"})
    await first.interpreter.stop(grace=0)  # as if the process died right after acknowledging
    raw = body("e1")
    await first.store.journal.append(conn, raw, tuple(headers(raw).items()), "application/json", (),
                                     int(time.time() * 1000))
    await first.close()

    second = build_gateway(config)
    await second.open()
    try:
        await second.interpreter.drain()
        assert await second.store.journal.count() == 0
        assert await second.store.events.count("pending") == 1  # the event, with its delivery
    finally:
        await second.close()


async def test_a_request_that_cannot_be_interpreted_any_more_is_counted_and_dropped(demo: Harness, caplog: Any) -> None:
    caplog.set_level(logging.WARNING)
    await demo.gw.interpreter.stop(grace=0)
    conn = await demo.gw.tenancy.connection(demo.connection_id)
    raw = body("e1")
    await demo.gw.store.journal.append(conn, raw, tuple(headers(raw).items()), "application/json", (),
                                      1_700_000_000_000)
    await demo.gw.tenancy.disconnect(conn.id)  # removed before the entry was interpreted
    await demo.gw.interpreter.start()
    await demo.gw.interpreter.drain()
    assert await journal_rows(demo) == 0
    refused = [r for r in caplog.records if r.getMessage() == "a journaled webhook could not be interpreted"]
    assert refused and refused[0].__dict__["error"] == "ConnectionGone"
    assert NUMBER not in caplog.text and demo.recorder.events == []


class Gated(Source):
    """A deferred source whose interpretation waits for a gate."""

    name = "gated"
    content_types = frozenset({"application/json"})
    deferred = True

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def check(self, ctx: PluginContext, connection: Connection, request: WebhookRequest) -> None:
        if not request.body.startswith(b"{"):
            raise BadRequest("not JSON")

    async def receive(self, ctx: PluginContext, connection: Connection,
                      request: WebhookRequest) -> Sequence[CallEvent]:
        await self.gate.wait()
        return [CallEvent(event_id=request.body.decode(), call_id="c", direction=Direction.INBOUND,
                          state=CallState.RINGING, occurred_at=request.received_at)]


async def test_a_full_journal_makes_new_webhooks_wait_for_room(gateway_harness: Any) -> None:
    plugin = SourcePlugin(Gated())
    h = await gateway_harness(plugins=[("gated", plugin)])
    await h.create_tenant("acme")
    conn = await h.connect("acme", "gated")
    h.gw.interpreter.max_backlog = 1
    h.gw.ingest.inline_limit = 0  # every webhook journaled, as under a burst
    json = {"Content-Type": "application/json"}
    first = await h.post_hook("gated", conn["id"], b'{"n":1}', json, settle=False)
    assert first.status == 200  # journaled; its interpretation waits at the gate
    second = asyncio.ensure_future(h.post_hook("gated", conn["id"], b'{"n":2}', json, settle=False))
    await asyncio.sleep(0.3)
    assert not second.done()  # no room: it waits, as every webhook did before the journal
    assert (await h.post_hook("gated", conn["id"], b"junk", json, settle=False)).status == 400  # checked first
    plugin.source.gate.set()
    assert (await second).status == 200
    await h.recorder.wait_for(2)
    assert [e.event_id for e in h.recorder.events] == ['{"n":1}', '{"n":2}']


async def test_an_erasure_includes_what_was_acknowledged_a_moment_before(demo: Harness) -> None:
    demo.gw.ingest.inline_limit = 0
    raw = body("e1")
    resp = await demo.post_hook("demo", demo.connection_id, raw, headers(raw), settle=False)
    assert resp.status == 200
    erased = await demo.admin("POST", "/tenants/acme/subjects/erase", {"phone": NUMBER}, expect=200)
    assert erased["erased"]["events"] == 1
    assert await journal_rows(demo) == 0
    assert (await demo.gw.store.db.all("SELECT COUNT(*) FROM events"))[0][0] == 0


async def test_a_quiet_gateway_interprets_a_webhook_before_its_answer(demo: Harness) -> None:
    raw = body("q1")
    resp = await demo.post_hook("demo", demo.connection_id, raw, headers(raw), settle=False)
    assert resp.status == 200
    assert demo.gw.interpreter.journaled == 0 and await journal_rows(demo) == 0
    assert (await demo.gw.store.db.all("SELECT COUNT(*) FROM events"))[0][0] == 1  # stored before the 200


async def test_a_burst_is_journaled_and_a_connection_with_waiting_requests_stays_on_the_journal(
        gateway_harness: Any) -> None:
    plugin = SourcePlugin(Gated())
    h = await gateway_harness(plugins=[("gated", plugin)])
    await h.create_tenant("acme")
    first, other = (await h.connect("acme", "gated"))["id"], (await h.connect("acme", "gated"))["id"]
    json = {"Content-Type": "application/json"}
    h.gw.ingest.inline_limit = 0  # as if a burst were being interpreted inline right now
    assert (await h.post_hook("gated", first, b'{"n":1}', json, settle=False)).status == 200
    h.gw.ingest.inline_limit = 32  # the burst is over, but n1 still waits at the gate
    assert (await h.post_hook("gated", first, b'{"n":2}', json, settle=False)).status == 200
    assert h.gw.interpreter.journaled == 2  # n2 may not overtake n1: journaled behind it
    inline = asyncio.ensure_future(h.post_hook("gated", other, b'{"n":3}', json, settle=False))
    await asyncio.sleep(0.3)
    assert not inline.done() and h.gw.interpreter.journaled == 2  # nothing waits for it: inline
    plugin.source.gate.set()
    assert (await inline).status == 200
    await h.recorder.wait_for(3)
    ours = [e.event_id for e in h.recorder.events if e.connection_id == first]
    assert ours == ['{"n":1}', '{"n":2}']


@pytest.mark.parametrize("secret, status", [("wrong-secret-value", 401), (SECRET, 200)])
async def test_the_check_comes_before_the_journal(demo: Harness, secret: str, status: int) -> None:
    demo.gw.ingest.inline_limit = 0
    raw = body("e1")
    resp = await demo.post_hook("demo", demo.connection_id, raw,
                                {"Content-Type": "application/json", "X-Demo-Signature": sign(secret, raw)},
                                settle=False)
    assert resp.status == status
    await demo.settled()
    assert (await demo.gw.store.db.all("SELECT COUNT(*) FROM events"))[0][0] == (1 if status == 200 else 0)


class Keyed(Source):
    """A deferred source whose requests name their call (``order_key``), or none ("barrier")."""

    name = "keyed"
    content_types = frozenset({"application/json"})
    deferred = True

    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []
        self.running: set[int] = set()
        self.most_at_once = 0
        self.alone: dict[int, bool] = {}

    async def check(self, ctx: PluginContext, connection: Connection, request: WebhookRequest) -> None:
        orjson.loads(request.body)

    def order_key(self, connection: Connection, request: WebhookRequest) -> str | None:
        call = orjson.loads(request.body)["call"]
        return None if call == "barrier" else str(call)

    async def receive(self, ctx: PluginContext, connection: Connection,
                      request: WebhookRequest) -> Sequence[CallEvent]:
        n = orjson.loads(request.body)["n"]
        self.alone[n] = not self.running
        self.running.add(n)
        self.most_at_once = max(self.most_at_once, len(self.running))
        self.log.append(("start", n))
        await asyncio.sleep((n * 7 % 5) / 1000)  # uneven, so a later request could overtake
        self.log.append(("end", n))
        self.running.discard(n)
        return []


async def test_requests_of_one_call_stay_in_order_and_other_calls_run_meanwhile(gateway_harness: Any) -> None:
    source = Keyed()

    class Plugin:
        @hookimpl
        def register_sources(self, register: Any) -> None:
            register(source)

    h = await gateway_harness(plugins=[("keyed", Plugin())])
    await h.create_tenant("acme")
    conn = await h.gw.tenancy.connection((await h.connect("acme", "keyed"))["id"])
    await h.gw.interpreter.stop(grace=0)
    calls = ["a", "b", "c", "a", "b", "barrier", "c", "a", "b", "a", "c", "barrier", "b", "a"]
    for n, call in enumerate(calls):
        raw = orjson.dumps({"n": n, "call": call})
        await h.gw.store.journal.append(conn, raw, (("Content-Type", "application/json"),), "application/json",
                                        (), 1_700_000_000_000 + n)
    await h.gw.interpreter.start()
    await h.gw.interpreter.drain()

    start = {n: i for i, (what, n) in enumerate(source.log) if what == "start"}
    end = {n: i for i, (what, n) in enumerate(source.log) if what == "end"}
    assert len(start) == len(calls)
    for call in set(calls) - {"barrier"}:  # one call: each request starts after the one before ended
        ns = [n for n, c in enumerate(calls) if c == call]
        assert all(end[a] < start[b] for a, b in zip(ns, ns[1:])), call
    for b in (n for n, c in enumerate(calls) if c == "barrier"):  # no key: alone, between before and after
        assert source.alone[b]
        assert all(end[a] < start[b] for a in range(b)) and all(end[b] < start[z] for z in range(b + 1, len(calls)))
    assert source.most_at_once > 1  # different calls were interpreted at the same time
    assert await journal_rows(h) == 0


class Paced(Source):
    """A deferred source whose check or receive of request ``n`` waits for ``gates[(step, n)]``."""

    name = "paced"
    content_types = frozenset({"application/json"})
    deferred = True

    def __init__(self) -> None:
        self.gates: dict[tuple[str, int], asyncio.Event] = {}
        self.log: list[tuple[str, int]] = []

    async def check(self, ctx: PluginContext, connection: Connection, request: WebhookRequest) -> None:
        n = orjson.loads(request.body)["n"]
        if ("check", n) in self.gates:
            await self.gates["check", n].wait()

    async def receive(self, ctx: PluginContext, connection: Connection,
                      request: WebhookRequest) -> Sequence[CallEvent]:
        n = orjson.loads(request.body)["n"]
        self.log.append(("start", n))
        if ("receive", n) in self.gates:
            await self.gates["receive", n].wait()
        self.log.append(("end", n))
        return []


async def paced_gateway(gateway_harness: Any) -> tuple[Harness, Paced, str]:
    source = Paced()

    class Plugin:
        @hookimpl
        def register_sources(self, register: Any) -> None:
            register(source)

    h = await gateway_harness(plugins=[("paced", Plugin())])
    await h.create_tenant("acme")
    return h, source, (await h.connect("acme", "paced"))["id"]


async def test_a_journaled_request_waits_for_its_connections_requests_interpreted_before_their_answer(
        gateway_harness: Any) -> None:
    h, source, conn = await paced_gateway(gateway_harness)
    json = {"Content-Type": "application/json"}
    source.gates["receive", 1] = asyncio.Event()
    first = asyncio.ensure_future(h.post_hook("paced", conn, b'{"n":1}', json, settle=False))  # inline
    await asyncio.sleep(0.1)
    h.gw.ingest.inline_limit = 0  # a burst begins: the next one is journaled
    assert (await h.post_hook("paced", conn, b'{"n":2}', json, settle=False)).status == 200
    await asyncio.sleep(0.3)
    assert source.log == [("start", 1)]  # n2 is not interpreted while n1 is
    source.gates["receive", 1].set()
    assert (await first).status == 200
    await h.gw.interpreter.drain()
    assert source.log == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]

