"""Plugins' own encrypted records, with the blind-indexed phone numbers they are about."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from ..common import phone_key
from ..queued import QueuedRecords
from ..sealed import index_key
from ..sealed import open_record as _open
from ..sealed import open_records
from ..sealed import record_key as _record_key
from .database import SQLiteDatabase

_PUT = ("INSERT INTO records (tenant, plugin, kind, record_key, data, index_key, call_record, created_at) "
        "VALUES {rows} ON CONFLICT (tenant, plugin, kind, record_key) DO UPDATE SET "
        "data=excluded.data, index_key=excluded.index_key, call_record=excluded.call_record")
_PHONE_ROWS = 150  # 5 columns each: under SQLite's 999 bound parameters
_PARAMETERS = 800  # bound parameters of one statement, with room for one more record

#: (tenant, plugin, kind, record key): a record's identity in SQL
RecordId = tuple[str, str, str, str]


def _replace_phones(conn: sqlite3.Connection, latest: dict[RecordId, frozenset[str]]) -> None:
    """In the writer thread: make these records' phones the given ones (none: forget them).

    Only what changed is written: per-call state is put again and again about the same
    numbers, and rewriting unchanged rows would cost page writes on the ingest path.
    """
    terms: list[str] = []
    args: list[str] = []
    for record, pkeys in latest.items():
        stale = " AND phone_key NOT IN (" + ",".join("?" * len(pkeys)) + ")" if pkeys else ""
        terms.append(f"(tenant=? AND plugin=? AND kind=? AND record_key=?{stale})")
        args += [*record, *sorted(pkeys)]
        if len(args) > _PARAMETERS:
            conn.execute("DELETE FROM record_phones WHERE " + " OR ".join(terms), args)
            terms, args = [], []
    if terms:
        conn.execute("DELETE FROM record_phones WHERE " + " OR ".join(terms), args)
    phones = [(*record, p) for record, pkeys in latest.items() for p in sorted(pkeys)]
    for i in range(0, len(phones), _PHONE_ROWS):
        chunk = phones[i:i + _PHONE_ROWS]
        conn.execute("INSERT INTO record_phones (tenant, plugin, kind, record_key, phone_key) VALUES "
                     + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk)) + " ON CONFLICT DO NOTHING",
                     [v for row in chunk for v in row])


class SQLiteRecords:
    """Plugins' own records. Writes queued with ``wait=False`` are readable before they commit."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db
        self._queued = QueuedRecords()

    async def put(self, tenant: str, plugin: str, kind: str, key: str, value: Any, *,
                  index: str | None = None, call_record: bool = False,
                  phones: Iterable[str] = (), wait: bool = True) -> None:
        await self._queued.put(self._db.w, self._write, await self._db.keys(tenant), (tenant, plugin, kind, key),
                               value, index=index, call_record=call_record, phones=phones, wait=wait)

    @staticmethod
    def _write(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        """In the writer thread: upsert queued records in one statement, replace their phones."""
        marks = "(" + ", ".join("?" * 8) + ")"
        conn.execute(_PUT.replace("{rows}", ", ".join([marks] * len(rows))), [v for row in rows for v in row[:8]])
        _replace_phones(conn, {row[:4]: row[8] for row in rows})  # the last put of a record wins

    async def get(self, tenant: str, plugin: str, kind: str, key: str) -> Any:
        queued, value = self._queued.get((tenant, plugin, kind, key))
        if queued:
            return value
        keys = await self._db.keys(tenant)
        rkey = _record_key(keys, plugin, kind, key)
        row = self._db.lookup("SELECT data FROM records WHERE tenant=? AND plugin=? AND kind=? AND record_key=?",
                              (tenant, plugin, kind, rkey))
        return _open(keys, plugin, kind, rkey, row[0])[1] if row else None

    async def find(self, tenant: str, plugin: str, kind: str, index: str | None = None) -> list[tuple[str, Any]]:
        keys = await self._db.keys(tenant)
        sql = "SELECT record_key, data FROM records WHERE tenant=? AND plugin=? AND kind=?"
        args: list[Any] = [tenant, plugin, kind]
        if index is not None:  # one entry of records_index: inline, it is on the webhook path
            args.append(index_key(keys, plugin, kind, index))
            rows = self._db.lookup_all(sql + " AND index_key=? ORDER BY created_at", args)
        else:
            rows = await self._db.all(sql + " ORDER BY created_at", args)
        return await open_records(keys, plugin, kind, rows)

    async def delete(self, tenant: str, plugin: str, kind: str, key: str | None = None) -> int:
        keys = await self._db.keys(tenant)
        self._queued.drop(tenant, plugin, kind, key)
        where, args = "tenant=? AND plugin=? AND kind=?", [tenant, plugin, kind]
        if key is not None:
            where += " AND record_key=?"
            args.append(_record_key(keys, plugin, kind, key))

        def job(conn: sqlite3.Connection) -> int:
            conn.execute(f"DELETE FROM record_phones WHERE {where}", args)
            return conn.execute(f"DELETE FROM records WHERE {where}", args).rowcount
        return await self._db.w.submit(job)

    async def by_phone(self, tenant: str, phone: str) -> list[tuple[str, str, str, Any]]:
        keys = await self._db.keys(tenant)
        pkey = phone_key(keys, phone)
        if pkey is None:
            return []
        await self._db.w.submit(lambda conn: None)  # records queued before this call land first
        rows = await self._db.all(
            "SELECT r.plugin, r.kind, r.record_key, r.data FROM record_phones p JOIN records r ON "
            "r.tenant = p.tenant AND r.plugin = p.plugin AND r.kind = p.kind AND r.record_key = p.record_key "
            "WHERE p.tenant=? AND p.phone_key=? ORDER BY r.plugin, r.kind, r.created_at", (tenant, pkey))
        return [(r[0], r[1], *_open(keys, r[0], r[1], r[2], r[3])) for r in rows]

    async def delete_by_phone(self, tenant: str, phone: str) -> dict[str, int]:
        keys = await self._db.keys(tenant)
        pkey = phone_key(keys, phone)
        if pkey is None:
            return {}
        self._queued.drop(tenant, phone_key=pkey)  # it commits before the job below, which deletes it

        def job(conn: sqlite3.Connection) -> dict[str, int]:
            found: list[RecordId] = [(t, p, k, r) for t, p, k, r in conn.execute(
                "SELECT tenant, plugin, kind, record_key FROM record_phones WHERE tenant=? AND phone_key=?",
                (tenant, pkey)).fetchall()]
            counts: dict[str, int] = {}
            for record in found:
                n = conn.execute("DELETE FROM records WHERE tenant=? AND plugin=? AND kind=? AND record_key=?",
                                 record).rowcount
                counts[record[1]] = counts.get(record[1], 0) + n
            _replace_phones(conn, dict.fromkeys(found, frozenset()))
            return counts
        return await self._db.w.submit(job)

    @staticmethod
    def purge_batch(cutoff_ms: int, limit: int, conn: sqlite3.Connection) -> int:
        """In the writer thread: delete up to ``limit`` call records created before the cutoff."""
        rows = conn.execute("SELECT rowid, tenant, plugin, kind, record_key FROM records "
                            "WHERE call_record=1 AND created_at < ? LIMIT ?", (cutoff_ms, limit)).fetchall()
        if not rows:
            return 0
        _replace_phones(conn, {(t, p, k, r): frozenset() for _rowid, t, p, k, r in rows})
        conn.execute(f"DELETE FROM records WHERE rowid IN ({','.join('?' * len(rows))})", [r[0] for r in rows])
        return len(rows)

    def delete_tenant_rows(self, conn: sqlite3.Connection, tenant: str) -> dict[str, int]:
        conn.execute("DELETE FROM record_phones WHERE tenant=?", (tenant,))
        return {"records": conn.execute("DELETE FROM records WHERE tenant=?", (tenant,)).rowcount}

    def forget(self, tenant: str) -> None:
        self._queued.drop(tenant)
