"""The durable queue: ingest, deduplication, deliveries, paging, retries, dead letters, retention."""

from __future__ import annotations

import pytest

from gateway.errors import NotFound
from gateway.models import Connection
from gateway.store.common import now_ms
from gateway.store.protocols import Store
from gateway.store.records import PendingDelivery

from .backends import OTHER, REMOTE, call_event, ingest, tenant_with_connection


async def test_ingest_deduplicates_per_connection_and_queues_one_delivery_per_sink(
        store: Store, acme: Connection) -> None:
    await store.sinks.bind("acme", "second", {})
    other = await store.connections.add(Connection(store.connections.new_id(), "acme", "phone", {}))
    await ingest(store, acme, call_event("e1"), call_event("e2"))
    await ingest(store, acme, call_event("e1"))  # a redelivery: no second effect
    await ingest(store, other, call_event("e1"))  # the same id at another connection is another event
    pending = await store.events.pending(per_group=100)
    assert len(pending) == 6 and await store.events.count("pending") == 6
    assert [d.id for d in pending] == sorted(d.id for d in pending)
    assert {d.sink for d in pending} == {"crm", "second"}
    first = pending[0]
    event = await store.events.load("acme", first.event_seq)
    assert event is not None and event.event_id == "e1" and event.remote_number == REMOTE
    assert await store.events.load("other-tenant", first.event_seq) is None
    assert (first.attempts, first.next_at, first.since) == (0, first.received_at, first.received_at)


async def test_same_call_shares_its_call_key(store: Store, acme: Connection) -> None:
    await ingest(store, acme, call_event("e1", "c1"), call_event("e2", "c1"), call_event("e3", "c2"))
    keys = [d.call_key for d in await store.events.pending(per_group=10)]
    assert keys[0] == keys[1] != keys[2]


async def test_no_sink_bound_means_no_delivery(store: Store) -> None:
    connection = await tenant_with_connection(store, "quiet", sinks=())
    await ingest(store, connection, call_event("e1"))
    assert await store.events.count("pending") == 0
    assert await store.events.count_expired(now_ms() + 1) == 1


async def test_on_ingest_gets_the_fresh_deliveries_with_their_events(store: Store, acme: Connection) -> None:
    seen: list[list[PendingDelivery]] = []
    store.events.on_ingest(seen.append)
    await ingest(store, acme, call_event("e1"), call_event("e2"))
    await ingest(store, acme, call_event("e1"))  # duplicate: nothing fresh
    fresh = [d for batch in seen for d in batch]
    assert [d.event.event_id if d.event else None for d in fresh] == ["e1", "e2"]
    assert [d.id for d in fresh] == [d.id for d in await store.events.pending(per_group=10)]


async def test_ingest_for_an_unknown_tenant_is_refused(store: Store) -> None:
    ghost = Connection("ghost", "nobody", "phone", {})
    with pytest.raises(NotFound):
        await store.events.ingest(ghost, [call_event("e1")], now_ms())


async def test_pending_pages_per_tenant_and_sink(store: Store, acme: Connection) -> None:
    beta = await tenant_with_connection(store, "beta")
    await ingest(store, acme, *[call_event(f"a{i}") for i in range(5)])
    await ingest(store, beta, *[call_event(f"b{i}") for i in range(2)])
    firsts = await store.events.pending(per_group=3)
    assert [d.tenant for d in firsts] == ["acme"] * 3 + ["beta"] * 2
    page = await store.events.pending_after("acme", "crm", firsts[2].id, 10)
    assert [d.id for d in page] == [d.id for d in (await store.events.pending(per_group=10))[3:5]]
    assert len(await store.events.pending_after("acme", "crm", firsts[0].id, 1)) == 1
    assert await store.events.pending_after("acme", "other", 0, 10) == []


async def test_retry_finish_dead_letter_and_replay(store: Store, acme: Connection) -> None:
    beta = await tenant_with_connection(store, "beta")
    await ingest(store, acme, call_event("e1"), call_event("e2"), call_event("e3"))
    await ingest(store, beta, call_event("e1"))
    d1, d2, d3, b1 = await store.events.pending(per_group=10)
    later = now_ms() + 60_000
    await store.events.retry(d1.id, 1, later, "http_503")
    retried = (await store.events.pending(per_group=10))[0]
    assert (retried.id, retried.attempts, retried.next_at) == (d1.id, 1, later)
    assert await store.events.is_pending(d1.id)
    await store.events.finish(d1.id)
    await store.events.dead(d2.id, 7, "http_400")
    await store.events.dead(b1.id, 2, "timeout")
    assert not await store.events.is_pending(d1.id) and not await store.events.is_pending(d2.id)
    assert await store.events.is_pending(d3.id)
    assert not await store.events.is_pending(10**9)
    assert (await store.events.count("done"), await store.events.count("dead")) == (1, 2)
    letters = await store.events.dead_letters()
    assert [(x.id, x.tenant, x.sink, x.attempts, x.reason) for x in letters] == [
        (d2.id, "acme", "crm", 7, "http_400"), (b1.id, "beta", "crm", 2, "timeout")]
    assert [x.id for x in await store.events.dead_letters("beta")] == [b1.id]
    dead_event = await store.events.load("acme", letters[0].event_seq)
    assert dead_event is not None and dead_event.event_id == "e2"

    with pytest.raises(NotFound):
        await store.events.replay(b1.id, "acme")  # another tenant's
    with pytest.raises(NotFound):
        await store.events.replay(d3.id)  # not dead
    replayed = await store.events.replay(d2.id, "acme")
    assert (replayed.id, replayed.attempts, replayed.dedup_key) == (d2.id, 0, d2.dedup_key)
    assert replayed.since >= d2.since and await store.events.is_pending(d2.id)
    assert [x.id for x in await store.events.dead_letters()] == [b1.id]


