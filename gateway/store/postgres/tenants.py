"""Tenants and their data keys; removing a tenant crypto-shreds it across every part."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg

from ...errors import Conflict, NotFound
from ...models import Tenant
from ..common import ms_to_dt, now_ms
from ..crypto import TenantKeys, new_data_key
from .database import PostgresDatabase, TenantRows, count


class PostgresTenants:
    """Tenants and their keys. ``parts`` hold the tenant's other rows: removal asks each."""

    def __init__(self, db: PostgresDatabase, parts: Sequence[TenantRows]) -> None:
        self._db = db
        self._parts = parts

    async def create(self, tenant: str) -> Tenant:
        kid, wrapped = self._db.keyring.wrap(tenant, new_data_key())
        created = now_ms()

        async def job(conn: asyncpg.Connection) -> bool:
            status = await conn.execute(
                "INSERT INTO tenants (id, key_id, wrapped_key, created_at) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (id) DO NOTHING", tenant, kid, wrapped, created)
            await self._db.notify(conn, tenant)  # a process may still hold a removed namesake's key
            return count(status) == 1

        if not await self._db.write(job):
            raise Conflict("tenant exists already")
        return Tenant(tenant, ms_to_dt(created))

    async def get(self, tenant: str) -> Tenant | None:
        row = await self._db.one("SELECT id, created_at, status, status_reason FROM tenants WHERE id=$1", tenant)
        return Tenant(row[0], ms_to_dt(row[1]), row[2], row[3]) if row else None

    async def list(self) -> list[Tenant]:
        rows = await self._db.all("SELECT id, created_at, status, status_reason FROM tenants ORDER BY id")
        return [Tenant(r[0], ms_to_dt(r[1]), r[2], r[3]) for r in rows]

    async def set_status(self, tenant: str, status: str, reason: str | None = None) -> None:
        if not await self._db.execute("UPDATE tenants SET status=$1, status_reason=$2 WHERE id=$3",
                                      status, reason, tenant):
            raise NotFound("unknown tenant")

    async def keys(self, tenant: str) -> TenantKeys:
        return await self._db.keys(tenant)

    async def rotate_keys(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-wrap every tenant key under the current master key; return how many changed."""
        keyring = self._db.keyring
        rows = await self._db.all("SELECT id, key_id, wrapped_key FROM tenants WHERE key_id <> $1",
                                  keyring.current_id)
        done = 0
        for tenant, kid, wrapped in rows:
            new_kid, new_wrapped = keyring.wrap(tenant, keyring.unwrap(tenant, kid, wrapped))
            await self._db.execute("UPDATE tenants SET key_id=$1, wrapped_key=$2 WHERE id=$3 AND key_id=$4",
                                   new_kid, new_wrapped, tenant, kid)
            done += 1
            if progress is not None:
                progress(done, len(rows))
        return done

    async def remove(self, tenant: str) -> dict[str, int]:
        """Crypto-shred a tenant: its wrapped key and every row go, in one transaction; every
        process is told to forget what it cached of the tenant."""
        if await self.get(tenant) is None:
            raise NotFound("unknown tenant")

        async def job(conn: asyncpg.Connection) -> dict[str, int]:
            counts: dict[str, int] = {}
            for part in self._parts:
                counts.update(await part.delete_tenant_rows(conn, tenant))
            await conn.execute("DELETE FROM lanes WHERE tenant=$1", tenant)
            await conn.execute("DELETE FROM tenants WHERE id=$1", tenant)
            await self._db.notify(conn, tenant)
            return counts

        counts = await self._db.write(job)
        self._db.forget_keys(tenant)
        for part in self._parts:
            part.forget(tenant)
        return counts
