"""A long backlog (a CRM down for hours) waits in the store, not in memory.

The dispatcher holds at most ``WINDOW`` deliveries of one (sink, tenant) in memory and pages
the rest in, in id order, as they go out: memory stays flat however long the outage, other
tenants are not held up, and nothing is lost, repeated or reordered.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from demo_secret import SECRET
from test_dispatcher import SinkPlugin, post

from gateway import CallEvent, CallState, Delivery, Direction, PluginContext, RateLimit, RetryableError
from gateway.app import build_gateway
from gateway.delivery.dispatcher import WINDOW
from gateway.models import Connection
from gateway.testing import RecordingSink, make_config

STATES = ("ringing", "answered", "ended")


class PortalDownSink(RecordingSink):
    """A CRM that refuses everything for the tenants in ``down``."""

    name = "crm"

    def __init__(self, down: set[str]) -> None:
        super().__init__()
        self.down = down
        self.refused = 0

    async def deliver(self, ctx: PluginContext, delivery: Delivery) -> None:
        if delivery.event.tenant in self.down:
            self.refused += 1
            raise RetryableError("portal down", code="DOWN")
        await super().deliver(ctx, delivery)


def assert_once_and_in_call_order(events: list[CallEvent], calls: int) -> None:
    counts = Counter(e.event_id for e in events)
    assert [eid for eid, n in counts.items() if n > 1] == []
    by_call: dict[str, list[str]] = {}
    for e in events:
        by_call.setdefault(e.call_id, []).append(e.state.value)
    assert len(by_call) == calls
    assert all(states == list(STATES) for states in by_call.values())


async def wait_until(predicate, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_portal_down_keeps_its_backlog_in_the_store_and_others_flow(gateway_harness):
    sink = PortalDownSink({"acme"})
    h = await gateway_harness(plugins=[("crm", SinkPlugin(sink))])
    ids = {}
    for tenant in ("acme", "beta"):
        await h.create_tenant(tenant, record=False)
        await h.admin("PUT", f"/tenants/{tenant}/sinks/crm", {"settings": {}}, expect=200)
        ids[tenant] = (await h.connect(tenant, "demo", {"secret": SECRET}))["id"]
    calls = 100
    for state in STATES:
        for c in range(calls):
            await post(h, ids["acme"], f"a{c}-{state}", f"a{c}", state)
    assert await h.gw.store.events.count("pending") == 3 * calls
    assert h.gw.dispatcher.depth <= WINDOW
    await wait_until(lambda: sink.refused >= WINDOW)  # the window is being retried

    for state in STATES:  # another portal is not held up by the backlog
        await post(h, ids["beta"], f"b-{state}", "b", state)
    await sink.wait_for(3)
    assert [e.tenant for e in sink.events] == ["beta"] * 3
    await wait_until(lambda: h.gw.dispatcher.depth == WINDOW)  # beta's left; acme's window stays

    sink.down.clear()  # the portal is back: the backlog pages in and drains, in order
    await sink.wait_for(3 + 3 * calls, timeout=30)
    assert_once_and_in_call_order([e for e in sink.events if e.tenant == "acme"], calls)
    await wait_until(lambda: h.gw.dispatcher.depth == 0)
    assert await h.gw.store.events.count("pending") == 0
    assert await h.gw.store.events.dead_letters() == []


async def test_a_restart_with_a_backlog_loads_only_the_window(tmp_path: Path) -> None:
    sink = PortalDownSink({"acme"})
    config = make_config(tmp_path)
    calls = 2 * WINDOW

    first = build_gateway(config, [("crm", SinkPlugin(sink))])
    await first.open()
    try:
        await first.store.tenants.create("acme")
        await first.store.sinks.bind("acme", "crm", {})
        conn = await first.store.connections.add(Connection(
            id=first.store.connections.new_id(), tenant="acme", plugin="demo", settings={"secret": SECRET}))
        now = datetime.now(timezone.utc)
        for i, state in enumerate(STATES):
            await first.ingest.store(conn, [CallEvent(event_id=f"c{c}-{state}", call_id=f"c{c}",
                                                direction=Direction.INBOUND, state=CallState(state),
                                                occurred_at=now) for c in range(calls)])
        assert first.dispatcher.depth <= WINDOW
    finally:
        await first.close()  # parks everything: the backlog is in the store

    second = build_gateway(config, [("crm", SinkPlugin(sink))])
    await second.open()
    try:
        assert await second.store.events.count("pending") == 3 * calls
        assert second.dispatcher.depth == WINDOW
        sink.down.clear()
        await sink.wait_for(3 * calls, timeout=30)
        assert_once_and_in_call_order(sink.events, calls)
        await wait_until(lambda: second.dispatcher.depth == 0)
        assert await second.store.events.count("pending") == 0
    finally:
        await second.close()


class ThrottledSink(PortalDownSink):
    rate_limit = RateLimit(rate=150.0, burst=5)


async def test_events_arriving_while_a_backlog_drains_wait_behind_it(gateway_harness):
    """A call's 'ended' that comes in while its 'answered' is still in the store must not
    overtake it, though the window has room by then."""
    sink = ThrottledSink({"acme"})
    h = await gateway_harness(plugins=[("crm", SinkPlugin(sink))])
    await h.create_tenant("acme", record=False)
    await h.admin("PUT", "/tenants/acme/sinks/crm", {"settings": {}}, expect=200)
    cid = (await h.connect("acme", "demo", {"secret": SECRET}))["id"]
    calls = 100
    for state in STATES[:2]:
        for c in range(calls):
            await post(h, cid, f"c{c}-{state}", f"c{c}", state)
    await wait_until(lambda: sink.refused >= WINDOW)
    sink.down.clear()  # drains at 150/s: about 1.3 s for the backlog
    for c in range(calls):
        await post(h, cid, f"c{c}-ended", f"c{c}", "ended")
    assert len(sink.events) < 2 * calls  # the backlog was still draining meanwhile
    await sink.wait_for(3 * calls, timeout=30)
    assert_once_and_in_call_order(sink.events, calls)
