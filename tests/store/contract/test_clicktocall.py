"""Click-to-call correlation: add, find by CRM or provider call, adopt, sweep, erase, purge."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import Conflict, NotFound
from gateway.models import Connection
from gateway.store.common import now_ms
from gateway.store.protocols import ClickToCallRow, Store

from .backends import OTHER, REMOTE


async def _add(store: Store, crm_call_id: str, connection: Connection, *, user: str = "u1",
               number: str = REMOTE, provider: str | None = None) -> None:
    await store.clicktocall.add(connection.tenant, crm_call_id, sink="crm", connection_id=connection.id,
                                user_id=user, number=number, provider_call_id=provider)


async def test_add_get_and_duplicates(store: Store, acme: Connection) -> None:
    before = now_ms()
    await _add(store, "crm-1", acme)
    row = await store.clicktocall.get("acme", "crm-1")
    assert row is not None
    assert {k: v for k, v in row.items() if k not in ("created_at", "updated_at")} == {
        "crm_call_id": "crm-1", "sink": "crm", "connection_id": acme.id, "user_id": "u1",
        "number": REMOTE, "provider_call_id": None, "state": "open"}
    assert before <= row["created_at"] == row["updated_at"] <= now_ms()
    assert await store.clicktocall.get("acme", "crm-2") is None
    with pytest.raises(Conflict):
        await _add(store, "crm-1", acme, number=OTHER)
    with pytest.raises(NotFound):
        await store.clicktocall.add("nobody", "crm-1", sink="crm", connection_id="c", user_id="u", number=REMOTE)


async def test_candidates_then_adoption(store: Store, acme: Connection) -> None:
    other = await store.connections.add(Connection(store.connections.new_id(), "acme", "phone", {}))
    await _add(store, "crm-1", acme)
    await asyncio.sleep(0.002)
    since = now_ms()
    await _add(store, "crm-2", acme)
    await asyncio.sleep(0.002)
    await _add(store, "crm-3", acme)
    await _add(store, "crm-4", acme, user="u2")
    await _add(store, "crm-5", acme, number=OTHER)
    await _add(store, "crm-6", other)
    await _add(store, "crm-7", acme, provider="call-7")  # named by the provider at once
    await _add(store, "crm-8", acme)
    await store.clicktocall.set_state("acme", "crm-8", "failed")

    def ids(rows: list[ClickToCallRow]) -> list[str]:
        return [r["crm_call_id"] for r in rows]

    found = await store.clicktocall.candidates("acme", connection_id=acme.id, user_id="u1", number=REMOTE,
                                               since_ms=since)
    assert ids(found) == ["crm-2", "crm-3"]  # open, unadopted, this user and number, oldest first
    seven = await store.clicktocall.by_call("acme", acme.id, "call-7")
    assert seven is not None and (seven["crm_call_id"], seven["provider_call_id"]) == ("crm-7", "call-7")
    assert await store.clicktocall.by_call("acme", other.id, "call-7") is None

    await store.clicktocall.adopt("acme", "crm-2", connection_id=acme.id, call_id="call-2")
    await store.clicktocall.adopt("acme", "crm-2", connection_id=acme.id, call_id="call-2")  # again: fine
    adopted = await store.clicktocall.by_call("acme", acme.id, "call-2")
    assert adopted is not None and (adopted["crm_call_id"], adopted["state"]) == ("crm-2", "adopted")
    assert adopted["provider_call_id"] == "call-2" and adopted["updated_at"] >= adopted["created_at"]
    assert ids(await store.clicktocall.candidates("acme", connection_id=acme.id, user_id="u1", number=REMOTE,
                                                  since_ms=since)) == ["crm-3"]
    with pytest.raises(Conflict):
        await store.clicktocall.adopt("acme", "crm-2", connection_id=acme.id, call_id="call-9")
    with pytest.raises(NotFound):
        await store.clicktocall.adopt("acme", "crm-0", connection_id=acme.id, call_id="call-0")
    with pytest.raises(NotFound):
        await store.clicktocall.set_state("acme", "crm-0", "closed")


async def test_sweep_finds_rows_left_in_a_state(store: Store, acme: Connection) -> None:
    beta = Connection(store.connections.new_id(), "beta", "phone", {})
    await store.tenants.create("beta")
    await store.connections.add(beta)
    await _add(store, "a-1", acme)
    await _add(store, "b-1", beta)
    await _add(store, "a-2", acme)
    await store.clicktocall.set_state("acme", "a-1", "failed")
    await store.clicktocall.set_state("beta", "b-1", "dialed")
    await asyncio.sleep(0.002)
    cutoff = now_ms()
    await _add(store, "a-3", acme)
    await store.clicktocall.set_state("acme", "a-3", "failed")  # too recent
    swept = await store.clicktocall.older_than(cutoff, ["failed", "dialed"])
    assert [(t, r["crm_call_id"], r["state"]) for t, r in swept] == [("acme", "a-1", "failed"),
                                                                      ("beta", "b-1", "dialed")]
    assert await store.clicktocall.older_than(cutoff, []) == []
    await store.clicktocall.delete("acme", "a-1")
    await store.clicktocall.delete("acme", "a-1")  # gone already: no error
    assert [r["crm_call_id"] for _t, r in await store.clicktocall.older_than(cutoff, ["failed"])] == []


async def test_found_and_erased_by_phone_number(store: Store, acme: Connection) -> None:
    await _add(store, "crm-1", acme)
    await _add(store, "crm-2", acme, number=OTHER)
    await _add(store, "crm-3", acme, provider="p-3")
    assert [r["crm_call_id"] for r in await store.clicktocall.by_phone("acme", REMOTE)] == ["crm-1", "crm-3"]
    assert await store.clicktocall.by_phone("acme", "anonymous") == []
    assert await store.clicktocall.delete_by_phone("acme", REMOTE) == 2
    assert await store.clicktocall.get("acme", "crm-1") is None
    assert await store.clicktocall.by_call("acme", acme.id, "p-3") is None
    assert await store.clicktocall.get("acme", "crm-2") is not None


async def test_purged_with_the_call_records(store: Store, acme: Connection) -> None:
    await _add(store, "crm-1", acme)
    assert (await store.events.purge_before(now_ms() - 60_000))["clicktocall"] == 0
    await asyncio.sleep(0.002)
    assert (await store.events.purge_before(now_ms() + 1))["clicktocall"] == 1
    assert await store.clicktocall.get("acme", "crm-1") is None
