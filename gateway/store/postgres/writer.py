"""Group commit on PostgreSQL: whatever queued up during a commit goes into the next one.

The queue is :class:`~gateway.store.batching.BatchWriter`'s; here a batch is one transaction
on the writer's own connection (one WAL flush for every request that queued meanwhile).

Several processes write one database: two batches may wait for each other's rows (the same
webhook arriving at two replicas at once). PostgreSQL then aborts one of them, and the
writer runs that batch again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from ..batching import AfterCommit, BatchWriter, Step

T = TypeVar("T")
#: A write job: runs inside the batch's transaction (in a savepoint of its own).
Job = Callable[[asyncpg.Connection], Awaitable[Any]]
IngestFn = Callable[[asyncpg.Connection, list[Any]], Awaitable[Any]]
#: How often a batch that lost a deadlock or a serialization conflict is tried.
ATTEMPTS = 5


class PostgresWriter(BatchWriter):
    """Owns one connection and commits queued work on it in shared transactions."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], ingest: IngestFn,
                 after_ingest: AfterCommit | None = None, *, max_batch: int = 1024) -> None:
        super().__init__(after_ingest, max_batch=max_batch)
        self._connect = connect
        self._ingest = ingest
        self._conn: asyncpg.Connection | None = None

    async def start(self) -> None:
        self._conn = await self._connect()
        self._start_queue()

    async def stop(self) -> None:
        await self._stop_queue()
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def run(self, job: Callable[[asyncpg.Connection], Awaitable[T]], *, background: bool = False) -> T:
        """Run the coroutine ``job(conn)`` in the next transaction; return its result once
        committed (``submit`` typed for coroutine jobs)."""
        result: T = await self._put("background" if background else "job", job)
        return result

    async def commit(self, rows: list[Any], plan: list[Step]) -> tuple[Any, list[tuple[Any, BaseException | None]]]:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await self._commit(rows, plan)
            except asyncpg.TransactionRollbackError:
                if attempt == ATTEMPTS:
                    raise
                await asyncio.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    async def _connection(self) -> asyncpg.Connection:
        """The writer's connection, opened again when the server dropped it."""
        if self._conn is None or self._conn.is_closed():
            self._conn = await self._connect()
        return self._conn

    async def _commit(self, rows: list[Any], plan: list[Step]) -> tuple[Any, list[tuple[Any, BaseException | None]]]:
        conn = await self._connection()
        results: list[tuple[Any, BaseException | None]] = []
        ingested: Any = None
        async with conn.transaction():
            if rows:
                ingested = await self._ingest(conn, rows)
            for step in plan:
                if step[0] == "group":
                    run, group = step[1], step[2]
                    results.append(await _guarded(conn, lambda c: run(c, group)))
                else:
                    results.append(await _guarded(conn, step[1]))
        return ingested, results


async def _guarded(conn: asyncpg.Connection, job: Job) -> tuple[Any, BaseException | None]:
    """Run ``job`` in a savepoint: its failure undoes only its own changes. A lost deadlock
    is the batch's, not the job's: it aborts the batch, which runs again."""
    try:
        async with conn.transaction():
            return await job(conn), None
    except asyncpg.TransactionRollbackError:
        raise
    except Exception as exc:
        return None, exc
