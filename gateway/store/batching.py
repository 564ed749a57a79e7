"""Group commit, the part every backend shares: many writers, one transaction, one flush.

Webhook handlers must not answer before their events are durable, but one flush per request
caps throughput at the disk's sync rate. A writer takes whatever queued up while the previous
commit ran and commits it together; every caller's future resolves after the commit. Ingest
rows of all waiting requests go into one statement; rows queued for the same group function
(plugin records, finished deliveries) into one call of it; other jobs run each in a savepoint,
so one failing job cannot sink the rest of the batch. A backend says only how a batch commits.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("gateway.store")

T = TypeVar("T")
AfterCommit = Callable[[Any], None]
#: Rows handed to one group function call at most.
GROUP_ROWS = 60
#: A queued item: ``ingest`` (rows), ``grouped`` ((group function, row)), ``job`` or
#: ``background`` (a job), with the future its caller awaits.
Item = tuple[str, Any, "asyncio.Future[Any]"]
#: What a backend's commit gets, in queue order: ``("job", job)`` or ``("group", run, rows)``.
Step = tuple[Any, ...]


def steps(ordered: list[tuple[str, Any]]) -> list[Step]:
    """The non-ingest items of a batch as steps: consecutive rows of one group function (up to
    :data:`GROUP_ROWS`) become one step, so a burst costs one multi-row statement."""
    out: list[Step] = []
    for kind, item in ordered:
        if kind == "grouped":
            run, row = item
            last = out[-1] if out else None
            if last is not None and last[0] == "group" and last[1] == run and len(last[2]) < GROUP_ROWS:
                last[2].append(row)
            else:
                out.append(("group", run, [row]))
        else:
            out.append(("job", item))
    return out


def outcomes_per_item(plan: list[Step], results: list[tuple[Any, BaseException | None]]
                      ) -> list[tuple[Any, BaseException | None]]:
    """A step's outcome for each queued item it covers (a group's for each of its rows)."""
    out: list[tuple[Any, BaseException | None]] = []
    for step, result in zip(plan, results, strict=True):
        out.extend([(None, result[1])] * len(step[2]) if step[0] == "group" else [result])
    return out


class BatchWriter(ABC):
    """The queue of a group-commit writer; :meth:`commit` is the backend's transaction."""

    def __init__(self, after_ingest: AfterCommit | None = None, *, max_batch: int = 1024) -> None:
        self.after_ingest = after_ingest
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._max_batch = max_batch
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.jobs = 0

    @abstractmethod
    async def commit(self, rows: list[Any], plan: list[Step]) -> tuple[Any, list[tuple[Any, BaseException | None]]]:
        """Insert the ingest ``rows`` and run the ``plan`` in one transaction; return what
        the ingest returned and each step's ``(value, error)``."""

    def _start_queue(self) -> None:
        self._task = asyncio.create_task(self._run(), name="store-writer")

    async def _stop_queue(self) -> None:
        """Let everything queued commit, then stop."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def submit(self, job: Callable[[Any], T], *, background: bool = False) -> T:
        """Run ``job(conn)`` inside the next transaction; return its result once committed.

        A ``background`` job (retention's deletes) gets a transaction of its own after the
        batch it was queued with, so the requests in that batch do not wait for it.
        """
        result: T = await self._put("background" if background else "job", job)
        return result

    def submit_grouped_nowait(self, run: Callable[..., Any], row: tuple[Any, ...]) -> asyncio.Future[None]:
        """Queue one ``row`` for ``run(conn, rows)``, which writes many rows in one go.
        The future resolves once the row is committed."""
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

    async def _commit_batch(self, batch: list[Item]) -> None:
        """One transaction for ``batch``; every future settles after its commit."""
        rows = [row for kind, item, _ in batch if kind == "ingest" for row in item]
        plan = steps([(kind, item) for kind, item, _ in batch if kind != "ingest"])
        try:
            ingested, results = await self.commit(rows, plan)
        except Exception as exc:
            log.error("store commit failed", extra={"error": type(exc).__name__})
            for _kind, _item, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        else:
            self._settle(batch, ingested, outcomes_per_item(plan, results))
        finally:
            for _ in batch:
                self._queue.task_done()

    def _settle(self, batch: list[Item], ingested: Any, outcomes: list[tuple[Any, BaseException | None]]) -> None:
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
