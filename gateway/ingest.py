"""Ingest: what a source made of a webhook (or found otherwise) becomes durable events.

The path of one webhook: :func:`gateway.webhooks.handle` checks the HTTP side (connection,
content type, size), :meth:`Ingest.accept` lets the source verify and parse, :meth:`Ingest.store`
stamps the events and hands them to the store, which deduplicates, encrypts and commits them
with one delivery row per bound sink (fsync'd, group commit) before the 200 goes out. A
``deferred`` source's webhooks are journaled instead once checked (:mod:`gateway.journal`)
and take the same path right after the 200, but only under load: while fewer than
:data:`INLINE_LIMIT` webhooks are being interpreted, interpreting before the 200 is faster
end to end (one commit instead of two, no round to wait for), and a call card is live. While
a connection has requests waiting in the journal, its next ones go there too, so a call's
requests never overtake each other between the two paths.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from . import metrics
from .events import CallEvent, CallState
from .models import Connection
from .sources import Source, WebhookRequest

if TYPE_CHECKING:
    from .context import PluginContext
    from .journal import Interpreter
    from .store import Store

_EVENTS_BY_STATE = {state: metrics.EVENTS.labels(state.value) for state in CallState}
#: Webhooks of deferred sources interpreted before their 200 at the same time, at most; more
#: arriving meanwhile is a burst, and the burst is journaled.
INLINE_LIMIT = 32


class Ingest:
    def __init__(self, store: Store, sources: Mapping[str, Source],
                 contexts: Mapping[str, PluginContext]) -> None:
        self._store = store
        self._sources = sources
        self._contexts = contexts
        #: set by the runtime in the serving process
        self.interpreter: Interpreter | None = None
        #: see :data:`INLINE_LIMIT` (0: a deferred source's webhooks are always journaled)
        self.inline_limit = INLINE_LIMIT
        self._inline = 0
        #: webhooks being interpreted before their answer, per connection, and what waits for
        #: a connection to have none (:meth:`settled`)
        self._inline_by: dict[str, int] = {}
        self._idle: dict[str, asyncio.Event] = {}

    async def accept(self, connection: Connection, request: WebhookRequest) -> int | None:
        """The webhook path after the HTTP checks: verify and parse, then store durably.

        Returns how many events were stored, or ``None`` when the request was journaled (a
        ``deferred`` source in a serving gateway under load: checked and durable, interpreted
        right after).
        """
        plugin = connection.plugin
        source, ctx = self._sources[plugin], self._contexts[plugin]
        interpreter = self._journal_for(source, connection)
        if interpreter is not None:
            await source.check(ctx, connection, request)
            await interpreter.journal(connection, request)
            return None
        self._inline += 1
        self._inline_by[connection.id] = self._inline_by.get(connection.id, 0) + 1
        try:
            events = await source.receive(ctx, connection, request)
            if not events:
                metrics.IGNORED.labels(plugin).inc()
                return 0
            return await self.store(connection, events, received_at=request.received_at)
        finally:
            self._inline -= 1
            left = self._inline_by.pop(connection.id) - 1
            if left:
                self._inline_by[connection.id] = left
            elif (idle := self._idle.pop(connection.id, None)) is not None:
                idle.set()

    async def settled(self, connection_id: str) -> None:
        """Return once no webhook of the connection is being interpreted before its answer.
        The journal calls it before interpreting: its entries arrived after those."""
        if connection_id in self._inline_by:
            await self._idle.setdefault(connection_id, asyncio.Event()).wait()

    def _journal_for(self, source: Source, connection: Connection) -> Interpreter | None:
        """The journal this webhook goes to, or ``None`` to interpret it now (see the module)."""
        interpreter = self.interpreter
        if not source.deferred or interpreter is None or not interpreter.running:
            return None
        if self._inline >= self.inline_limit or interpreter.waiting(connection.id):
            return interpreter
        return None

    async def store(self, connection: Connection, events: Sequence[CallEvent], *,
                    received_at: datetime | None = None) -> int:
        """Store events exactly as if they had arrived by webhook: stamped with where they came
        from, deduplicated, durable, then delivered. Returns how many were handed over."""
        if not events:
            return 0
        received = received_at or datetime.now(timezone.utc)
        stamped = [ev.stamped(source=connection.plugin, connection_id=connection.id,
                              tenant=connection.tenant) for ev in events]
        await self._store.events.ingest(connection, stamped, int(received.timestamp() * 1000))
        for ev in stamped:
            _EVENTS_BY_STATE[ev.state].inc()
        return len(stamped)
