"""Tenants and their data keys; removing a tenant crypto-shreds it across every part."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from ...errors import Conflict, NotFound
from ...models import Tenant
from ..common import ms_to_dt, now_ms
from ..crypto import TenantKeys, new_data_key
from .database import SQLiteDatabase, TenantRows


class SQLiteTenants:
    """Tenants and their keys. ``parts`` hold the tenant's other rows: removal asks each."""

    def __init__(self, db: SQLiteDatabase, parts: Sequence[TenantRows]) -> None:
        self._db = db
        self._parts = parts

    async def create(self, tenant: str) -> Tenant:
        kid, wrapped = self._db.keyring.wrap(tenant, new_data_key())
        created = now_ms()

        def job(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT INTO tenants (id, key_id, wrapped_key, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING", (tenant, kid, wrapped, created))
            return cur.rowcount == 1

        if not await self._db.w.submit(job):
            raise Conflict("tenant exists already")
        return Tenant(tenant, ms_to_dt(created))

    async def get(self, tenant: str) -> Tenant | None:
        row = self._db.lookup("SELECT id, created_at, status, status_reason FROM tenants WHERE id=?", (tenant,))
        return Tenant(row[0], ms_to_dt(row[1]), row[2], row[3]) if row else None

    async def list(self) -> list[Tenant]:
        rows = await self._db.all("SELECT id, created_at, status, status_reason FROM tenants ORDER BY id")
        return [Tenant(r[0], ms_to_dt(r[1]), r[2], r[3]) for r in rows]

    async def set_status(self, tenant: str, status: str, reason: str | None = None) -> None:
        def job(conn: sqlite3.Connection) -> int:
            cur = conn.execute("UPDATE tenants SET status=?, status_reason=? WHERE id=?", (status, reason, tenant))
            return cur.rowcount
        if not await self._db.w.submit(job):
            raise NotFound("unknown tenant")

    async def keys(self, tenant: str) -> TenantKeys:
        return await self._db.keys(tenant)

    async def rotate_keys(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-wrap every tenant key under the current master key; return how many changed."""
        keyring = self._db.keyring
        rows = await self._db.all("SELECT id, key_id, wrapped_key FROM tenants WHERE key_id <> ?",
                                  (keyring.current_id,))
        done = 0
        for tenant, kid, wrapped in rows:
            new_kid, new_wrapped = keyring.wrap(tenant, keyring.unwrap(tenant, kid, wrapped))

            def job(conn: sqlite3.Connection, t: str = tenant, k: str = kid,
                    nk: str = new_kid, nw: bytes = new_wrapped) -> None:
                conn.execute("UPDATE tenants SET key_id=?, wrapped_key=? WHERE id=? AND key_id=?", (nk, nw, t, k))
            await self._db.w.submit(job)
            done += 1
            if progress is not None:
                progress(done, len(rows))
        return done

    async def remove(self, tenant: str) -> dict[str, int]:
        """Crypto-shred a tenant: its wrapped key and every row go; the files keep nothing."""
        if await self.get(tenant) is None:
            raise NotFound("unknown tenant")

        def job(conn: sqlite3.Connection) -> dict[str, int]:
            counts: dict[str, int] = {}
            for part in self._parts:
                counts.update(part.delete_tenant_rows(conn, tenant))
            conn.execute("DELETE FROM tenants WHERE id=?", (tenant,))
            return counts

        counts = await self._db.w.submit(job)
        self._db.forget_keys(tenant)
        for part in self._parts:
            part.forget(tenant)
        await self._db.checkpoint()
        return counts
