"""Group commit: many writers, one transaction, one fsync.

Webhook handlers must not answer before their events are durable, but one fsync per request
caps throughput at the disk's sync rate. The writer takes whatever queued up while the
previous commit ran and commits it together; every caller's future resolves after the commit.
Ingest rows of all waiting requests are merged into one statement; other jobs run each in a
savepoint so that one failing job cannot sink the rest of the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite

log = logging.getLogger("gateway.store")

Job = Callable[[aiosqlite.Connection], Awaitable[Any]]
IngestFn = Callable[[aiosqlite.Connection, list[Any]], Awaitable[Any]]
AfterCommit = Callable[[Any], None]


class GroupCommitWriter:
    """Runs write jobs on one connection, batching them into shared transactions."""

    def __init__(self, conn: aiosqlite.Connection, ingest: IngestFn,
                 after_ingest: AfterCommit | None = None, *, max_batch: int = 512) -> None:
        self._conn = conn
        self._ingest = ingest
        self.after_ingest = after_ingest
        self._queue: asyncio.Queue[tuple[str, Any, asyncio.Future[Any]]] = asyncio.Queue()
        self._max_batch = max_batch
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.jobs = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="store-writer")

    async def stop(self) -> None:
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def submit(self, job: Job) -> Any:
        """Run ``job`` inside the next transaction; return its result once committed."""
        return await self._put("job", job)

    async def submit_ingest(self, rows: list[Any]) -> None:
        """Insert ``rows`` with the ingest function; return once they are durable."""
        await self._put("ingest", rows)

    async def _put(self, kind: str, item: Any) -> Any:
        if self._task is None:
            raise RuntimeError("store writer is not running")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((kind, item, fut))
        # shield: a caller that goes away must not cancel a commit others wait for
        return await asyncio.shield(fut)

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            except Exception:  # pragma: no cover - _commit reports to futures itself
                log.exception("store writer failed")
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[tuple[str, Any, asyncio.Future[Any]]]) -> None:
        rows = [row for kind, item, _ in batch if kind == "ingest" for row in item]
        jobs = [(item, fut) for kind, item, fut in batch if kind == "job"]
        outcomes: dict[int, tuple[Any, BaseException | None]] = {}
        ingested: Any = None
        conn = self._conn
        try:
            await conn.execute("BEGIN IMMEDIATE")
            if rows:
                ingested = await self._ingest(conn, rows)
            for i, (job, fut) in enumerate(jobs):
                await conn.execute(f"SAVEPOINT job{i}")
                try:
                    value = await job(conn)
                except Exception as exc:
                    await conn.execute(f"ROLLBACK TO job{i}")
                    await conn.execute(f"RELEASE job{i}")
                    outcomes[id(fut)] = (None, exc)
                else:
                    await conn.execute(f"RELEASE job{i}")
                    outcomes[id(fut)] = (value, None)
            await conn.execute("COMMIT")
        except Exception as exc:
            log.error("store commit failed: %s", type(exc).__name__)
            try:
                await conn.execute("ROLLBACK")
            except Exception:
                pass
            for _kind, _item, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.batches += 1
        self.jobs += len(batch)
        if ingested is not None and self.after_ingest is not None:
            try:
                self.after_ingest(ingested)
            except Exception:
                log.exception("after-ingest callback failed")
        for kind, _item, fut in batch:
            if fut.done():
                continue
            if kind == "ingest":
                fut.set_result(None)
                continue
            value, error = outcomes[id(fut)]
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(value)
