"""The telephony user directory: encrypted users, found by blind-indexed e-mail or extension."""

from __future__ import annotations

import sqlite3

import orjson

from ..models import Connection, TelephonyUser
from .base import StoreBase, _dumps, now_ms
from .crypto import TenantKeys


class DirectoryPart(StoreBase):
    """The telephony user directory."""

    # --- telephony users -------------------------------------------------------------------

    async def put_user(self, connection: Connection, user: TelephonyUser) -> None:
        keys = await self.keys(connection.tenant)
        uid = keys.blind_index("user", f"{connection.id}\x1f{user.user_id}")
        data = keys.encrypt("telephony_users", "data", f"{connection.id}\x1f{uid}", _dumps({
            "user_id": user.user_id, "name": user.name, "email": user.email,
            "extension": user.extension, "numbers": list(user.numbers)}))
        email_key = keys.blind_index("email", user.email.strip().lower()) if user.email else None
        ext_key = keys.blind_index("extension", str(user.extension)) if user.extension else None

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO telephony_users (connection, user_id_key, tenant, data, email_key, extension_key, "
                "status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (connection, user_id_key) "
                "DO UPDATE SET data=excluded.data, email_key=excluded.email_key, "
                "extension_key=excluded.extension_key, status=excluded.status, updated_at=excluded.updated_at",
                (connection.id, uid, connection.tenant, data, email_key, ext_key, user.status, now_ms()))
        await self.w.submit(job)

    def _user_from_row(self, keys: TenantKeys, connection_id: str, uid: str, blob: bytes, status: str) -> TelephonyUser:
        d = orjson.loads(keys.decrypt("telephony_users", "data", f"{connection_id}\x1f{uid}", blob))
        return TelephonyUser(d["user_id"], d.get("name"), d.get("email"), d.get("extension"),
                             tuple(d.get("numbers") or ()), status)

    async def get_user(self, connection: Connection, user_id: str) -> TelephonyUser | None:
        keys = await self.keys(connection.tenant)
        uid = keys.blind_index("user", f"{connection.id}\x1f{user_id}")
        row = await self._lookup("SELECT data, status FROM telephony_users WHERE connection=? AND user_id_key=?",
                              (connection.id, uid))
        return self._user_from_row(keys, connection.id, uid, row[0], row[1]) if row else None

    async def list_users(self, connection: Connection) -> list[TelephonyUser]:
        keys = await self.keys(connection.tenant)
        rows = await self._all("SELECT user_id_key, data, status FROM telephony_users WHERE connection=?",
                               (connection.id,))
        return [self._user_from_row(keys, connection.id, r[0], r[1], r[2]) for r in rows]

    async def find_users(self, tenant: str, *, email: str | None = None,
                         extension: str | None = None) -> list[tuple[str, TelephonyUser]]:
        """Users of any of the tenant's connections by e-mail or extension: (connection id, user)."""
        keys = await self.keys(tenant)
        if email:
            column, value = "email_key", keys.blind_index("email", email.strip().lower())
        elif extension:
            column, value = "extension_key", keys.blind_index("extension", str(extension))
        else:
            return []
        rows = await self._all(
            f"SELECT connection, user_id_key, data, status FROM telephony_users WHERE tenant=? AND {column}=?",
            (tenant, value))
        return [(r[0], self._user_from_row(keys, r[0], r[1], r[2], r[3])) for r in rows]

    async def delete_users(self, connection: Connection, user_id: str | None = None) -> int:
        keys = await self.keys(connection.tenant)

        def job(conn: sqlite3.Connection) -> int:
            if user_id is None:
                cur = conn.execute("DELETE FROM telephony_users WHERE connection=?", (connection.id,))
            else:
                uid = keys.blind_index("user", f"{connection.id}\x1f{user_id}")
                cur = conn.execute(
                    "DELETE FROM telephony_users WHERE connection=? AND user_id_key=?", (connection.id, uid))
            return cur.rowcount
        return await self.w.submit(job)

