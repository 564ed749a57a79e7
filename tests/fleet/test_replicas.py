"""Several gateway processes on one PostgreSQL database (here: several gateways in one test
process, each with its own store, pools and dispatcher, exactly as separate processes would
have): a webhook is accepted by whichever receives it, each delivery is made by one of them,
per call in order; deduplication, single-flight refresh, fleet-wide jobs and rate limits hold
for all of them together."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pgdb import postgres_dsn  # noqa: F401  (a fixture)

from gateway import Connection, RateLimit, SingleFlight, hookimpl
from gateway.app import build_gateway
from gateway.events import CallEvent, CallState, Direction
from gateway.runtime import Gateway
from gateway.sinks import Delivery, Sink
from gateway.store.common import now_ms
from gateway.testing import RecorderPlugin, RecordingSink, SinkPlugin, make_config

pytestmark = pytest.mark.postgres

STATES = (CallState.RINGING, CallState.ANSWERED, CallState.ENDED)


def event(call: str, state: CallState) -> CallEvent:
    return CallEvent(f"{call}-{state.value}", call, Direction.INBOUND, state, datetime.now(timezone.utc),
                     remote_number="+4922112345678")


class Timed(Sink):
    """A CRM with a rate limit that notes when each request arrived."""

    name = "timed"
    rate_limit = RateLimit(rate=5, burst=2)

    def __init__(self) -> None:
        self.at: list[float] = []

    async def deliver(self, ctx: Any, delivery: Delivery) -> None:
        self.at.append(time.monotonic())


class Slow(Sink):
    """A CRM that takes a while over the first event of a call, so that the call's next
    events reach other replicas while it is still being delivered."""

    name = "slow"

    def __init__(self) -> None:
        self.events: list[CallEvent] = []

    async def deliver(self, ctx: Any, delivery: Delivery) -> None:
        if delivery.event.state is CallState.RINGING:
            await asyncio.sleep(0.2)
        self.events.append(delivery.event)


class Plugins:
    """What every replica loads: the shared recorder, a rate-limited sink, a periodic task."""

    def __init__(self) -> None:
        self.recorder = RecordingSink()
        self.timed = Timed()
        self.ticks: list[int] = []
        self.slow = SinkPlugin(Slow())

    @hookimpl
    def register_sinks(self, register: Callable[[Sink], None]) -> None:
        register(self.timed)

    @hookimpl
    def register_tasks(self, register: Any) -> None:
        async def tick(ctx: Any) -> None:
            self.ticks.append(int(time.time() / 0.3))
        register(name="tick", interval=0.3, func=tick)


@pytest.fixture
async def replicas(postgres_dsn: str, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await replicas(n)``: ``n`` gateways serving one database, and the plugins they share."""
    opened: list[Gateway] = []
    plugins = Plugins()

    async def start(n: int) -> list[Gateway]:
        config = make_config(tmp_path, {"GATEWAY_DATABASE": postgres_dsn})
        for _ in range(n):
            gw = build_gateway(config, [("recorder", RecorderPlugin(plugins.recorder)), ("timed", plugins),
                                        ("slow", plugins.slow)])
            gw.store.fleet.ttl = 1.5  # type: ignore[union-attr]  # quick takeovers
            await gw.open()
            opened.append(gw)
        return opened

    start.plugins = plugins  # type: ignore[attr-defined]
    yield start
    for gw in opened:
        if gw.started:
            await gw.close()


async def setup_tenant(gw: Gateway, sink: str = "recorder") -> Any:
    await gw.tenancy.create("acme")
    await gw.tenancy.bind("acme", sink, {})
    return await gw.store.connections.add(Connection(gw.store.connections.new_id(), "acme", "phone", {}))


async def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_events_ingested_anywhere_are_delivered_once_in_order(replicas: Any) -> None:
    a, b, c = await replicas(3)
    conn = await setup_tenant(a, sink="slow")
    calls = [f"call{n}" for n in range(30)]
    for state in STATES:  # each webhook of a call to the next replica, round robin
        for n, call in enumerate(calls):
            gw = (a, b, c)[(n + STATES.index(state)) % 3]
            await gw.store.events.ingest(conn, [event(call, state)], now_ms())
    await a.store.events.ingest(conn, [event("call0", CallState.RINGING)], now_ms())  # redelivered elsewhere
    crm = replicas.plugins.slow.sink
    await wait_until(lambda: len(crm.events) >= len(calls) * 3)
    await asyncio.sleep(0.3)
    keys = [e.event_id for e in crm.events]
    assert len(keys) == len(set(keys)) == len(calls) * 3  # once each, the duplicate not at all
    for call in calls:
        assert [e.state for e in crm.events if e.call_id == call] == list(STATES)
    assert await a.store.events.count("pending") == 0


async def test_a_stopped_replicas_lanes_are_taken_over(replicas: Any) -> None:
    a, b = await replicas(2)
    conn = await setup_tenant(a)
    recorder = replicas.plugins.recorder
    recorder.fail_times = 10**6  # the CRM is down: a's lanes wait in retries
    for n in range(5):
        await a.store.events.ingest(conn, [event(f"c{n}", CallState.RINGING)], now_ms())
    await wait_until(lambda: a.dispatcher.depth == 5)
    assert b.dispatcher.depth == 0
    await a.close()  # a clean stop hands its lanes back
    recorder.fail_times = 0
    await wait_until(lambda: len(recorder.deliveries) == 5)
    assert {e.call_id for e in recorder.events} == {f"c{n}" for n in range(5)}


