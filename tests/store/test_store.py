"""The store through the gateway's public paths: no plaintext on disk, crypto-shredding.

What every backend must do is in ``contract/``; what only SQLite does is in ``test_sqlite.py``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest
from demo_secret import SECRET
from demo_source import sign

from gateway import TelephonyUser
from gateway.store import Store

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
    con = sqlite3.connect(demo.gw.store.path)
    (wrapped,) = con.execute("SELECT wrapped_key FROM tenants WHERE id='gone'").fetchone()
    con.close()
    resp = await demo.admin("DELETE", "/tenants/gone", expect=200)
    assert resp["deleted"]["events"] == 2
    data = raw_files(demo.gw.store)
    for needle in [*needles(SECRET + "gone", "gone"), wrapped]:  # the WAL too: checkpointed
        assert needle not in data
    con = sqlite3.connect(demo.gw.store.path)
    for table in ("tenants", "connections", "events", "deliveries", "telephony_users", "records", "sinks"):
        column = "id" if table == "tenants" else "tenant"
        assert con.execute(f"SELECT COUNT(*) FROM {table} WHERE {column}='gone'").fetchone()[0] == 0
        assert con.execute(f"SELECT COUNT(*) FROM {table} WHERE {column}='stays'").fetchone()[0] >= 0
    await demo.admin("GET", "/tenants/gone", expect=404)
    await demo.admin("GET", "/tenants/stays", expect=200)


async def test_duplicate_event_ids_are_per_connection(demo):
    second = await demo.connect("acme", "demo", {"secret": SECRET})
    body = orjson.dumps({"id": "same", "call": "c", "state": "ringing"})
    headers = {"Content-Type": "application/json", "X-Demo-Signature": sign(SECRET, body)}
    for cid in (demo.connection_id, second["id"], demo.connection_id):
        assert (await demo.post_hook("demo", cid, body, headers)).status == 200
    assert len(await demo.recorder.wait_for(2)) == 2


async def test_plugin_records_name_the_people_they_are_about(demo):
    storage = demo.gw.contexts["demo"].storage("acme")
    await storage.put("call", "c1", {"state": "ringing"}, call_record=True, phones=(NUMBERS[0],))
    assert await demo.gw.store.records.by_phone("acme", NUMBERS[0]) == [("demo", "call", "c1", {"state": "ringing"})]
    with pytest.raises(TypeError):
        await storage.put("call", "c2", {}, phones=NUMBERS[1])  # one number, not a sequence of them
    assert await storage.get("call", "c2") is None
