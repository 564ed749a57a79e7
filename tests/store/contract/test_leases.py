"""Leases: single flight across processes, expiry, and removal with their tenant only."""

from __future__ import annotations

from gateway.store.protocols import Store


async def test_lease_is_single_flight(store: Store) -> None:
    assert await store.leases.acquire("x", "one", 30)
    assert not await store.leases.acquire("x", "two", 30)
    assert await store.leases.acquire("x", "one", 30)  # the holder renews it
    await store.leases.release("x", "two")  # not the holder: no effect
    assert not await store.leases.acquire("x", "two", 30)
    await store.leases.release("x", "one")
    assert await store.leases.acquire("x", "two", 30)
    assert await store.leases.acquire("y", "one", -1)  # already expired
    assert await store.leases.acquire("y", "two", 30)


async def test_tenant_removal_takes_exactly_its_own_leases(store: Store) -> None:
    # "_" and "%" are wildcards of LIKE: a prefix match with it would take the others' too
    for tenant in ("a_b", "axb", "a%", "abc"):
        await store.tenants.create(tenant)
        assert await store.leases.acquire(f"{tenant}\x1fp\x1ftoken", "holder", 300)
    assert await store.leases.acquire("a_b-not-a-tenant-lease", "holder", 300)
    await store.tenants.remove("a_b")
    await store.tenants.remove("a%")
    for gone in ("a_b", "a%"):
        assert await store.leases.acquire(f"{gone}\x1fp\x1ftoken", "someone else", 300)
    for kept in ("axb", "abc"):
        assert not await store.leases.acquire(f"{kept}\x1fp\x1ftoken", "someone else", 300)
    assert not await store.leases.acquire("a_b-not-a-tenant-lease", "someone else", 300)
