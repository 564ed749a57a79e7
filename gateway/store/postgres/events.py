"""Call events and their deliveries: the durable queue, dead letters, retention.

Every transaction that makes a delivery pending also writes (or locks) its lane's row in
``lanes``: that is what lets a process hand a lane back without losing a delivery another
process queued on it meanwhile (see :mod:`.fleet`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import asyncpg

from ...errors import NotFound
from ...events import CallEvent
from ...models import Connection
from ..common import now_ms
from ..records import DeadLetter, PendingDelivery
from ..sealed import EventRow, open_event, pending_delivery, seal_events
from .database import PostgresDatabase, count

_DELIVERY = "d.id, d.event_seq, d.tenant, d.sink, d.call_key, d.attempts, d.next_at, d.received_at, d.since"
PENDING = f"SELECT {_DELIVERY}, e.dedup_key FROM deliveries d JOIN events e ON e.seq = d.event_seq "
#: Makes sure lanes exist (and locks them) for ``(sink, call_key, tenant)`` arrays $1..$3,
#: without changing who holds them; sorted, so two transactions lock them in the same order.
TOUCH_LANES = ("INSERT INTO lanes (sink, call_key, tenant) SELECT * FROM unnest($1::text[], $2::text[], "
               "$3::text[]) AS l(sink, call_key, tenant) ORDER BY sink, call_key "
               "ON CONFLICT (sink, call_key) DO UPDATE SET owner = lanes.owner WHERE false")

#: ``(conn, keys)`` answers which ``(tenant, key)`` of these blind indexes are under restriction.
RestrictedFn = Callable[[asyncpg.Connection, list[str]], Awaitable[set[tuple[str, str]]]]
#: ``(cutoff_ms, limit, conn)`` deletes up to ``limit`` call records created before the cutoff.
PurgeFn = Callable[[int, int, asyncpg.Connection], Awaitable[int]]


async def touch_lanes(conn: asyncpg.Connection, deliveries: Sequence[Any]) -> None:
    """Lock (creating where missing) the lanes of these delivery rows (``sink``, ``call_key``,
    ``tenant`` by name)."""
    lanes = sorted({(d["sink"], d["call_key"], d["tenant"]) for d in deliveries})
    if lanes:
        await conn.execute(TOUCH_LANES, [s for s, _, _ in lanes], [c for _, c, _ in lanes],
                           [t for _, _, t in lanes])


class PostgresEvents:
    """Call events and their deliveries."""

    def __init__(self, db: PostgresDatabase, restricted: RestrictedFn,
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
        if not events:
            return
        keys = await self._db.keys(connection.tenant)
        await self._db.w.submit_ingest(seal_events(keys, connection, events, received_at_ms))

    async def insert_batch(self, conn: asyncpg.Connection, rows: list[EventRow]) -> list[PendingDelivery]:
        """Insert events (duplicates ignored) in one statement, their deliveries in another,
        and touch their lanes. An event about a restricted person keeps only what
        deduplication needs (no payload) and gets no delivery."""
        restricted = await self._restricted(conn, sorted({k for r, _ in rows for k in r[6:9] if k}))
        cols: list[list[Any]] = [[] for _ in range(10)]
        for r, _ in rows:
            hidden = bool(restricted) and any((r[0], k) in restricted for k in r[6:9] if k)
            for i, value in enumerate((*r[:4], b"" if hidden else r[4], *r[5:], int(hidden))):
                cols[i].append(value)
        inserted = await conn.fetch(
            "INSERT INTO events (tenant, connection, dedup_key, call_key, payload, received_at, remote_key, "
            "local_key, user_key, restricted) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], "
            "$4::text[], $5::bytea[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::int[]) "
            "ON CONFLICT (dedup_key) DO NOTHING RETURNING seq, dedup_key", *cols)
        if not inserted:
            return []
        dedup = {r[0]: r[1] for r in inserted}
        fresh = await conn.fetch(
            "INSERT INTO deliveries (event_seq, tenant, sink, call_key, state, attempts, next_at, received_at, "
            "since, updated_at) SELECT e.seq, e.tenant, s.plugin, e.call_key, 'pending', 0, e.received_at, "
            "e.received_at, e.received_at, e.received_at FROM events e JOIN sinks s ON s.tenant = e.tenant "
            "WHERE e.seq = ANY($1::bigint[]) AND e.restricted = 0 ORDER BY e.seq, s.plugin "
            "RETURNING id, event_seq, tenant, sink, call_key, attempts, next_at, received_at, since",
            list(dedup))
        await touch_lanes(conn, fresh)
        by_dedup = {r[2]: ev for r, ev in rows}
        return sorted((pending_delivery((*row, dedup[row[1]]), by_dedup.get(dedup[row[1]])) for row in fresh),
                      key=lambda d: d.id)

    async def load(self, tenant: str, seq: int) -> CallEvent | None:
        row = await self._db.one("SELECT dedup_key, payload FROM events WHERE seq=$1 AND tenant=$2", seq, tenant)
        if row is None or not row[1]:
            return None
        return open_event(await self._db.keys(tenant), row[0], row[1])

    async def pending(self, *, per_group: int) -> list[PendingDelivery]:
        rows = await self._db.all(
            "SELECT id, event_seq, tenant, sink, call_key, attempts, next_at, received_at, since, "
            f"dedup_key FROM (SELECT {_DELIVERY}, e.dedup_key, ROW_NUMBER() OVER "
            "(PARTITION BY d.tenant, d.sink ORDER BY d.id) AS n FROM deliveries d "
            "JOIN events e ON e.seq = d.event_seq WHERE d.state = 'pending') AS firsts "
            "WHERE n <= $1 ORDER BY id", per_group)
        return [pending_delivery(row) for row in rows]

    async def pending_after(self, tenant: str, sink: str, after: int, limit: int) -> list[PendingDelivery]:
        rows = await self._db.all(
            PENDING + "WHERE d.tenant = $1 AND d.sink = $2 AND d.state = 'pending' AND d.id > $3 "
            "ORDER BY d.id LIMIT $4", tenant, sink, after, limit)
        return [pending_delivery(row) for row in rows]

    async def count(self, state: str) -> int:
        return int(await self._db.pool.fetchval("SELECT COUNT(*) FROM deliveries WHERE state=$1", state))

    async def is_pending(self, delivery_id: int) -> bool:
        return bool(await self._db.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE id=$1 AND state='pending')", delivery_id))

    async def finish(self, delivery_id: int) -> None:
        # the hot path of delivery: finished deliveries of a batch are one statement
        await asyncio.shield(self._db.w.submit_grouped_nowait(_finish, (delivery_id, now_ms())))

    async def retry(self, delivery_id: int, attempts: int, next_at: int, reason: str) -> None:
        await self._db.execute("UPDATE deliveries SET attempts=$1, next_at=$2, last_error=$3, updated_at=$4 "
                               "WHERE id=$5", attempts, next_at, reason, now_ms(), delivery_id)

    async def dead(self, delivery_id: int, attempts: int, reason: str) -> None:
        await self._db.execute("UPDATE deliveries SET state='dead', attempts=$1, last_error=$2, updated_at=$3 "
                               "WHERE id=$4", attempts, reason, now_ms(), delivery_id)

    async def dead_letters(self, tenant: str | None = None) -> list[DeadLetter]:
        rows = await self._db.all(
            "SELECT id, tenant, sink, attempts, COALESCE(last_error, ''), received_at, updated_at, event_seq "
            "FROM deliveries WHERE state='dead' AND ($1::text IS NULL OR tenant=$1) ORDER BY id", tenant)
        return [DeadLetter(*r) for r in rows]

    async def call_counts(self, tenant: str, sink: str, since_ms: int, bucket_ms: int) -> list[tuple[int, int, int]]:
        if bucket_ms <= 0:
            raise ValueError("bucket_ms must be positive")
        rows = await self._db.all(
            "SELECT (first_at / $1) * $1 AS period, SUM(CASE WHEN dead = 0 AND done = 1 THEN 1 ELSE 0 END), "
            "SUM(dead) FROM (SELECT MIN(received_at) AS first_at, "
            "MAX(CASE WHEN state = 'dead' THEN 1 ELSE 0 END) AS dead, "
            "MAX(CASE WHEN state = 'done' THEN 1 ELSE 0 END) AS done FROM deliveries "
            "WHERE tenant = $2 AND sink = $3 AND received_at >= $4 GROUP BY call_key) AS calls "
            "GROUP BY period HAVING SUM(dead) + SUM(done) > 0 ORDER BY period", bucket_ms, tenant, sink, since_ms)
        return [(int(r[0]), int(r[1]), int(r[2])) for r in rows]

    async def replay(self, delivery_id: int, tenant: str | None = None) -> PendingDelivery:
        async def job(conn: asyncpg.Connection) -> Any:
            at = now_ms()
            row = await conn.fetchrow(
                "UPDATE deliveries SET state='pending', attempts=0, next_at=$1, since=$1, updated_at=$1 "
                "WHERE id=$2 AND state='dead' AND ($3::text IS NULL OR tenant=$3) "
                "RETURNING sink, call_key, tenant", at, delivery_id, tenant)
            if row is not None:
                await touch_lanes(conn, [row])
            return row
        if await self._db.write(job) is None:
            raise NotFound("no such dead letter")
        return pending_delivery(await self._db.one(PENDING + "WHERE d.id=$1", delivery_id))

    # --- retention -------------------------------------------------------------------------

    async def purge_before(self, cutoff_ms: int, *, batch: int = 30,
                           progress: Callable[[int], None] | None = None) -> dict[str, int]:
        counts = {"events": 0, "deliveries": 0}
        while True:
            ev, dl = await self._db.write(partial(_purge_events, cutoff_ms, batch), background=True)
            counts["events"] += ev
            counts["deliveries"] += dl
            if progress is not None and ev:
                progress(ev)
            if ev < batch:
                break
        for name, purge in self._expiring:
            counts[name] = 0
            while True:
                n = await self._db.write(partial(purge, cutoff_ms, batch), background=True)
                counts[name] += n
                if n < batch:
                    break
        return counts

    async def count_expired(self, cutoff_ms: int) -> int:
        return int(await self._db.pool.fetchval("SELECT COUNT(*) FROM events WHERE received_at < $1", cutoff_ms))

    async def delete_tenant_rows(self, conn: asyncpg.Connection, tenant: str) -> dict[str, int]:
        return {"deliveries": count(await conn.execute("DELETE FROM deliveries WHERE tenant=$1", tenant)),
                "events": count(await conn.execute("DELETE FROM events WHERE tenant=$1", tenant))}

    def forget(self, tenant: str | None) -> None:
        """Nothing of a tenant is cached here."""


async def _finish(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
    await conn.execute("UPDATE deliveries SET state='done', last_error=NULL, updated_at=$2 "
                       "WHERE id = ANY($1::bigint[])", [r[0] for r in rows], max(r[1] for r in rows))


async def _purge_events(cutoff_ms: int, batch: int, conn: asyncpg.Connection) -> tuple[int, int]:
    """The oldest ``batch`` expired events and their deliveries."""
    seqs = [r[0] for r in await conn.fetch(
        "SELECT seq FROM events WHERE received_at < $1 ORDER BY received_at LIMIT $2", cutoff_ms, batch)]
    if not seqs:
        return 0, 0
    d = await conn.execute("DELETE FROM deliveries WHERE event_seq = ANY($1::bigint[])", seqs)
    e = await conn.execute("DELETE FROM events WHERE seq = ANY($1::bigint[])", seqs)
    return count(e), count(d)
