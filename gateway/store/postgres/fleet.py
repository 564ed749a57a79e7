"""Several gateway processes on one database: who delivers which lane, and shared rate budgets.

A lane is the deliveries of one call to one sink; they must go out one after the other, so
one process at a time holds the lane (a row in ``lanes`` with its owner and an expiry on the
database's clock). Rules that keep a delivery from being stranded or sent twice in parallel:

- every transaction that makes a delivery pending writes or locks its lane's row
  (:func:`.events.touch_lanes`), and only then commits;
- a process takes lanes after that commit, with ``FOR UPDATE SKIP LOCKED``: a lane it skips is
  locked by a transaction that will see the delivery (the owner handing the lane back) or by
  one whose process takes the lane itself once it committed;
- the holder hands a lane back by locking its row first and only then (a new statement: a
  fresh snapshot) looking for pending deliveries: it either sees the one queued meanwhile, or
  the queueing transaction waited for the hand-back and then finds the lane free;
- a holder renews its lanes well before they expire; a process that dies loses them at
  expiry, and the others take them over (again with ``SKIP LOCKED``).

The coordination pool does not flush per commit: a lease lost in a server crash costs at most
a repeated delivery, which sinks absorb by their idempotency keys.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence

from ..records import PendingDelivery
from ..sealed import pending_delivery
from .database import NOW_MS, PostgresDatabase, count

#: a lane: (sink, call key)
Lane = tuple[str, str]
#: the database's clock in seconds, as a float (rate budgets)
_NOW_S = "extract(epoch from clock_timestamp())"


class PostgresFleet:
    """Lane leases and rate budgets of the processes serving one database.

    ``ttl`` is how long a lease lasts without renewal; :meth:`holds` answers from memory
    with a margin of a third of it, so a process stops using a lane well before another may
    take it over.
    """

    def __init__(self, db: PostgresDatabase, *, ttl: float = 15.0) -> None:
        self._db = db
        self.ttl = ttl
        self._held: dict[Lane, float] = {}  # lane -> until when (monotonic) it is surely ours

    @property
    def owner(self) -> str:
        return self._db.owner

    def holds(self, lane: Lane) -> bool:
        """Whether this process surely holds ``lane`` (answered from memory)."""
        return self._held.get(lane, 0.0) > time.monotonic()

    def _hold(self, lanes: Iterable[Lane], since: float) -> list[Lane]:
        until = since + self.ttl * 2 / 3
        out = []
        for lane in lanes:
            self._held[lane] = until
            out.append(lane)
        return out

    async def acquire(self, lanes: Sequence[Lane]) -> list[Lane]:
        """Take those of ``lanes`` that are free, expired or ours already; return them."""
        if not lanes:
            return []
        since = time.monotonic()
        rows = await self._db.coord.fetch(
            "WITH wanted AS (SELECT l.sink, l.call_key FROM lanes l JOIN unnest($1::text[], $2::text[]) "
            f"AS w(sink, call_key) USING (sink, call_key) WHERE l.expires_at < {NOW_MS} OR l.owner = $3 "
            "ORDER BY l.sink, l.call_key FOR UPDATE OF l SKIP LOCKED) "
            f"UPDATE lanes l SET owner=$3, expires_at={NOW_MS} + $4 FROM wanted "
            "WHERE l.sink = wanted.sink AND l.call_key = wanted.call_key RETURNING l.sink, l.call_key",
            [s for s, _ in lanes], [c for _, c in lanes], self.owner, int(self.ttl * 1000))
        return self._hold(((r[0], r[1]) for r in rows), since)

    async def claim(self, limit: int, full: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str, str]]:
        """Take over up to ``limit`` lanes nobody holds (expired, handed back, or never taken),
        except those of the ``(sink, tenant)`` pairs in ``full``: ``(sink, call key, tenant)``."""
        skip = sorted(set(full))
        since = time.monotonic()
        rows = await self._db.coord.fetch(
            f"WITH free AS (SELECT sink, call_key FROM lanes WHERE expires_at < {NOW_MS} AND NOT EXISTS "
            "(SELECT 1 FROM unnest($1::text[], $2::text[]) AS f(sink, tenant) WHERE f.sink = lanes.sink "
            "AND f.tenant = lanes.tenant) ORDER BY expires_at, sink, call_key LIMIT $3 FOR UPDATE SKIP LOCKED) "
            f"UPDATE lanes l SET owner=$4, expires_at={NOW_MS} + $5 FROM free "
            "WHERE l.sink = free.sink AND l.call_key = free.call_key RETURNING l.sink, l.call_key, l.tenant",
            [s for s, _ in skip], [t for _, t in skip], limit, self.owner, int(self.ttl * 1000))
        self._hold(((r[0], r[1]) for r in rows), since)
        return [(r[0], r[1], r[2]) for r in rows]

    async def next(self, lane: Lane) -> PendingDelivery | None:
        """The lane's first pending delivery (its event not attached); ``None`` once none is
        left, and then the lane is handed back, atomically with finding none (see above): one
        round trip to ``callgate_lane_next`` (the fleet's second migration)."""
        row = await self._db.coord.fetchrow("SELECT * FROM callgate_lane_next($1, $2, $3)", *lane, self.owner)
        if row is not None:
            return pending_delivery(row)
        self._held.pop(lane, None)
        return None

    async def renew(self) -> int:
        """Extend every lane this process holds; lanes locked by someone this very moment
        wait for the next renewal. Returns how many were renewed."""
        since = time.monotonic()
        rows = await self._db.coord.fetch(
            f"UPDATE lanes SET expires_at={NOW_MS} + $2 WHERE (sink, call_key) IN (SELECT sink, call_key "
            "FROM lanes WHERE owner=$1 FOR UPDATE SKIP LOCKED) RETURNING sink, call_key",
            self.owner, int(self.ttl * 1000))
        renewed = {(r[0], r[1]) for r in rows}
        for lane in [lane for lane in self._held if lane not in renewed and not self.holds(lane)]:
            del self._held[lane]
        self._hold(renewed, since)
        return len(renewed)

    async def drop(self, lanes: Iterable[Lane]) -> None:
        """Hand lanes back without looking at them (shutdown, or lanes left to others)."""
        wanted = list(lanes)
        for lane in wanted:
            self._held.pop(lane, None)
        if wanted:
            await self._db.coord.execute(
                "UPDATE lanes l SET owner=NULL, expires_at=0 FROM unnest($1::text[], $2::text[]) "
                "AS w(sink, call_key) WHERE l.sink = w.sink AND l.call_key = w.call_key AND l.owner=$3",
                [s for s, _ in wanted], [c for _, c in wanted], self.owner)

    async def release_all(self) -> None:
        """Hand every lane back at once (a clean shutdown): the others take them at once."""
        self._held.clear()
        await self._db.coord.execute("UPDATE lanes SET owner=NULL, expires_at=0 WHERE owner=$1", self.owner)

    async def repair(self) -> int:
        """Give every pending delivery a lane row (deliveries copied by ``gateway migrate``)."""
        status = await self._db.coord.execute(
            "INSERT INTO lanes (sink, call_key, tenant) SELECT DISTINCT sink, call_key, tenant FROM deliveries "
            "WHERE state='pending' ON CONFLICT (sink, call_key) DO NOTHING")
        return count(status)

    async def reserve(self, bucket: str, rate: float, burst: int) -> float:
        """Take one request from the fleet's budget ``bucket`` (``rate`` per second, ``burst``
        at once); return how many seconds to wait before making it.

        A reservation on a shared clock (GCRA): the bucket keeps the time at which its
        budget would be spent, one emission interval per request; whoever reserves beyond
        ``burst`` intervals ahead waits the difference. One short statement per request.
        """
        interval = 1.0 / rate
        name = hashlib.sha256(bucket.encode()).hexdigest()[:32]  # the bucket's name says nothing
        row = await self._db.coord.fetchrow(
            f"INSERT INTO rate_buckets (name, tat) VALUES ($1, {_NOW_S} + $2) ON CONFLICT (name) DO UPDATE "
            f"SET tat = GREATEST(rate_buckets.tat, {_NOW_S}) + $2 RETURNING tat - {_NOW_S}",
            name, interval)
        assert row is not None
        return max(0.0, float(row[0]) - burst * interval)

    async def sweep_buckets(self, idle: float = 3600.0) -> int:
        """Forget budgets unused for ``idle`` seconds."""
        status = await self._db.coord.execute(f"DELETE FROM rate_buckets WHERE tat < {_NOW_S} - $1", idle)
        return count(status)
