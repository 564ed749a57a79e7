"""Group commit on SQLite: the batch runs in the writer's own thread, in one call.

The queue is :class:`~gateway.store.batching.BatchWriter`'s. A round trip to the event loop
per statement would cost a loop iteration each under load, so the whole batch (ingest rows in
one statement, then the steps in savepoints) runs in the writer thread at once.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..batching import AfterCommit, BatchWriter, Step

#: A write job: runs in the writer thread inside the batch's transaction.
Job = Callable[[sqlite3.Connection], Any]
T = TypeVar("T")
IngestFn = Callable[[sqlite3.Connection, list[Any]], Any]


class GroupCommitWriter(BatchWriter):
    """Owns the one writing connection and runs jobs on it in shared transactions."""

    def __init__(self, opener: Callable[[], sqlite3.Connection], ingest: IngestFn,
                 after_ingest: AfterCommit | None = None, *, max_batch: int = 1024) -> None:
        super().__init__(after_ingest, max_batch=max_batch)
        self._opener = opener
        self._ingest = ingest
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

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
        self._start_queue()

    async def stop(self) -> None:
        await self._stop_queue()
        if self._executor is not None:
            conn, self._conn = self._conn, None
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
            self._executor.shutdown(wait=True)
            self._executor = None

    async def commit(self, rows: list[Any], plan: list[Step]) -> tuple[Any, list[tuple[Any, BaseException | None]]]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._commit, rows, plan)

    def _commit(self, rows: list[Any], plan: list[Step]) -> tuple[Any, list[tuple[Any, BaseException | None]]]:
        """In the writer thread: one transaction for the whole batch, steps in queue order."""
        conn = self._conn
        assert conn is not None
        results: list[tuple[Any, BaseException | None]] = []
        ingested: Any = None
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                ingested = self._ingest(conn, rows)
            for i, step in enumerate(plan):
                if step[0] == "group":
                    run, group = step[1], step[2]
                    results.append(self._guarded(conn, i, lambda c: run(c, group)))
                else:
                    results.append(self._guarded(conn, i, step[1]))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return ingested, results

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


__all__ = ["AfterCommit", "GroupCommitWriter", "IngestFn", "Job"]
