"""The audit log: a verifiable chain, deferred entries, pseudonymous tenants."""

from __future__ import annotations

from gateway.audit import verify
from gateway.store.protocols import Store


async def test_chain_append_defer_flush_and_entries(store: Store) -> None:
    await store.tenants.create("acme")
    ref = await store.audit.ref("acme")
    assert ref is not None and "acme" not in ref and await store.audit.ref("acme") == ref
    assert await store.audit.ref("nobody") is None
    await store.audit.append("tenant.created", ref, {"plugin": "demo"})
    await store.audit.append("user.login", ref, {"n": 1}, defer=True)
    assert len(await store.audit.entries()) == 1  # deferred: not written yet
    await store.audit.append("operator.purge", None, {"deleted": {"events": 2}}, defer=True)
    await store.audit.flush()
    entries = await store.audit.entries()
    assert [(e.seq, e.action, e.tenant_ref) for e in entries] == [
        (1, "tenant.created", ref), (2, "user.login", ref), (3, "operator.purge", None)]
    assert entries[2].details == {"deleted": {"events": 2}}
    assert verify(entries).ok
    assert [e.seq for e in await store.audit.entries(after=1, limit=1)] == [2]
    assert [e.seq for e in await store.audit.entries(tenant_ref=ref)] == [1, 2]


async def test_a_removed_tenants_entries_stay_verifiable_but_nameless(store: Store) -> None:
    await store.tenants.create("gone")
    ref = await store.audit.ref("gone")
    await store.audit.append("tenant.created", ref, {})
    await store.tenants.remove("gone")
    await store.tenants.create("gone")  # the same id again is someone new
    fresh = await store.audit.ref("gone")
    assert fresh is not None and fresh != ref
    assert verify(await store.audit.entries()).ok
    assert [e.action for e in await store.audit.entries(tenant_ref=ref)] == ["tenant.created"]


async def test_the_anchor_is_the_head_written_with_every_append(store: Store) -> None:
    """A second record of the chain's head, so ``audit verify`` sees entries cut off the end."""
    assert await store.audit.anchor() is None
    await store.audit.append("tenant.created", None, {})
    first = (await store.audit.entries())[-1]
    assert await store.audit.anchor() == (first.seq, first.hash)
    await store.audit.append("user.login", None, {"n": 1}, defer=True)
    assert await store.audit.anchor() == (first.seq, first.hash)  # deferred: not written yet
    await store.audit.flush()
    entries = await store.audit.entries()
    anchor = await store.audit.anchor()
    assert anchor == (entries[-1].seq, entries[-1].hash) and anchor[0] == first.seq + 1
    assert verify(entries, [anchor]).ok
    assert not verify(entries[:-1], [anchor]).ok  # the last entry cut off
    assert not verify(entries, [(anchor[0], "0" * 64)]).ok  # the last entry replaced
