"""Group commit: many writers, one transaction, one fsync, one thread hop.

Webhook handlers must not answer before their events are durable, but one fsync per request
caps throughput at the disk's sync rate. The writer takes whatever queued up while the
previous commit ran and commits it together; every caller's future resolves after the commit.
The whole batch runs in the writer's own thread in one call: a round trip to the event loop
per statement would cost a loop iteration each under load. Ingest rows of all waiting
requests go into one statement; other jobs run each in a savepoint so that one failing job
cannot sink the rest of the batch.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

log = logging.getLogger("gateway.store")

#: A write job: runs in the writer thread inside the batch's transaction.
Job = Callable[[sqlite3.Connection], Any]
T = TypeVar("T")
IngestFn = Callable[[sqlite3.Connection, list[Any]], Any]
AfterCommit = Callable[[Any], None]
#: Writes a group of rows queued by :meth:`GroupCommitWriter.submit_grouped_nowait`.
GroupFn = Callable[[sqlite3.Connection, list[tuple[Any, ...]]], None]
#: Rows handed to one ``GroupFn`` call at most.
GROUP_ROWS = 60


class GroupCommitWriter:
    """Owns the one writing connection and runs jobs on it in shared transactions."""

    def __init__(self, opener: Callable[[], sqlite3.Connection], ingest: IngestFn,
                 after_ingest: AfterCommit | None = None, *, max_batch: int = 1024) -> None:
        self._opener = opener
        self._ingest = ingest
        self.after_ingest = after_ingest
        self._queue: asyncio.Queue[tuple[str, Any, asyncio.Future[Any]]] = asyncio.Queue()
        self._max_batch = max_batch
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self.batches = 0
        self.jobs = 0

    async def start(self) -> None:
        """Open the connection in the writer thread (where it will be used) and start."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        loop = asyncio.get_running_loop()
        try:
            self._conn = await loop.run_in_executor(self._executor, self._opener)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise
        self._task = asyncio.create_task(self._run(), name="store-writer")

    async def stop(self) -> None:
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._executor is not None:
            conn, self._conn = self._conn, None
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
            self._executor.shutdown(wait=True)
            self._executor = None

    async def submit(self, job: Callable[[sqlite3.Connection], T], *, background: bool = False) -> T:
        """Run ``job(conn)`` inside the next transaction; return its result once committed.

        A ``background`` job (retention's deletes) gets a transaction of its own after the
        batch it was queued with, so the requests in that batch do not wait for it.
        """
        result: T = await self._put("background" if background else "job", job)
        return result

    def submit_grouped_nowait(self, run: GroupFn, row: tuple[Any, ...]) -> asyncio.Future[None]:
        """Queue one ``row`` for ``run(conn, rows)``, which writes many rows in one go.

        Consecutive rows queued for the same ``run`` reach it together (up to
        :data:`GROUP_ROWS`), so a burst of per-call plugin state costs one multi-row statement
        instead of a savepointed job each. The future resolves once the row is committed.
        """
        if self._task is None:
            raise RuntimeError("store writer is not running")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(("grouped", (run, row), fut))
        return fut

    async def submit_ingest(self, rows: list[Any]) -> None:
        """Insert ``rows`` with the ingest function; return once they are durable."""
        await self._put("ingest", rows)

    async def _put(self, kind: str, item: Any) -> Any:
        if self._task is None:
            raise RuntimeError("store writer is not running")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((kind, item, fut))
        # A caller that goes away cancels only its own future: the item is queued already,
        # commits with its batch, and _settle skips futures that are done.
        return await fut

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            urgent = [item for item in batch if item[0] != "background"]
            if urgent:
                await self._commit_batch(urgent)
            for kind, job, fut in batch:
                if kind == "background":
                    await self._commit_batch([("job", job, fut)])

    async def _commit_batch(self, batch: list[tuple[str, Any, asyncio.Future[Any]]]) -> None:
        """One transaction for ``batch``; every future settles after its commit."""
        rows = [row for kind, item, _ in batch if kind == "ingest" for row in item]
        ordered = [(kind, item) for kind, item, _ in batch if kind != "ingest"]
        try:
            ingested, outcomes = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._commit, rows, ordered)
        except Exception as exc:
            log.error("store commit failed", extra={"error": type(exc).__name__})
            for _kind, _item, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        else:
            self._settle(batch, ingested, outcomes)
        finally:
            for _ in batch:
                self._queue.task_done()

    def _settle(self, batch: list[tuple[str, Any, asyncio.Future[Any]]], ingested: Any,
                outcomes: list[tuple[Any, BaseException | None]]) -> None:
        self.batches += 1
        self.jobs += len(batch)
        if ingested is not None and self.after_ingest is not None:
            try:
                self.after_ingest(ingested)
            except Exception:
                log.exception("after-ingest callback failed")
        results = iter(outcomes)
        for kind, _item, fut in batch:
            outcome = next(results) if kind != "ingest" else (None, None)
            if fut.done():
                continue
            value, error = outcome
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(value)

    def _commit(self, rows: list[Any], ordered: list[tuple[str, Any]]
                ) -> tuple[Any, list[tuple[Any, BaseException | None]]]:
        """In the writer thread: one transaction for the whole batch, jobs in queue order."""
        conn = self._conn
        assert conn is not None
        outcomes: list[tuple[Any, BaseException | None]] = []
        ingested: Any = None
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                ingested = self._ingest(conn, rows)
            i = 0
            while i < len(ordered):
                kind, item = ordered[i]
                if kind == "grouped":
                    run, group = item[0], [item[1]]
                    while (i + len(group) < len(ordered) and ordered[i + len(group)][0] == "grouped"
                           and ordered[i + len(group)][1][0] == run and len(group) < GROUP_ROWS):
                        group.append(ordered[i + len(group)][1][1])
                    error = self._guarded(conn, i, lambda c: run(c, group))[1]
                    outcomes.extend([(None, error)] * len(group))
                    i += len(group)
                else:
                    outcomes.append(self._guarded(conn, i, item))
                    i += 1
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return ingested, outcomes

    @staticmethod
    def _guarded(conn: sqlite3.Connection, i: int, job: Job) -> tuple[Any, BaseException | None]:
        """Run ``job`` in a savepoint: its failure undoes only its own changes."""
        conn.execute(f"SAVEPOINT job{i}")
        try:
            value = job(conn)
        except Exception as exc:
            conn.execute(f"ROLLBACK TO job{i}")
            conn.execute(f"RELEASE job{i}")
            return None, exc
        conn.execute(f"RELEASE job{i}")
        return value, None
