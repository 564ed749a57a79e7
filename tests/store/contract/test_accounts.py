"""Connections and sink bindings: settings sealed, read back whole, updated, removed."""

from __future__ import annotations

import pytest

from gateway.errors import NotFound
from gateway.models import Connection
from gateway.store.protocols import Store

from .backends import TENANT_USER, call_event, ingest, tenant_with_connection


async def test_connections_round_trip_with_their_settings(store: Store) -> None:
    await store.tenants.create("a")
    await store.tenants.create("b")
    ids = [store.connections.new_id() for _ in range(3)]
    assert len(set(ids)) == 3 and all(len(i) >= 20 for i in ids)
    one = await store.connections.add(Connection(ids[0], "a", "placetel", {"token": "t1"}))
    await store.connections.add(Connection(ids[1], "a", "webex", {"token": "t2"}))
    await store.connections.add(Connection(ids[2], "b", "placetel", {"token": "t3"}))
    assert one.status == "active" and one.created_at is not None
    assert (await store.connections.get(ids[0])) == one
    assert await store.connections.get("nope") is None
    # oldest first; the order within one millisecond is not promised
    assert sorted(c.id for c in await store.connections.list("a")) == sorted(ids[:2])
    assert sorted(c.id for c in await store.connections.list(plugin="placetel")) == sorted([ids[0], ids[2]])
    assert [c.id for c in await store.connections.list("a", "webex")] == [ids[1]]
    assert len(await store.connections.list()) == 3
    assert (await store.connections.list("b"))[0].settings == {"token": "t3"}


async def test_update_settings_and_status(store: Store, acme: Connection) -> None:
    broken = await store.connections.update(acme.id, status="broken", reason="credentials refused")
    assert (broken.status, broken.status_reason, broken.settings) == ("broken", "credentials refused", acme.settings)
    fixed = await store.connections.update(acme.id, settings={"token": "new"}, status="active")
    assert (fixed.status, fixed.status_reason, fixed.settings) == ("active", None, {"token": "new"})
    kept = await store.connections.update(acme.id, settings={"token": "newer"})
    assert kept.status == "active"
    assert (await store.connections.get(acme.id)) == kept
    assert [c.settings for c in await store.connections.list("acme")] == [{"token": "newer"}]
    with pytest.raises(NotFound):
        await store.connections.update("nope", status="broken")


async def test_delete_connection_takes_its_users(store: Store, acme: Connection) -> None:
    await store.users.put(acme, TENANT_USER)
    await store.connections.delete(acme.id)
    assert await store.connections.get(acme.id) is None
    assert await store.connections.list("acme") == []
    assert await store.users.of_tenant("acme") == []
    await store.connections.delete(acme.id)  # gone already: no error


async def test_last_webhook_times_keep_the_latest(store: Store, acme: Connection) -> None:
    second = await store.connections.add(Connection(store.connections.new_id(), "acme", "phone", {}))
    beta = await tenant_with_connection(store, "beta")
    assert await store.connections.last_seen("acme") == {}
    await store.connections.mark_seen({acme.id: 2_000, beta.id: 7_000, "gone": 9_000})
    await store.connections.mark_seen({acme.id: 1_000})  # an older flush of another process
    await store.connections.mark_seen({})
    assert await store.connections.last_seen("acme") == {acme.id: 2_000}
    await store.connections.mark_seen({acme.id: 3_000, second.id: 500})
    assert await store.connections.last_seen("acme") == {acme.id: 3_000, second.id: 500}
    assert await store.connections.last_seen("beta") == {beta.id: 7_000}
    await store.connections.delete(second.id)
    assert await store.connections.last_seen("acme") == {acme.id: 3_000}


async def test_sink_bindings(store: Store) -> None:
    await store.tenants.create("acme")
    assert await store.sinks.bindings("acme") == []
    await store.sinks.bind("acme", "zcrm", {"url": "z"})
    first = await store.sinks.bind("acme", "bitrix24", {"url": "old"})
    assert (first.tenant, first.plugin, first.settings) == ("acme", "bitrix24", {"url": "old"})
    await store.sinks.bind("acme", "bitrix24", {"url": "new"})  # re-bind: new settings
    assert [(b.plugin, b.settings) for b in await store.sinks.bindings("acme")] == [
        ("bitrix24", {"url": "new"}), ("zcrm", {"url": "z"})]
    binding = await store.sinks.binding("acme", "zcrm")
    assert binding is not None and binding.settings == {"url": "z"}
    assert await store.sinks.binding("acme", "other") is None
    await store.sinks.unbind("acme", "zcrm")
    assert await store.sinks.binding("acme", "zcrm") is None
    with pytest.raises(NotFound):
        await store.sinks.unbind("acme", "zcrm")
    with pytest.raises(NotFound):
        await store.sinks.bind("nobody", "crm", {})


async def test_unbinding_a_sink_drops_its_pending_deliveries(store: Store, acme: Connection) -> None:
    await store.sinks.bind("acme", "other", {})
    await ingest(store, acme, call_event("e1"))
    pending = await store.events.pending(per_group=10)
    assert sorted(d.sink for d in pending) == ["crm", "other"]
    await store.sinks.unbind("acme", "other")
    dropped = next(d for d in pending if d.sink == "other")
    assert not await store.events.is_pending(dropped.id)
    assert [d.sink for d in await store.events.pending(per_group=10)] == ["crm"]
