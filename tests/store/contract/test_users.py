"""The telephony user directory: per connection, found by e-mail or extension across a tenant."""

from __future__ import annotations

from gateway.models import Connection, TelephonyUser
from gateway.store.protocols import Store

from .backends import EMAIL, TENANT_USER, tenant_with_connection


async def test_put_get_list_and_replace(store: Store, acme: Connection) -> None:
    await store.users.put(acme, TENANT_USER)
    await store.users.put(acme, TelephonyUser("u2", extension="24"))
    assert await store.users.get(acme, "u1") == TENANT_USER
    assert await store.users.get(acme, "nobody") is None
    assert sorted(u.user_id for u in await store.users.list(acme)) == ["u1", "u2"]
    await store.users.put(acme, TelephonyUser("u1", status="logged_out"))  # name and e-mail go
    assert await store.users.get(acme, "u1") == TelephonyUser("u1", status="logged_out")
    assert await store.users.find("acme", email=EMAIL) == []


async def test_find_across_the_tenants_connections(store: Store, acme: Connection) -> None:
    second = await store.connections.add(Connection(store.connections.new_id(), "acme", "webex", {}))
    beta = await tenant_with_connection(store, "beta")
    await store.users.put(acme, TENANT_USER)
    await store.users.put(second, TelephonyUser("w1", "Anna", EMAIL.upper(), "99"))
    await store.users.put(beta, TENANT_USER)
    found = await store.users.find("acme", email=f"  {EMAIL.title()} ")
    assert sorted((cid, u.user_id) for cid, u in found) == sorted([(acme.id, "u1"), (second.id, "w1")])
    assert [(cid, u.user_id) for cid, u in await store.users.find("acme", extension="23")] == [(acme.id, "u1")]
    assert await store.users.find("acme") == []
    assert await store.users.find("acme", extension="77") == []


async def test_delete_one_all_and_by_key(store: Store, acme: Connection) -> None:
    beta = await tenant_with_connection(store, "beta")
    for user_id in ("u1", "u2", "u3"):
        await store.users.put(acme, TelephonyUser(user_id))
    await store.users.put(beta, TelephonyUser("u1"))
    assert await store.users.delete(acme, "u1") == 1
    assert await store.users.delete(acme, "u1") == 0
    rows = await store.users.of_tenant("acme")
    assert sorted((cid, u.user_id) for cid, _key, u in rows) == [(acme.id, "u2"), (acme.id, "u3")]
    u2 = next((cid, key) for cid, key, u in rows if u.user_id == "u2")
    assert await store.users.delete_keys("beta", [u2]) == 0  # another tenant's key
    assert await store.users.delete_keys("acme", [u2]) == 1
    assert await store.users.delete_keys("acme", []) == 0
    assert await store.users.delete(acme) == 1
    assert await store.users.list(acme) == []
    assert [u.user_id for u in await store.users.list(beta)] == ["u1"]
