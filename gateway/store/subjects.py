"""Data-subject rights over what the core holds: export, erase, rectify, restrict."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import orjson

from ..events import CallEvent
from ..models import TelephonyUser
from .base import now_ms, phone_key
from .crypto import TenantKeys
from .directory import DirectoryPart


class SubjectsPart(DirectoryPart):
    """Data-subject rights over what the core holds."""

    # --- data subjects ---------------------------------------------------------------------

    async def subject_events(self, tenant: str, phone: str | None,
                             user_keys: Iterable[str] = ()) -> list[tuple[int, int, CallEvent | None]]:
        """Events of the tenant about a phone number or its telephony users:
        ``(seq, received_at, event)``; ``event`` is ``None`` for a restricted (payload-free) one."""
        keys = await self.keys(tenant)
        where, args = self._subject_where(keys, phone, user_keys)
        if not where:
            return []
        rows = await self._all(
            f"SELECT seq, received_at, dedup_key, payload FROM events WHERE tenant=? AND ({where}) ORDER BY seq",
            [tenant, *args])
        return [(r[0], r[1], CallEvent.from_dict(orjson.loads(keys.decrypt("events", "payload", r[2], r[3])))
                 if r[3] else None) for r in rows]

    @staticmethod
    def _subject_where(keys: TenantKeys, phone: str | None, user_keys: Iterable[str]) -> tuple[str, list[str]]:
        clauses, args = [], []
        pkey = phone_key(keys, phone)
        if pkey is not None:
            clauses.append("remote_key=? OR local_key=?")
            args += [pkey, pkey]
        ukeys = list(user_keys)
        if ukeys:
            clauses.append(f"user_key IN ({','.join('?' * len(ukeys))})")
            args += ukeys
        return " OR ".join(clauses), args

    async def delete_subject_events(self, tenant: str, phone: str | None,
                                    user_keys: Iterable[str] = ()) -> dict[str, int]:
        """Erase the events (and their deliveries) found by :meth:`subject_events`."""
        keys = await self.keys(tenant)
        where, args = self._subject_where(keys, phone, user_keys)
        if not where:
            return {"events": 0, "deliveries": 0}

        def job(conn: sqlite3.Connection) -> dict[str, int]:
            seqs = f"SELECT seq FROM events WHERE tenant=? AND ({where})"
            d = conn.execute(f"DELETE FROM deliveries WHERE event_seq IN ({seqs})", [tenant, *args])
            e = conn.execute(f"DELETE FROM events WHERE tenant=? AND ({where})", [tenant, *args])
            return {"events": e.rowcount, "deliveries": d.rowcount}
        counts = await self.w.submit(job)
        await self.checkpoint()
        return counts

    async def tenant_users(self, tenant: str) -> list[tuple[str, str, TelephonyUser]]:
        """Every telephony user of the tenant: ``(connection id, user id key, user)``."""
        keys = await self.keys(tenant)
        rows = await self._all(
            "SELECT connection, user_id_key, data, status FROM telephony_users WHERE tenant=?", (tenant,))
        return [(r[0], r[1], self._user_from_row(keys, r[0], r[1], r[2], r[3])) for r in rows]

    async def delete_user_keys(self, tenant: str, user_keys: Iterable[tuple[str, str]]) -> int:
        """Delete telephony users by ``(connection id, user id key)``."""
        pairs = list(user_keys)

        def job(conn: sqlite3.Connection) -> int:
            return sum(conn.execute("DELETE FROM telephony_users WHERE tenant=? AND connection=? AND user_id_key=?",
                                    (tenant, c, u)).rowcount for c, u in pairs)
        return await self.w.submit(job) if pairs else 0

    async def subject_key(self, tenant: str, kind: str, value: str) -> str:
        """The blind index naming a data subject (``kind`` is ``phone`` or ``email``)."""
        return (await self.keys(tenant)).blind_index(kind, value)

    async def restrict(self, tenant: str, subject_key: str, match_keys: Iterable[str], kind: str) -> None:
        """Record a restriction or objection: events matching any ``match_keys`` are not forwarded."""
        at = now_ms()
        rows = [(tenant, subject_key, k, kind, at) for k in {subject_key, *match_keys}]

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO restrictions (tenant, subject_key, match_key, kind, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (tenant, subject_key, match_key) DO UPDATE SET kind=excluded.kind", rows)
        await self.w.submit(job)

    async def unrestrict(self, tenant: str, subject_key: str) -> int:
        def job(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM restrictions WHERE tenant=? AND subject_key=?",
                                (tenant, subject_key)).rowcount
        return await self.w.submit(job)

    async def restriction(self, tenant: str, subject_key: str) -> str | None:
        """``restrict`` or ``object`` while the subject is restricted, else ``None``."""
        row = await self._lookup("SELECT kind FROM restrictions WHERE tenant=? AND subject_key=? LIMIT 1",
                              (tenant, subject_key))
        return str(row[0]) if row else None

    async def held_counts(self, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        """Per tenant: how many records and people the store holds from the window (counts only)."""
        out = []
        for (tenant,) in await self._all("SELECT id FROM tenants ORDER BY id"):
            ev = await self._one(
                "SELECT COUNT(*), COUNT(DISTINCT remote_key), COALESCE(SUM(restricted), 0) FROM events "
                "WHERE tenant=? AND received_at >= ? AND received_at < ?", (tenant, since_ms, until_ms))
            users = await self._one(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status <> 'logged_out' THEN 1 ELSE 0 END), 0) "
                "FROM telephony_users WHERE tenant=? AND updated_at < ?", (tenant, until_ms))
            records = await self._all(
                "SELECT plugin, COUNT(*) FROM records WHERE tenant=? AND created_at < ? GROUP BY plugin ORDER BY plugin",
                (tenant, until_ms))
            conns = await self._one("SELECT COUNT(*) FROM connections WHERE tenant=? AND created_at < ?",
                                    (tenant, until_ms))
            out.append({"tenant": tenant, "events": ev[0], "callers": ev[1], "restricted_events": ev[2],
                        "telephony_users": users[0], "users_with_contact_data": users[1],
                        "plugin_records": {p: n for p, n in records}, "connections": conns[0]})
        return out

