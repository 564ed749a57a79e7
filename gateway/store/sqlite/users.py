"""The telephony user directory: encrypted users, found by blind-indexed e-mail or extension."""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Iterable

from ...models import Connection, TelephonyUser
from ..common import now_ms, user_key
from ..protocols import UserRow
from ..sealed import directory_key, seal_user
from ..sealed import open_user as _user
from .database import SQLiteDatabase


class SQLiteUsers:
    """The telephony user directory."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def put(self, connection: Connection, user: TelephonyUser) -> None:
        keys = await self._db.keys(connection.tenant)
        uid, data, mail_key, ext_key = seal_user(keys, connection.id, user)

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO telephony_users (connection, user_id_key, tenant, data, email_key, extension_key, "
                "status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (connection, user_id_key) "
                "DO UPDATE SET data=excluded.data, email_key=excluded.email_key, "
                "extension_key=excluded.extension_key, status=excluded.status, updated_at=excluded.updated_at",
                (connection.id, uid, connection.tenant, data, mail_key, ext_key, user.status, now_ms()))
        await self._db.w.submit(job)

    async def get(self, connection: Connection, user_id: str) -> TelephonyUser | None:
        keys = await self._db.keys(connection.tenant)
        uid = user_key(keys, connection.id, user_id)
        row = self._db.lookup("SELECT data, status FROM telephony_users WHERE connection=? AND user_id_key=?",
                              (connection.id, uid))
        return _user(keys, connection.id, uid, row[0], row[1]) if row else None

    async def list(self, connection: Connection) -> list[TelephonyUser]:
        keys = await self._db.keys(connection.tenant)
        rows = await self._db.all("SELECT user_id_key, data, status FROM telephony_users WHERE connection=?",
                                  (connection.id,))
        return [_user(keys, connection.id, r[0], r[1], r[2]) for r in rows]

    async def find(self, tenant: str, *, email: str | None = None,
                   extension: str | None = None) -> builtins.list[tuple[str, TelephonyUser]]:
        """Users of any of the tenant's connections by e-mail or extension: (connection id, user)."""
        keys = await self._db.keys(tenant)
        found = directory_key(keys, email, extension)
        if found is None:
            return []
        column, value = found
        rows = await self._db.all(
            f"SELECT connection, user_id_key, data, status FROM telephony_users WHERE tenant=? AND {column}=?",
            (tenant, value))
        return [(r[0], _user(keys, r[0], r[1], r[2], r[3])) for r in rows]

    async def delete(self, connection: Connection, user_id: str | None = None) -> int:
        keys = await self._db.keys(connection.tenant)

        def job(conn: sqlite3.Connection) -> int:
            if user_id is None:
                return conn.execute("DELETE FROM telephony_users WHERE connection=?", (connection.id,)).rowcount
            return conn.execute("DELETE FROM telephony_users WHERE connection=? AND user_id_key=?",
                                (connection.id, user_key(keys, connection.id, user_id))).rowcount
        return await self._db.w.submit(job)

    async def of_tenant(self, tenant: str) -> builtins.list[UserRow]:
        """Every telephony user of the tenant: ``(connection id, user id key, user)``."""
        keys = await self._db.keys(tenant)
        rows = await self._db.all(
            "SELECT connection, user_id_key, data, status FROM telephony_users WHERE tenant=?", (tenant,))
        return [(r[0], r[1], _user(keys, r[0], r[1], r[2], r[3])) for r in rows]

    async def delete_keys(self, tenant: str, pairs: Iterable[tuple[str, str]]) -> int:
        """Delete telephony users by ``(connection id, user id key)``."""
        wanted = list(pairs)

        def job(conn: sqlite3.Connection) -> int:
            return sum(conn.execute("DELETE FROM telephony_users WHERE tenant=? AND connection=? AND user_id_key=?",
                                    (tenant, c, u)).rowcount for c, u in wanted)
        return await self._db.w.submit(job) if wanted else 0

    def delete_tenant_rows(self, conn: sqlite3.Connection, tenant: str) -> dict[str, int]:
        return {"telephony_users": conn.execute("DELETE FROM telephony_users WHERE tenant=?", (tenant,)).rowcount}

    def forget(self, tenant: str) -> None:
        """Nothing of a tenant is cached here."""
