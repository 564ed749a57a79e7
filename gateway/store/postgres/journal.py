"""The journal: webhooks acknowledged before they were interpreted, sealed until then."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import asyncpg

from ...models import Connection
from ..common import JournalEntry, open_journal, seal_journal
from .database import PostgresDatabase, count


async def _append(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
    await conn.executemany("INSERT INTO journal (tenant, connection, row_key, payload, received_at) "
                           "VALUES ($1, $2, $3, $4, $5)", rows)


class PostgresJournal:
    """Webhooks a source checked and the gateway acknowledged, waiting to be interpreted into
    events; each payload sealed with the tenant's key. Any replica may interpret any entry."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def append(self, connection: Connection, body: bytes, headers: Sequence[tuple[str, str]],
                     content_type: str, query: Sequence[tuple[str, str]], received_at_ms: int) -> None:
        keys = await self._db.keys(connection.tenant)
        row_key = os.urandom(12).hex()
        payload = seal_journal(keys, row_key, body, headers, content_type, query)
        await self._db.w.submit_grouped_nowait(
            _append, (connection.tenant, connection.id, row_key, payload, received_at_ms))

    async def pending(self, *, limit: int = 256) -> list[JournalEntry]:
        rows = await self._db.all("SELECT id, tenant, connection, row_key, payload, received_at FROM journal "
                                  "ORDER BY id LIMIT $1", limit)
        return [open_journal(await self._db.keys(r[1]), r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def done(self, ids: Sequence[int]) -> None:
        if ids:
            await self._db.execute("DELETE FROM journal WHERE id = ANY($1::bigint[])", list(ids))

    async def count(self) -> int:
        return int(await self._db.pool.fetchval("SELECT COUNT(*) FROM journal"))

    @staticmethod
    async def purge_batch(cutoff_ms: int, limit: int, conn: asyncpg.Connection) -> int:
        """Delete up to ``limit`` entries received before the cutoff."""
        return count(await conn.execute("DELETE FROM journal WHERE id IN (SELECT id FROM journal "
                                        "WHERE received_at < $1 LIMIT $2)", cutoff_ms, limit))

    async def delete_tenant_rows(self, conn: asyncpg.Connection, tenant: str) -> dict[str, int]:
        return {"journal": count(await conn.execute("DELETE FROM journal WHERE tenant=$1", tenant))}

    def forget(self, tenant: str | None) -> None:
        """Nothing of a tenant is cached here."""
