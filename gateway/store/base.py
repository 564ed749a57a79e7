"""The SQLite store's foundation: connections, lifecycle, migrations, tenants and keys.

One connection writes (through the group-commit writer), one reads scans in a thread, one
answers point reads inline. Everything personal is encrypted with the tenant's data key
before it reaches SQL; lookups use blind indexes.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from ..errors import Conflict, NotFound, StoreError
from ..events import ANONYMOUS, CallEvent
from ..models import Connection, SinkBinding, Tenant
from .crypto import MasterKeyring, TenantKeys, new_data_key
from .records import PendingDelivery
from .schema import MIGRATIONS, SCHEMA_VERSION
from .writer import GroupCommitWriter

log = logging.getLogger("gateway.store")

PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON", "foreign_keys=ON",
           "busy_timeout=10000")


def now_ms() -> int:
    return int(time.time() * 1000)


def ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def phone_key(keys: TenantKeys, number: str | None) -> str | None:
    """The blind index of a phone number, or ``None`` for no number or an anonymous caller."""
    if not number or number == ANONYMOUS:
        return None
    return keys.blind_index("phone", number)


def _pending(row: Any, event: CallEvent | None = None) -> PendingDelivery:
    """A ``deliveries`` row joined with its event's dedup key (in the SELECT order used here)."""
    return PendingDelivery(id=row[0], event_seq=row[1], tenant=row[2], sink=row[3], call_key=row[4],
                           attempts=row[5], next_at=row[6], received_at=row[7], since=row[8],
                           dedup_key=row[9], event=event)



