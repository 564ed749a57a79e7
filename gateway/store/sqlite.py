"""The embedded store: SQLite in WAL mode through aiosqlite, every commit fsync'd.

One connection writes (through the group-commit writer), one reads. Everything personal is
encrypted with the tenant's data key before it reaches SQL; lookups use blind indexes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite3

import aiosqlite
import orjson

from ..audit import GENESIS, AuditEntry, canonical, chain_hash
from ..errors import Conflict, NotFound, StoreError
from ..events import ANONYMOUS, CallEvent
from ..models import Connection, SinkBinding, TelephonyUser, Tenant
from .crypto import MasterKeyring, TenantKeys, new_data_key
from .records import DeadLetter, PendingDelivery
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


class SQLiteStore:
    """The store behind one interface; a PostgreSQL twin will implement the same methods."""

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
            for pragma in PRAGMAS:
                conn.execute(f"PRAGMA {pragma}")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
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
        """A point read (one row by key) inline on the event loop's thread.

        In WAL mode a reader never waits for the writer, and a keyed lookup in a warm page
        cache takes microseconds: far less than a round trip to a reader thread, which
        under load costs a whole event-loop iteration. Scans (``_all``) stay in the thread.
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
        row = await self._one("SELECT id, created_at, status, status_reason FROM tenants WHERE id=?", (tenant,))
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
        row = await self._one("SELECT key_id, wrapped_key FROM tenants WHERE id=?", (tenant,))
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

    # --- connections -----------------------------------------------------------------------

    def _seal_settings(self, keys: TenantKeys, table: str, row: str, settings: dict[str, Any]) -> bytes:
        return keys.encrypt(table, "settings", row, _dumps(settings))

    async def add_connection(self, connection: Connection) -> Connection:
        keys = await self.keys(connection.tenant)
        sealed = self._seal_settings(keys, "connections", connection.id, connection.settings)
        created = now_ms()

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO connections (id, tenant, plugin, settings, status, created_at) "
                "VALUES (?, ?, ?, ?, 'active', ?)",
                (connection.id, connection.tenant, connection.plugin, sealed, created))
        await self.w.submit(job)
        saved = Connection(connection.id, connection.tenant, connection.plugin,
                           dict(connection.settings), "active", None, ms_to_dt(created))
        self._connections[saved.id] = saved
        return saved

    @staticmethod
    def new_connection_id() -> str:
        return secrets.token_urlsafe(18)

    async def get_connection(self, connection_id: str) -> Connection | None:
        cached = self._connections.get(connection_id)
        if cached is not None:
            return cached
        row = await self._one(
            "SELECT id, tenant, plugin, settings, status, status_reason, created_at "
            "FROM connections WHERE id=?", (connection_id,))
        if row is None:
            return None
        connection = await self._connection_from_row(row)
        self._connections[connection_id] = connection
        return connection

    async def _connection_from_row(self, row: Any) -> Connection:
        keys = await self.keys(row[1])
        settings = orjson.loads(keys.decrypt("connections", "settings", row[0], row[3]))
        return Connection(row[0], row[1], row[2], settings, row[4], row[5], ms_to_dt(row[6]))

    async def list_connections(self, tenant: str | None = None, plugin: str | None = None) -> list[Connection]:
        """Connections of one tenant, one plugin, both, or all."""
        sql = "SELECT id, tenant, plugin, settings, status, status_reason, created_at FROM connections WHERE 1=1"
        args: list[Any] = []
        if tenant is not None:
            sql += " AND tenant=?"
            args.append(tenant)
        if plugin is not None:
            sql += " AND plugin=?"
            args.append(plugin)
        rows = await self._all(sql + " ORDER BY created_at, id", args)
        return [await self._connection_from_row(r) for r in rows]

    async def update_connection(self, connection_id: str, *, settings: dict[str, Any] | None = None,
                                status: str | None = None, reason: str | None = None) -> Connection:
        current = await self.get_connection(connection_id)
        if current is None:
            raise NotFound("unknown connection")
        keys = await self.keys(current.tenant)
        new_settings = current.settings if settings is None else dict(settings)
        new_status = current.status if status is None else status
        new_reason = reason if status is not None else current.status_reason
        sealed = self._seal_settings(keys, "connections", connection_id, new_settings)

        def job(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE connections SET settings=?, status=?, status_reason=? WHERE id=?",
                               (sealed, new_status, new_reason, connection_id))
        await self.w.submit(job)
        updated = Connection(current.id, current.tenant, current.plugin, new_settings,
                             new_status, new_reason, current.created_at)
        self._connections[connection_id] = updated
        return updated

    async def delete_connection(self, connection_id: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM telephony_users WHERE connection=?", (connection_id,))
            conn.execute("DELETE FROM connections WHERE id=?", (connection_id,))
        await self.w.submit(job)
        self._connections.pop(connection_id, None)

    # --- sink bindings ---------------------------------------------------------------------

    async def bind_sink(self, tenant: str, plugin: str, settings: dict[str, Any]) -> SinkBinding:
        keys = await self.keys(tenant)
        sealed = self._seal_settings(keys, "sinks", plugin, settings)
        created = now_ms()

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO sinks (tenant, plugin, settings, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (tenant, plugin) DO UPDATE SET settings = excluded.settings",
                (tenant, plugin, sealed, created))
        await self.w.submit(job)
        self._bindings.pop(tenant, None)
        return SinkBinding(tenant, plugin, dict(settings))

    async def unbind_sink(self, tenant: str, plugin: str) -> None:
        def job(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM deliveries WHERE tenant=? AND sink=? AND state='pending'",
                               (tenant, plugin))
            cur = conn.execute("DELETE FROM sinks WHERE tenant=? AND plugin=?", (tenant, plugin))
            return cur.rowcount
        removed = await self.w.submit(job)
        self._bindings.pop(tenant, None)
        if not removed:
            raise NotFound("no such sink for this tenant")

    async def sink_bindings(self, tenant: str) -> list[SinkBinding]:
        cached = self._bindings.get(tenant)
        if cached is not None:
            return cached
        keys = await self.keys(tenant)
        rows = await self._all("SELECT plugin, settings FROM sinks WHERE tenant=? ORDER BY plugin", (tenant,))
        bindings = [SinkBinding(tenant, p, orjson.loads(keys.decrypt("sinks", "settings", p, s)))
                    for p, s in rows]
        self._bindings[tenant] = bindings
        return bindings

    async def sink_binding(self, tenant: str, plugin: str) -> SinkBinding | None:
        for binding in await self.sink_bindings(tenant):
            if binding.plugin == plugin:
                return binding
        return None

    # --- events and deliveries -------------------------------------------------------------

    async def ingest(self, connection: Connection, events: list[CallEvent], received_at: int) -> None:
        """Store events durably (deduplicated) and queue one delivery per bound sink.

        Each event carries blind indexes of its remote and local number and its telephony user,
        so data-subject requests find it and restrictions apply at ingest.
        """
        if not events:
            return
        keys = await self.keys(connection.tenant)
        rows = []
        for ev in events:
            dedup = keys.blind_index("event", f"{connection.id}\x1f{ev.event_id}")
            call_key = keys.blind_index("call", f"{connection.id}\x1f{ev.call_id}")
            payload = keys.encrypt("events", "payload", dedup, ev.to_json())
            rows.append(((connection.tenant, connection.id, dedup, call_key, payload, received_at,
                          phone_key(keys, ev.remote_number), phone_key(keys, ev.local_number),
                          keys.blind_index("user", f"{connection.id}\x1f{ev.local_user}")
                          if ev.local_user else None), ev))
        await self.w.submit_ingest(rows)

    @staticmethod
    def _restricted_keys(conn: sqlite3.Connection, rows: list[Any]) -> set[tuple[str, str]]:
        """(tenant, key) pairs of the batch that are under restriction: one lookup per batch."""
        if conn.execute("SELECT 1 FROM restrictions LIMIT 1").fetchone() is None:
            return set()
        wanted = sorted({k for r, _ in rows for k in r[6:9] if k})
        found: set[tuple[str, str]] = set()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            found.update(conn.execute(
                f"SELECT tenant, match_key FROM restrictions WHERE match_key IN ({','.join('?' * len(chunk))})",
                chunk).fetchall())
        return found

    def _ingest_rows(self, conn: sqlite3.Connection, rows: list[Any]) -> list[PendingDelivery]:
        """In the writer thread: insert events (duplicates ignored), queue their deliveries.

        An event about a restricted person keeps only what deduplication needs (no payload)
        and gets no delivery.
        """
        before = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        restricted = self._restricted_keys(conn, rows)
        values = []
        for r, _ in rows:
            if restricted and any((r[0], k) in restricted for k in r[6:9] if k):
                values.append((*r[:4], b"", *r[5:], 1))
            else:
                values.append((*r, 0))
        conn.executemany(
            "INSERT INTO events (tenant, connection, dedup_key, call_key, payload, received_at, "
            "remote_key, local_key, user_key, restricted) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedup_key) DO NOTHING", values)
        conn.execute(
            "INSERT INTO deliveries (event_seq, tenant, sink, call_key, state, attempts, next_at, "
            "received_at, since, updated_at) SELECT e.seq, e.tenant, s.plugin, e.call_key, 'pending', 0, "
            "e.received_at, e.received_at, e.received_at, e.received_at FROM events e JOIN sinks s ON s.tenant = e.tenant "
            "WHERE e.seq > ? AND e.restricted = 0", (before,))
        fresh = conn.execute(
            "SELECT d.id, d.event_seq, d.tenant, d.sink, d.call_key, d.attempts, d.next_at, "
            "d.received_at, d.since, e.dedup_key FROM deliveries d JOIN events e ON e.seq = d.event_seq "
            "WHERE d.event_seq > ? ORDER BY d.id", (before,)).fetchall()
        by_dedup = {r[2]: ev for r, ev in rows}
        return [_pending(row, by_dedup.get(row[9])) for row in fresh]

    async def load_event(self, tenant: str, seq: int) -> CallEvent | None:
        row = await self._one("SELECT dedup_key, payload FROM events WHERE seq=? AND tenant=?", (seq, tenant))
        if row is None:
            return None
        keys = await self.keys(tenant)
        return CallEvent.from_dict(orjson.loads(keys.decrypt("events", "payload", row[0], row[1])))

    async def pending_deliveries(self) -> list[PendingDelivery]:
        rows = await self._all(
            "SELECT d.id, d.event_seq, d.tenant, d.sink, d.call_key, d.attempts, d.next_at, "
            "d.received_at, d.since, e.dedup_key FROM deliveries d JOIN events e ON e.seq = d.event_seq "
            "WHERE d.state = 'pending' ORDER BY d.id")
        return [_pending(row) for row in rows]

    async def count_deliveries(self, state: str) -> int:
        row = await self._one("SELECT COUNT(*) FROM deliveries WHERE state=?", (state,))
        return int(row[0])

    async def finish_delivery(self, delivery_id: int) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE deliveries SET state='done', last_error=NULL, updated_at=? WHERE id=?",
                               (now_ms(), delivery_id))
        await self.w.submit(job)

    async def retry_delivery(self, delivery_id: int, attempts: int, next_at: int, reason: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE deliveries SET attempts=?, next_at=?, last_error=?, updated_at=? WHERE id=?",
                (attempts, next_at, reason, now_ms(), delivery_id))
        await self.w.submit(job)

    async def dead_letter(self, delivery_id: int, attempts: int, reason: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE deliveries SET state='dead', attempts=?, last_error=?, updated_at=? WHERE id=?",
                (attempts, reason, now_ms(), delivery_id))
        await self.w.submit(job)

    async def dead_letters(self, tenant: str | None = None) -> list[DeadLetter]:
        sql = ("SELECT id, tenant, sink, attempts, COALESCE(last_error, ''), received_at, updated_at "
               "FROM deliveries WHERE state='dead'")
        args: list[Any] = []
        if tenant is not None:
            sql += " AND tenant=?"
            args.append(tenant)
        return [DeadLetter(*r) for r in await self._all(sql + " ORDER BY id", args)]

    async def replay_dead_letter(self, delivery_id: int, tenant: str | None = None) -> PendingDelivery:
        def job(conn: sqlite3.Connection) -> int:
            sql = ("UPDATE deliveries SET state='pending', attempts=0, next_at=?, since=?, updated_at=? "
                   "WHERE id=? AND state='dead'")
            args: list[Any] = [now_ms(), now_ms(), now_ms(), delivery_id]
            if tenant is not None:
                sql += " AND tenant=?"
                args.append(tenant)
            cur = conn.execute(sql, args)
            return cur.rowcount
        if not await self.w.submit(job):
            raise NotFound("no such dead letter")
        row = await self._one(
            "SELECT d.id, d.event_seq, d.tenant, d.sink, d.call_key, d.attempts, d.next_at, "
            "d.received_at, d.since, e.dedup_key FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.id=?",
            (delivery_id,))
        return _pending(row)

    # --- telephony users -------------------------------------------------------------------

    async def put_user(self, connection: Connection, user: TelephonyUser) -> None:
        keys = await self.keys(connection.tenant)
        uid = keys.blind_index("user", f"{connection.id}\x1f{user.user_id}")
        data = keys.encrypt("telephony_users", "data", f"{connection.id}\x1f{uid}", _dumps({
            "user_id": user.user_id, "name": user.name, "email": user.email,
            "extension": user.extension, "numbers": list(user.numbers)}))
        email_key = keys.blind_index("email", user.email.strip().lower()) if user.email else None
        ext_key = keys.blind_index("extension", str(user.extension)) if user.extension else None

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO telephony_users (connection, user_id_key, tenant, data, email_key, extension_key, "
                "status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (connection, user_id_key) "
                "DO UPDATE SET data=excluded.data, email_key=excluded.email_key, "
                "extension_key=excluded.extension_key, status=excluded.status, updated_at=excluded.updated_at",
                (connection.id, uid, connection.tenant, data, email_key, ext_key, user.status, now_ms()))
        await self.w.submit(job)

    def _user_from_row(self, keys: TenantKeys, connection_id: str, uid: str, blob: bytes, status: str) -> TelephonyUser:
        d = orjson.loads(keys.decrypt("telephony_users", "data", f"{connection_id}\x1f{uid}", blob))
        return TelephonyUser(d["user_id"], d.get("name"), d.get("email"), d.get("extension"),
                             tuple(d.get("numbers") or ()), status)

    async def get_user(self, connection: Connection, user_id: str) -> TelephonyUser | None:
        keys = await self.keys(connection.tenant)
        uid = keys.blind_index("user", f"{connection.id}\x1f{user_id}")
        row = await self._one("SELECT data, status FROM telephony_users WHERE connection=? AND user_id_key=?",
                              (connection.id, uid))
        return self._user_from_row(keys, connection.id, uid, row[0], row[1]) if row else None

    async def list_users(self, connection: Connection) -> list[TelephonyUser]:
        keys = await self.keys(connection.tenant)
        rows = await self._all("SELECT user_id_key, data, status FROM telephony_users WHERE connection=?",
                               (connection.id,))
        return [self._user_from_row(keys, connection.id, r[0], r[1], r[2]) for r in rows]

    async def find_users(self, tenant: str, *, email: str | None = None,
                         extension: str | None = None) -> list[tuple[str, TelephonyUser]]:
        """Users of any of the tenant's connections by e-mail or extension: (connection id, user)."""
        keys = await self.keys(tenant)
        if email:
            column, value = "email_key", keys.blind_index("email", email.strip().lower())
        elif extension:
            column, value = "extension_key", keys.blind_index("extension", str(extension))
        else:
            return []
        rows = await self._all(
            f"SELECT connection, user_id_key, data, status FROM telephony_users WHERE tenant=? AND {column}=?",
            (tenant, value))
        return [(r[0], self._user_from_row(keys, r[0], r[1], r[2], r[3])) for r in rows]

    async def delete_users(self, connection: Connection, user_id: str | None = None) -> int:
        keys = await self.keys(connection.tenant)

        def job(conn: sqlite3.Connection) -> int:
            if user_id is None:
                cur = conn.execute("DELETE FROM telephony_users WHERE connection=?", (connection.id,))
            else:
                uid = keys.blind_index("user", f"{connection.id}\x1f{user_id}")
                cur = conn.execute(
                    "DELETE FROM telephony_users WHERE connection=? AND user_id_key=?", (connection.id, uid))
            return cur.rowcount
        return await self.w.submit(job)

    # --- plugin records --------------------------------------------------------------------

    async def put_record(self, tenant: str, plugin: str, kind: str, key: str, data: Any, *,
                         index: str | None = None, call_record: bool = False, wait: bool = True) -> None:
        keys = await self.keys(tenant)
        rkey = keys.blind_index(f"record\x1f{plugin}\x1f{kind}", key)
        blob = keys.encrypt("records", "data", f"{plugin}\x1f{kind}\x1f{rkey}", _dumps({"key": key, "data": data}))
        ikey = keys.blind_index(f"index\x1f{plugin}\x1f{kind}", index) if index is not None else None

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO records (tenant, plugin, kind, record_key, data, index_key, call_record, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, plugin, kind, record_key) DO UPDATE SET "
                "data=excluded.data, index_key=excluded.index_key, call_record=excluded.call_record",
                (tenant, plugin, kind, rkey, blob, ikey, int(call_record), now_ms()))
        if wait:
            await self.w.submit(job)
            return
        slot = (tenant, plugin, kind, key)
        fut = self.w.submit_nowait(job)
        self._unsaved[slot] = (data, fut)

        def saved(done: asyncio.Future[None]) -> None:
            if self._unsaved.get(slot, (None, None))[1] is done:
                del self._unsaved[slot]
            if not done.cancelled() and done.exception() is not None:
                log.error("queued plugin record failed to save", extra={
                    "plugin": plugin, "error": type(done.exception()).__name__})
        fut.add_done_callback(saved)

    def _record_from_blob(self, keys: TenantKeys, plugin: str, kind: str, rkey: str, blob: bytes) -> tuple[str, Any]:
        d = orjson.loads(keys.decrypt("records", "data", f"{plugin}\x1f{kind}\x1f{rkey}", blob))
        return d["key"], d["data"]

    async def get_record(self, tenant: str, plugin: str, kind: str, key: str) -> Any:
        unsaved = self._unsaved.get((tenant, plugin, kind, key))
        if unsaved is not None:
            return unsaved[0]
        keys = await self.keys(tenant)
        rkey = keys.blind_index(f"record\x1f{plugin}\x1f{kind}", key)
        row = await self._one("SELECT data FROM records WHERE tenant=? AND plugin=? AND kind=? AND record_key=?",
                              (tenant, plugin, kind, rkey))
        return self._record_from_blob(keys, plugin, kind, rkey, row[0])[1] if row else None

    async def find_records(self, tenant: str, plugin: str, kind: str, index: str | None = None) -> list[tuple[str, Any]]:
        keys = await self.keys(tenant)
        sql = "SELECT record_key, data FROM records WHERE tenant=? AND plugin=? AND kind=?"
        args: list[Any] = [tenant, plugin, kind]
        if index is not None:
            sql += " AND index_key=?"
            args.append(keys.blind_index(f"index\x1f{plugin}\x1f{kind}", index))
        rows = await self._all(sql + " ORDER BY created_at", args)
        return [self._record_from_blob(keys, plugin, kind, r[0], r[1]) for r in rows]

    async def delete_record(self, tenant: str, plugin: str, kind: str, key: str | None = None) -> int:
        keys = await self.keys(tenant)
        for slot in [s for s in self._unsaved if s[:3] == (tenant, plugin, kind) and key in (None, s[3])]:
            del self._unsaved[slot]

        def job(conn: sqlite3.Connection) -> int:
            if key is None:
                cur = conn.execute("DELETE FROM records WHERE tenant=? AND plugin=? AND kind=?",
                                         (tenant, plugin, kind))
            else:
                rkey = keys.blind_index(f"record\x1f{plugin}\x1f{kind}", key)
                cur = conn.execute(
                    "DELETE FROM records WHERE tenant=? AND plugin=? AND kind=? AND record_key=?",
                    (tenant, plugin, kind, rkey))
            return cur.rowcount
        return await self.w.submit(job)

    # --- leases (single-flight across processes) -------------------------------------------

    async def try_lease(self, name: str, holder: str, ttl: float) -> bool:
        expires = now_ms() + int(ttl * 1000)

        def job(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET holder=excluded.holder, expires_at=excluded.expires_at "
                "WHERE leases.expires_at < ? OR leases.holder = excluded.holder",
                (name, holder, expires, now_ms()))
            return cur.rowcount
        return bool(await self.w.submit(job))

    async def release_lease(self, name: str, holder: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM leases WHERE name=? AND holder=?", (name, holder))
        await self.w.submit(job)

    # --- retention -------------------------------------------------------------------------

    async def purge_before(self, cutoff_ms: int, *, batch: int = 500,
                           progress: Callable[[int], None] | None = None) -> dict[str, int]:
        """Delete call records received before ``cutoff_ms``, in short transactions."""
        counts = {"events": 0, "deliveries": 0, "records": 0}
        while True:
            def job(conn: sqlite3.Connection) -> tuple[int, int]:
                seqs = [r[0] for r in conn.execute(
                    "SELECT seq FROM events WHERE received_at < ? ORDER BY received_at LIMIT ?",
                    (cutoff_ms, batch)).fetchall()]
                if not seqs:
                    return 0, 0
                marks = ",".join("?" * len(seqs))
                d = conn.execute(f"DELETE FROM deliveries WHERE event_seq IN ({marks})", seqs)
                e = conn.execute(f"DELETE FROM events WHERE seq IN ({marks})", seqs)
                return e.rowcount, d.rowcount
            ev, dl = await self.w.submit(job)
            counts["events"] += ev
            counts["deliveries"] += dl
            if progress is not None and ev:
                progress(ev)
            if ev < batch:
                break
            await asyncio.sleep(0.005)  # let a serving gateway's writer take the lock between batches
        while True:
            def rjob(conn: sqlite3.Connection) -> int:
                cur = conn.execute(
                    "DELETE FROM records WHERE rowid IN (SELECT rowid FROM records WHERE call_record=1 "
                    "AND created_at < ? LIMIT ?)", (cutoff_ms, batch))
                return cur.rowcount
            n = await self.w.submit(rjob)
            counts["records"] += n
            if n < batch:
                break
        await self.checkpoint()
        return counts

    async def count_expired(self, cutoff_ms: int) -> int:
        """How many events the next purge with this cutoff deletes (for progress bars)."""
        row = await self._one("SELECT COUNT(*) FROM events WHERE received_at < ?", (cutoff_ms,))
        return int(row[0])

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
        row = await self._one("SELECT kind FROM restrictions WHERE tenant=? AND subject_key=? LIMIT 1",
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

    # --- audit log -------------------------------------------------------------------------

    async def audit_ref(self, tenant: str) -> str | None:
        """The tenant's pseudonym in the audit log (made on first use), ``None`` for no tenant.

        Entries name tenants only by it, so once a tenant is removed (and with it this
        mapping) its audit entries stay verifiable but no longer say whose they were.
        """
        cached = self._audit_refs.get(tenant)
        if cached is not None:
            return cached
        fresh = "t-" + secrets.token_hex(8)

        def job(conn: sqlite3.Connection) -> str | None:
            conn.execute("UPDATE tenants SET audit_ref=? WHERE id=? AND audit_ref IS NULL", (fresh, tenant))
            row = conn.execute("SELECT audit_ref FROM tenants WHERE id=?", (tenant,)).fetchone()
            return str(row[0]) if row else None
        ref = await self.w.submit(job)
        if ref is not None:
            self._audit_refs[tenant] = ref
        return ref

    async def append_audit(self, action: str, tenant_ref: str | None, details: dict[str, Any], *,
                           defer: bool = False) -> None:
        """Append one entry to the hash chain, in the writer's transaction (so the chain is serial
        even across processes sharing the database). ``defer`` only queues it: it is written
        with the next entry that is not deferred, by :meth:`flush_audit`, or at close."""
        self._audit_pending.append((now_ms(), action, tenant_ref, details))
        if not defer:
            await self.flush_audit()

    async def flush_audit(self) -> None:
        """Write the queued audit entries."""
        if not self._audit_pending:
            return
        entries, self._audit_pending = self._audit_pending, []

        def job(conn: sqlite3.Connection) -> None:
            last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (last[0], last[1]) if last else (0, GENESIS)
            for at, action, ref, details in entries:
                seq += 1
                digest = chain_hash(prev, canonical(seq, at, action, ref, details))
                conn.execute("INSERT INTO audit_log (seq, at, action, tenant_ref, details, prev_hash, hash) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (seq, at, action, ref, orjson.dumps(details).decode(), prev, digest))
                prev = digest
        await self.w.submit(job)

    async def audit_entries(self, *, after: int = 0, limit: int | None = None,
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
                for r in await self._all(sql, args)]

    def file_paths(self) -> list[str]:
        """The database files on disk (for scans and backups)."""
        return [p for p in (self.path, self.path + "-wal", self.path + "-shm") if os.path.exists(p)]
