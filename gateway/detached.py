"""Work that must finish even when the request that started it goes away.

An aiohttp handler is cancelled when its client disconnects; work such as placing a
click-to-call must not be. Detached tasks are kept referenced here and given a grace period
at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("gateway")

T = TypeVar("T")


class Detached:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, name: str, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``work`` in a task of its own; its failure is logged by type."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("detached work failed", extra={"task": task.get_name(),
                                                       "error": type(task.exception()).__name__})

    async def drain(self, grace: float = 5.0) -> None:
        """Let running work finish for ``grace`` seconds, then cancel what is left."""
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
