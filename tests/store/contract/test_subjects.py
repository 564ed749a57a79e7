"""Data subjects: a person's events found, erased, restricted; counts for a breach report."""

from __future__ import annotations

from gateway.models import Connection
from gateway.store.common import now_ms
from gateway.store.protocols import Store

from .backends import LOCAL, OTHER, REMOTE, TENANT_USER, call_event, ingest


async def _user_key(store: Store) -> str:
    ((_cid, key, _user),) = await store.users.of_tenant("acme")
    return key


async def test_events_by_number_and_by_user(store: Store, acme: Connection) -> None:
    await store.users.put(acme, TENANT_USER)
    await ingest(store, acme, call_event("e1", remote=REMOTE), call_event("e2", remote=OTHER, local=REMOTE),
                 call_event("e3", remote=OTHER, user="u1"), call_event("e4", remote=OTHER))
    by_phone = await store.subjects.events("acme", REMOTE)
    assert [ev.event_id for _seq, _at, ev in by_phone if ev] == ["e1", "e2"]
    by_user = await store.subjects.events("acme", None, [await _user_key(store)])
    assert [ev.event_id for _seq, _at, ev in by_user if ev] == ["e3"]
    assert await store.subjects.events("acme", None) == []
    assert await store.subjects.events("acme", "anonymous") == []


async def test_erasing_a_persons_events_takes_their_deliveries(store: Store, acme: Connection) -> None:
    await ingest(store, acme, call_event("e1"), call_event("e2", remote=OTHER))
    gone, kept = await store.events.pending(per_group=10)
    assert await store.subjects.delete_events("acme", REMOTE) == {"events": 1, "deliveries": 1}
    assert not await store.events.is_pending(gone.id) and await store.events.is_pending(kept.id)
    assert await store.subjects.events("acme", REMOTE) == []
    assert await store.subjects.delete_events("acme", None) == {"events": 0, "deliveries": 0}


async def test_restriction_holds_new_events_and_withdraws_pending_ones(store: Store, acme: Connection) -> None:
    await ingest(store, acme, call_event("before"), call_event("else", remote=OTHER))
    held, other = await store.events.pending(per_group=10)
    subject = await store.subjects.subject_key("acme", "phone", REMOTE)
    assert subject == await store.subjects.subject_key("acme", "phone", REMOTE)
    assert await store.subjects.restriction("acme", subject) is None
    assert await store.subjects.restrict("acme", subject, [], "object") == 1
    assert await store.subjects.restriction("acme", subject) == "object"
    assert not await store.events.is_pending(held.id) and await store.events.is_pending(other.id)

    await ingest(store, acme, call_event("during"), call_event("local", remote=OTHER, local=REMOTE))
    assert await store.events.count("pending") == 1  # neither got a delivery
    found = await store.subjects.events("acme", REMOTE)
    assert [ev.event_id if ev else None for _seq, _at, ev in found] == ["before", None, None]
    await ingest(store, acme, call_event("during"))
    assert len(await store.subjects.events("acme", REMOTE)) == 3  # restricted events still deduplicate

    assert await store.subjects.unrestrict("acme", subject) == 1
    assert await store.subjects.restriction("acme", subject) is None
    assert await store.subjects.unrestrict("acme", subject) == 0
    await ingest(store, acme, call_event("after"))
    assert await store.events.count("pending") == 2


async def test_restricting_by_user_key(store: Store, acme: Connection) -> None:
    await store.users.put(acme, TENANT_USER)
    ukey = await _user_key(store)
    subject = await store.subjects.subject_key("acme", "email", TENANT_USER.email or "")
    await store.subjects.restrict("acme", subject, [ukey], "restrict")
    await ingest(store, acme, call_event("e1", remote=OTHER, user="u1"), call_event("e2", remote=OTHER))
    assert [d.tenant for d in await store.events.pending(per_group=10)] == ["acme"]
    ((_seq, _at, ev),) = await store.subjects.events("acme", None, [ukey])
    assert ev is None


async def test_held_counts(store: Store, acme: Connection) -> None:
    await store.tenants.create("empty")
    await store.users.put(acme, TENANT_USER)
    await store.records.put("acme", "p", "call", "c1", 1)
    await store.clicktocall.add("acme", "crm-1", sink="crm", connection_id=acme.id, user_id="u1", number=REMOTE)
    start = now_ms() - 1000
    await ingest(store, acme, call_event("e1"), call_event("e2"), call_event("e3", remote=LOCAL))
    await ingest(store, acme, call_event("old"), at=start - 10_000)
    subject = await store.subjects.subject_key("acme", "phone", OTHER)
    await store.subjects.restrict("acme", subject, ["user-key-1"], "object")
    acme_counts, empty = await store.subjects.held_counts(start, now_ms() + 1000)
    assert acme_counts == {"tenant": "acme", "events": 3, "callers": 2, "restricted_events": 0,
                           "telephony_users": 1, "users_with_contact_data": 1, "plugin_records": {"p": 1},
                           "connections": 1, "clicktocall": 1, "restricted_people": 1}
    assert empty["tenant"] == "empty" and empty["events"] == 0 and empty["plugin_records"] == {}
    assert empty["restricted_people"] == 0
