"""Ingest: what a source made of a webhook (or found otherwise) becomes durable events.

The path of one webhook: :func:`gateway.webhooks.handle` checks the HTTP side (connection,
content type, size), :meth:`Ingest.accept` lets the source verify and parse, :meth:`Ingest.store`
stamps the events and hands them to the store, which deduplicates, encrypts and commits them
with one delivery row per bound sink (fsync'd, group commit) before the 200 goes out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from . import metrics
from .events import CallEvent, CallState
from .models import Connection
from .sources import Source, WebhookRequest

if TYPE_CHECKING:
    from .context import PluginContext
    from .store import Store

_EVENTS_BY_STATE = {state: metrics.EVENTS.labels(state.value) for state in CallState}


class Ingest:
    def __init__(self, store: Store, sources: Mapping[str, Source],
                 contexts: Mapping[str, PluginContext]) -> None:
        self._store = store
        self._sources = sources
        self._contexts = contexts

    async def accept(self, connection: Connection, request: WebhookRequest) -> int:
        """The webhook path after the HTTP checks: verify and parse, then store durably."""
        plugin = connection.plugin
        events = await self._sources[plugin].receive(self._contexts[plugin], connection, request)
        if not events:
            metrics.IGNORED.labels(plugin).inc()
            return 0
        return await self.store(connection, events, received_at=request.received_at)

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
