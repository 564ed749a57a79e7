"""The telephony user directory: who is who at each telephone connection.

It belongs to the core, not to each source: it is personal data that logout, erasure, export
and uninstall must reach uniformly, and CRM plugins look users up by e-mail or extension
whatever the telephone system.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from .audit import AuditLog
from .events import CallEvent
from .models import Connection, TelephonyUser

if TYPE_CHECKING:
    from .plugins import HookResults, PluginHost
    from .store import Store


class Directory:
    def __init__(self, store: Store, audit: AuditLog, host: PluginHost) -> None:
        self._store = store
        self._audit = audit
        self._host = host

    async def put(self, connection: Connection, user: TelephonyUser) -> None:
        """Create or replace a user of the connection's directory (encrypted)."""
        await self._store.users.put(connection, user)

    async def get(self, connection: Connection, user_id: str) -> TelephonyUser | None:
        return await self._store.users.get(connection, user_id)

    async def list(self, connection: Connection) -> list[TelephonyUser]:
        return await self._store.users.list(connection)

    async def find(self, tenant: str, *, email: str | None = None,
                   extension: str | None = None) -> builtins.list[tuple[Connection, TelephonyUser]]:
        """Users of any of the tenant's connections by e-mail or extension."""
        found = []
        for cid, user in await self._store.users.find(tenant, email=email, extension=extension):
            conn = await self._store.connections.get(cid)
            if conn is not None:
                found.append((conn, user))
        return found

    async def active(self, tenant: str, *, email: str | None = None,
                     extension: str | None = None) -> builtins.list[tuple[Connection, TelephonyUser]]:
        """Usable users (active, on an active connection): by e-mail first, else extension."""
        candidates = await self.find(tenant, email=email) if email else []
        if not candidates and extension:
            candidates = await self.find(tenant, extension=extension)
        return [(c, u) for c, u in candidates if u.status == "active" and c.status == "active"]

    async def remove(self, connection: Connection, user_id: str | None = None) -> int:
        """Delete one user of the directory, or all of the connection's."""
        return await self._store.users.delete(connection, user_id)

    async def logout(self, connection: Connection, user_id: str) -> HookResults:
        """Keep only the user's id with status ``logged_out``: name and e-mail go at once,
        and every plugin hears of it (to drop its caches about the user)."""
        await self._store.users.put(connection, TelephonyUser(user_id, status="logged_out"))
        await self._store.checkpoint()  # the old ciphertext leaves the WAL too
        heard = await self._host.call_each("user_logged_out", connection=connection, user_id=user_id)
        await self._audit.record("user.logout", tenant=connection.tenant, connection=connection.id,
                                 plugin=connection.plugin, failed_plugins=len(heard.failed))
        return heard

    async def for_event(self, event: CallEvent) -> TelephonyUser | None:
        """The telephony user an event belongs to, from its connection's directory."""
        if not event.local_user or not event.connection_id:
            return None
        conn = await self._store.connections.get(event.connection_id)
        return await self._store.users.get(conn, event.local_user) if conn else None
