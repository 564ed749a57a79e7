"""Journaled webhooks: acknowledged once checked and durable, interpreted right after.

For a source that is ``deferred`` the webhook path does only what the answer must promise:
the signature is verified and the body is well-formed (``Source.check``), and the request as
received is durable (sealed with the tenant's key, group-committed, fsync'd). Then 200. The
:class:`Interpreter` in the serving process takes journaled requests in arrival order (per
call: ``Source.order_key``), lets the source interpret them (``Source.receive``: per-call state, events), stores the events as
any others and deletes the entries. A request that cannot be interpreted any more (its
connection was removed, its user logged out meanwhile) is counted and logged by error type.

What this buys: a burst is acknowledged at the speed of the cheap part, and interpreted in
batches behind it. What bounds it: when ``max_backlog`` entries wait, new webhooks wait for
room before they are acknowledged (as every webhook did before), so the lag cannot grow
without bound; the dispatcher sees the events as soon as they are interpreted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from multidict import CIMultiDict, MultiDict

from . import metrics
from .errors import GatewayError
from .models import Connection
from .sources import Source, WebhookRequest
from .store.common import JournalEntry

if TYPE_CHECKING:
    from .context import PluginContext
    from .ingest import Ingest
    from .store import Store

log = logging.getLogger("gateway.journal")

#: Entries taken per round; each round's events are committed before its entries go.
BATCH = 128
#: How long the interpreter lets entries gather before a round that would be small: a round
#: costs a read and a delete whatever its size, so under load fewer, fuller rounds leave more
#: of the process to answering webhooks. The lag this adds to a quiet call is this long.
LINGER = 0.01
#: While webhooks keep arriving, the interpreter pauses after each round for up to this share
#: of the round's own duration: a burst is answered at the speed of the cheap part and
#: interpreted behind it, and interpreting never stops.
YIELD = 3.0
#: The pause shrinks as interpretation lags and is gone at this lag (seconds from a webhook's
#: arrival to its interpretation): the call card is live, so under a steady load the lag
#: settles well below this, and only a burst above what interpreting keeps up with is
#: answered faster than it is interpreted (by a backlog of this many seconds at most).
MAX_LAG = 0.05
#: Entries of different calls interpreted at the same time: enough to overlap what waits on
#: the store (PostgreSQL, the writer), few enough that webhooks arriving meanwhile are never
#: queued behind a whole round of interpretation steps.
CONCURRENCY = 8
#: Entries that may wait before new webhooks wait for room.
MAX_BACKLOG = 100_000
#: Errors of a source's ``receive`` that mean "this request will never be interpretable".
_REFUSALS = (GatewayError, ValueError, KeyError, TypeError, UnicodeError, AttributeError, IndexError)


class Interpreter:
    """Turns journaled webhooks into events, in arrival order, in the serving process."""

    def __init__(self, store: Store, ingest: Ingest, sources: Mapping[str, Source],
                 contexts: Mapping[str, PluginContext], *, max_backlog: int = MAX_BACKLOG) -> None:
        self._store = store
        self._ingest = ingest
        self._sources = sources
        self._contexts = contexts
        self.max_backlog = max_backlog
        self.backlog = 0
        #: webhooks journaled by this process since it started
        self.journaled = 0
        #: entries waiting per connection (journaled by this process), and those an earlier
        #: process left (whose connections are unknown until read)
        self._waiting: dict[str, int] = {}
        self._resumed = 0
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Resume what an earlier process journaled and did not interpret (a crash)."""
        self.backlog = self._resumed = await self._store.journal.count()
        metrics.JOURNAL_BACKLOG.set(self.backlog)
        self._task = asyncio.create_task(self._run(), name="journal-interpreter")
        self._wake.set()

    async def stop(self, grace: float = 5.0) -> None:
        """Interpret what waits for up to ``grace`` seconds; the rest stays for the next start."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.drain(), timeout=grace)
        except TimeoutError:
            pass
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def journal(self, connection: Connection, request: WebhookRequest) -> None:
        """Make an accepted request durable (waiting for room when the backlog is full)."""
        if self.backlog >= self.max_backlog:
            metrics.JOURNAL_FULL.inc()
            async with self._changed:
                await self._changed.wait_for(lambda: self.backlog < self.max_backlog)
        self.backlog += 1
        self.journaled += 1
        self._waiting[connection.id] = self._waiting.get(connection.id, 0) + 1
        metrics.JOURNAL_BACKLOG.set(self.backlog)
        try:
            await self._store.journal.append(
                connection, request.body, tuple(request.headers.items()), request.content_type,
                tuple(request.query.items()), int(request.received_at.timestamp() * 1000))
        except BaseException:
            self.backlog -= 1
            self._forget(connection.id)
            raise
        self._wake.set()

    def waiting(self, connection_id: str) -> bool:
        """Whether a request of this connection may still wait to be interpreted: a later one
        must then be journaled too, or it could overtake it."""
        return self._resumed > 0 or connection_id in self._waiting

    def _forget(self, connection_id: str) -> None:
        left = self._waiting.get(connection_id, 0) - 1
        if left > 0:
            self._waiting[connection_id] = left
        elif left == 0:
            del self._waiting[connection_id]
        else:
            self._resumed = max(0, self._resumed - 1)

    async def drain(self) -> None:
        """Return once nothing waits (before an erasure, in tests)."""
        if not self.running:
            return
        async with self._changed:
            await self._changed.wait_for(lambda: self.backlog <= 0)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self.backlog < BATCH:
                await asyncio.sleep(LINGER)
            self._wake.clear()
            while True:
                try:
                    entries = await self._store.journal.pending(limit=BATCH)
                    if not entries:
                        break
                    arrived = self.journaled
                    started = time.monotonic()
                    await self._round(entries)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the store failed: keep the entries, try again soon
                    log.error("interpreting journaled webhooks failed", extra={"error": type(exc).__name__})
                    await asyncio.sleep(1.0)
                    continue
                busy = self.journaled != arrived  # webhooks came in while this round ran
                lag = time.time() - entries[-1].received_at / 1000  # what is left is younger
                give_way = YIELD * max(0.0, 1.0 - lag / MAX_LAG) if busy else 0.0
                await asyncio.sleep((time.monotonic() - started) * give_way)

    async def _round(self, entries: list[JournalEntry]) -> None:
        """Interpret a round's entries, in arrival order per call, and store their events.

        Entries of different calls (``Source.order_key``) run at the same time: each one's
        interpretation waits on store reads and writes, and one at a time leaves the process
        idle in between. An entry waits for the one before it of the same call, and an entry
        without a key for everything before it of its connection (and everything after it of
        its connection for it).
        """
        last: dict[tuple[str, str], asyncio.Task[asyncio.Task[int] | None]] = {}
        barrier: dict[str, asyncio.Task[asyncio.Task[int] | None]] = {}
        since_barrier: dict[str, list[asyncio.Task[asyncio.Task[int] | None]]] = {}
        tasks: list[asyncio.Task[asyncio.Task[int] | None]] = []
        for entry in entries:
            prepared = await self._prepare(entry)
            if prepared is None:
                continue
            connection, source, request = prepared
            key = self._order_key(source, connection, request)
            before = barrier.get(connection.id)
            keyed = since_barrier.setdefault(connection.id, [])
            if key is None:  # the barrier before it waited for everything earlier still
                earlier = [*keyed, *([before] if before is not None else [])]
            else:
                earlier = [t for t in (last.get((connection.id, key)), before) if t is not None]
            task = asyncio.ensure_future(self._after(earlier, connection, source, request))
            tasks.append(task)
            if key is None:
                barrier[connection.id] = task
                keyed.clear()
            else:
                last[(connection.id, key)] = task
                keyed.append(task)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        stored = [o for o in outcomes if isinstance(o, asyncio.Task)]
        if stored:
            await asyncio.gather(*stored)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            raise failed[0]
        await self._store.journal.done([e.id for e in entries])
        for entry in entries:
            self._forget(entry.connection_id)
        async with self._changed:
            self.backlog = max(0, self.backlog - len(entries))
            metrics.JOURNAL_BACKLOG.set(self.backlog)
            self._changed.notify_all()

    async def _prepare(self, entry: JournalEntry) -> tuple[Connection, Source, WebhookRequest] | None:
        connection = await self._store.connections.get(entry.connection_id)
        source = self._sources.get(connection.plugin) if connection is not None else None
        if connection is None or source is None:
            self._refused(connection.plugin if connection else "unknown", "ConnectionGone")
            return None
        received = datetime.fromtimestamp(entry.received_at / 1000, timezone.utc)
        return connection, source, WebhookRequest(
            body=entry.body, headers=CIMultiDict(entry.headers), content_type=entry.content_type,
            received_at=received, query=MultiDict(entry.query), checked=True)

    @staticmethod
    def _order_key(source: Source, connection: Connection, request: WebhookRequest) -> str | None:
        try:
            return source.order_key(connection, request)
        except _REFUSALS:
            return None  # receive will refuse it; in order with everything else meanwhile

    async def _after(self, earlier: list[asyncio.Task[asyncio.Task[int] | None]], connection: Connection,
                     source: Source, request: WebhookRequest) -> asyncio.Task[int] | None:
        if earlier:
            await asyncio.wait(earlier)
        await self._ingest.settled(connection.id)  # interpreted before their answer, and earlier
        async with self._slots:
            return await self._interpret(connection, source, request)

    async def _interpret(self, connection: Connection, source: Source,
                         request: WebhookRequest) -> asyncio.Task[int] | None:
        try:
            events = await source.receive(self._contexts[source.name], connection, request)
        except _REFUSALS as exc:
            self._refused(source.name, type(exc).__name__)
            return None
        if not events:
            metrics.IGNORED.labels(source.name).inc()
            return None
        # started now, so the events queue behind the call state the source just queued
        return asyncio.ensure_future(self._ingest.store(connection, events, received_at=request.received_at))

    @staticmethod
    def _refused(plugin: str, reason: str) -> None:
        metrics.JOURNAL_UNINTERPRETABLE.labels(plugin).inc()
        log.warning("a journaled webhook could not be interpreted", extra={"plugin": plugin, "error": reason})


__all__ = ["BATCH", "CONCURRENCY", "MAX_BACKLOG", "MAX_LAG", "YIELD", "Interpreter"]
