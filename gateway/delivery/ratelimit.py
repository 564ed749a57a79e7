"""Token buckets per destination, so one slow portal never delays the others.

One process (SQLite) keeps its buckets in memory; processes sharing a store (PostgreSQL)
take from the fleet's budgets in the database, so a portal's limit holds for all of them.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

from ..sinks import RateLimit

if TYPE_CHECKING:
    from ..store.protocols import Fleet


class Limiter(Protocol):
    async def acquire(self, sink: str, destination: str, limit: RateLimit | None) -> bool:
        """Wait for the right to make one request to ``destination``; ``True`` if that meant waiting."""


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; ``acquire`` waits for one."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.tokens = float(limit.burst)
        self.updated = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(float(self.limit.burst), self.tokens + (now - self.updated) * self.limit.rate)
        self.updated = now

    async def acquire(self) -> bool:
        """Take a token; return ``True`` if that meant waiting."""
        waited = False
        while True:
            self._refill()
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return waited
            waited = True
            await asyncio.sleep((1.0 - self.tokens) / self.limit.rate)


class RateLimiter:
    """One bucket per (sink, destination)."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    async def acquire(self, sink: str, destination: str, limit: RateLimit | None) -> bool:
        if limit is None:
            return False
        key = (sink, destination)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(limit)
        return await bucket.acquire()


class SharedRateLimiter:
    """One budget per (sink, destination) for every process on the store: each request
    reserves its slot with one short statement, then waits until the slot comes."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    async def acquire(self, sink: str, destination: str, limit: RateLimit | None) -> bool:
        if limit is None:
            return False
        wait = await self._fleet.reserve(f"{sink}\x1f{destination}", limit.rate, limit.burst)
        if wait > 0:
            await asyncio.sleep(wait)
        return wait > 0
