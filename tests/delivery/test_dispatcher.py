"""Delivery: per-call order through failures, dead letters, replay, pauses."""

from __future__ import annotations

import asyncio

import orjson
from demo_secret import SECRET
from demo_source import sign

from gateway import Delivery, PluginContext, PermanentError, RetryableError, Sink, TenantPaused, hookimpl
from gateway.testing import RecordingSink


async def post(h, cid: str, eid: str, call: str, state: str, secret: str = SECRET) -> None:
    body = orjson.dumps({"id": eid, "call": call, "state": state, "from": "+4922112345678"})
    resp = await h.post_hook("demo", cid, body, {"Content-Type": "application/json",
                                                 "X-Demo-Signature": sign(secret, body)})
    assert resp.status == 200


class FlakySink(RecordingSink):
    """Fails a call's first attempt of every event whose call id is in ``flaky``."""

    name = "flaky"

    def __init__(self, flaky: set[str], failures: int = 2) -> None:
        super().__init__()
        self.flaky = flaky
        self.left: dict[int, int] = {}
        self.failures = failures
        self.attempts: list[tuple[str, str, int]] = []

    async def deliver(self, ctx: PluginContext, delivery: Delivery) -> None:
        ev = delivery.event
        self.attempts.append((ev.call_id, ev.state.value, delivery.attempt))
        if ev.call_id in self.flaky:
            left = self.left.setdefault(delivery.id, self.failures)
            if left:
                self.left[delivery.id] = left - 1
                raise RetryableError("CRM down", code="DOWN")
        await super().deliver(ctx, delivery)


class SinkPlugin:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    @hookimpl
    def register_sinks(self, register) -> None:
        register(self.sink)


async def test_per_call_order_holds_through_failures_and_other_calls_go_on(gateway_harness):
    sink = FlakySink({"slow"})
    h = await gateway_harness(plugins=[("flaky", SinkPlugin(sink))])
    await h.create_tenant("acme", record=False)
    await h.admin("PUT", "/tenants/acme/sinks/flaky", {"settings": {}}, expect=200)
    cid = (await h.connect("acme", "demo", {"secret": SECRET}))["id"]
    for i, state in enumerate(("ringing", "answered", "ended")):
        await post(h, cid, f"s{i}", "slow", state)
        await post(h, cid, f"f{i}", "fast", state)
    await sink.wait_for(6)
    by_call: dict[str, list[str]] = {}
    for ev in sink.events:
        by_call.setdefault(ev.call_id, []).append(ev.state.value)
    assert by_call == {"slow": ["ringing", "answered", "ended"], "fast": ["ringing", "answered", "ended"]}
    # the slow call's 'answered' was never tried before its 'ringing' succeeded
    slow = [(s, a) for c, s, a in sink.attempts if c == "slow"]
    assert slow == [("ringing", 1), ("ringing", 2), ("ringing", 3), ("answered", 1), ("answered", 2),
                    ("answered", 3), ("ended", 1), ("ended", 2), ("ended", 3)]
    # the fast call did not wait for the slow one
    first_fast_done = next(i for i, ev in enumerate(sink.events) if ev.call_id == "fast")
    assert first_fast_done == 0
    assert await h.gw.store.events.dead_letters() == []


async def test_a_failing_sink_neither_blocks_nor_retriggers_another(gateway_harness):
    flaky = FlakySink({"c"}, failures=10_000)
    h = await gateway_harness(plugins=[("flaky", SinkPlugin(flaky))])
    await h.create_tenant("acme")  # bound to the recorder
    await h.admin("PUT", "/tenants/acme/sinks/flaky", {"settings": {}}, expect=200)
    cid = (await h.connect("acme", "demo", {"secret": SECRET}))["id"]
    await post(h, cid, "e1", "c", "ringing")
    await post(h, cid, "e2", "c", "ended")
    assert [e.state.value for e in await h.recorder.wait_for(2)] == ["ringing", "ended"]
    await asyncio.sleep(0.2)
    assert len(h.recorder.deliveries) == 2  # retries of 'flaky' did not deliver to the recorder again
    assert len(flaky.attempts) >= 2 and {c for c, _, _ in flaky.attempts} == {"c"}


async def test_dead_letter_after_the_horizon_then_replay(gateway_harness):
    flaky = FlakySink({"c"}, failures=3)
    h = await gateway_harness(plugins=[("flaky", SinkPlugin(flaky))],
                              env={"GATEWAY_DELIVERY_HORIZON": "0"})
    await h.create_tenant("acme", record=False)
    await h.admin("PUT", "/tenants/acme/sinks/flaky", {"settings": {}}, expect=200)
    cid = (await h.connect("acme", "demo", {"secret": SECRET}))["id"]
    await post(h, cid, "e1", "c", "ringing")
    for _ in range(100):
        letters = (await h.admin("GET", "/deadletters"))["dead_letters"]
        if letters:
            break
        await asyncio.sleep(0.02)
    assert [(d["tenant"], d["sink"], d["reason"], d["attempts"]) for d in letters] == [
        ("acme", "flaky", "RetryableError:DOWN", 1)]
    # a replay restarts the horizon and goes through once the CRM is back
    flaky.failures = 0
    flaky.left.clear()
    await h.admin("POST", f"/deadletters/{letters[0]['id']}/replay", expect=200)
    assert [e.call_id for e in await flaky.wait_for(1)] == ["c"]
    assert await h.gw.store.events.dead_letters() == []
    await h.admin("POST", "/deadletters/999999/replay", expect=404)
    await h.admin("POST", "/deadletters/abc/replay", expect=404)


