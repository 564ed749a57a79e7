"""Leases: named locks with a time to live, for single-flight work across processes.

Expiry is judged by the database's clock, so processes on machines whose clocks differ
still agree on who holds a lease.
"""

from __future__ import annotations

import asyncpg

from .database import NOW_MS, PostgresDatabase, count


class PostgresLeases:
    """Named locks with a time to live. A tenant's are named ``tenant + "\\x1f" + ...``."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def acquire(self, name: str, holder: str, ttl: float) -> bool:
        # one statement: two processes taking a free lease at once serialise on its row
        return await self._db.pool.fetchval(
            f"INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, {NOW_MS} + $3) "
            "ON CONFLICT (name) DO UPDATE SET holder=excluded.holder, expires_at=excluded.expires_at "
            f"WHERE leases.expires_at < {NOW_MS} OR leases.holder = excluded.holder RETURNING true",
            name, holder, int(ttl * 1000)) is not None

    async def release(self, name: str, holder: str) -> None:
        await self._db.pool.execute("DELETE FROM leases WHERE name=$1 AND holder=$2", name, holder)

    async def delete_tenant_rows(self, conn: asyncpg.Connection, tenant: str) -> dict[str, int]:
        # an exact prefix: with LIKE, a "_" or "%" in the tenant id would match other tenants
        return {"leases": count(await conn.execute("DELETE FROM leases WHERE starts_with(name, $1)",
                                                   tenant + "\x1f"))}

    def forget(self, tenant: str | None) -> None:
        """Nothing of a tenant is cached here."""
