"""Plugins' records: round trips, indexes, queued writes, and the phones they are about."""

from __future__ import annotations

import asyncio


from gateway.models import Connection
from gateway.store.common import now_ms
from gateway.store.protocols import Store

from .backends import LOCAL, OTHER, REMOTE, call_event, ingest


async def test_put_get_find_delete(store: Store) -> None:
    await store.tenants.create("acme")
    await store.tenants.create("beta")
    await store.records.put("acme", "p", "token", "a@example.com", {"n": 1}, index="x")
    await store.records.put("acme", "p", "token", "b@example.com", {"n": 2}, index="x")
    await store.records.put("acme", "p", "token", "c@example.com", {"n": 3}, index="y")
    await store.records.put("acme", "q", "token", "a@example.com", "other plugin")
    await store.records.put("beta", "p", "token", "a@example.com", "other tenant")
    assert await store.records.get("acme", "p", "token", "a@example.com") == {"n": 1}
    assert await store.records.get("acme", "p", "token", "nobody") is None
    # oldest first; the order within one millisecond is not promised
    assert sorted(await store.records.find("acme", "p", "token", "x")) == [
        ("a@example.com", {"n": 1}), ("b@example.com", {"n": 2})]
    assert sorted(k for k, _ in await store.records.find("acme", "p", "token")) == [
        "a@example.com", "b@example.com", "c@example.com"]
    await store.records.put("acme", "p", "token", "a@example.com", {"n": 9}, index="y")  # replaced
    assert sorted(v["n"] for _, v in await store.records.find("acme", "p", "token", "y")) == [3, 9]
    assert await store.records.delete("acme", "p", "token", "a@example.com") == 1
    assert await store.records.delete("acme", "p", "token", "a@example.com") == 0
    assert await store.records.delete("acme", "p", "token") == 2
    assert await store.records.find("acme", "p", "token") == []
    assert await store.records.get("acme", "q", "token", "a@example.com") == "other plugin"
    assert await store.records.get("beta", "p", "token", "a@example.com") == "other tenant"


async def test_queued_record_is_readable_at_once_and_commits_with_the_next_events(
        store: Store, acme: Connection) -> None:
    await store.records.put("acme", "demo", "call", "c9", {"direction": "in"}, call_record=True, wait=False)
    assert await store.records.get("acme", "demo", "call", "c9") == {"direction": "in"}  # before its commit
    await ingest(store, acme, call_event("q1", "c9"))
    # the events are durable, so the record queued before them is too
    assert await store.records.find("acme", "demo", "call") == [("c9", {"direction": "in"})]
    await store.records.put("acme", "demo", "call", "c9", {"direction": "out"}, wait=False)
    await store.records.delete("acme", "demo", "call", "c9")
    assert await store.records.get("acme", "demo", "call", "c9") is None


async def test_a_burst_of_queued_records_lands_in_queue_order(store: Store, acme: Connection) -> None:
    for i in range(200):
        await store.records.put("acme", "demo", "call", f"c{i % 7}", i, phones=(REMOTE,), wait=False)
    await ingest(store, acme, call_event("after"))
    assert sorted(v for _, v in await store.records.find("acme", "demo", "call")) == list(range(193, 200))
    assert len(await store.records.by_phone("acme", REMOTE)) == 7


