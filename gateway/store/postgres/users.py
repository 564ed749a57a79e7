"""The telephony user directory: encrypted users, found by blind-indexed e-mail or extension."""

from __future__ import annotations

import builtins
from collections.abc import Iterable

import asyncpg

from ...models import Connection, TelephonyUser
from ..common import now_ms, user_key
from ..protocols import UserRow
from ..sealed import directory_key, open_user, seal_user
from .database import PostgresDatabase, count


class PostgresUsers:
    """The telephony user directory."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def put(self, connection: Connection, user: TelephonyUser) -> None:
        keys = await self._db.keys(connection.tenant)
        uid, data, mail_key, ext_key = seal_user(keys, connection.id, user)
        await self._db.execute(
            "INSERT INTO telephony_users (connection, user_id_key, tenant, data, email_key, extension_key, "
            "status, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (connection, user_id_key) "
            "DO UPDATE SET data=excluded.data, email_key=excluded.email_key, "
            "extension_key=excluded.extension_key, status=excluded.status, updated_at=excluded.updated_at",
            connection.id, uid, connection.tenant, data, mail_key, ext_key, user.status, now_ms())

    async def get(self, connection: Connection, user_id: str) -> TelephonyUser | None:
        keys = await self._db.keys(connection.tenant)
        uid = user_key(keys, connection.id, user_id)
        row = await self._db.one("SELECT data, status FROM telephony_users WHERE connection=$1 AND user_id_key=$2",
                                 connection.id, uid)
        return open_user(keys, connection.id, uid, row[0], row[1]) if row else None

    async def list(self, connection: Connection) -> list[TelephonyUser]:
        keys = await self._db.keys(connection.tenant)
        rows = await self._db.all("SELECT user_id_key, data, status FROM telephony_users WHERE connection=$1",
                                  connection.id)
        return [open_user(keys, connection.id, r[0], r[1], r[2]) for r in rows]

    async def find(self, tenant: str, *, email: str | None = None,
                   extension: str | None = None) -> builtins.list[tuple[str, TelephonyUser]]:
        keys = await self._db.keys(tenant)
        found = directory_key(keys, email, extension)
        if found is None:
            return []
        column, value = found
        rows = await self._db.all(
            f"SELECT connection, user_id_key, data, status FROM telephony_users WHERE tenant=$1 AND {column}=$2",
            tenant, value)
        return [(r[0], open_user(keys, r[0], r[1], r[2], r[3])) for r in rows]

    async def delete(self, connection: Connection, user_id: str | None = None) -> int:
        if user_id is None:
            return await self._db.execute("DELETE FROM telephony_users WHERE connection=$1", connection.id)
        keys = await self._db.keys(connection.tenant)
        return await self._db.execute("DELETE FROM telephony_users WHERE connection=$1 AND user_id_key=$2",
                                      connection.id, user_key(keys, connection.id, user_id))

    async def of_tenant(self, tenant: str) -> builtins.list[UserRow]:
        keys = await self._db.keys(tenant)
        rows = await self._db.all(
            "SELECT connection, user_id_key, data, status FROM telephony_users WHERE tenant=$1", tenant)
        return [(r[0], r[1], open_user(keys, r[0], r[1], r[2], r[3])) for r in rows]

    async def delete_keys(self, tenant: str, pairs: Iterable[tuple[str, str]]) -> int:
        wanted = builtins.list(pairs)
        if not wanted:
            return 0
        return await self._db.execute(
            "DELETE FROM telephony_users u USING unnest($2::text[], $3::text[]) AS w(connection, user_id_key) "
            "WHERE u.tenant=$1 AND u.connection = w.connection AND u.user_id_key = w.user_id_key",
            tenant, [c for c, _ in wanted], [u for _, u in wanted])

    async def delete_tenant_rows(self, conn: asyncpg.Connection, tenant: str) -> dict[str, int]:
        return {"telephony_users": count(await conn.execute("DELETE FROM telephony_users WHERE tenant=$1", tenant))}

    def forget(self, tenant: str | None) -> None:
        """Nothing of a tenant is cached here."""
