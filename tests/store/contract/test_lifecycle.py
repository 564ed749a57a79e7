"""The store as a whole: it answers, it keeps what it committed, reads see fresh commits."""

from __future__ import annotations

import asyncio
from pathlib import Path


from gateway.store.crypto import MasterKeyring
from gateway.store.protocols import Store

from .backends import Backend, call_event, ingest, tenant_with_connection


async def test_ping_checkpoint_and_what_it_names(store: Store, keyring: MasterKeyring) -> None:
    assert await store.ping()
    await store.checkpoint()
    assert store.keyring == keyring and store.path
    assert all(isinstance(p, str) for p in store.file_paths())


async def test_what_was_committed_is_there_after_reopening(backend: Backend, keyring: MasterKeyring,
                                                          tmp_path: Path) -> None:
    async with backend.open(tmp_path, keyring) as store:
        connection = await tenant_with_connection(store, "acme")
        await ingest(store, connection, call_event("e1"))
        await store.audit.append("tenant.created", None, {}, defer=True)  # written at close
    async with backend.open(tmp_path, keyring) as again:
        (pending,) = await again.events.pending(per_group=10)
        assert (await again.events.load("acme", pending.event_seq) or call_event("x")).event_id == "e1"
        assert [e.action for e in await again.audit.entries()] == ["tenant.created"]
        await ingest(again, connection, call_event("e1"))  # still a duplicate
        assert await again.events.count("pending") == 1


async def test_reads_see_commits_while_other_reads_are_in_flight(store: Store) -> None:
    async def busy_reader() -> None:
        for _ in range(50):
            await store.tenants.list()

    readers = [asyncio.create_task(busy_reader()) for _ in range(8)]
    for n in range(60):
        await store.tenants.create(f"t{n}")
        assert await store.tenants.get(f"t{n}") is not None
    await asyncio.gather(*readers)
