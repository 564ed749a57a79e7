"""What only the SQLite backend does: its files, pragmas and migrations."""

from __future__ import annotations

import sqlite3

import pytest

from gateway.errors import StoreError
from gateway.store import MasterKeyring, generate_master_key
from gateway.store.sqlite import SQLiteStore as Store
from gateway.store.schema import SCHEMA_VERSION


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
        if await store.tenants.get("acme") is None:
            await store.tenants.create("acme")
        await store.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


async def test_record_phones_and_clicktocall_migrate_onto_a_store_with_data(tmp_path):
    path = str(tmp_path / "db.sqlite")
    key = MasterKeyring.from_text(generate_master_key())
    store = Store(path, key)
    await store.open()
    await store.tenants.create("acme")
    await store.records.put("acme", "p", "call", "c1", {"v": 1})
    await store.close()
    con = sqlite3.connect(path)  # back to the schema before migration 4
    con.executescript("DROP TABLE record_phones; DROP TABLE clicktocall; DROP TABLE journal; DROP TABLE audit_anchor; "
                      "ALTER TABLE connections DROP COLUMN last_webhook_at; "  # migration 5
                      "UPDATE meta SET value='3' WHERE key='schema_version';")
    con.close()
    store = Store(path, key)
    await store.open()
    try:
        assert await store.records.get("acme", "p", "call", "c1") == {"v": 1}
        await store.records.put("acme", "p", "call", "c1", {"v": 2}, phones=("+4922112345678",))
        assert await store.records.by_phone("acme", "+4922112345678") == [("p", "call", "c1", {"v": 2})]
    finally:
        await store.close()


async def test_the_audit_anchor_starts_at_the_head_of_an_existing_log(tmp_path):
    path = str(tmp_path / "db.sqlite")
    key = MasterKeyring.from_text(generate_master_key())
    store = Store(path, key)
    await store.open()
    for action in ("tenant.created", "user.login"):
        await store.audit.append(action, None, {})
    head = (await store.audit.entries())[-1]
    await store.close()
    con = sqlite3.connect(path)  # back to the schema before migration 7
    con.executescript("DROP TABLE audit_anchor; UPDATE meta SET value='6' WHERE key='schema_version';")
    con.close()
    store = Store(path, key)
    await store.open()
    try:
        assert await store.audit.anchor() == (head.seq, head.hash)
    finally:
        await store.close()


@pytest.fixture
async def store(tmp_path):
    opened = Store(str(tmp_path / "db.sqlite"), MasterKeyring.from_text(generate_master_key()))
    await opened.open()
    yield opened
    await opened.close()


async def test_every_commit_is_durable_and_deleted_pages_are_zeroed(store):
    pragmas = await store.db.w.submit(lambda conn: [conn.execute(f"PRAGMA {p}").fetchone()[0]
                                                 for p in ("journal_mode", "synchronous", "secure_delete")])
    assert pragmas == ["wal", 2, 1]  # 2: FULL, an fsync per commit


async def test_a_burst_of_queued_records_with_phones_is_written_in_few_statements(store):
    """Per-call state is on the ingest path: rows queued together go in multi-row statements."""
    await store.tenants.create("acme")
    statements: list[str] = []
    await store.db.w.submit(lambda conn: conn.set_trace_callback(statements.append))
    for i in range(50):
        await store.records.put("acme", "p", "call", f"c{i}", i, phones=(f"+49221{i:07d}",), wait=False)
    await store.records.put("acme", "p", "call", "last", 50)
    await store.db.w.submit(lambda conn: conn.set_trace_callback(None))
    writes = [s for s in statements if s.startswith(("INSERT", "DELETE"))]
    assert len(writes) <= 6, writes  # records, their old phones, their new phones: per 60 rows
    assert await store.records.by_phone("acme", "+492210000049") == [("p", "call", "c49", 49)]
