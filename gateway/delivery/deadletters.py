"""Dead letters: deliveries given up on, listed and replayed by the operator."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..store.records import DeadLetter

if TYPE_CHECKING:
    from ..store.protocols import Events as EventQueue
    from .dispatcher import Dispatcher


class DeadLetters:
    def __init__(self, queue: EventQueue, dispatcher: Dispatcher | None) -> None:
        self._queue = queue
        self._dispatcher = dispatcher

    async def list(self, tenant: str | None = None) -> list[DeadLetter]:
        return await self._queue.dead_letters(tenant)

    async def replay(self, delivery_id: int, tenant: str | None = None) -> None:
        """Queue a dead letter again (only the tenant's own with ``tenant``). A serving gateway
        takes it at once; another process's replay is found by the serving one's rescan."""
        pending = await self._queue.replay(delivery_id, tenant)
        if self._dispatcher is not None:
            self._dispatcher.submit([pending])
