"""Moves stored events to their sinks: per-call order, retries, rate limits, dead letters.

The store is the truth (a ``pending`` row is a promise); this scheduler only decides *when*.
Deliveries of one call for one sink form a lane and go strictly one after the other; lanes
run in parallel, bounded by a semaphore, and wait for their destination's token bucket
before taking a slot, so a throttled portal never holds up anyone else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .. import logs, metrics
from ..errors import DeliveryError, NotFound, PermanentError, RetryableError, TenantPaused
from ..models import SinkBinding
from ..sinks import Delivery, Sink
from ..store.records import PendingDelivery
from .backoff import next_delay
from .ratelimit import Limiter, RateLimiter

if TYPE_CHECKING:
    from ..store.protocols import Events as EventQueue

log = logging.getLogger("gateway.delivery")

DELIVER_TIMEOUT = 60.0
PAUSE_DEFAULT = 600.0
MISSING_SINK_WAIT = 300.0
#: how often the serving process looks for pending deliveries it does not know of
RESCAN_INTERVAL = 30.0
#: deliveries of one (sink, tenant) held in memory; a longer backlog waits in the store
WINDOW = 64


#: finds a tenant's binding to a sink (``None`` once unbound)
Bindings = Callable[[str, str], Awaitable[SinkBinding | None]]
#: hands one delivery to its sink
Deliver = Callable[[Sink, Delivery], Awaitable[None]]


def now_ms() -> int:
    return int(time.time() * 1000)


def reason_of(exc: BaseException) -> str:
    """A short, personal-data-free description of a failure: class name and vendor code."""
    code = getattr(exc, "code", None)
    name = type(exc).__name__
    if isinstance(code, str) and code and len(code) <= 64 and code.replace("_", "").isalnum():
        return f"{name}:{code}"
    return name


@dataclass(slots=True)
class _Window:
    """What of one (sink, tenant)'s queue is in memory: at most ``WINDOW`` deliveries, taken
    strictly in id order, so a call's deliveries keep their order however they come in."""

    count: int = 0  # in memory: queued or in flight
    watermark: int = 0  # the highest id taken in
    overflow: bool = False  # pending rows above the watermark may be waiting in the store
    skipped: bool = False  # one was left in the store since the last page was read
    paging: bool = False


