"""Connections to telephone systems and sink bindings, settings sealed per tenant."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Mapping
from typing import Any

from ...errors import NotFound
from ...models import Connection, SinkBinding
from ..common import ms_to_dt, now_ms, updated_connection
from ..sealed import open_settings, seal_settings
from .database import SQLiteDatabase

_COLUMNS = "id, tenant, plugin, settings, status, status_reason, created_at"


class SQLiteConnections:
    """Tenants' accounts at telephone systems, cached by id once read."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db
        self._cache: dict[str, Connection] = {}

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(18)

    async def add(self, connection: Connection) -> Connection:
        keys = await self._db.keys(connection.tenant)
        sealed = seal_settings(keys, "connections", connection.id, connection.settings)
        created = now_ms()

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO connections (id, tenant, plugin, settings, status, created_at) "
                "VALUES (?, ?, ?, ?, 'active', ?)",
                (connection.id, connection.tenant, connection.plugin, sealed, created))
        await self._db.w.submit(job)
        saved = Connection(connection.id, connection.tenant, connection.plugin,
                           dict(connection.settings), "active", None, ms_to_dt(created))
        self._cache[saved.id] = saved
        return saved

    async def get(self, connection_id: str) -> Connection | None:
        cached = self._cache.get(connection_id)
        if cached is not None:
            return cached
        row = self._db.lookup(f"SELECT {_COLUMNS} FROM connections WHERE id=?", (connection_id,))
        if row is None:
            return None
        connection = await self._from_row(row)
        self._cache[connection_id] = connection
        return connection

    async def _from_row(self, row: Any) -> Connection:
        keys = await self._db.keys(row[1])
        settings = open_settings(keys, "connections", row[0], row[3])
        return Connection(row[0], row[1], row[2], settings, row[4], row[5], ms_to_dt(row[6]))

    async def list(self, tenant: str | None = None, plugin: str | None = None) -> list[Connection]:
        """Connections of one tenant, one plugin, both, or all."""
        sql = f"SELECT {_COLUMNS} FROM connections WHERE 1=1"
        args: list[Any] = []
        if tenant is not None:
            sql += " AND tenant=?"
            args.append(tenant)
        if plugin is not None:
            sql += " AND plugin=?"
            args.append(plugin)
        rows = await self._db.all(sql + " ORDER BY created_at, id", args)
        return [await self._from_row(r) for r in rows]

    async def update(self, connection_id: str, *, settings: dict[str, Any] | None = None,
                     status: str | None = None, reason: str | None = None) -> Connection:
        current = await self.get(connection_id)
        if current is None:
            raise NotFound("unknown connection")
        keys = await self._db.keys(current.tenant)
        updated = updated_connection(current, settings, status, reason)
        sealed = seal_settings(keys, "connections", connection_id, updated.settings)

        def job(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE connections SET settings=?, status=?, status_reason=? WHERE id=?",
                         (sealed, updated.status, updated.status_reason, connection_id))
        await self._db.w.submit(job)
        self._cache[connection_id] = updated
        return updated

    async def delete(self, connection_id: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM telephony_users WHERE connection=?", (connection_id,))
            conn.execute("DELETE FROM connections WHERE id=?", (connection_id,))
        await self._db.w.submit(job)
        self._cache.pop(connection_id, None)

    async def mark_seen(self, seen: Mapping[str, int]) -> None:
        if not seen:
            return
        rows = [(at, cid, at) for cid, at in seen.items()]

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany("UPDATE connections SET last_webhook_at=? WHERE id=? "
                             "AND (last_webhook_at IS NULL OR last_webhook_at < ?)", rows)
        await self._db.w.submit(job, background=True)

    async def last_seen(self, tenant: str) -> dict[str, int]:
        rows = await self._db.all("SELECT id, last_webhook_at FROM connections WHERE tenant=? "
                                  "AND last_webhook_at IS NOT NULL", (tenant,))
        return {r[0]: int(r[1]) for r in rows}

    def delete_tenant_rows(self, conn: sqlite3.Connection, tenant: str) -> dict[str, int]:
        return {"connections": conn.execute("DELETE FROM connections WHERE tenant=?", (tenant,)).rowcount}

    def forget(self, tenant: str) -> None:
        for cid in [c for c, connection in self._cache.items() if connection.tenant == tenant]:
            del self._cache[cid]


class SQLiteSinks:
    """Which sinks each tenant is bound to, cached per tenant once read."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db
        self._cache: dict[str, list[SinkBinding]] = {}

    async def bind(self, tenant: str, plugin: str, settings: dict[str, Any]) -> SinkBinding:
        keys = await self._db.keys(tenant)
        sealed = seal_settings(keys, "sinks", plugin, settings)
        created = now_ms()

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO sinks (tenant, plugin, settings, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (tenant, plugin) DO UPDATE SET settings = excluded.settings",
                (tenant, plugin, sealed, created))
        await self._db.w.submit(job)
        self._cache.pop(tenant, None)
        return SinkBinding(tenant, plugin, dict(settings))

    async def unbind(self, tenant: str, plugin: str) -> None:
        def job(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM deliveries WHERE tenant=? AND sink=? AND state='pending'", (tenant, plugin))
            return conn.execute("DELETE FROM sinks WHERE tenant=? AND plugin=?", (tenant, plugin)).rowcount
        removed = await self._db.w.submit(job)
        self._cache.pop(tenant, None)
        if not removed:
            raise NotFound("no such sink for this tenant")

    async def bindings(self, tenant: str) -> list[SinkBinding]:
        cached = self._cache.get(tenant)
        if cached is not None:
            return cached
        keys = await self._db.keys(tenant)
        rows = await self._db.all("SELECT plugin, settings FROM sinks WHERE tenant=? ORDER BY plugin", (tenant,))
        bindings = [SinkBinding(tenant, p, open_settings(keys, "sinks", p, s))
                    for p, s in rows]
        self._cache[tenant] = bindings
        return bindings

    async def binding(self, tenant: str, plugin: str) -> SinkBinding | None:
        for binding in await self.bindings(tenant):
            if binding.plugin == plugin:
                return binding
        return None

    def delete_tenant_rows(self, conn: sqlite3.Connection, tenant: str) -> dict[str, int]:
        return {"sinks": conn.execute("DELETE FROM sinks WHERE tenant=?", (tenant,)).rowcount}

    def forget(self, tenant: str) -> None:
        self._cache.pop(tenant, None)
