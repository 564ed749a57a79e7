"""The store through its public paths: no plaintext on disk, crypto-shredding, migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest
from conftest import SECRET
from demo_source import sign

from gateway import TelephonyUser
from gateway.errors import StoreError
from gateway.store import MasterKeyring, Store, generate_master_key
from gateway.store.schema import SCHEMA_VERSION

NUMBERS = ["+4922112345678", "+4930987654321"]
NAME, EMAIL, TOKEN = "Anna Agentin", "anna.agentin@example.com", "tok-7f3a9c1e5b2d4f6a8c0e"


def raw_files(store: Store) -> bytes:
    return b"".join(Path(p).read_bytes() for p in store.file_paths())


def needles(*values: str) -> list[bytes]:
    out = []
    for v in values:
        out += [v.encode(), v.encode("utf-16-le"), v.lstrip("+").encode()]
    return out


async def fill(h, tenant: str) -> str:
    await h.create_tenant(tenant)
    conn = await h.connect(tenant, "demo", {"secret": SECRET + tenant})
    connection = await h.gw.tenancy.connection(conn["id"])
    await h.gw.directory.put(connection, TelephonyUser("u1", NAME, EMAIL, "23", (NUMBERS[1],)))
    await h.gw.contexts["demo"].storage(tenant).put("oauth", "tokens", {"access_token": TOKEN}, index=EMAIL)
    for i, number in enumerate(NUMBERS):
        body = orjson.dumps({"id": f"e{i}", "call": f"c{i}", "state": "ringing", "from": number})
        resp = await h.post_hook("demo", conn["id"], body, {
            "Content-Type": "application/json", "X-Demo-Signature": sign(SECRET + tenant, body)})
        assert resp.status == 200
    return conn["id"]


async def test_no_plaintext_in_any_database_file(demo):
    await fill(demo, "t1")
    await demo.recorder.wait_for(2)
    data = raw_files(demo.gw.store)
    assert data, "the scan must read something"
    for needle in needles(*NUMBERS, NAME, EMAIL, TOKEN, SECRET + "t1"):
        assert needle not in data, needle
    # and the values are really there, readable through the API
    conn = (await demo.gw.tenancy.connections("t1"))[0]
    assert (await demo.gw.directory.get(conn, "u1")).email == EMAIL
    assert (await demo.gw.contexts["demo"].storage("t1").find("oauth", EMAIL))[0][1]["access_token"] == TOKEN


async def test_removed_tenant_leaves_nothing_decryptable_or_readable(demo):
    await fill(demo, "gone")
    await fill(demo, "stays")
    await demo.recorder.wait_for(4)
    resp = await demo.admin("DELETE", "/tenants/gone", expect=200)
    assert resp["deleted"]["events"] == 2
    data = raw_files(demo.gw.store)
    for needle in needles(SECRET + "gone", "gone"):
        assert needle not in data
    con = sqlite3.connect(demo.gw.store.path)
    for table in ("tenants", "connections", "events", "deliveries", "telephony_users", "records", "sinks"):
        column = "id" if table == "tenants" else "tenant"
        assert con.execute(f"SELECT COUNT(*) FROM {table} WHERE {column}='gone'").fetchone()[0] == 0
        assert con.execute(f"SELECT COUNT(*) FROM {table} WHERE {column}='stays'").fetchone()[0] >= 0
    assert Path(demo.gw.store.path + "-wal").stat().st_size == 0  # checkpointed and truncated
    await demo.admin("GET", "/tenants/gone", expect=404)
    await demo.admin("GET", "/tenants/stays", expect=200)


async def test_duplicate_event_ids_are_per_connection(demo):
    second = await demo.connect("acme", "demo", {"secret": SECRET})
    body = orjson.dumps({"id": "same", "call": "c", "state": "ringing"})
    headers = {"Content-Type": "application/json", "X-Demo-Signature": sign(SECRET, body)}
    for cid in (demo.connection_id, second["id"], demo.connection_id):
        assert (await demo.post_hook("demo", cid, body, headers)).status == 200
    assert len(await demo.recorder.wait_for(2)) == 2


async def test_newer_schema_is_refused_with_a_clear_error(tmp_path):
    path = str(tmp_path / "db.sqlite")
    store = Store(path, MasterKeyring.from_text(generate_master_key()))
    await store.open()
    await store.close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    again = Store(path, MasterKeyring.from_text(generate_master_key()))
    with pytest.raises(StoreError, match="newer than this gateway"):
        await again.open()


async def test_migrations_apply_once(tmp_path):
    path = str(tmp_path / "db.sqlite")
    key = MasterKeyring.from_text(generate_master_key())
    for _ in range(2):
        store = Store(path, key)
        await store.open()
        await store.ensure_tenant("acme")
        await store.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


async def test_key_rotation_rewraps_and_keeps_data_readable(tmp_path):
    path = str(tmp_path / "db.sqlite")
    old, new = generate_master_key(), generate_master_key()
    store = Store(path, MasterKeyring.from_text(old))
    await store.open()
    for t in ("a", "b", "c"):
        await store.ensure_tenant(t)
        await store.put_record(t, "p", "k", "key", {"v": t})
    await store.close()

    rotating = Store(path, MasterKeyring.from_text(new, old))
    await rotating.open()
    seen: list[tuple[int, int]] = []
    assert await rotating.rotate_keys(lambda done, total: seen.append((done, total))) == 3
    assert seen[-1] == (3, 3)
    await rotating.close()

    only_new = Store(path, MasterKeyring.from_text(new))
    await only_new.open()
    assert await only_new.get_record("b", "p", "k", "key") == {"v": "b"}
    await only_new.close()


async def test_lease_is_single_flight(tmp_path):
    store = Store(str(tmp_path / "db.sqlite"), MasterKeyring.from_text(generate_master_key()))
    await store.open()
    try:
        assert await store.try_lease("x", "one", 30)
        assert not await store.try_lease("x", "two", 30)
        await store.release_lease("x", "one")
        assert await store.try_lease("x", "two", 30)
        assert await store.try_lease("y", "one", -1)  # already expired
        assert await store.try_lease("y", "two", 30)
    finally:
        await store.close()


async def test_queued_plugin_record_is_readable_at_once_and_commits_with_the_next_events(demo):
    storage = demo.gw.contexts["demo"].storage("acme")
    await storage.put("call", "c9", {"direction": "in"}, call_record=True, wait=False)
    assert await storage.get("call", "c9") == {"direction": "in"}  # before its commit
    body = orjson.dumps({"id": "q1", "call": "c9", "state": "ringing"})
    resp = await demo.post_hook("demo", demo.connection_id, body, {
        "Content-Type": "application/json", "X-Demo-Signature": sign(SECRET, body)})
    assert resp.status == 200
    # the events are durable, so the record queued before them is too
    rows = await demo.gw.store._all("SELECT COUNT(*) FROM records WHERE plugin='demo' AND kind='call'")
    assert rows[0][0] == 1
    await storage.put("call", "c9", {"direction": "out"}, wait=False)
    await storage.delete("call", "c9")
    assert await storage.get("call", "c9") is None


async def test_reads_see_commits_while_other_reads_are_in_flight(demo):
    import asyncio

    async def busy_reader() -> None:
        for _ in range(50):
            await demo.gw.store.list_tenants()

    readers = [asyncio.create_task(busy_reader()) for _ in range(8)]
    for n in range(60):
        await demo.gw.store.create_tenant(f"t{n}")
        assert await demo.gw.store.get_tenant(f"t{n}") is not None
    await asyncio.gather(*readers)