class StoreBase:
    """Connections to the database, its lifecycle, tenants and their keys."""

    def __init__(self, path: str, keyring: MasterKeyring) -> None:
        self.path = path
        self.keyring = keyring
        self._r: aiosqlite.Connection | None = None
        self.writer: GroupCommitWriter | None = None
        self._keys: dict[str, TenantKeys] = {}
        self._connections: dict[str, Connection] = {}
        self._bindings: dict[str, list[SinkBinding]] = {}
        self._read_lock = asyncio.Lock()
        self._point: sqlite3.Connection | None = None
        # plugin records queued with wait=False and not committed yet: what get_record sees
        self._unsaved: dict[tuple[str, str, str, str], tuple[Any, asyncio.Future[None]]] = {}
        self._audit_refs: dict[str, str] = {}
        self._audit_pending: list[tuple[int, str, str | None, dict[str, Any]]] = []
        self._claim: int | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        writer = GroupCommitWriter(self._open_writer, self._ingest_rows)
        await writer.start()
        self.writer = writer
        self._r = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in PRAGMAS:
            await self._r.execute(f"PRAGMA {pragma}")
        self._point = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        for pragma in (*PRAGMAS, "query_only=ON"):
            self._point.execute(f"PRAGMA {pragma}")

    def _open_writer(self) -> sqlite3.Connection:
        """In the writer thread: the one writing connection, migrated to the current schema."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            # the writer keeps the hot index pages (dedup keys, call keys) of a large store in
            # memory: 32 MB instead of SQLite's 2 MB default
            for pragma in (*PRAGMAS, "cache_size=-32768"):
                conn.execute(f"PRAGMA {pragma}")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def claim_serving(self) -> None:
        """Become the one process that serves this database: delivers its queue and runs its
        background work. A second one would deliver every pending event again, so it is
        refused (a lock beside the database, released by the kernel even after ``kill -9``).
        Commands that only read or change data (purge, replay, key rotation) need no claim."""
        if self.path == ":memory:" or self._claim is not None:
            return
        fd = os.open(self.path + ".serving", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(f"another gateway process (pid {holder}) is serving this database; "
                             "stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._claim = fd

    def _release_claim(self) -> None:
        if self._claim is not None:
            os.close(self._claim)  # closing the descriptor releases the lock
            self._claim = None

    async def close(self) -> None:
        try:
            await self._close()
        finally:
            self._release_claim()

    async def _close(self) -> None:
        if self.writer is not None:
            try:
                await self.flush_audit()
            finally:
                await self.writer.stop()
            self.writer = None
        if self._point is not None:
            self._point.close()
            self._point = None
        if self._r is not None:
            await self._r.close()
            self._r = None

    @property
    def w(self) -> GroupCommitWriter:
        if self.writer is None:
            raise StoreError("store is not open")
        return self.writer

    @property
    def r(self) -> aiosqlite.Connection:
        if self._r is None:
            raise StoreError("store is not open")
        return self._r

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database has schema version {version}, newer than this gateway "
                f"understands ({SCHEMA_VERSION}): run a newer gateway"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            script = MIGRATIONS[number - 1].replace("{serial}", "INTEGER PRIMARY KEY")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(number),))
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise

    async def ping(self) -> bool:
        async with self._read_lock, self.r.execute("SELECT 1") as cur:
            return (await cur.fetchone()) is not None

    # Statements on the one reader connection never overlap: while any statement is active
    # SQLite keeps the connection's read snapshot, and reads would miss fresh commits.
    async def _all(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        async with self._read_lock, self.r.execute(sql, tuple(args)) as cur:
            return list(await cur.fetchall())

    async def _one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        """One row of any query (counts, joins) on the reader thread."""
        rows = await self._all(sql, args)
        return rows[0] if rows else None

    async def _lookup(self, sql: str, args: Iterable[Any] = ()) -> Any:
        """A point read (one row by primary or unique key) inline on the event loop's thread.

        In WAL mode a reader never waits for the writer, and a keyed lookup in a warm page
        cache takes microseconds: far less than a round trip to a reader thread, which
        under load costs a whole event-loop iteration. Anything that scans uses ``_one`` or
        ``_all`` so it never stalls the loop.
        """
        if self._point is None:
            raise StoreError("store is not open")
        cur = self._point.execute(sql, tuple(args))
        try:
            return cur.fetchone()
        finally:
            cur.close()

    # --- tenants and keys ------------------------------------------------------------------

    async def create_tenant(self, tenant: str) -> Tenant:
        kid, wrapped = self.keyring.wrap(tenant, new_data_key())
        created = now_ms()

        def job(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT INTO tenants (id, key_id, wrapped_key, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING", (tenant, kid, wrapped, created))
            return cur.rowcount == 1

        if not await self.w.submit(job):
            raise Conflict("tenant exists already")
        return Tenant(tenant, ms_to_dt(created))

    async def ensure_tenant(self, tenant: str) -> Tenant:
        try:
            return await self.create_tenant(tenant)
        except Conflict:
            found = await self.get_tenant(tenant)
            assert found is not None
            return found

    async def get_tenant(self, tenant: str) -> Tenant | None:
        row = await self._lookup("SELECT id, created_at, status, status_reason FROM tenants WHERE id=?", (tenant,))
        return Tenant(row[0], ms_to_dt(row[1]), row[2], row[3]) if row else None

    async def list_tenants(self) -> list[Tenant]:
        rows = await self._all("SELECT id, created_at, status, status_reason FROM tenants ORDER BY id")
        return [Tenant(r[0], ms_to_dt(r[1]), r[2], r[3]) for r in rows]

    async def set_tenant_status(self, tenant: str, status: str, reason: str | None = None) -> None:
        def job(conn: sqlite3.Connection) -> int:
            cur = conn.execute("UPDATE tenants SET status=?, status_reason=? WHERE id=?",
                                     (status, reason, tenant))
            return cur.rowcount
        if not await self.w.submit(job):
            raise NotFound("unknown tenant")

    async def keys(self, tenant: str) -> TenantKeys:
        cached = self._keys.get(tenant)
        if cached is not None:
            return cached
        row = await self._lookup("SELECT key_id, wrapped_key FROM tenants WHERE id=?", (tenant,))
        if row is None:
            raise NotFound("unknown tenant")
        keys = TenantKeys(tenant, self.keyring.unwrap(tenant, row[0], row[1]))
        self._keys[tenant] = keys
        return keys

    async def rotate_keys(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-wrap every tenant key under the current master key; return how many changed."""
        rows = await self._all("SELECT id, key_id, wrapped_key FROM tenants WHERE key_id <> ?",
                               (self.keyring.current_id,))
        done = 0
        for tenant, kid, wrapped in rows:
            data_key = self.keyring.unwrap(tenant, kid, wrapped)
            new_kid, new_wrapped = self.keyring.wrap(tenant, data_key)

            def job(conn: sqlite3.Connection, t: str = tenant, k: str = kid,
                          nk: str = new_kid, nw: bytes = new_wrapped) -> None:
                conn.execute("UPDATE tenants SET key_id=?, wrapped_key=? WHERE id=? AND key_id=?",
                                   (nk, nw, t, k))
            await self.w.submit(job)
            done += 1
            if progress is not None:
                progress(done, len(rows))
        return done

    async def remove_tenant(self, tenant: str) -> dict[str, int]:
        """Crypto-shred a tenant: its wrapped key and every row go; the files keep nothing."""
        if await self.get_tenant(tenant) is None:
            raise NotFound("unknown tenant")

        def job(conn: sqlite3.Connection) -> dict[str, int]:
            counts: dict[str, int] = {}
            conn.execute(
                "DELETE FROM deliveries WHERE tenant=?", (tenant,))
            for table in ("events", "telephony_users", "records", "sinks", "connections", "restrictions"):
                cur = conn.execute(f"DELETE FROM {table} WHERE tenant=?", (tenant,))
                counts[table] = cur.rowcount
            conn.execute("DELETE FROM leases WHERE name LIKE ?", (f"{tenant}\x1f%",))
            conn.execute("DELETE FROM tenants WHERE id=?", (tenant,))
            return counts

        counts = await self.w.submit(job)
        self._keys.pop(tenant, None)
        self._bindings.pop(tenant, None)
        self._audit_refs.pop(tenant, None)
        for cid in [c for c, conn in self._connections.items() if conn.tenant == tenant]:
            self._connections.pop(cid, None)
        await self.checkpoint()
        return counts

    async def checkpoint(self) -> None:
        """Move the WAL into the main file and truncate it, so deleted plaintext leaves it."""
        await self.w.submit(lambda conn: None)  # let queued writes land first
        async with self._read_lock:
            await self.r.execute("PRAGMA wal_checkpoint(TRUNCATE)")


    # --- provided by the other parts of the store ------------------------------------------

    def _ingest_rows(self, conn: sqlite3.Connection, rows: list[Any]) -> list[PendingDelivery]:
        raise NotImplementedError  # CallsPart

    async def flush_audit(self) -> None:
        raise NotImplementedError  # AuditPart