async def test_a_dead_replicas_lanes_are_taken_over_when_their_leases_expire(replicas: Any) -> None:
    a, b = await replicas(2)
    conn = await setup_tenant(a)
    recorder = replicas.plugins.recorder
    recorder.fail_times = 10**6
    await a.store.events.ingest(conn, [event("c1", CallState.RINGING)], now_ms())
    await wait_until(lambda: a.dispatcher.depth == 1)
    # a dies: its dispatcher stops without handing anything back, its leases are not renewed
    a.dispatcher.fleet.release_all = _nothing  # type: ignore[attr-defined, method-assign]
    await a.dispatcher.stop(grace=0)
    recorder.fail_times = 0
    started = time.monotonic()
    await wait_until(lambda: len(recorder.deliveries) == 1)
    assert time.monotonic() - started >= 0.5  # only once the lease had expired


async def _nothing() -> None:
    return None


async def test_oauth_refresh_is_single_flight_across_replicas(replicas: Any) -> None:
    a, b, c = await replicas(3)
    await a.tenancy.create("acme")
    refreshes: list[str] = []

    async def token_at(gw: Gateway) -> str:
        storage = gw.contexts["timed"].storage("acme")

        async def current() -> str:
            return str(await storage.get("oauth", "token") or "stale")

        async def refresh(old: str) -> str:
            refreshes.append(old)
            await asyncio.sleep(0.1)  # the vendor takes its time
            await storage.put("oauth", "token", "fresh")
            return "fresh"
        return await SingleFlight().run(storage, "oauth", current=current, stale=lambda t: t == "stale",
                                        refresh=refresh)  # one SingleFlight per process

    tokens = await asyncio.gather(*(token_at(gw) for gw in (a, b, c, a, b, c)))
    assert tokens == ["fresh"] * 6 and refreshes == ["stale"]


async def test_background_jobs_run_once_per_interval_across_the_fleet(replicas: Any) -> None:
    await replicas(3)
    ticks = replicas.plugins.ticks
    started = time.monotonic()
    await asyncio.sleep(2.1)
    intervals = (time.monotonic() - started) / 0.3
    # once per interval across the three, not once per replica (that would be about 21)
    assert 3 <= len(ticks) <= intervals + 1, (len(ticks), intervals)


async def test_a_portals_rate_limit_holds_for_the_fleet(replicas: Any) -> None:
    a, b = await replicas(2)
    conn = await setup_tenant(a, sink="timed")
    for n in range(12):  # different calls: nothing orders them but the rate limit
        await (a, b)[n % 2].store.events.ingest(conn, [event(f"c{n}", CallState.RINGING)], now_ms())
    timed = replicas.plugins.timed
    await wait_until(lambda: len(timed.at) == 12)
    at = sorted(timed.at)
    for i, t in enumerate(at):  # 5 per second, bursts of 2: never more than 2 + 5t in t seconds
        within = sum(1 for u in at[i:] if u - t < 1.0)
        assert within <= 2 + 5 + 1, (i, within)
    assert at[-1] - at[0] >= (12 - 2) / 5 * 0.9


async def test_readiness_reports_the_database_per_replica(postgres_dsn: str, gateway_harness: Any) -> None:
    h = await gateway_harness(env={"GATEWAY_DATABASE": postgres_dsn.replace("://", "://root:pw-secret@")})
    body = await (await h.client.get("/readyz")).json()
    assert body["database"]["backend"] == "postgresql" and body["database"]["reachable"] is True
    assert body["database"]["lanes_held"] == 0 and "pw-secret" not in str(body)


async def test_the_audit_chain_stays_one_chain_when_replicas_append_at_once(postgres_dsn: str) -> None:
    from gateway.audit import verify
    from gateway.store.crypto import MasterKeyring, generate_master_key
    from gateway.store.postgres import PostgresStore

    keyring = MasterKeyring.from_text(generate_master_key())
    stores = [PostgresStore(postgres_dsn, keyring) for _ in range(3)]
    for store in stores:
        await store.open()
    try:
        await asyncio.gather(*(store.audit.append("operator.purge", None, {"n": n})
                               for n in range(20) for store in stores))
        entries = await stores[0].audit.entries()
        assert [e.seq for e in entries] == list(range(1, 61)) and verify(entries).ok
    finally:
        for store in stores:
            await store.close()


async def test_replicas_starting_at_once_on_a_new_database_migrate_it_once(postgres_dsn: str) -> None:
    from gateway.store.crypto import MasterKeyring, generate_master_key
    from gateway.store.postgres import PostgresStore

    keyring = MasterKeyring.from_text(generate_master_key())
    stores = [PostgresStore(postgres_dsn, keyring) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        assert await stores[0].ping() and await stores[3].tenants.list() == []
    finally:
        for store in stores:
            await store.close()


async def test_a_calls_state_is_held_across_replicas(replicas: Any) -> None:
    """Two webhooks of one call on two replicas: each read-modify-write of the call's state
    sees the other's, none is lost (the call is held in the store, not only in memory)."""
    first, second = await replicas(2)
    conn = await setup_tenant(first)
    conn = Connection(conn.id, conn.tenant, "recorder", {})  # state is kept per plugin

    async def add(gw: Gateway, mark: str) -> None:
        async with gw.contexts["recorder"].calls.state(conn, "call-1") as call:
            seen = list(call.value or [])
            await asyncio.sleep(0.05)  # the other replica tries meanwhile
            call.value = [*seen, mark]

    await asyncio.gather(*(add(gw, f"{gw_i}-{i}") for i in range(5) for gw_i, gw in enumerate((first, second))))
    state = await second.contexts["recorder"].calls.get(conn, "call-1")
    assert sorted(state) == sorted(f"{g}-{i}" for i in range(5) for g in range(2))
