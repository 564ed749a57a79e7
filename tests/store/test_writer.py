"""The group-commit writer: queue order holds inside a batch, one failing job sinks no other."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from gateway.store import MasterKeyring, generate_master_key
from gateway.store.sqlite import SQLiteStore as Store


@pytest.fixture
async def store(tmp_path):
    s = Store(str(tmp_path / "db.sqlite"), MasterKeyring.from_text(generate_master_key()))
    await s.open()
    await s.tenants.create("acme")
    yield s
    await s.close()


async def test_merged_upserts_keep_queue_order_with_jobs_between(store):
    # all queued before the writer runs: one batch, upserts merged around the delete job
    futs = [store.records.put("acme", "p", "k", "x", {"v": 1}, wait=False),
            store.records.put("acme", "p", "k", "x", {"v": 2}, wait=False),
            store.records.delete("acme", "p", "k", "x"),
            store.records.put("acme", "p", "k", "y", {"v": 3}, wait=False),
            store.records.put("acme", "p", "k", "y", {"v": 4})]
    await asyncio.gather(*futs)
    assert await store.records.get("acme", "p", "k", "x") is None
    assert await store.records.get("acme", "p", "k", "y") == {"v": 4}
    assert store.db.w.batches <= 3  # they really shared transactions


async def test_a_failing_job_does_not_sink_the_others_in_its_batch(store):
    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO tenants (id) VALUES ('broken')")  # violates NOT NULL

    results = await asyncio.gather(store.records.put("acme", "p", "k", "a", 1), store.db.w.submit(bad),
                                   store.records.put("acme", "p", "k", "b", 2), return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert await store.records.get("acme", "p", "k", "a") == 1
    assert await store.records.get("acme", "p", "k", "b") == 2
    assert await store.tenants.get("broken") is None


async def test_a_background_job_does_not_hold_up_the_batch_it_was_queued_with(store):
    """Retention's deletes commit after the requests queued with them, in their own
    transaction: the requests' commit does not wait for the deletes."""
    release = threading.Event()

    def slow_delete(conn: sqlite3.Connection) -> str:
        release.wait(10)
        return "purged"

    background = asyncio.ensure_future(store.db.w.submit(slow_delete, background=True))
    urgent = asyncio.ensure_future(store.records.put("acme", "p", "k", "a", 1))  # same batch
    done, _ = await asyncio.wait([urgent], timeout=5)
    try:
        assert urgent in done and not background.done()
        assert await store.records.get("acme", "p", "k", "a") == 1  # committed already
    finally:
        release.set()
    assert await background == "purged"
