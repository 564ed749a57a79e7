"""The dispatcher of a process that shares its store with other gateway processes.

Every process ingests whatever webhook reaches it, but a lane (the deliveries of one call to
one sink) is delivered by the one process that holds its lease in the store (see
:class:`gateway.store.protocols.Fleet`). The holder takes the lane's deliveries from the
store one at a time in id order, whichever process ingested them, so per-call order holds
across processes; when none is left it hands the lane back. A process takes lanes:

- right after its own ingest commits (the webhooks it accepted; the events are in memory),
- when it starts, every ``ttl / 3`` seconds, and at the fleet's rescan: lanes nobody holds,
  among them those of a process that died (its leases expired) or shut down.

At most ``WINDOW`` lanes of one (sink, tenant) are held by one process; a longer backlog waits
in the store. The attempt itself (rate limit, still pending?, sink, retry, dead letter) is
the single-process dispatcher's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Mapping

from .. import logs, metrics
from ..events import CallEvent
from ..sinks import Sink
from ..store.protocols import Events as EventQueue
from ..store.protocols import Fleet
from ..store.records import PendingDelivery
from .dispatcher import WINDOW, Bindings, Deliver, Dispatcher, now_ms
from .ratelimit import SharedRateLimiter

log = logging.getLogger("gateway.delivery")

#: lanes taken over in one claim at most
CLAIM_BATCH = 256
#: pause after the store failed, before a lane tries again
STORE_PAUSE = 1.0

Lane = tuple[str, str]


class SharedDispatcher(Dispatcher):
    """Delivers the lanes this process holds; finds them through the store's fleet."""

    def __init__(self, queue: EventQueue, sinks: Mapping[str, Sink], bindings: Bindings,
                 deliver: Deliver, *, fleet: Fleet, concurrency: int, horizon: float, retry_base: float,
                 retry_cap: float) -> None:
        super().__init__(queue, sinks, bindings, deliver, concurrency=concurrency, horizon=horizon,
                         retry_base=retry_base, retry_cap=retry_cap, limiter=SharedRateLimiter(fleet))
        self.fleet = fleet
        self._held: dict[Lane, str] = {}  # lane -> tenant
        self._per_window: Counter[tuple[str, str]] = Counter()  # (sink, tenant) -> lanes held
        self._fresh: dict[Lane, dict[int, CallEvent]] = {}  # events ingested here, until delivered
        self._wanted: dict[Lane, str] = {}  # lanes to take after this process's ingest
        self._taking: asyncio.Task[None] | None = None
        self._leases: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Lanes held (each with at most one delivery in memory at a time)."""
        return len(self._held)

    async def start(self) -> None:
        self._running = True
        await self.rescan()
        self._leases = asyncio.create_task(self._keep_leases(), name="delivery-leases")

    def submit(self, deliveries: Iterable[PendingDelivery]) -> None:
        """Deliveries this process ingested (or replayed): take their lanes if nobody holds them."""
        if self._closing or not self._running:
            return
        for d in deliveries:
            lane = (d.sink, d.call_key)
            if d.event is not None:
                self._fresh.setdefault(lane, {})[d.id] = d.event
            if lane not in self._held:
                self._wanted[lane] = d.tenant
        if self._wanted and (self._taking is None or self._taking.done()):
            self._taking = asyncio.create_task(self._take_wanted(), name="delivery-take")

    async def _take_wanted(self) -> None:
        while self._wanted and not self._closing:
            wanted, self._wanted = self._wanted, {}
            room = {lane: t for lane, t in wanted.items()
                    if lane not in self._held and self._per_window[(lane[0], t)] < WINDOW}
            try:
                got = set(await self.fleet.acquire(list(room)))
            except Exception as exc:  # the claims pick them up
                log.error("taking lanes failed", extra={"error": type(exc).__name__})
                got = set()
            for lane, tenant in wanted.items():
                if lane in got:
                    self._run(lane, tenant)
                elif lane not in self._held:
                    self._fresh.pop(lane, None)  # another process delivers them

    async def rescan(self) -> int:
        """Take over lanes nobody holds (expired, handed back); return how many."""
        if self._closing:
            return 0
        full = [w for w, n in self._per_window.items() if n >= WINDOW]
        claimed = await self.fleet.claim(CLAIM_BATCH, full)
        for sink, call_key, tenant in claimed:
            self._run((sink, call_key), tenant)
        if claimed:
            log.info("lanes taken over", extra={"lanes": len(claimed)})
        return len(claimed)

    async def _keep_leases(self) -> None:
        """Renew this process's leases, and take over lanes nobody holds, every ``ttl / 3``."""
        while not self._closing:
            await asyncio.sleep(self.fleet.ttl / 3)
            try:
                await self.fleet.renew()
                await self.rescan()
            except Exception as exc:
                log.error("renewing lane leases failed", extra={"error": type(exc).__name__})

    def _run(self, lane: Lane, tenant: str) -> None:
        if lane in self._held:
            return
        self._held[lane] = tenant
        self._per_window[(lane[0], tenant)] += 1
        self._tasks[lane] = asyncio.create_task(self._run_held(lane, tenant), name="delivery-lane")
        metrics.QUEUE_DEPTH.set(len(self._held))

    async def _run_held(self, lane: Lane, tenant: str) -> None:
        """Deliver the lane's deliveries in order while holding it; hand it back when empty."""
        logs.tenant_id.set(tenant)
        paused: tuple[int, int] = (0, 0)  # (delivery id, not before): a wait the store does not keep
        try:
            while not self._closing and self.fleet.holds(lane):
                try:
                    d = await self.fleet.next(lane)
                    if d is None:
                        break
                    d.event = self._fresh.get(lane, {}).pop(d.id, None)
                    if d.id == paused[0]:
                        d.next_at = max(d.next_at, paused[1])
                    await self._sleep_until(d.next_at)
                    if self._closing or not self.fleet.holds(lane):
                        break
                    if not await self._attempt(d):
                        paused = (d.id, d.next_at)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.error("delivery lane failed", extra={"sink": lane[0], "error": type(exc).__name__})
                    paused = (0, 0)
                    await self._sleep_until(now_ms() + int(1000 * STORE_PAUSE))
        finally:
            self._held.pop(lane, None)
            self._fresh.pop(lane, None)
            self._per_window[(lane[0], tenant)] -= 1
            if self._per_window[(lane[0], tenant)] <= 0:
                del self._per_window[(lane[0], tenant)]
            self._tasks.pop(lane, None)
            metrics.QUEUE_DEPTH.set(len(self._held))

    async def stop(self, grace: float = 5.0) -> None:
        """Stop as the single-process dispatcher does, then hand every lane back at once, so
        the other processes take them over without waiting for the leases to expire."""
        for task in (self._leases, self._taking):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._leases, self._taking) if t is not None), return_exceptions=True)
        await super().stop(grace)
        if self._running:
            try:
                await self.fleet.release_all()
            except Exception as exc:  # they expire instead
                log.error("handing lanes back failed", extra={"error": type(exc).__name__})