async def test_call_counts_per_period_count_calls_not_events(store: Store, acme: Connection) -> None:
    await store.sinks.bind("acme", "other", {})
    hour = 3_600_000
    base = (now_ms() // hour - 5) * hour  # the start of an hour, five hours ago
    # c1: two events delivered; c2: one delivered, one dead; c3: still pending; c4: an hour later
    await ingest(store, acme, call_event("e1", "c1"), call_event("e2", "c1"), call_event("e3", "c2"),
                 call_event("e4", "c2"), call_event("e5", "c3"), at=base + 60_000)
    await ingest(store, acme, call_event("e6", "c4"), at=base + hour + 5)
    await ingest(store, acme, call_event("old", "c0"), at=base - 2 * hour)
    by_event = {}
    for d in await store.events.pending(per_group=100):
        event = await store.events.load("acme", d.event_seq)
        assert event is not None
        by_event[(event.event_id, d.sink)] = d.id
    for event_id in ("e1", "e2", "e3", "e6", "old"):
        await store.events.finish(by_event[(event_id, "crm")])
    await store.events.dead(by_event[("e4", "crm")], 3, "ERROR_CORE")
    await store.events.dead(by_event[("e1", "other")], 1, "x")  # another sink's failure

    counts = await store.events.call_counts("acme", "crm", base, hour)
    assert counts == [(base, 1, 1), (base + hour, 1, 0)]
    day = 86_400_000
    assert sum(w for _, w, _ in await store.events.call_counts("acme", "crm", base - 3 * hour, day)) == 3
    assert await store.events.call_counts("acme", "other", base, hour) == [(base, 0, 1)]
    assert await store.events.call_counts("beta", "crm", 0, hour) == []
    assert await store.events.call_counts("acme", "crm", base + 2 * hour, hour) == []


async def test_purge_deletes_only_what_is_past_the_cutoff(store: Store, acme: Connection) -> None:
    old, cutoff = now_ms() - 10_000, now_ms() - 5_000
    await ingest(store, acme, *[call_event(f"old{i}") for i in range(5)], at=old)
    await ingest(store, acme, call_event("new"))
    gone = (await store.events.pending(per_group=10))[0]
    assert await store.events.count_expired(cutoff) == 5
    seen: list[int] = []
    counts = await store.events.purge_before(cutoff, batch=2, progress=seen.append)
    assert (counts["events"], counts["deliveries"]) == (5, 5)
    assert seen == [2, 2, 1]
    assert not await store.events.is_pending(gone.id)
    assert await store.events.load("acme", gone.event_seq) is None
    assert await store.events.count_expired(cutoff) == 0
    (kept,) = await store.events.pending(per_group=10)
    assert (event := await store.events.load("acme", kept.event_seq)) is not None and event.event_id == "new"
    await ingest(store, acme, call_event("old0"), at=old)  # purged: no longer a duplicate
    assert await store.events.count("pending") == 2


async def test_ids_are_never_used_twice(store: Store, acme: Connection) -> None:
    """The dispatcher holds delivery ids and event seqs in memory while it waits: after the
    rows are gone (erased, purged, the tenant removed), a new event must not get the same
    id, or a withdrawn delivery would pass ``is_pending`` and ``load`` another person's event."""
    await ingest(store, acme, call_event("e1"), call_event("e2"))
    first = await store.events.pending(per_group=10)
    await store.subjects.delete_events("acme", REMOTE)  # the newest rows go
    await ingest(store, acme, call_event("e3", remote=OTHER))
    (fresh,) = await store.events.pending(per_group=10)
    assert fresh.id > max(d.id for d in first) and fresh.event_seq > max(d.event_seq for d in first)
    assert not any([await store.events.is_pending(d.id) for d in first])
    assert [await store.events.load("acme", d.event_seq) for d in first] == [None, None]
    await store.tenants.remove("acme")
    again = await tenant_with_connection(store, "acme")
    await ingest(store, again, call_event("e4"))
    (newest,) = await store.events.pending(per_group=10)
    assert newest.id > fresh.id and newest.event_seq > fresh.event_seq
