"""Call events and their deliveries: the durable queue, dead letters, retention."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import orjson

from ..errors import NotFound
from ..events import CallEvent
from ..models import Connection
from .base import StoreBase, _pending, now_ms, phone_key
from .records import DeadLetter, PendingDelivery

_ROWS_PER_INSERT = 90  # 10 columns each: under SQLite's 999 bound parameters
_PENDING = ("SELECT d.id, d.event_seq, d.tenant, d.sink, d.call_key, d.attempts, d.next_at, d.received_at, "
            "d.since, e.dedup_key FROM deliveries d JOIN events e ON e.seq = d.event_seq ")


class CallsPart(StoreBase):
    """Call events and their deliveries."""

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
        # One multi-row statement per chunk, not one step per row: every step hands the GIL
        # back and forth with the event loop's thread, which then waits for it.
        for i in range(0, len(values), _ROWS_PER_INSERT):
            chunk = values[i:i + _ROWS_PER_INSERT]
            conn.execute(
                "INSERT INTO events (tenant, connection, dedup_key, call_key, payload, received_at, "
                "remote_key, local_key, user_key, restricted) VALUES "
                + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
                + " ON CONFLICT (dedup_key) DO NOTHING", [v for row in chunk for v in row])
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
        row = await self._lookup("SELECT dedup_key, payload FROM events WHERE seq=? AND tenant=?", (seq, tenant))
        if row is None:
            return None
        keys = await self.keys(tenant)
        return CallEvent.from_dict(orjson.loads(keys.decrypt("events", "payload", row[0], row[1])))

    async def pending_deliveries(self, *, per_group: int) -> list[PendingDelivery]:
        """Pending deliveries in id order, only the first ``per_group`` of each (tenant, sink),
        so that a backlog never has to fit in memory at once."""
        rows = await self._all(
            "SELECT id, event_seq, tenant, sink, call_key, attempts, next_at, received_at, since, "
            "dedup_key FROM (SELECT d.id, d.event_seq, d.tenant, d.sink, d.call_key, d.attempts, "
            "d.next_at, d.received_at, d.since, e.dedup_key, ROW_NUMBER() OVER "
            "(PARTITION BY d.tenant, d.sink ORDER BY d.id) AS n FROM deliveries d "
            "JOIN events e ON e.seq = d.event_seq WHERE d.state = 'pending') AS firsts "
            "WHERE n <= ? ORDER BY id", (per_group,))
        return [_pending(row) for row in rows]

    async def pending_after(self, tenant: str, sink: str, after: int, limit: int) -> list[PendingDelivery]:
        """The next ``limit`` pending deliveries of one (tenant, sink) with ids above ``after``."""
        rows = await self._all(
            _PENDING + "WHERE d.tenant = ? AND d.sink = ? AND d.state = 'pending' AND d.id > ? "
            "ORDER BY d.id LIMIT ?", (tenant, sink, after, limit))
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
        row = await self._one(_PENDING + "WHERE d.id=?", (delivery_id,))
        return _pending(row)

    # --- retention -------------------------------------------------------------------------

    async def purge_before(self, cutoff_ms: int, *, batch: int = 30,
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
            ev, dl = await self.w.submit(job, background=True)
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
            n = await self.w.submit(rjob, background=True)
            counts["records"] += n
            if n < batch:
                break
        await self.checkpoint()
        return counts

    async def count_expired(self, cutoff_ms: int) -> int:
        """How many events the next purge with this cutoff deletes (for progress bars)."""
        row = await self._one("SELECT COUNT(*) FROM events WHERE received_at < ?", (cutoff_ms,))
        return int(row[0])

