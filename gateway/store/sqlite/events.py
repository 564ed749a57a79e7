"""Call events and their deliveries: the durable queue, dead letters, retention."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from ...errors import NotFound
from ...events import CallEvent
from ...models import Connection
from ..common import now_ms
from ..sealed import open_event, seal_events
from ..sealed import pending_delivery as _pending
from ..records import DeadLetter, PendingDelivery
from .database import SQLiteDatabase

_ROWS_PER_INSERT = 90  # 10 columns each: under SQLite's 999 bound parameters
_DELIVERY = "d.id, d.event_seq, d.tenant, d.sink, d.call_key, d.attempts, d.next_at, d.received_at, d.since"
_PENDING = f"SELECT {_DELIVERY}, e.dedup_key FROM deliveries d JOIN events e ON e.seq = d.event_seq "

#: In the writer thread: which ``(tenant, match key)`` of these keys are under restriction.
RestrictedFn = Callable[[sqlite3.Connection, list[str]], set[tuple[str, str]]]
#: In the writer thread: ``(cutoff_ms, limit, conn)`` deletes up to ``limit`` call records
#: created before the cutoff and says how many.
PurgeFn = Callable[[int, int, sqlite3.Connection], int]


def _high_water(conn: sqlite3.Connection, table: str, column: str) -> int:
    """The highest id ``table`` ever had. SQLite hands a new row the largest id present plus
    one, so once the newest rows are deleted (an erasure, a purge, an uninstall) their ids
    would come again, while the dispatcher may still hold them: ids are never used twice."""
    kept = conn.execute("SELECT value FROM meta WHERE key=?", (f"{table}_high_water",)).fetchone()
    present = conn.execute(f"SELECT COALESCE(MAX({column}), 0) FROM {table}").fetchone()[0]
    return max(int(kept[0]) if kept else 0, int(present))


def _raise_high_water(conn: sqlite3.Connection, table: str, column: str) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
                 "excluded.value", (f"{table}_high_water", str(_high_water(conn, table, column))))


class SQLiteEvents:
    """Call events and their deliveries.

    ``restricted`` answers which blind indexes are under restriction (the subjects part);
    ``expiring`` are the other parts' call records that retention purges with the events.
    """

    def __init__(self, db: SQLiteDatabase, restricted: RestrictedFn,
                 expiring: Sequence[tuple[str, PurgeFn]]) -> None:
        self._db = db
        self._restricted = restricted
        self._expiring = expiring
        self.after_ingest: Callable[[list[PendingDelivery]], None] | None = None

    def on_ingest(self, callback: Callable[[list[PendingDelivery]], None]) -> None:
        self.after_ingest = callback
        if self._db.writer is not None:
            self._db.writer.after_ingest = callback

    async def ingest(self, connection: Connection, events: Sequence[CallEvent], received_at_ms: int) -> None:
        """Store events durably (deduplicated) and queue one delivery per bound sink.

        Each event carries blind indexes of its remote and local number and its telephony user,
        so data-subject requests find it and restrictions apply at ingest.
        """
        if not events:
            return
        keys = await self._db.keys(connection.tenant)
        await self._db.w.submit_ingest(seal_events(keys, connection, events, received_at_ms))

    def insert_batch(self, conn: sqlite3.Connection, rows: list[Any]) -> list[PendingDelivery]:
        """In the writer thread: insert events (duplicates ignored), queue their deliveries.

        An event about a restricted person keeps only what deduplication needs (no payload)
        and gets no delivery.
        """
        before = _high_water(conn, "events", "seq")
        restricted = self._restricted(conn, sorted({k for r, _ in rows for k in r[6:9] if k}))
        values = []
        for seq, (r, _) in enumerate(rows, start=before + 1):
            if restricted and any((r[0], k) in restricted for k in r[6:9] if k):
                values.append((seq, *r[:4], b"", *r[5:], 1))
            else:
                values.append((seq, *r, 0))
        # One multi-row statement per chunk, not one step per row: every step hands the GIL
        # back and forth with the event loop's thread, which then waits for it.
        for i in range(0, len(values), _ROWS_PER_INSERT):
            chunk = values[i:i + _ROWS_PER_INSERT]
            conn.execute(
                "INSERT INTO events (seq, tenant, connection, dedup_key, call_key, payload, received_at, "
                "remote_key, local_key, user_key, restricted) VALUES "
                + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
                + " ON CONFLICT (dedup_key) DO NOTHING", [v for row in chunk for v in row])
        conn.execute(
            "INSERT INTO deliveries (id, event_seq, tenant, sink, call_key, state, attempts, next_at, "
            "received_at, since, updated_at) SELECT ? + ROW_NUMBER() OVER (ORDER BY e.seq, s.plugin), "
            "e.seq, e.tenant, s.plugin, e.call_key, 'pending', 0, "
            "e.received_at, e.received_at, e.received_at, e.received_at FROM events e "
            "JOIN sinks s ON s.tenant = e.tenant WHERE e.seq > ? AND e.restricted = 0",
            (_high_water(conn, "deliveries", "id"), before))
        _raise_high_water(conn, "events", "seq")
        _raise_high_water(conn, "deliveries", "id")
        fresh = conn.execute(_PENDING + "WHERE d.event_seq > ? ORDER BY d.id", (before,)).fetchall()
        by_dedup = {r[2]: ev for r, ev in rows}
        return [_pending(row, by_dedup.get(row[9])) for row in fresh]

    async def load(self, tenant: str, seq: int) -> CallEvent | None:
        row = self._db.lookup("SELECT dedup_key, payload FROM events WHERE seq=? AND tenant=?", (seq, tenant))
        if row is None or not row[1]:
            return None
        keys = await self._db.keys(tenant)
        return open_event(keys, row[0], row[1])

    async def pending(self, *, per_group: int) -> list[PendingDelivery]:
        """Pending deliveries in id order, only the first ``per_group`` of each (tenant, sink),
        so that a backlog never has to fit in memory at once."""
        rows = await self._db.all(
            "SELECT id, event_seq, tenant, sink, call_key, attempts, next_at, received_at, since, "
            f"dedup_key FROM (SELECT {_DELIVERY}, e.dedup_key, ROW_NUMBER() OVER "
            "(PARTITION BY d.tenant, d.sink ORDER BY d.id) AS n FROM deliveries d "
            "JOIN events e ON e.seq = d.event_seq WHERE d.state = 'pending') AS firsts "
            "WHERE n <= ? ORDER BY id", (per_group,))
        return [_pending(row) for row in rows]

    async def pending_after(self, tenant: str, sink: str, after: int, limit: int) -> list[PendingDelivery]:
        """The next ``limit`` pending deliveries of one (tenant, sink) with ids above ``after``."""
        rows = await self._db.all(
            _PENDING + "WHERE d.tenant = ? AND d.sink = ? AND d.state = 'pending' AND d.id > ? "
            "ORDER BY d.id LIMIT ?", (tenant, sink, after, limit))
        return [_pending(row) for row in rows]

    async def count(self, state: str) -> int:
        row = await self._db.one("SELECT COUNT(*) FROM deliveries WHERE state=?", (state,))
        return int(row[0])

    async def is_pending(self, delivery_id: int) -> bool:
        return self._db.lookup("SELECT 1 FROM deliveries WHERE id=? AND state='pending'", (delivery_id,)) is not None

    async def finish(self, delivery_id: int) -> None:
        await self._update(delivery_id, "state='done', last_error=NULL")

    async def retry(self, delivery_id: int, attempts: int, next_at: int, reason: str) -> None:
        await self._update(delivery_id, "attempts=?, next_at=?, last_error=?", attempts, next_at, reason)

    async def dead(self, delivery_id: int, attempts: int, reason: str) -> None:
        await self._update(delivery_id, "state='dead', attempts=?, last_error=?", attempts, reason)

    async def _update(self, delivery_id: int, assignments: str, *values: Any) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute(f"UPDATE deliveries SET {assignments}, updated_at=? WHERE id=?",
                         (*values, now_ms(), delivery_id))
        await self._db.w.submit(job)

    async def dead_letters(self, tenant: str | None = None) -> list[DeadLetter]:
        sql = ("SELECT id, tenant, sink, attempts, COALESCE(last_error, ''), received_at, updated_at, "
               "event_seq FROM deliveries WHERE state='dead'")
        args: list[Any] = []
        if tenant is not None:
            sql += " AND tenant=?"
            args.append(tenant)
        return [DeadLetter(*r) for r in await self._db.all(sql + " ORDER BY id", args)]

    async def call_counts(self, tenant: str, sink: str, since_ms: int, bucket_ms: int) -> list[tuple[int, int, int]]:
        if bucket_ms <= 0:
            raise ValueError("bucket_ms must be positive")
        rows = await self._db.all(
            "SELECT (first_at / ?) * ? AS period, SUM(CASE WHEN dead = 0 AND done = 1 THEN 1 ELSE 0 END), "
            "SUM(dead) FROM (SELECT MIN(received_at) AS first_at, "
            "MAX(CASE WHEN state = 'dead' THEN 1 ELSE 0 END) AS dead, "
            "MAX(CASE WHEN state = 'done' THEN 1 ELSE 0 END) AS done FROM deliveries "
            "WHERE tenant = ? AND sink = ? AND received_at >= ? GROUP BY call_key) AS calls "
            "GROUP BY period HAVING SUM(dead) + SUM(done) > 0 ORDER BY period",
            (bucket_ms, bucket_ms, tenant, sink, since_ms))
        return [(int(r[0]), int(r[1]), int(r[2])) for r in rows]

    async def replay(self, delivery_id: int, tenant: str | None = None) -> PendingDelivery:
        def job(conn: sqlite3.Connection) -> int:
            sql = ("UPDATE deliveries SET state='pending', attempts=0, next_at=?, since=?, updated_at=? "
                   "WHERE id=? AND state='dead'")
            at = now_ms()
            args: list[Any] = [at, at, at, delivery_id]
            if tenant is not None:
                sql += " AND tenant=?"
                args.append(tenant)
            return conn.execute(sql, args).rowcount
        if not await self._db.w.submit(job):
            raise NotFound("no such dead letter")
        return _pending(await self._db.one(_PENDING + "WHERE d.id=?", (delivery_id,)))

    # --- retention -------------------------------------------------------------------------

    async def purge_before(self, cutoff_ms: int, *, batch: int = 30,
                           progress: Callable[[int], None] | None = None) -> dict[str, int]:
        """Delete call records received before ``cutoff_ms``, in short transactions."""
        counts = {"events": 0, "deliveries": 0}
        while True:
            ev, dl = await self._db.w.submit(partial(_purge_events, cutoff_ms, batch), background=True)
            counts["events"] += ev
            counts["deliveries"] += dl
            if progress is not None and ev:
                progress(ev)
            if ev < batch:
                break
            await asyncio.sleep(0.005)  # let a serving gateway's writer take the lock between batches
        for name, purge in self._expiring:
            counts[name] = 0
            while True:
                n = await self._db.w.submit(partial(purge, cutoff_ms, batch), background=True)
                counts[name] += n
                if n < batch:
                    break
        await self._db.checkpoint()
        return counts

    async def count_expired(self, cutoff_ms: int) -> int:
        """How many events the next purge with this cutoff deletes (for progress bars)."""
        row = await self._db.one("SELECT COUNT(*) FROM events WHERE received_at < ?", (cutoff_ms,))
        return int(row[0])

    def delete_tenant_rows(self, conn: sqlite3.Connection, tenant: str) -> dict[str, int]:
        return {"deliveries": conn.execute("DELETE FROM deliveries WHERE tenant=?", (tenant,)).rowcount,
                "events": conn.execute("DELETE FROM events WHERE tenant=?", (tenant,)).rowcount}

    def forget(self, tenant: str) -> None:
        """Nothing of a tenant is cached here."""


def _purge_events(cutoff_ms: int, batch: int, conn: sqlite3.Connection) -> tuple[int, int]:
    """In the writer thread: the oldest ``batch`` expired events and their deliveries."""
    seqs = [r[0] for r in conn.execute(
        "SELECT seq FROM events WHERE received_at < ? ORDER BY received_at LIMIT ?", (cutoff_ms, batch)).fetchall()]
    if not seqs:
        return 0, 0
    marks = ",".join("?" * len(seqs))
    d = conn.execute(f"DELETE FROM deliveries WHERE event_seq IN ({marks})", seqs)
    e = conn.execute(f"DELETE FROM events WHERE seq IN ({marks})", seqs)
    return e.rowcount, d.rowcount