async def test_records_are_found_and_erased_by_the_phones_they_are_about(store: Store) -> None:
    for tenant in ("acme", "beta"):
        await store.tenants.create(tenant)
    await store.records.put("acme", "p", "call", "c1", {"v": 1}, phones=(REMOTE, LOCAL), call_record=True)
    await store.records.put("acme", "q", "pending", "k", {"v": 2}, phones=(REMOTE,))
    await store.records.put("acme", "q", "other", "k", {"v": 3}, phones=(OTHER,))
    await store.records.put("acme", "q", "none", "k", {"v": 4})
    await store.records.put("beta", "p", "call", "c1", {"v": 5}, phones=(REMOTE,))
    assert await store.records.by_phone("acme", REMOTE) == [
        ("p", "call", "c1", {"v": 1}), ("q", "pending", "k", {"v": 2})]
    assert await store.records.by_phone("acme", LOCAL) == [("p", "call", "c1", {"v": 1})]
    assert await store.records.by_phone("acme", "+4900000000") == []

    await store.records.put("acme", "p", "call", "c1", {"v": 6}, phones=(LOCAL, OTHER))  # phones replaced
    assert [r[:3] for r in await store.records.by_phone("acme", REMOTE)] == [("q", "pending", "k")]
    assert await store.records.by_phone("acme", LOCAL) == [("p", "call", "c1", {"v": 6})]
    assert [r[:3] for r in await store.records.by_phone("acme", OTHER)] == [("p", "call", "c1"), ("q", "other", "k")]
    await store.records.put("acme", "p", "call", "c1", {"v": 7})  # no phones any more
    assert await store.records.by_phone("acme", LOCAL) == []

    await store.records.put("acme", "p", "call", "c2", {"v": 8}, phones=(REMOTE,), wait=False)
    assert await store.records.delete_by_phone("acme", REMOTE) == {"p": 1, "q": 1}
    assert await store.records.get("acme", "p", "call", "c2") is None  # the queued one too
    assert await store.records.get("acme", "q", "pending", "k") is None
    assert await store.records.by_phone("acme", REMOTE) == []
    assert await store.records.get("acme", "q", "other", "k") == {"v": 3}
    assert await store.records.by_phone("beta", REMOTE) == [("p", "call", "c1", {"v": 5})]
    assert await store.records.delete_by_phone("acme", REMOTE) == {}


async def test_deleting_records_forgets_their_phones(store: Store) -> None:
    await store.tenants.create("acme")
    await store.records.put("acme", "p", "call", "c1", 1, phones=(REMOTE,))
    await store.records.put("acme", "p", "call", "c2", 2, phones=(REMOTE,))
    await store.records.put("acme", "p", "sms", "s1", 3, phones=(REMOTE,))
    await store.records.delete("acme", "p", "call", "c1")
    assert [r[2] for r in await store.records.by_phone("acme", REMOTE)] == ["c2", "s1"]
    await store.records.delete("acme", "p", "call")
    assert [r[2] for r in await store.records.by_phone("acme", REMOTE)] == ["s1"]
    # a record put again under the old key does not come back with its old phones
    await store.records.put("acme", "p", "call", "c1", 4)
    assert [r[2] for r in await store.records.by_phone("acme", REMOTE)] == ["s1"]


async def test_retention_purges_call_records_and_their_phones(store: Store) -> None:
    await store.tenants.create("acme")
    await store.records.put("acme", "p", "call", "c1", 1, phones=(REMOTE,), call_record=True)
    await store.records.put("acme", "p", "settings", "s", 2, phones=(REMOTE,))
    assert (await store.events.purge_before(now_ms() - 60_000))["records"] == 0
    await asyncio.sleep(0.002)
    counts = await store.events.purge_before(now_ms() + 1)
    assert counts["records"] == 1
    assert await store.records.get("acme", "p", "call", "c1") is None
    assert await store.records.by_phone("acme", REMOTE) == [("p", "settings", "s", 2)]


async def test_a_find_of_thousands_gives_way_to_webhooks_while_it_decrypts(store: Store) -> None:
    await store.tenants.create("acme")
    for n in range(1000):
        await store.records.put("acme", "p", "call", f"call-{n}", {"n": n}, index="pending")
    await store.records.find("acme", "p", "call", "nothing")  # whatever was queued is written now
    ran = asyncio.Event()

    async def webhook() -> None:
        ran.set()

    waiting = asyncio.ensure_future(webhook())
    found = await store.records.find("acme", "p", "call", "pending")
    assert ran.is_set()  # it ran in between, not after all 1,000 were opened
    assert sorted(v["n"] for _, v in found) == list(range(1000))
    await waiting
