"""Retention: call records older than the retention period (at most 7 days) are deleted,
in the core's store and in every plugin."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from . import metrics
from .audit import AuditLog

if TYPE_CHECKING:
    from .plugins import PluginHost
    from .store import Store

log = logging.getLogger("gateway")

#: How often ``gateway serve`` purges.
RETENTION_INTERVAL = 3600.0


class Retention:
    def __init__(self, store: Store, audit: AuditLog, host: PluginHost, days: float) -> None:
        self._store = store
        self._audit = audit
        self._host = host
        self.days = days
        self._running: asyncio.Task[dict[str, int]] | None = None

    def cutoff(self, now: datetime | None = None) -> datetime:
        """Call records received before this moment are past the retention period."""
        return (now or datetime.now(timezone.utc)) - timedelta(days=self.days)

    async def expired(self, now: datetime | None = None) -> int:
        """How many call events the next purge deletes (for progress bars)."""
        return await self._store.events.count_expired(int(self.cutoff(now).timestamp() * 1000))

    async def purge(self, *, now: datetime | None = None,
                    progress: Callable[[int], None] | None = None) -> dict[str, int]:
        """Delete call records older than the retention period, in every plugin too."""
        cutoff = self.cutoff(now)
        started = time.monotonic()
        counts = await self._store.events.purge_before(int(cutoff.timestamp() * 1000), progress=progress)
        heard = await self._host.call_each("purge_expired", cutoff=cutoff)
        for result in heard.answers.values():
            if isinstance(result, int):
                counts["plugin_records"] = counts.get("plugin_records", 0) + result
        for kind, n in counts.items():
            metrics.PURGED.labels(kind).inc(n)
        log.info("retention purge finished", extra={**counts, "seconds": round(time.monotonic() - started, 3),
                                                    "failed_plugins": len(heard.failed)})
        await self._audit.record("retention.purge", deleted=counts, failed_plugins=len(heard.failed))
        return counts

    async def purge_now(self) -> dict[str, int]:
        """Run the purge, or join the one already running; it finishes even when the caller
        goes away (an admin request cancelled by its client)."""
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self.purge(), name="retention-purge")
        return await asyncio.shield(self._running)

    async def stop(self) -> None:
        """Cancel a running purge: each batch is its own transaction, so stopping is safe."""
        if self._running is not None and not self._running.done():
            self._running.cancel()
            await asyncio.gather(self._running, return_exceptions=True)
