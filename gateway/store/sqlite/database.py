"""What every SQLite part shares: the connections, the group-commit writer, the key cache.

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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import aiosqlite

from ...errors import NotFound, StoreError
from ..crypto import MasterKeyring, TenantKeys
from ..schema import MIGRATIONS, SCHEMA_VERSION
from .writer import AfterCommit, GroupCommitWriter, IngestFn

log = logging.getLogger("gateway.store")

PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON", "foreign_keys=ON",
           "busy_timeout=10000")


class TenantRows(Protocol):
    """A part that keeps rows or cached values of tenants: tenant removal goes through it."""

    def delete_tenant_rows(self, conn: sqlite3.Connection, tenant: str) -> dict[str, int]:
        """In the writer thread: delete the tenant's rows; return how many per table."""

    def forget(self, tenant: str) -> None:
        """Drop whatever of the tenant is cached in memory."""


class SQLiteDatabase:
    """One SQLite database: its connections, its writer, its tenants' keys."""

    def __init__(self, path: str, keyring: MasterKeyring) -> None:
        self.path = path
        self.keyring = keyring
        self.writer: GroupCommitWriter | None = None
        self._r: aiosqlite.Connection | None = None
        self._point: sqlite3.Connection | None = None
        self._read_lock = asyncio.Lock()
        self._keys: dict[str, TenantKeys] = {}
        self._claim: int | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self, ingest: IngestFn, after_ingest: AfterCommit | None) -> None:
        """Start the writer (which migrates) with the events' ingest function, then readers."""
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        writer = GroupCommitWriter(self._open_writer, ingest, after_ingest)
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
            migrate(conn)
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

    async def close(self) -> None:
        """Finish queued writes, close the connections, release the serving claim."""
        try:
            if self.writer is not None:
                await self.writer.stop()
                self.writer = None
            if self._point is not None:
                self._point.close()
                self._point = None
            if self._r is not None:
                await self._r.close()
                self._r = None
        finally:
            if self._claim is not None:
                os.close(self._claim)  # closing the descriptor releases the lock
                self._claim = None

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

    async def ping(self) -> bool:
        async with self._read_lock, self.r.execute("SELECT 1") as cur:
            return (await cur.fetchone()) is not None

    async def checkpoint(self) -> None:
        """Move the WAL into the main file and truncate it, so deleted plaintext leaves it."""
        await self.w.submit(lambda conn: None)  # let queued writes land first
        async with self._read_lock:
            await self.r.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def file_paths(self) -> list[str]:
        """The database files on disk (for scans and backups)."""
        return [p for p in (self.path, self.path + "-wal", self.path + "-shm") if os.path.exists(p)]

    # --- reads -----------------------------------------------------------------------------

    # Statements on the one reader connection never overlap: while any statement is active
    # SQLite keeps the connection's read snapshot, and reads would miss fresh commits.
    async def all(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        """Every row of a query, on the reader thread."""
        async with self._read_lock, self.r.execute(sql, tuple(args)) as cur:
            return list(await cur.fetchall())

    async def one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        """One row of any query (counts, joins) on the reader thread."""
        rows = await self.all(sql, args)
        return rows[0] if rows else None

    def lookup(self, sql: str, args: Iterable[Any] = ()) -> Any:
        """A point read (one row by primary or unique key) inline on the event loop's thread.

        In WAL mode a reader never waits for the writer, and a keyed lookup in a warm page
        cache takes microseconds: far less than a round trip to a reader thread, which
        under load costs a whole event-loop iteration. Anything that scans uses ``one`` or
        ``all`` so it never stalls the loop.
        """
        return self._inline(sql, args, sqlite3.Cursor.fetchone)

    def lookup_all(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        """The rows of one index entry, read inline like :meth:`lookup` (an equality match on
        an index, a handful of rows: not a scan)."""
        rows: list[Any] = self._inline(sql, args, sqlite3.Cursor.fetchall)
        return rows

    def _inline(self, sql: str, args: Iterable[Any], fetch: Callable[[sqlite3.Cursor], Any]) -> Any:
        if self._point is None:
            raise StoreError("store is not open")
        cur = self._point.execute(sql, tuple(args))
        try:
            return fetch(cur)
        finally:
            cur.close()

    # --- tenant keys -----------------------------------------------------------------------

    async def keys(self, tenant: str) -> TenantKeys:
        """The tenant's unwrapped keys, cached until the tenant is removed."""
        cached = self._keys.get(tenant)
        if cached is not None:
            return cached
        row = self.lookup("SELECT key_id, wrapped_key FROM tenants WHERE id=?", (tenant,))
        if row is None:
            raise NotFound("unknown tenant")
        keys = TenantKeys(tenant, self.keyring.unwrap(tenant, row[0], row[1]))
        self._keys[tenant] = keys
        return keys

    def forget_keys(self, tenant: str) -> None:
        self._keys.pop(tenant, None)


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the migrations this database lacks, each in its own transaction."""
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
