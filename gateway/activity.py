"""When each connection last received a webhook, without a database write per webhook.

The webhook path only notes the time in memory (:meth:`WebhookActivity.seen`); the gateway
writes the notes every :data:`FLUSH_INTERVAL` seconds and at shutdown in one batch
(``Connections.mark_seen``), where the latest time wins, so several processes serving the
same store agree. Reading merges what is stored with what this process has not written yet.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store.protocols import Connections

#: Seconds between two writes of the notes: a "last webhook" shown is at most this stale.
FLUSH_INTERVAL = 30.0


class WebhookActivity:
    def __init__(self, connections: Connections) -> None:
        self._connections = connections
        self._unsaved: dict[str, int] = {}

    def seen(self, connection_id: str, at_ms: int | None = None) -> None:
        """Note a webhook accepted for the connection (now, unless ``at_ms`` says when)."""
        at = int(time.time() * 1000) if at_ms is None else at_ms
        if at > self._unsaved.get(connection_id, 0):
            self._unsaved[connection_id] = at

    async def flush(self) -> None:
        """Write the notes taken since the last flush; on failure keep them for the next one."""
        batch, self._unsaved = self._unsaved, {}
        try:
            await self._connections.mark_seen(batch)
        except BaseException:
            for cid, at in batch.items():
                self.seen(cid, at)
            raise

    async def last(self, tenant: str, connection_ids: Iterable[str]) -> dict[str, int]:
        """When each of these connections of the tenant last received a webhook (ms); those
        that never did are left out."""
        stored = await self._connections.last_seen(tenant)
        merged = {}
        for cid in connection_ids:
            at = max(stored.get(cid, 0), self._unsaved.get(cid, 0))
            if at:
                merged[cid] = at
        return merged
