"""Data-subject rights over the call events: export, erase, restrict; breach counts."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from ..common import now_ms, phone_key
from ..crypto import TenantKeys
from ..protocols import SubjectEvent
from ..sealed import open_event
from .database import SQLiteDatabase


def _subject_where(keys: TenantKeys, phone: str | None, user_keys: Iterable[str]) -> tuple[str, list[str]]:
    """The events of a person: by remote or local number, or by telephony user."""
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


class SQLiteSubjects:
    """Data-subject rights over the call events, and the restrictions ingest consults."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def events(self, tenant: str, phone: str | None, user_keys: Iterable[str] = ()) -> list[SubjectEvent]:
        """Events of the tenant about a phone number or its telephony users:
        ``(seq, received_at, event)``; ``event`` is ``None`` for a restricted (payload-free) one."""
        keys = await self._db.keys(tenant)
        where, args = _subject_where(keys, phone, user_keys)
        if not where:
            return []
        rows = await self._db.all(
            f"SELECT seq, received_at, dedup_key, payload FROM events WHERE tenant=? AND ({where}) ORDER BY seq",
            [tenant, *args])
        return [(r[0], r[1], open_event(keys, r[2], r[3]) if r[3] else None) for r in rows]

    async def delete_events(self, tenant: str, phone: str | None, user_keys: Iterable[str] = ()) -> dict[str, int]:
        """Erase the events (and their deliveries) found by :meth:`events`."""
        keys = await self._db.keys(tenant)
        where, args = _subject_where(keys, phone, user_keys)
        if not where:
            return {"events": 0, "deliveries": 0}

        def job(conn: sqlite3.Connection) -> dict[str, int]:
            seqs = f"SELECT seq FROM events WHERE tenant=? AND ({where})"
            d = conn.execute(f"DELETE FROM deliveries WHERE event_seq IN ({seqs})", [tenant, *args])
            e = conn.execute(f"DELETE FROM events WHERE tenant=? AND ({where})", [tenant, *args])
            return {"events": e.rowcount, "deliveries": d.rowcount}
        counts = await self._db.w.submit(job)
        await self._db.checkpoint()
        return counts

    async def subject_key(self, tenant: str, kind: str, value: str) -> str:
        """The blind index naming a data subject (``kind`` is ``phone`` or ``email``)."""
        return (await self._db.keys(tenant)).blind_index(kind, value)

    async def restrict(self, tenant: str, subject_key: str, match_keys: Iterable[str], kind: str) -> int:
        """Record a restriction or objection: events matching any ``match_keys`` are not
        forwarded; pending deliveries of such events stored already are withdrawn."""
        at = now_ms()
        matches = sorted({subject_key, *match_keys})
        rows = [(tenant, subject_key, k, kind, at) for k in matches]
        marks = ",".join("?" * len(matches))

        def job(conn: sqlite3.Connection) -> int:
            conn.executemany(
                "INSERT INTO restrictions (tenant, subject_key, match_key, kind, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (tenant, subject_key, match_key) DO UPDATE SET kind=excluded.kind", rows)
            return conn.execute(
                "DELETE FROM deliveries WHERE state='pending' AND event_seq IN (SELECT seq FROM events "
                f"WHERE tenant=? AND (remote_key IN ({marks}) OR local_key IN ({marks}) OR user_key IN ({marks})))",
                [tenant, *matches, *matches, *matches]).rowcount
        return await self._db.w.submit(job)

    async def unrestrict(self, tenant: str, subject_key: str) -> int:
        def job(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM restrictions WHERE tenant=? AND subject_key=?",
                                (tenant, subject_key)).rowcount
        return await self._db.w.submit(job)

    async def restriction(self, tenant: str, subject_key: str) -> str | None:
        """``restrict`` or ``object`` while the subject is restricted, else ``None``."""
        row = self._db.lookup("SELECT kind FROM restrictions WHERE tenant=? AND subject_key=? LIMIT 1",
                              (tenant, subject_key))
        return str(row[0]) if row else None

    @staticmethod
    def restricted_keys(conn: sqlite3.Connection, wanted: list[str]) -> set[tuple[str, str]]:
        """In the writer thread: the ``(tenant, key)`` pairs among ``wanted`` keys that are
        under restriction; one indexed lookup per batch, none while nobody is restricted."""
        if not wanted or conn.execute("SELECT 1 FROM restrictions LIMIT 1").fetchone() is None:
            return set()
        found: set[tuple[str, str]] = set()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            found.update(conn.execute(
                f"SELECT tenant, match_key FROM restrictions WHERE match_key IN ({','.join('?' * len(chunk))})",
                chunk).fetchall())
        return found

    async def held_counts(self, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        """Per tenant: how many records and people the store holds from the window (counts only)."""
        out = []
        for (tenant,) in await self._db.all("SELECT id FROM tenants ORDER BY id"):
            ev = await self._db.one(
                "SELECT COUNT(*), COUNT(DISTINCT remote_key), COALESCE(SUM(restricted), 0) FROM events "
                "WHERE tenant=? AND received_at >= ? AND received_at < ?", (tenant, since_ms, until_ms))
            users = await self._db.one(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status <> 'logged_out' THEN 1 ELSE 0 END), 0) "
                "FROM telephony_users WHERE tenant=? AND updated_at < ?", (tenant, until_ms))
            records = await self._db.all(
                "SELECT plugin, COUNT(*) FROM records WHERE tenant=? AND created_at < ? "
                "GROUP BY plugin ORDER BY plugin", (tenant, until_ms))
            conns = await self._db.one("SELECT COUNT(*) FROM connections WHERE tenant=? AND created_at < ?",
                                       (tenant, until_ms))
            c2c = await self._db.one(
                "SELECT COUNT(*) FROM clicktocall WHERE tenant=? AND created_at >= ? AND created_at < ?",
                (tenant, since_ms, until_ms))
            restricted = await self._db.one(
                "SELECT COUNT(DISTINCT subject_key) FROM restrictions WHERE tenant=? AND created_at < ?",
                (tenant, until_ms))
            out.append({"tenant": tenant, "events": ev[0], "callers": ev[1], "restricted_events": ev[2],
                        "telephony_users": users[0], "users_with_contact_data": users[1],
                        "plugin_records": {p: n for p, n in records}, "connections": conns[0],
                        "clicktocall": c2c[0], "restricted_people": restricted[0]})
        return out

    def delete_tenant_rows(self, conn: sqlite3.Connection, tenant: str) -> dict[str, int]:
        return {"restrictions": conn.execute("DELETE FROM restrictions WHERE tenant=?", (tenant,)).rowcount}

    def forget(self, tenant: str) -> None:
        """Nothing of a tenant is cached here."""
