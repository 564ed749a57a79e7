"""The tamper-evident audit log: a hash chain of entries that name no person."""

from __future__ import annotations

import secrets
import sqlite3
from typing import Any

import orjson

from ...audit import GENESIS, AuditEntry, canonical, chain_hash
from ..common import now_ms
from .database import SQLiteDatabase


class SQLiteAudit:
    """The tamper-evident audit log; deferred entries wait in memory for the next flush."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db
        self._refs: dict[str, str] = {}
        self._pending: list[tuple[int, str, str | None, dict[str, Any]]] = []

    async def ref(self, tenant: str) -> str | None:
        """The tenant's pseudonym in the audit log (made on first use), ``None`` for no tenant.

        Entries name tenants only by it, so once a tenant is removed (and with it this
        mapping) its audit entries stay verifiable but no longer say whose they were.
        """
        cached = self._refs.get(tenant)
        if cached is not None:
            return cached
        fresh = "t-" + secrets.token_hex(8)

        def job(conn: sqlite3.Connection) -> str | None:
            conn.execute("UPDATE tenants SET audit_ref=? WHERE id=? AND audit_ref IS NULL", (fresh, tenant))
            row = conn.execute("SELECT audit_ref FROM tenants WHERE id=?", (tenant,)).fetchone()
            return str(row[0]) if row else None
        ref = await self._db.w.submit(job)
        if ref is not None:
            self._refs[tenant] = ref
        return ref

    async def append(self, action: str, tenant_ref: str | None, details: dict[str, Any], *,
                     defer: bool = False) -> None:
        """Append one entry to the hash chain, in the writer's transaction (so the chain is serial
        even across processes sharing the database). ``defer`` only queues it: it is written
        with the next entry that is not deferred, by :meth:`flush`, or at close."""
        self._pending.append((now_ms(), action, tenant_ref, details))
        if not defer:
            await self.flush()

    async def flush(self) -> None:
        """Write the queued audit entries."""
        if not self._pending:
            return
        entries, self._pending = self._pending, []

        def job(conn: sqlite3.Connection) -> None:
            last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            anchor = conn.execute("SELECT seq, hash FROM audit_anchor WHERE id = 1").fetchone()
            seq, prev = max((tuple(r) for r in (last, anchor) if r), default=(0, GENESIS))
            for at, action, ref, details in entries:
                seq += 1
                digest = chain_hash(prev, canonical(seq, at, action, ref, details))
                conn.execute("INSERT INTO audit_log (seq, at, action, tenant_ref, details, prev_hash, hash) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (seq, at, action, ref, orjson.dumps(details).decode(), prev, digest))
                prev = digest
            conn.execute("INSERT INTO audit_anchor (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE "
                         "SET seq = excluded.seq, hash = excluded.hash", (seq, prev))
        await self._db.w.submit(job)

    async def anchor(self) -> tuple[int, str] | None:
        row = await self._db.one("SELECT seq, hash FROM audit_anchor WHERE id = 1")
        return (int(row[0]), str(row[1])) if row else None

    async def entries(self, *, after: int = 0, limit: int | None = None,
                      tenant_ref: str | None = None) -> list[AuditEntry]:
        sql = "SELECT seq, at, action, tenant_ref, details, prev_hash, hash FROM audit_log WHERE seq > ?"
        args: list[Any] = [after]
        if tenant_ref is not None:
            sql += " AND tenant_ref=?"
            args.append(tenant_ref)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [AuditEntry(r[0], r[1], r[2], r[3], orjson.loads(r[4]), r[5], r[6])
                for r in await self._db.all(sql, args)]

    def delete_tenant_rows(self, conn: sqlite3.Connection, tenant: str) -> dict[str, int]:
        """The log keeps the tenant's entries (verifiable, no longer saying whose)."""
        return {}

    def forget(self, tenant: str) -> None:
        self._refs.pop(tenant, None)
