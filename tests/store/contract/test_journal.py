"""The journal: sealed requests kept until interpreted, gone with the tenant and with retention."""

from __future__ import annotations

from gateway.models import Connection
from gateway.store.common import now_ms
from gateway.store.protocols import Store

from .backends import REMOTE, Backend

BODY = f"event=IncomingCall&from={REMOTE}&call_id=abc".encode()
HEADERS = (("X-Signature", "f00d"), ("Content-Type", "application/x-www-form-urlencoded"))


async def _append(store: Store, connection: Connection, body: bytes = BODY, at: int | None = None) -> None:
    await store.journal.append(connection, body, HEADERS, "application/x-www-form-urlencoded",
                               (("token", "q"),), now_ms() if at is None else at)


async def test_entries_come_back_whole_in_order_until_done(store: Store, acme: Connection) -> None:
    for i in range(3):
        await _append(store, acme, BODY + str(i).encode())
    assert await store.journal.count() == 3
    entries = await store.journal.pending(limit=2)
    assert [e.body for e in entries] == [BODY + b"0", BODY + b"1"]
    first = entries[0]
    assert (first.tenant, first.connection_id) == ("acme", acme.id)
    assert first.headers == HEADERS and first.query == (("token", "q"),)
    assert first.content_type == "application/x-www-form-urlencoded"
    await store.journal.done([e.id for e in entries])
    assert [e.body for e in await store.journal.pending()] == [BODY + b"2"]
    assert await store.journal.count() == 1


async def test_entries_are_sealed_at_rest(store: Store, backend: Backend, acme: Connection) -> None:
    await _append(store, acme)
    await store.checkpoint()
    assert REMOTE.encode() not in backend.at_rest(store)
    assert b"IncomingCall" not in backend.at_rest(store)


async def test_entries_go_with_the_tenant_and_with_retention(store: Store, acme: Connection) -> None:
    await _append(store, acme, at=now_ms() - 10 * 86_400_000)
    await _append(store, acme)
    counts = await store.events.purge_before(now_ms() - 7 * 86_400_000)
    assert counts["journal"] == 1 and await store.journal.count() == 1
    removed = await store.tenants.remove("acme")
    assert removed["journal"] == 1 and await store.journal.count() == 0