class PermanentSink(RecordingSink):
    name = "permanent"

    async def deliver(self, ctx: PluginContext, delivery: Delivery) -> None:
        raise PermanentError("CRM refused it with +4922112345678", code="REFUSED")


async def test_permanent_errors_dead_letter_at_once_without_personal_data(gateway_harness):
    h = await gateway_harness(plugins=[("permanent", SinkPlugin(PermanentSink()))])
    await h.create_tenant("acme", record=False)
    await h.admin("PUT", "/tenants/acme/sinks/permanent", {"settings": {}}, expect=200)
    cid = (await h.connect("acme", "demo", {"secret": SECRET}))["id"]
    await post(h, cid, "e1", "c", "ringing")
    for _ in range(100):
        letters = await h.gw.store.events.dead_letters()
        if letters:
            break
        await asyncio.sleep(0.02)
    assert letters[0].reason == "PermanentError:REFUSED"
    resp = await h.client.get("/admin/v1/deadletters", headers=h.headers)
    assert "4922112345678" not in await resp.text()


class PausingSink(RecordingSink):
    name = "pausing"
    paused = True

    async def deliver(self, ctx: PluginContext, delivery: Delivery) -> None:
        if self.paused:
            raise TenantPaused("reinstall needed", retry_after=0.05, code="REINSTALL")
        await super().deliver(ctx, delivery)


async def test_paused_tenant_keeps_its_deliveries_beyond_the_horizon(gateway_harness):
    sink = PausingSink()
    h = await gateway_harness(plugins=[("pausing", SinkPlugin(sink))], env={"GATEWAY_DELIVERY_HORIZON": "0"})
    await h.create_tenant("acme", record=False)
    await h.admin("PUT", "/tenants/acme/sinks/pausing", {"settings": {}}, expect=200)
    cid = (await h.connect("acme", "demo", {"secret": SECRET}))["id"]
    await post(h, cid, "e1", "c", "ringing")
    await asyncio.sleep(0.3)
    assert await h.gw.store.events.dead_letters() == []
    assert await h.gw.store.events.count("pending") == 1
    sink.paused = False
    assert len(await sink.wait_for(1)) == 1


async def _dead_letter(h, flaky: FlakySink, call: str) -> int:
    cid = (await h.connect("acme", "demo", {"secret": SECRET}))["id"]
    await post(h, cid, f"{call}-e1", call, "ringing")
    for _ in range(200):
        letters = await h.gw.store.events.dead_letters()
        if letters:
            return letters[0].id
        await asyncio.sleep(0.02)
    raise AssertionError("no dead letter")


async def test_a_replay_from_another_process_is_delivered_at_the_next_rescan(gateway_harness):
    """``gateway deadletters replay`` only changes the row: the server finds it by itself."""
    flaky = FlakySink({"c"}, failures=1)
    h = await gateway_harness(plugins=[("flaky", SinkPlugin(flaky))], env={"GATEWAY_DELIVERY_HORIZON": "0"})
    await h.create_tenant("acme", record=False)
    await h.admin("PUT", "/tenants/acme/sinks/flaky", {"settings": {}}, expect=200)
    letter = await _dead_letter(h, flaky, "c")
    flaky.left.clear()
    flaky.failures = 0
    await h.gw.store.events.replay(letter)  # what the command does, without the dispatcher
    await asyncio.sleep(0.2)
    assert flaky.deliveries == []  # nobody told this process
    assert await h.gw.dispatcher.rescan() == 1
    assert [e.call_id for e in await flaky.wait_for(1)] == ["c"]
    for _ in range(100):  # the sink has it; the row is marked done right after
        if h.gw.dispatcher.depth == 0:
            break
        await asyncio.sleep(0.02)
    assert await h.gw.store.events.count("pending") == 0
    assert await h.gw.dispatcher.rescan() == 0
    assert len(flaky.deliveries) == 1


class GatedSink(RecordingSink):
    """Holds every delivery until ``gate`` opens."""

    name = "gated"

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def deliver(self, ctx: PluginContext, delivery: Delivery) -> None:
        self.started.set()
        await self.gate.wait()
        await super().deliver(ctx, delivery)


async def test_a_delivery_finishing_during_a_rescan_does_not_go_out_twice(gateway_harness, monkeypatch):
    sink = GatedSink()
    h = await gateway_harness(plugins=[("gated", SinkPlugin(sink))])
    await h.create_tenant("acme", record=False)
    await h.admin("PUT", "/tenants/acme/sinks/gated", {"settings": {}}, expect=200)
    cid = (await h.connect("acme", "demo", {"secret": SECRET}))["id"]
    await post(h, cid, "e1", "call-1", "ringing")
    await asyncio.wait_for(sink.started.wait(), 5)
    # another pending row this process does not know of, so the rescan reads the queue
    await h.gw.store.db.w.submit(lambda c: c.execute(
        "INSERT INTO deliveries (event_seq, tenant, sink, call_key, state, attempts, next_at, received_at, "
        "since, updated_at) SELECT event_seq, tenant, 'gone', call_key, 'pending', 0, next_at, received_at, "
        "since, updated_at FROM deliveries"))
    queue = h.gw.store.events
    real = queue.pending

    async def stale_read(**kwargs):
        rows = await real(**kwargs)  # read while e1 is still in flight: it shows as pending
        sink.gate.set()
        while h.gw.dispatcher.depth > 0:  # e1 delivered and off the queue before the read returns
            await asyncio.sleep(0.01)
        return rows

    monkeypatch.setattr(queue, "pending", stale_read)
    assert await h.gw.dispatcher.rescan() == 1  # the unknown row, not e1 again
    await asyncio.sleep(0.2)
    assert [e.event_id for e in sink.events] == ["e1"]
