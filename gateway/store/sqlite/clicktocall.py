"""Calls started from a CRM and the provider calls that carry them out: sealed call records."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from ...errors import Conflict, NotFound
from ..common import now_ms, phone_key
from ..protocols import ClickToCallRow
from ..sealed import call_key as _call_key
from ..sealed import match_key as _match_key
from ..sealed import open_clicktocall as _row
from ..sealed import provider_key as _provider_key
from ..sealed import seal_call_row, seal_provider_call
from .database import SQLiteDatabase

_COLUMNS = "call_key, sink, data, provider_call, state, created_at, updated_at"


class SQLiteClickToCall:
    """Click-to-call correlation rows, found only through blind indexes."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def add(self, tenant: str, crm_call_id: str, *, sink: str, connection_id: str,
                  user_id: str, number: str, provider_call_id: str | None = None) -> None:
        keys = await self._db.keys(tenant)
        ckey, data, provider, pkey, mkey, phone = seal_call_row(keys, crm_call_id, connection_id, user_id,
                                                                number, provider_call_id)
        at = now_ms()

        def job(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "INSERT INTO clicktocall (tenant, call_key, sink, data, provider_call, provider_key, match_key, "
                "phone_key, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?) "
                "ON CONFLICT (tenant, call_key) DO NOTHING",
                (tenant, ckey, sink, data, provider, pkey, mkey, phone, at, at)).rowcount
        if not await self._db.w.submit(job):
            raise Conflict("this CRM call is there already")

    async def get(self, tenant: str, crm_call_id: str) -> ClickToCallRow | None:
        keys = await self._db.keys(tenant)
        row = self._db.lookup(f"SELECT {_COLUMNS} FROM clicktocall WHERE tenant=? AND call_key=?",
                              (tenant, _call_key(keys, crm_call_id)))
        return _row(keys, row) if row else None

    async def by_call(self, tenant: str, connection_id: str, call_id: str) -> ClickToCallRow | None:
        keys = await self._db.keys(tenant)
        row = self._db.lookup(f"SELECT {_COLUMNS} FROM clicktocall WHERE tenant=? AND provider_key=? LIMIT 1",
                              (tenant, _provider_key(keys, connection_id, call_id)))
        return _row(keys, row) if row else None

    async def candidates(self, tenant: str, *, connection_id: str, user_id: str, number: str,
                         since_ms: int) -> list[ClickToCallRow]:
        keys = await self._db.keys(tenant)
        rows = await self._db.all(
            f"SELECT {_COLUMNS} FROM clicktocall WHERE tenant=? AND match_key=? AND created_at >= ? "
            "AND state='open' AND provider_key IS NULL ORDER BY created_at, call_key",
            (tenant, _match_key(keys, connection_id, user_id, number), since_ms))
        return [_row(keys, r) for r in rows]

    async def adopt(self, tenant: str, crm_call_id: str, *, connection_id: str, call_id: str) -> None:
        keys = await self._db.keys(tenant)
        ckey = _call_key(keys, crm_call_id)
        pkey = _provider_key(keys, connection_id, call_id)
        sealed = seal_provider_call(keys, ckey, call_id)

        def job(conn: sqlite3.Connection) -> None:
            if conn.execute("UPDATE clicktocall SET provider_call=?, provider_key=?, state='adopted', updated_at=? "
                            "WHERE tenant=? AND call_key=? AND provider_key IS NULL",
                            (sealed, pkey, now_ms(), tenant, ckey)).rowcount:
                return
            row = conn.execute("SELECT provider_key FROM clicktocall WHERE tenant=? AND call_key=?",
                               (tenant, ckey)).fetchone()
            if row is None:
                raise NotFound("no such click-to-call")
            if row[0] != pkey:
                raise Conflict("another call has adopted this click-to-call")
        await self._db.w.submit(job)

    async def set_state(self, tenant: str, crm_call_id: str, state: str) -> None:
        keys = await self._db.keys(tenant)
        ckey = _call_key(keys, crm_call_id)

        def job(conn: sqlite3.Connection) -> int:
            return conn.execute("UPDATE clicktocall SET state=?, updated_at=? WHERE tenant=? AND call_key=?",
                                (state, now_ms(), tenant, ckey)).rowcount
        if not await self._db.w.submit(job):
            raise NotFound("no such click-to-call")

    async def older_than(self, cutoff_ms: int, states: Iterable[str]) -> list[tuple[str, ClickToCallRow]]:
        wanted = sorted(set(states))
        if not wanted:
            return []
        rows = await self._db.all(
            f"SELECT tenant, {_COLUMNS} FROM clicktocall WHERE state IN ({','.join('?' * len(wanted))}) "
            "AND updated_at < ? ORDER BY updated_at, tenant, call_key", (*wanted, cutoff_ms))
        return [(r[0], _row(await self._db.keys(r[0]), r[1:])) for r in rows]

    async def delete(self, tenant: str, crm_call_id: str) -> None:
        keys = await self._db.keys(tenant)
        ckey = _call_key(keys, crm_call_id)

        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM clicktocall WHERE tenant=? AND call_key=?", (tenant, ckey))
        await self._db.w.submit(job)

    async def by_phone(self, tenant: str, phone: str) -> list[ClickToCallRow]:
        keys = await self._db.keys(tenant)
        pkey = phone_key(keys, phone)
        if pkey is None:
            return []
        rows = await self._db.all(
            f"SELECT {_COLUMNS} FROM clicktocall WHERE tenant=? AND phone_key=? ORDER BY created_at, call_key",
            (tenant, pkey))
        return [_row(keys, r) for r in rows]

    async def delete_by_phone(self, tenant: str, phone: str) -> int:
        keys = await self._db.keys(tenant)
        pkey = phone_key(keys, phone)
        if pkey is None:
            return 0

        def job(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM clicktocall WHERE tenant=? AND phone_key=?", (tenant, pkey)).rowcount
        return await self._db.w.submit(job)

    @staticmethod
    def purge_batch(cutoff_ms: int, limit: int, conn: sqlite3.Connection) -> int:
        """In the writer thread: delete up to ``limit`` rows created before the cutoff."""
        return conn.execute("DELETE FROM clicktocall WHERE rowid IN (SELECT rowid FROM clicktocall "
                            "WHERE created_at < ? LIMIT ?)", (cutoff_ms, limit)).rowcount

    def delete_tenant_rows(self, conn: sqlite3.Connection, tenant: str) -> dict[str, int]:
        return {"clicktocall": conn.execute("DELETE FROM clicktocall WHERE tenant=?", (tenant,)).rowcount}

    def forget(self, tenant: str) -> None:
        """Nothing of a tenant is cached here."""
