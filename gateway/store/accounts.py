"""Connections to telephone systems and sink bindings, settings sealed per tenant."""

from __future__ import annotations

import secrets
import sqlite3
from typing import Any

import orjson

from ..errors import NotFound
from ..models import Connection, SinkBinding
from .base import StoreBase, _dumps, ms_to_dt, now_ms
from .crypto import TenantKeys


class AccountsPart(StoreBase):
    """Connections to telephone systems and sink bindings, settings sealed per tenant."""

    # --- connections -----------------------------------------------------------------------

    def _seal_settings(self, keys: TenantKeys, table: str, row: str, settings: dict[str, Any]) -> bytes:
        return keys.encrypt(table, "settings", row, _dumps(settings))

    async def add_connection(self, connection: Connection) -> Connection:
        keys = await self.keys(connection.tenant)
        sealed = self._seal_settings(keys, "connections", connection.id, connection.settings)
        created = now_ms()

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO connections (id, tenant, plugin, settings, status, created_at) "
                "VALUES (?, ?, ?, ?, 'active', ?)",
                (connection.id, connection.tenant, connection.plugin, sealed, created))
        await self.w.submit(job)
        saved = Connection(connection.id, connection.tenant, connection.plugin,
                           dict(connection.settings), "active", None, ms_to_dt(created))
        self._connections[saved.id] = saved
        return saved

    @staticmethod
    def new_connection_id() -> str:
        return secrets.token_urlsafe(18)

    async def get_connection(self, connection_id: str) -> Connection | None:
        cached = self._connections.get(connection_id)
        if cached is not None:
            return cached
        row = await self._lookup(
            "SELECT id, tenant, plugin, settings, status, status_reason, created_at "
            "FROM connections WHERE id=?", (connection_id,))
        if row is None:
            return None
        connection = await self._connection_from_row(row)
        self._connections[connection_id] = connection
        return connection

    async def _connection_from_row(self, row: Any) -> Connection:
        keys = await self.keys(row[1])
        settings = orjson.loads(keys.decrypt("connections", "settings", row[0], row[3]))
        return Connection(row[0], row[1], row[2], settings, row[4], row[5], ms_to_dt(row[6]))

    async def list_connections(self, tenant: str | None = None, plugin: str | None = None) -> list[Connection]:
        """Connections of one tenant, one plugin, both, or all."""
        sql = "SELECT id, tenant, plugin, settings, status, status_reason, created_at FROM connections WHERE 1=1"
        args: list[Any] = []
        if tenant is not None:
            sql += " AND tenant=?"
            args.append(tenant)
        if plugin is not None:
            sql += " AND plugin=?"
            args.append(plugin)
        rows = await self._all(sql + " ORDER BY created_at, id", args)
        return [await self._connection_from_row(r) for r in rows]

    async def update_connection(self, connection_id: str, *, settings: dict[str, Any] | None = None,
                                status: str | None = None, reason: str | None = None) -> Connection:
        current = await self.get_connection(connection_id)
        if current is None:
            raise NotFound("unknown connection")
        keys = await self.keys(current.tenant)
        new_settings = current.settings if settings is None else dict(settings)
        new_status = current.status if status is None else status
        new_reason = reason if status is not None else current.status_reason
        sealed = self._seal_settings(keys, "connections", connection_id, new_settings)

        def job(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE connections SET settings=?, status=?, status_reason=? WHERE id=?",
                               (sealed, new_status, new_reason, connection_id))
        await self.w.submit(job)
        updated = Connection(current.id, current.tenant, current.plugin, new_settings,
                             new_status, new_reason, current.created_at)
        self._connections[connection_id] = updated
        return updated

    async def delete_connection(self, connection_id: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM telephony_users WHERE connection=?", (connection_id,))
            conn.execute("DELETE FROM connections WHERE id=?", (connection_id,))
        await self.w.submit(job)
        self._connections.pop(connection_id, None)

    # --- sink bindings ---------------------------------------------------------------------

    async def bind_sink(self, tenant: str, plugin: str, settings: dict[str, Any]) -> SinkBinding:
        keys = await self.keys(tenant)
        sealed = self._seal_settings(keys, "sinks", plugin, settings)
        created = now_ms()

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO sinks (tenant, plugin, settings, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (tenant, plugin) DO UPDATE SET settings = excluded.settings",
                (tenant, plugin, sealed, created))
        await self.w.submit(job)
        self._bindings.pop(tenant, None)
        return SinkBinding(tenant, plugin, dict(settings))

    async def unbind_sink(self, tenant: str, plugin: str) -> None:
        def job(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM deliveries WHERE tenant=? AND sink=? AND state='pending'",
                               (tenant, plugin))
            cur = conn.execute("DELETE FROM sinks WHERE tenant=? AND plugin=?", (tenant, plugin))
            return cur.rowcount
        removed = await self.w.submit(job)
        self._bindings.pop(tenant, None)
        if not removed:
            raise NotFound("no such sink for this tenant")

    async def sink_bindings(self, tenant: str) -> list[SinkBinding]:
        cached = self._bindings.get(tenant)
        if cached is not None:
            return cached
        keys = await self.keys(tenant)
        rows = await self._all("SELECT plugin, settings FROM sinks WHERE tenant=? ORDER BY plugin", (tenant,))
        bindings = [SinkBinding(tenant, p, orjson.loads(keys.decrypt("sinks", "settings", p, s)))
                    for p, s in rows]
        self._bindings[tenant] = bindings
        return bindings

    async def sink_binding(self, tenant: str, plugin: str) -> SinkBinding | None:
        for binding in await self.sink_bindings(tenant):
            if binding.plugin == plugin:
                return binding
        return None

