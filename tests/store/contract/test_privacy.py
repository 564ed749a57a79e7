"""What is at rest: no plaintext of a person or a secret, and nothing of a removed tenant."""

from __future__ import annotations

from gateway.models import Connection
from gateway.store.protocols import Store

from .backends import (EMAIL, LOCAL, NAME, OTHER, REMOTE, TENANT_USER, Backend, call_event, ingest,
                       tenant_with_connection)

TOKEN, CRM_CALL, PROVIDER_CALL = "tok-7f3a9c1e5b2d4f6a8c0e", "crm-call-5f1e9a", "provider-call-3c7d2b"


def needles(*values: str) -> list[bytes]:
    out = []
    for v in values:
        out += [v.encode(), v.encode("utf-16-le"), v.lstrip("+").encode()]
    return out


async def fill(store: Store, tenant: str) -> Connection:
    """Something of everything the store holds, about the same people."""
    connection = await tenant_with_connection(store, tenant)
    await store.users.put(connection, TENANT_USER)
    await store.records.put(tenant, "p", "oauth", EMAIL, {"access_token": TOKEN}, index=EMAIL)
    await store.records.put(tenant, "p", "call", "c1", {"number": REMOTE}, call_record=True,
                            phones=(REMOTE, LOCAL), wait=False)
    await ingest(store, connection, call_event("e1", remote=REMOTE, local=LOCAL, user="u1"),
                 call_event("e2", remote=OTHER), call_event("e3", remote=None))
    await store.clicktocall.add(tenant, CRM_CALL, sink="crm", connection_id=connection.id, user_id="u1",
                                number=REMOTE, provider_call_id=PROVIDER_CALL)
    # withdraws e2's delivery
    await store.subjects.restrict(tenant, await store.subjects.subject_key(tenant, "phone", OTHER), [], "restrict")
    await store.leases.acquire(f"{tenant}\x1fp\x1ftoken", "holder", 300)
    dead = next(d for d in await store.events.pending(per_group=10) if d.tenant == tenant)
    await store.events.dead(dead.id, 3, "http_500")
    await store.audit.append("tenant.filled", await store.audit.ref(tenant), {"n": 1})
    return connection


async def test_no_plaintext_at_rest(store: Store, backend: Backend) -> None:
    connection = await fill(store, "t1")
    await store.checkpoint()
    data = backend.at_rest(store)
    assert data, "the scan must read something"
    for needle in needles(REMOTE, LOCAL, OTHER, NAME, EMAIL, TOKEN, CRM_CALL, PROVIDER_CALL, "secret-of-t1"):
        assert needle not in data, needle
    # and the values are really there, readable through the API
    assert (await store.users.get(connection, "u1")) == TENANT_USER
    assert (await store.records.find("t1", "p", "oauth", EMAIL))[0][1]["access_token"] == TOKEN
    row = await store.clicktocall.get("t1", CRM_CALL)
    assert row is not None and row["provider_call_id"] == PROVIDER_CALL
    assert [r[2] for r in await store.records.by_phone("t1", LOCAL)] == ["c1"]


async def test_removed_tenant_leaves_nothing_readable(store: Store, backend: Backend) -> None:
    gone = await fill(store, "gone")
    await fill(store, "stays")
    counts = await store.tenants.remove("gone")
    assert {k: counts[k] for k in ("events", "deliveries", "telephony_users", "records", "clicktocall",
                                   "sinks", "connections", "restrictions", "leases")} == {
        "events": 3, "deliveries": 2, "telephony_users": 1, "records": 2, "clicktocall": 1, "sinks": 1,
        "connections": 1, "restrictions": 1, "leases": 1}
    data = backend.at_rest(store)
    for needle in needles("secret-of-gone", "gone.crm.example", "gone"):
        assert needle not in data, needle

    assert await store.tenants.get("gone") is None
    assert await store.connections.get(gone.id) is None
    assert {d.tenant for d in await store.events.pending(per_group=10)} == {"stays"}
    assert {d.tenant for d in await store.events.dead_letters()} == {"stays"}
    # the same id again is a new tenant with a new key: none of the old rows come back
    await store.tenants.create("gone")
    assert await store.connections.list("gone") == [] and await store.sinks.bindings("gone") == []
    assert await store.users.of_tenant("gone") == []
    assert await store.records.find("gone", "p", "oauth") == [] and await store.records.by_phone("gone", REMOTE) == []
    assert await store.subjects.events("gone", REMOTE) == [] and await store.clicktocall.by_phone("gone", REMOTE) == []
    assert await store.subjects.restriction("gone", await store.subjects.subject_key("gone", "phone", OTHER)) is None
    assert await store.leases.acquire("gone\x1fp\x1ftoken", "someone else", 300)
    # the other tenant keeps everything
    assert len(await store.subjects.events("stays", REMOTE)) == 1
    assert len(await store.records.by_phone("stays", REMOTE)) == 1
    assert len(await store.clicktocall.by_phone("stays", REMOTE)) == 1
    assert not await store.leases.acquire("stays\x1fp\x1ftoken", "someone else", 300)
