"""The tamper-evident audit log: one hash chain, whichever process appends.

Appends take an advisory lock for the length of their transaction, so the chain head each
process reads is the one it writes after: entries of several replicas interleave but never
fork the chain.
"""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg
import orjson

from ...audit import GENESIS, AuditEntry, canonical, chain_hash
from ..common import now_ms
from .database import PostgresDatabase
from .schema import Conn

#: The advisory lock that serialises appends to the chain across processes ("audit").
CHAIN_LOCK = 0x6175646974


class PostgresAudit:
    """The tamper-evident audit log; deferred entries wait in memory for the next flush."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._refs: dict[str, str] = {}
        self._pending: list[tuple[int, str, str | None, dict[str, Any]]] = []
        db.on_forget(self.forget)

    async def ref(self, tenant: str) -> str | None:
        """The tenant's pseudonym in the audit log (made on first use), ``None`` for no tenant."""
        cached = self._refs.get(tenant)
        if cached is not None:
            return cached
        fresh = "t-" + secrets.token_hex(8)

        async def job(conn: asyncpg.Connection) -> str | None:
            ref = await conn.fetchval("UPDATE tenants SET audit_ref = COALESCE(audit_ref, $1) WHERE id=$2 "
                                      "RETURNING audit_ref", fresh, tenant)
            return None if ref is None else str(ref)
        ref = await self._db.write(job)
        if ref is not None:
            self._refs[tenant] = ref
        return ref

    async def append(self, action: str, tenant_ref: str | None, details: dict[str, Any], *,
                     defer: bool = False) -> None:
        self._pending.append((now_ms(), action, tenant_ref, details))
        if not defer:
            await self.flush()

    async def flush(self) -> None:
        """Write the queued entries after the chain's head, under the chain's lock."""
        if not self._pending:
            return
        entries, self._pending = self._pending, []

        async def job(conn: Conn) -> None:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", CHAIN_LOCK)
            last = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            anchor = await conn.fetchrow("SELECT seq, hash FROM audit_anchor WHERE id = 1")
            seq, prev = max((tuple(r) for r in (last, anchor) if r), default=(0, GENESIS))
            rows = []
            for at, action, ref, details in entries:
                seq += 1
                digest = chain_hash(prev, canonical(seq, at, action, ref, details))
                rows.append((seq, at, action, ref, orjson.dumps(details).decode(), prev, digest))
                prev = digest
            await conn.executemany("INSERT INTO audit_log (seq, at, action, tenant_ref, details, prev_hash, hash) "
                                   "VALUES ($1, $2, $3, $4, $5, $6, $7)", rows)
            await conn.execute("INSERT INTO audit_anchor (id, seq, hash) VALUES (1, $1, $2) ON CONFLICT (id) "
                               "DO UPDATE SET seq = excluded.seq, hash = excluded.hash", seq, prev)
        # a transaction of its own: the chain's lock is held only for these few statements
        async with self._db.pool.acquire() as conn, conn.transaction():
            await job(conn)

    async def anchor(self) -> tuple[int, str] | None:
        row = await self._db.one("SELECT seq, hash FROM audit_anchor WHERE id = 1")
        return (int(row[0]), str(row[1])) if row else None

    async def entries(self, *, after: int = 0, limit: int | None = None,
                      tenant_ref: str | None = None) -> list[AuditEntry]:
        rows = await self._db.all(
            "SELECT seq, at, action, tenant_ref, details, prev_hash, hash FROM audit_log WHERE seq > $1 "
            "AND ($2::text IS NULL OR tenant_ref=$2) ORDER BY seq LIMIT $3", after, tenant_ref, limit)
        return [AuditEntry(r[0], r[1], r[2], r[3], orjson.loads(r[4]), r[5], r[6]) for r in rows]

    async def delete_tenant_rows(self, conn: asyncpg.Connection, tenant: str) -> dict[str, int]:
        """The log keeps the tenant's entries (verifiable, no longer saying whose)."""
        return {}

    def forget(self, tenant: str | None) -> None:
        if tenant is None:
            self._refs.clear()
        else:
            self._refs.pop(tenant, None)
