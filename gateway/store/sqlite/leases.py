"""Leases: named locks with a time to live, for single-flight work across processes."""

from __future__ import annotations

import sqlite3

from ..common import now_ms
from .database import SQLiteDatabase


class SQLiteLeases:
    """Named locks with a time to live. A tenant's are named ``tenant + "\\x1f" + ...``."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def acquire(self, name: str, holder: str, ttl: float) -> bool:
        expires = now_ms() + int(ttl * 1000)

        def job(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET holder=excluded.holder, expires_at=excluded.expires_at "
                "WHERE leases.expires_at < ? OR leases.holder = excluded.holder",
                (name, holder, expires, now_ms())).rowcount
        return bool(await self._db.w.submit(job))

    async def release(self, name: str, holder: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM leases WHERE name=? AND holder=?", (name, holder))
        await self._db.w.submit(job)

    def delete_tenant_rows(self, conn: sqlite3.Connection, tenant: str) -> dict[str, int]:
        # an exact prefix: with LIKE, a "_" or "%" in the tenant id would match other tenants
        prefix = tenant + "\x1f"
        return {"leases": conn.execute("DELETE FROM leases WHERE substr(name, 1, ?) = ?",
                                       (len(prefix), prefix)).rowcount}

    def forget(self, tenant: str) -> None:
        """Nothing of a tenant is cached here."""
