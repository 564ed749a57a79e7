"""Data-subject rights over the call events: export, erase, restrict; breach counts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

from ..common import now_ms, phone_key
from ..protocols import SubjectEvent
from ..sealed import open_event
from .database import PostgresDatabase, count

#: The events of a person: by remote or local number ($2), or by telephony user ($3).
_SUBJECT = "tenant=$1 AND (remote_key=$2 OR local_key=$2 OR user_key = ANY($3::text[]))"


class PostgresSubjects:
    """Data-subject rights over the call events, and the restrictions ingest consults."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def _who(self, tenant: str, phone: str | None, user_keys: Iterable[str]) -> tuple[str | None, list[str]]:
        keys = await self._db.keys(tenant)
        return phone_key(keys, phone), list(user_keys)

    async def events(self, tenant: str, phone: str | None, user_keys: Iterable[str] = ()) -> list[SubjectEvent]:
        keys = await self._db.keys(tenant)
        pkey, ukeys = await self._who(tenant, phone, user_keys)
        if pkey is None and not ukeys:
            return []
        rows = await self._db.all(
            f"SELECT seq, received_at, dedup_key, payload FROM events WHERE {_SUBJECT} ORDER BY seq",
            tenant, pkey, ukeys)
        return [(r[0], r[1], open_event(keys, r[2], r[3]) if r[3] else None) for r in rows]

    async def delete_events(self, tenant: str, phone: str | None, user_keys: Iterable[str] = ()) -> dict[str, int]:
        pkey, ukeys = await self._who(tenant, phone, user_keys)
        if pkey is None and not ukeys:
            return {"events": 0, "deliveries": 0}

        async def job(conn: asyncpg.Connection) -> dict[str, int]:
            d = await conn.execute(f"DELETE FROM deliveries WHERE event_seq IN (SELECT seq FROM events "
                                   f"WHERE {_SUBJECT})", tenant, pkey, ukeys)
            e = await conn.execute(f"DELETE FROM events WHERE {_SUBJECT}", tenant, pkey, ukeys)
            return {"events": count(e), "deliveries": count(d)}
        return await self._db.write(job)

    async def subject_key(self, tenant: str, kind: str, value: str) -> str:
        return (await self._db.keys(tenant)).blind_index(kind, value)

    async def restrict(self, tenant: str, subject_key: str, match_keys: Iterable[str], kind: str) -> int:
        at = now_ms()
        matches = sorted({subject_key, *match_keys})

        async def job(conn: asyncpg.Connection) -> int:
            await conn.execute(
                "INSERT INTO restrictions (tenant, subject_key, match_key, kind, created_at) "
                "SELECT $1, $2, m, $4, $5 FROM unnest($3::text[]) AS m "
                "ON CONFLICT (tenant, subject_key, match_key) DO UPDATE SET kind=excluded.kind",
                tenant, subject_key, matches, kind, at)
            return count(await conn.execute(
                "DELETE FROM deliveries WHERE state='pending' AND event_seq IN (SELECT seq FROM events "
                "WHERE tenant=$1 AND (remote_key = ANY($2) OR local_key = ANY($2) OR user_key = ANY($2)))",
                tenant, matches))
        return await self._db.write(job)

    async def unrestrict(self, tenant: str, subject_key: str) -> int:
        return await self._db.execute("DELETE FROM restrictions WHERE tenant=$1 AND subject_key=$2",
                                      tenant, subject_key)

    async def restriction(self, tenant: str, subject_key: str) -> str | None:
        row = await self._db.one("SELECT kind FROM restrictions WHERE tenant=$1 AND subject_key=$2 LIMIT 1",
                                 tenant, subject_key)
        return str(row[0]) if row else None

    @staticmethod
    async def restricted_keys(conn: asyncpg.Connection, wanted: list[str]) -> set[tuple[str, str]]:
        """The ``(tenant, key)`` pairs among ``wanted`` keys that are under restriction."""
        if not wanted:
            return set()
        rows = await conn.fetch("SELECT tenant, match_key FROM restrictions WHERE match_key = ANY($1::text[])",
                                wanted)
        return {(r[0], r[1]) for r in rows}

    async def held_counts(self, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        """Per tenant: how many records and people the store holds from the window (counts only)."""
        out = []
        for (tenant,) in await self._db.all("SELECT id FROM tenants ORDER BY id"):
            ev = await self._db.one(
                "SELECT COUNT(*), COUNT(DISTINCT remote_key), COALESCE(SUM(restricted), 0) FROM events "
                "WHERE tenant=$1 AND received_at >= $2 AND received_at < $3", tenant, since_ms, until_ms)
            users = await self._db.one(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status <> 'logged_out' THEN 1 ELSE 0 END), 0) "
                "FROM telephony_users WHERE tenant=$1 AND updated_at < $2", tenant, until_ms)
            records = await self._db.all(
                "SELECT plugin, COUNT(*) FROM records WHERE tenant=$1 AND created_at < $2 "
                "GROUP BY plugin ORDER BY plugin", tenant, until_ms)
            conns = await self._db.one("SELECT COUNT(*) FROM connections WHERE tenant=$1 AND created_at < $2",
                                       tenant, until_ms)
            c2c = await self._db.one(
                "SELECT COUNT(*) FROM clicktocall WHERE tenant=$1 AND created_at >= $2 AND created_at < $3",
                tenant, since_ms, until_ms)
            restricted = await self._db.one(
                "SELECT COUNT(DISTINCT subject_key) FROM restrictions WHERE tenant=$1 AND created_at < $2",
                tenant, until_ms)
            assert ev is not None and users is not None and conns is not None and c2c is not None
            assert restricted is not None
            out.append({"tenant": tenant, "events": ev[0], "callers": ev[1], "restricted_events": int(ev[2]),
                        "telephony_users": users[0], "users_with_contact_data": int(users[1]),
                        "plugin_records": {p: n for p, n in records}, "connections": conns[0],
                        "clicktocall": c2c[0], "restricted_people": restricted[0]})
        return out

    async def delete_tenant_rows(self, conn: asyncpg.Connection, tenant: str) -> dict[str, int]:
        return {"restrictions": count(await conn.execute("DELETE FROM restrictions WHERE tenant=$1", tenant))}

    def forget(self, tenant: str | None) -> None:
        """Nothing of a tenant is cached here."""
