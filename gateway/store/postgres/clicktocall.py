"""Calls started from a CRM and the provider calls that carry them out: sealed call records."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from ...errors import Conflict, NotFound
from ..common import now_ms, phone_key
from ..protocols import ClickToCallRow
from ..sealed import (call_key, match_key, open_clicktocall, provider_key, seal_call_row,
                      seal_provider_call)
from .database import PostgresDatabase, count

_COLUMNS = "call_key, sink, data, provider_call, state, created_at, updated_at"


class PostgresClickToCall:
    """Click-to-call correlation rows, found only through blind indexes."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def add(self, tenant: str, crm_call_id: str, *, sink: str, connection_id: str,
                  user_id: str, number: str, provider_call_id: str | None = None) -> None:
        keys = await self._db.keys(tenant)
        ckey, data, provider, pkey, mkey, phone = seal_call_row(keys, crm_call_id, connection_id, user_id,
                                                                number, provider_call_id)
        at = now_ms()
        added = await self._db.execute(
            "INSERT INTO clicktocall (tenant, call_key, sink, data, provider_call, provider_key, match_key, "
            "phone_key, state, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9, $9) "
            "ON CONFLICT (tenant, call_key) DO NOTHING",
            tenant, ckey, sink, data, provider, pkey, mkey, phone, at)
        if not added:
            raise Conflict("this CRM call is there already")

    async def get(self, tenant: str, crm_call_id: str) -> ClickToCallRow | None:
        keys = await self._db.keys(tenant)
        row = await self._db.one(f"SELECT {_COLUMNS} FROM clicktocall WHERE tenant=$1 AND call_key=$2",
                                 tenant, call_key(keys, crm_call_id))
        return open_clicktocall(keys, row) if row else None

    async def by_call(self, tenant: str, connection_id: str, call_id: str) -> ClickToCallRow | None:
        keys = await self._db.keys(tenant)
        row = await self._db.one(f"SELECT {_COLUMNS} FROM clicktocall WHERE tenant=$1 AND provider_key=$2 LIMIT 1",
                                 tenant, provider_key(keys, connection_id, call_id))
        return open_clicktocall(keys, row) if row else None

    async def candidates(self, tenant: str, *, connection_id: str, user_id: str, number: str,
                         since_ms: int) -> list[ClickToCallRow]:
        keys = await self._db.keys(tenant)
        rows = await self._db.all(
            f"SELECT {_COLUMNS} FROM clicktocall WHERE tenant=$1 AND match_key=$2 AND created_at >= $3 "
            "AND state='open' AND provider_key IS NULL ORDER BY created_at, call_key",
            tenant, match_key(keys, connection_id, user_id, number), since_ms)
        return [open_clicktocall(keys, r) for r in rows]

    async def adopt(self, tenant: str, crm_call_id: str, *, connection_id: str, call_id: str) -> None:
        keys = await self._db.keys(tenant)
        ckey = call_key(keys, crm_call_id)
        pkey = provider_key(keys, connection_id, call_id)
        sealed = seal_provider_call(keys, ckey, call_id)

        async def job(conn: asyncpg.Connection) -> None:
            if count(await conn.execute(
                    "UPDATE clicktocall SET provider_call=$1, provider_key=$2, state='adopted', updated_at=$3 "
                    "WHERE tenant=$4 AND call_key=$5 AND provider_key IS NULL",
                    sealed, pkey, now_ms(), tenant, ckey)):
                return
            row = await conn.fetchrow("SELECT provider_key FROM clicktocall WHERE tenant=$1 AND call_key=$2",
                                      tenant, ckey)
            if row is None:
                raise NotFound("no such click-to-call")
            if row[0] != pkey:
                raise Conflict("another call has adopted this click-to-call")
        await self._db.write(job)

    async def set_state(self, tenant: str, crm_call_id: str, state: str) -> None:
        keys = await self._db.keys(tenant)
        if not await self._db.execute("UPDATE clicktocall SET state=$1, updated_at=$2 WHERE tenant=$3 AND call_key=$4",
                                      state, now_ms(), tenant, call_key(keys, crm_call_id)):
            raise NotFound("no such click-to-call")

    async def older_than(self, cutoff_ms: int, states: Iterable[str]) -> list[tuple[str, ClickToCallRow]]:
        wanted = sorted(set(states))
        if not wanted:
            return []
        rows = await self._db.all(
            f"SELECT tenant, {_COLUMNS} FROM clicktocall WHERE state = ANY($1::text[]) "
            "AND updated_at < $2 ORDER BY updated_at, tenant, call_key", wanted, cutoff_ms)
        return [(r[0], open_clicktocall(await self._db.keys(r[0]), tuple(r)[1:])) for r in rows]

    async def delete(self, tenant: str, crm_call_id: str) -> None:
        keys = await self._db.keys(tenant)
        await self._db.execute("DELETE FROM clicktocall WHERE tenant=$1 AND call_key=$2",
                               tenant, call_key(keys, crm_call_id))

    async def by_phone(self, tenant: str, phone: str) -> list[ClickToCallRow]:
        keys = await self._db.keys(tenant)
        pkey = phone_key(keys, phone)
        if pkey is None:
            return []
        rows = await self._db.all(
            f"SELECT {_COLUMNS} FROM clicktocall WHERE tenant=$1 AND phone_key=$2 ORDER BY created_at, call_key",
            tenant, pkey)
        return [open_clicktocall(keys, r) for r in rows]

    async def delete_by_phone(self, tenant: str, phone: str) -> int:
        keys = await self._db.keys(tenant)
        pkey = phone_key(keys, phone)
        if pkey is None:
            return 0
        return await self._db.execute("DELETE FROM clicktocall WHERE tenant=$1 AND phone_key=$2", tenant, pkey)

    @staticmethod
    async def purge_batch(cutoff_ms: int, limit: int, conn: asyncpg.Connection) -> int:
        """Delete up to ``limit`` rows created before the cutoff."""
        return count(await conn.execute("DELETE FROM clicktocall WHERE ctid IN (SELECT ctid FROM clicktocall "
                                        "WHERE created_at < $1 LIMIT $2)", cutoff_ms, limit))

    async def delete_tenant_rows(self, conn: asyncpg.Connection, tenant: str) -> dict[str, int]:
        return {"clicktocall": count(await conn.execute("DELETE FROM clicktocall WHERE tenant=$1", tenant))}

    def forget(self, tenant: str | None) -> None:
        """Nothing of a tenant is cached here."""
