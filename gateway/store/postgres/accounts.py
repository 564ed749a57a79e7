"""Connections to telephone systems and sink bindings, settings sealed per tenant.

Both are cached per process; a change is announced to every process on the database (see
:mod:`.database`), which then reads it again.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import asyncpg

from ...errors import NotFound
from ...models import Connection, SinkBinding
from ..common import ms_to_dt, now_ms, updated_connection
from ..sealed import open_settings, seal_settings
from .database import PostgresDatabase, count

_COLUMNS = "id, tenant, plugin, settings, status, status_reason, created_at"


class PostgresConnections:
    """Tenants' accounts at telephone systems, cached by id once read."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._cache: dict[str, Connection] = {}
        db.on_forget(self.forget)

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(18)

    async def add(self, connection: Connection) -> Connection:
        keys = await self._db.keys(connection.tenant)
        sealed = seal_settings(keys, "connections", connection.id, connection.settings)
        created = now_ms()

        async def job(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO connections (id, tenant, plugin, settings, status, created_at) "
                "VALUES ($1, $2, $3, $4, 'active', $5)",
                connection.id, connection.tenant, connection.plugin, sealed, created)
        try:
            await self._db.write(job)
        except asyncpg.ForeignKeyViolationError:
            raise NotFound("unknown tenant") from None
        return Connection(connection.id, connection.tenant, connection.plugin,
                          dict(connection.settings), "active", None, ms_to_dt(created))

    async def get(self, connection_id: str) -> Connection | None:
        cached = self._cache.get(connection_id)
        if cached is not None:
            return cached
        epoch = self._db.epoch
        row = await self._db.one(f"SELECT {_COLUMNS} FROM connections WHERE id=$1", connection_id)
        if row is None:
            return None
        connection = await self._from_row(row)
        if self._db.cache(epoch):
            self._cache[connection_id] = connection
        return connection

    async def _from_row(self, row: Any) -> Connection:
        keys = await self._db.keys(row[1])
        settings = open_settings(keys, "connections", row[0], row[3])
        return Connection(row[0], row[1], row[2], settings, row[4], row[5], ms_to_dt(row[6]))

    async def list(self, tenant: str | None = None, plugin: str | None = None) -> list[Connection]:
        """Connections of one tenant, one plugin, both, or all."""
        rows = await self._db.all(
            f"SELECT {_COLUMNS} FROM connections WHERE ($1::text IS NULL OR tenant=$1) "
            "AND ($2::text IS NULL OR plugin=$2) ORDER BY created_at, id", tenant, plugin)
        return [await self._from_row(r) for r in rows]

    async def update(self, connection_id: str, *, settings: dict[str, Any] | None = None,
                     status: str | None = None, reason: str | None = None) -> Connection:
        current = await self.get(connection_id)
        if current is None:
            raise NotFound("unknown connection")
        keys = await self._db.keys(current.tenant)
        updated = updated_connection(current, settings, status, reason)
        sealed = seal_settings(keys, "connections", connection_id, updated.settings)

        async def job(conn: asyncpg.Connection) -> None:
            await conn.execute("UPDATE connections SET settings=$1, status=$2, status_reason=$3 WHERE id=$4",
                               sealed, updated.status, updated.status_reason, connection_id)
            await self._db.notify(conn, current.tenant)
        await self._db.write(job)
        self._cache.pop(connection_id, None)
        return updated

    async def delete(self, connection_id: str) -> None:
        async def job(conn: asyncpg.Connection) -> None:
            await conn.execute("DELETE FROM telephony_users WHERE connection=$1", connection_id)
            tenant = await conn.fetchval("DELETE FROM connections WHERE id=$1 RETURNING tenant", connection_id)
            if tenant is not None:
                await self._db.notify(conn, tenant)
        await self._db.write(job)
        self._cache.pop(connection_id, None)

    async def mark_seen(self, seen: Mapping[str, int]) -> None:
        if not seen:
            return

        async def job(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE connections c SET last_webhook_at = s.at FROM unnest($1::text[], $2::bigint[]) AS s(id, at) "
                "WHERE c.id = s.id AND (c.last_webhook_at IS NULL OR c.last_webhook_at < s.at)",
                list(seen), list(seen.values()))
        await self._db.write(job, background=True)

    async def last_seen(self, tenant: str) -> dict[str, int]:
        rows = await self._db.all("SELECT id, last_webhook_at FROM connections WHERE tenant=$1 "
                                  "AND last_webhook_at IS NOT NULL", tenant)
        return {r[0]: int(r[1]) for r in rows}

    async def delete_tenant_rows(self, conn: asyncpg.Connection, tenant: str) -> dict[str, int]:
        return {"connections": count(await conn.execute("DELETE FROM connections WHERE tenant=$1", tenant))}

    def forget(self, tenant: str | None) -> None:
        for cid in [c for c, connection in self._cache.items() if tenant in (None, connection.tenant)]:
            del self._cache[cid]


class PostgresSinks:
    """Which sinks each tenant is bound to, cached per tenant once read."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._cache: dict[str, list[SinkBinding]] = {}
        db.on_forget(self.forget)

    async def bind(self, tenant: str, plugin: str, settings: dict[str, Any]) -> SinkBinding:
        keys = await self._db.keys(tenant)
        sealed = seal_settings(keys, "sinks", plugin, settings)
        created = now_ms()

        async def job(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO sinks (tenant, plugin, settings, created_at) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (tenant, plugin) DO UPDATE SET settings = excluded.settings",
                tenant, plugin, sealed, created)
            await self._db.notify(conn, tenant)
        try:
            await self._db.write(job)
        except asyncpg.ForeignKeyViolationError:
            raise NotFound("unknown tenant") from None
        self._cache.pop(tenant, None)
        return SinkBinding(tenant, plugin, dict(settings))

    async def unbind(self, tenant: str, plugin: str) -> None:
        async def job(conn: asyncpg.Connection) -> int:
            await conn.execute("DELETE FROM deliveries WHERE tenant=$1 AND sink=$2 AND state='pending'",
                               tenant, plugin)
            removed = count(await conn.execute("DELETE FROM sinks WHERE tenant=$1 AND plugin=$2", tenant, plugin))
            await self._db.notify(conn, tenant)
            return removed
        removed = await self._db.write(job)
        self._cache.pop(tenant, None)
        if not removed:
            raise NotFound("no such sink for this tenant")

    async def bindings(self, tenant: str) -> list[SinkBinding]:
        cached = self._cache.get(tenant)
        if cached is not None:
            return cached
        epoch = self._db.epoch
        keys = await self._db.keys(tenant)
        rows = await self._db.all("SELECT plugin, settings FROM sinks WHERE tenant=$1 ORDER BY plugin", tenant)
        bindings = [SinkBinding(tenant, p, open_settings(keys, "sinks", p, s)) for p, s in rows]
        if self._db.cache(epoch):
            self._cache[tenant] = bindings
        return bindings

    async def binding(self, tenant: str, plugin: str) -> SinkBinding | None:
        for binding in await self.bindings(tenant):
            if binding.plugin == plugin:
                return binding
        return None

    async def delete_tenant_rows(self, conn: asyncpg.Connection, tenant: str) -> dict[str, int]:
        return {"sinks": count(await conn.execute("DELETE FROM sinks WHERE tenant=$1", tenant))}

    def forget(self, tenant: str | None) -> None:
        if tenant is None:
            self._cache.clear()
        else:
            self._cache.pop(tenant, None)