class Dispatcher:
    """Schedules the queue's pending deliveries: ``deliver(sink, delivery)`` makes each attempt;
    ``queue`` is the store's durable queue, whose rows are the truth."""

    def __init__(self, queue: EventQueue, sinks: Mapping[str, Sink], bindings: Bindings,
                 deliver: Deliver, *, concurrency: int, horizon: float,
                 retry_base: float, retry_cap: float, limiter: Limiter | None = None) -> None:
        self.queue = queue
        self.sinks = sinks
        self.bindings = bindings
        self.deliver = deliver
        self.horizon_ms = int(horizon * 1000)
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self._sem = asyncio.Semaphore(concurrency)
        self._limiter: Limiter = limiter or RateLimiter()
        self._lanes: dict[tuple[str, str], deque[PendingDelivery]] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._windows: dict[tuple[str, str], _Window] = {}
        self._known: set[int] = set()
        # one set per running rescan: ids that left the queue while its read was under way
        self._finishing: list[set[int]] = []
        self._paging: set[asyncio.Task[None]] = set()
        self._running = False  # only a serving process delivers
        self._closing = False
        self._wake = asyncio.Event()

    @property
    def depth(self) -> int:
        """Deliveries held in memory (the rest of a backlog waits in the store)."""
        return len(self._known)

    async def start(self) -> None:
        self._running = True
        self.submit(await self.queue.pending(per_group=WINDOW + 1))

    def submit(self, deliveries: Iterable[PendingDelivery]) -> None:
        """Schedule deliveries (fresh from ingest, loaded at start, paged in, or replayed), in
        id order. Beyond a (sink, tenant)'s window they stay in the store, paged in later.
        A dispatcher that was not started (a command-line process) leaves them to the store."""
        if self._closing or not self._running:
            return
        for d in deliveries:
            if d.id in self._known:
                continue
            window = self._windows.get((d.sink, d.tenant))
            if window is None:
                window = self._windows[(d.sink, d.tenant)] = _Window()
            if window.count >= WINDOW or (window.overflow and d.id > window.watermark):
                window.overflow = True
                window.skipped = True
                continue
            self._take(d, window)
        metrics.QUEUE_DEPTH.set(len(self._known))

    def _take(self, d: PendingDelivery, window: _Window) -> None:
        self._known.add(d.id)
        window.count += 1
        window.watermark = max(window.watermark, d.id)
        key = (d.sink, d.call_key)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = deque()
        lane.append(d)
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._run_lane(key), name="delivery-lane")

    def _left(self, d: PendingDelivery) -> None:
        """``d`` is done or dead: free its place in the window, page more in when half empty."""
        self._known.discard(d.id)
        for finished in self._finishing:
            finished.add(d.id)
        wkey = (d.sink, d.tenant)
        window = self._windows.get(wkey)
        if window is None:
            return
        window.count -= 1
        if window.overflow and window.count <= WINDOW // 2 and not window.paging and not self._closing:
            window.paging = True
            task = asyncio.create_task(self._page_in(wkey, window), name="delivery-page")
            self._paging.add(task)
            task.add_done_callback(self._paging.discard)
        else:
            self._forget_if_empty(wkey, window)

    def _forget_if_empty(self, wkey: tuple[str, str], window: _Window) -> None:
        """Drop a window that holds nothing and has nothing waiting in the store."""
        if window.count == 0 and not (window.overflow or window.paging) and self._windows.get(wkey) is window:
            del self._windows[wkey]

    async def _page_in(self, wkey: tuple[str, str], window: _Window) -> None:
        """Read the next deliveries of a window from the store, until it is full or the
        store has no more (and none were left out while reading)."""
        sink, tenant = wkey
        try:
            while window.overflow and window.count < WINDOW and not self._closing:
                window.skipped = False
                want = WINDOW - window.count
                page = await self.queue.pending_after(tenant, sink, window.watermark, want)
                for d in page:
                    if d.id not in self._known and not self._closing:
                        self._take(d, window)
                if len(page) < want and not window.skipped:
                    window.overflow = False
            metrics.QUEUE_DEPTH.set(len(self._known))
        except Exception as exc:  # the rescan pages it in later
            log.error("paging deliveries in failed", extra={"sink": sink, "error": type(exc).__name__})
        finally:
            window.paging = False
            self._forget_if_empty(wkey, window)

    async def rescan(self) -> int:
        """Queue the pending deliveries this process does not know of (dead letters replayed
        by ``gateway deadletters replay`` from another process); return how many.

        A delivery that finishes while the read runs may still show as pending in it: those
        are remembered and skipped, else they would go out twice.
        """
        if self._closing or await self.queue.count("pending") <= len(self._known):
            return 0
        finished: set[int] = set()
        self._finishing.append(finished)
        try:
            pending = await self.queue.pending(per_group=WINDOW + 1)
        finally:
            self._finishing.remove(finished)
        before = len(self._known)
        self.submit(d for d in pending if d.id not in finished)  # submit skips the known
        added = len(self._known) - before
        if added:
            log.info("pending deliveries found in the store", extra={"deliveries": added})
        return added

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking new attempts; let running ones finish for ``grace`` seconds, park the rest.

        Parked deliveries stay ``pending`` in the store and resume at the next start.
        """
        self._closing = True
        self._wake.set()
        for task in list(self._paging):
            task.cancel()
        await asyncio.gather(*self._paging, return_exceptions=True)
        tasks = list(self._tasks.values())
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()

    async def _sleep_until(self, at_ms: int) -> None:
        delay = (at_ms - now_ms()) / 1000
        if delay > 0 and not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _run_lane(self, key: tuple[str, str]) -> None:
        lane = self._lanes[key]
        if lane:
            logs.tenant_id.set(lane[0].tenant)  # this task's context: one lane, one tenant
        try:
            while lane and not self._closing:
                d = lane[0]
                await self._sleep_until(d.next_at)
                if self._closing:
                    break
                if await self._attempt(d):
                    lane.popleft()
                    self._left(d)
                    metrics.QUEUE_DEPTH.set(len(self._known))
                else:
                    d.event = None  # read again for the next attempt: a backlog holds no events
        finally:
            if not lane:
                self._lanes.pop(key, None)
            self._tasks.pop(key, None)

    async def _attempt(self, d: PendingDelivery) -> bool:
        """Try once; return True when the delivery left the queue (done, dead or gone)."""
        queue = self.queue
        sink = self.sinks.get(d.sink)
        if sink is None:  # plugin disabled or gone: keep the row, look again later
            d.next_at = now_ms() + int(MISSING_SINK_WAIT * 1000)
            return False
        try:
            binding = await self.bindings(d.tenant, d.sink)
        except NotFound:  # the tenant was removed while the delivery waited: its rows are gone
            metrics.DELIVERIES.labels(d.sink, "withdrawn").inc()
            return True
        event = d.event or await queue.load(d.tenant, d.event_seq)
        if binding is None or event is None:
            await queue.dead(d.id, d.attempts, "sink_unbound" if binding is None else "event_gone")
            metrics.DEAD_LETTERS.labels(d.sink).inc()
            return True
        d.event = event
        if await self._limiter.acquire(d.sink, sink.destination(binding), sink.rate_limit):
            metrics.RATE_LIMIT_WAITS.labels(d.sink).inc()
        # The row is the promise: an erasure, restriction, uninstall or purge that removed it
        # while the delivery waited in memory (for its turn, a retry or the rate limit) means
        # the event must not reach the CRM any more.
        if not await queue.is_pending(d.id):
            metrics.DELIVERIES.labels(d.sink, "withdrawn").inc()
            return True
        delivery = Delivery(d.id, event, binding, d.attempts + 1,
                            datetime.fromtimestamp(d.received_at / 1000, timezone.utc))
        async with self._sem:
            try:
                await asyncio.wait_for(self.deliver(sink, delivery), timeout=DELIVER_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except PermanentError as exc:
                return await self._dead(d, d.attempts + 1, reason_of(exc))
            except TenantPaused as exc:
                wait = exc.retry_after if exc.retry_after is not None else PAUSE_DEFAULT
                d.next_at = now_ms() + int(wait * 1000)
                await queue.retry(d.id, d.attempts, d.next_at, reason_of(exc))
                metrics.DELIVERIES.labels(d.sink, "paused").inc()
                return False
            except Exception as exc:
                retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
                if not isinstance(exc, (DeliveryError, TimeoutError)):
                    log.warning("sink raised an unexpected error", extra={
                        "sink": d.sink, "error": type(exc).__name__})
                return await self._retry(d, reason_of(exc), retry_after)
        await queue.finish(d.id)
        metrics.DELIVERIES.labels(d.sink, "delivered").inc()
        metrics.DELIVERY_LATENCY.labels(d.sink).observe(max(0.0, time.time() - d.received_at / 1000))
        return True

    async def _retry(self, d: PendingDelivery, reason: str, retry_after: float | None) -> bool:
        attempts = d.attempts + 1
        if now_ms() - d.since >= self.horizon_ms:
            return await self._dead(d, attempts, reason)
        delay = next_delay(attempts, base=self.retry_base, cap=self.retry_cap, retry_after=retry_after)
        d.attempts = attempts
        d.next_at = now_ms() + int(delay * 1000)
        await self.queue.retry(d.id, attempts, d.next_at, reason)
        metrics.DELIVERIES.labels(d.sink, "retry").inc()
        metrics.RETRIES.labels(d.sink).inc()
        log.info("delivery will be retried", extra={
            "sink": d.sink, "attempt": attempts, "reason": reason, "delay": round(delay, 3)})
        return False

    async def _dead(self, d: PendingDelivery, attempts: int, reason: str) -> bool:
        await self.queue.dead(d.id, attempts, reason)
        metrics.DELIVERIES.labels(d.sink, "dead").inc()
        metrics.DEAD_LETTERS.labels(d.sink).inc()
        log.warning("delivery dead-lettered", extra={
            "sink": d.sink, "attempts": attempts, "reason": reason})
        return True
