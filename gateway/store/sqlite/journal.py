"""The journal: webhooks acknowledged before they were interpreted, sealed until then."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from functools import partial
from typing import Any

from ...models import Connection
from ..common import JournalEntry, open_journal, seal_journal
from .database import SQLiteDatabase

_APPEND = ("INSERT INTO journal (tenant, connection, row_key, payload, received_at) VALUES {rows}")


def _append(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    marks = ", ".join(["(?, ?, ?, ?, ?)"] * len(rows))
    conn.execute(_APPEND.replace("{rows}", marks), [v for row in rows for v in row])


class SQLiteJournal:
    """Webhooks a source checked (signature, well-formedness) and the gateway acknowledged,
    waiting to be interpreted into events. Each payload is sealed with the tenant's key."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def append(self, connection: Connection, body: bytes, headers: Sequence[tuple[str, str]],
                     content_type: str, query: Sequence[tuple[str, str]], received_at_ms: int) -> None:
        keys = await self._db.keys(connection.tenant)
        row_key = os.urandom(12).hex()
        payload = seal_journal(keys, row_key, body, headers, content_type, query)
        await self._db.w.submit_grouped_nowait(
            _append, (connection.tenant, connection.id, row_key, payload, received_at_ms))

    async def pending(self, *, limit: int = 256) -> list[JournalEntry]:
        rows = await self._db.all(
            "SELECT id, tenant, connection, row_key, payload, received_at FROM journal "
            "ORDER BY id LIMIT ?", (limit,))
        out = []
        for row_id, tenant, connection, row_key, payload, received_at in rows:
            keys = await self._db.keys(tenant)
            out.append(open_journal(keys, row_id, tenant, connection, row_key, payload, received_at))
        return out

    async def done(self, ids: Sequence[int]) -> None:
        if ids:
            await self._db.w.submit(partial(_delete, list(ids)))

    async def count(self) -> int:
        row = await self._db.one("SELECT COUNT(*) FROM journal")
        return int(row[0])

    @staticmethod
    def purge_batch(cutoff_ms: int, limit: int, conn: sqlite3.Connection) -> int:
        """In the writer thread: delete up to ``limit`` entries received before the cutoff."""
        return conn.execute("DELETE FROM journal WHERE id IN (SELECT id FROM journal WHERE received_at < ? "
                            "LIMIT ?)", (cutoff_ms, limit)).rowcount

    def delete_tenant_rows(self, conn: sqlite3.Connection, tenant: str) -> dict[str, int]:
        return {"journal": conn.execute("DELETE FROM journal WHERE tenant=?", (tenant,)).rowcount}

    def forget(self, tenant: str) -> None:
        """Nothing of a tenant is cached here."""


def _delete(ids: list[int], conn: sqlite3.Connection) -> int:
    total = 0
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        total += conn.execute(f"DELETE FROM journal WHERE id IN ({','.join('?' * len(chunk))})", chunk).rowcount
    return total
