"""Reconciliation: compare what a telephone system lists with what the gateway received, and
write the calls whose webhooks never arrived (a restart, a network problem, a disabled
subscription).

The core owns *when* and *which window*; the source owns the vendor's list and the matching
(:meth:`gateway.Source.reconcile`). Per connection the core keeps, in the source plugin's
storage (kind :data:`KIND`, no personal data): the window's origin, how far it has read
(``until``), the last success, failures and their back-off, and whether a run was requested.

- A window starts where the last successful one ended, never before the connection's first
  reconciliation (calls received before it cannot be told apart), never before the tenant's
  last erasure (an erased person's calls look missing and must not come back) and never
  older than the retention period minus a margin (the call state that proves a call arrived
  is purged then). It ends :data:`SETTLE` seconds ago: a call that just ended may still have
  its webhook on the way.
- Runs: the first task round of a process (start-up), every ``every`` seconds, when requested
  (a subscription found disabled and re-activated), and by hand (``gateway reconcile``). A
  failing run is retried with back-off, never sooner than the vendor's ``Retry-After``.
- Webhooks and reconciliation of one connection meet at a gate (:meth:`Reconciliation.gate`):
  webhooks pass together, a reconciliation deciding what is missing waits for them and holds
  new ones back, so "not received" is decided on everything received. In-process only; the
  later webhook of a call that was reconciled meanwhile is recognised by the source
  (:meth:`ReconcileView.claim`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from . import metrics
from .errors import BadRequest, GatewayError, RetryableError
from .events import Direction, utcnow
from .models import Connection
from .store import PluginStorage

if TYPE_CHECKING:
    from .context import CallMemory, PluginContext
    from .runtime import Gateway
    from .sources import Source
    from .store import Store

log = logging.getLogger("gateway.reconcile")

#: PluginStorage kind of the per-connection record (key: connection id) and the tenant's
#: erasure mark (key :data:`ERASED`).
KIND = "reconcile"
ERASED = "erased"
#: A window ends this long ago: webhooks of calls that just ended may still be on the way.
SETTLE = timedelta(seconds=120)
#: Default schedule in seconds (a plugin setting overrides it).
DEFAULT_INTERVAL = 900.0
#: Back-off of a failing reconciliation: first wait, doubling, at most.
BACKOFF_BASE = 60.0
BACKOFF_CAP = 3600.0
#: How long one run may hold a connection against other processes (seconds).
LEASE_TTL = 900.0
#: How long a run waits for the journal's backlog to be interpreted before it reads (seconds).
DRAIN_WAIT = 30.0
#: Windows start this long after the retention cutoff, at most (the state of a call that
#: started just before the window must still be there to be found).
RETENTION_MARGIN = timedelta(hours=3)
#: Call states are indexed by the hour they began (UTC): a window finds them by a few indexes.
_HOUR = "%Y-%m-%dT%H"


class ReconcileBusy(GatewayError):
    """Another gateway process is reconciling the connection right now."""


class ReconcileFailed(GatewayError):
    """The source's reconciliation failed; it is retried with back-off."""


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """What one reconciliation of one connection found. Counts only, no personal data.

    ``listed``: calls the telephone system listed in the window; ``received``: of them, calls
    the gateway had already (matched); ``created``: written by reconciliation; ``completed``:
    calls received without their end, ended from the list; ``ambiguous``: not written because
    a received call could be them but the fields cannot tell (see the source's README);
    ``skipped``: listed calls not reconciled (internal calls, unreadable items); ``truncated``:
    the list may have been cut short by the vendor (older calls of the window are missing).
    """

    listed: int = 0
    received: int = 0
    created: int = 0
    completed: int = 0
    ambiguous: int = 0
    skipped: int = 0
    truncated: bool = False

    def line(self) -> str:
        """One line for the CLI and the logs."""
        text = (f"listed {self.listed}, already received {self.received}, written {self.created}, "
                f"completed {self.completed}, ambiguous {self.ambiguous}, skipped {self.skipped}")
        return text + (" (the list may be incomplete)" if self.truncated else "")


@dataclass(frozen=True, slots=True)
class ReconcileStatus:
    """A connection's reconciliation as a status page shows it."""

    last_success: datetime | None
    failing: bool
    failures: int = 0


# --- matching, shared by the sources --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallSpan:
    """One call as reconciliation compares it: who (``remote``, ``local``), which way, and the
    interval ``[lo, hi]`` its life must lie in, as far as the fields tell. ``key`` names it for
    the caller; ``ident`` is the vendor's identity of a listed call when there is one (a call
    reconciled before from the same list entry matches it exactly)."""

    key: str
    remote: str | None
    direction: Direction | None
    lo: datetime
    hi: datetime
    local: str | None = None
    ident: str | None = None


def may_be_same(a: CallSpan, b: CallSpan, slack: timedelta) -> bool:
    """Could ``a`` and ``b`` be one call: same remote number, directions and local numbers that
    do not contradict, and intervals that overlap once widened by ``slack``."""
    if a.ident is not None and a.ident == b.ident:
        return True
    if a.remote != b.remote:
        return False
    if a.direction is not None and b.direction is not None and a.direction != b.direction:
        return False
    if a.local and b.local and a.local != b.local:
        return False
    return a.lo - slack <= b.hi and b.lo - slack <= a.hi


@dataclass(frozen=True, slots=True)
class Matching:
    """``matched``: listed key → known key; ``missing``: listed calls no known call could be;
    ``ambiguous``: listed calls a known call could be, all taken by closer listed calls."""

    matched: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)


def match_calls(listed: Sequence[CallSpan], known: Sequence[CallSpan], slack: timedelta) -> Matching:
    """Pair listed calls with known ones, each used once: exact identities first, then the
    closest starts. A listed call no known call could be is missing; one whose candidates all
    went to other listed calls is ambiguous (two calls from one number a minute apart, one
    received: which one is missing cannot be told, so neither is written)."""
    candidates = {item.key: [k for k in known if may_be_same(item, k, slack)] for item in listed}
    pairs = sorted(((0 if item.ident is not None and item.ident == k.ident else 1),
                    abs((item.lo - k.lo).total_seconds()), item.key, k.key)
                   for item in listed for k in candidates[item.key])
    out = Matching()
    taken: set[str] = set()
    for _exact, _distance, listed_key, known_key in pairs:
        if listed_key in out.matched or known_key in taken:
            continue
        out.matched[listed_key] = known_key
        taken.add(known_key)
    for item in listed:
        if not candidates[item.key]:
            out.missing.append(item.key)
        elif item.key not in out.matched:
            out.ambiguous.append(item.key)
    return out


def time_index(when: datetime) -> str:
    """The index a source stores a call's state under (``CallMemory.index``) so that
    reconciliation finds it by time: the UTC hour the call began."""
    return "t|" + when.astimezone(timezone.utc).strftime(_HOUR)


def time_indexes(lo: datetime, hi: datetime) -> list[str]:
    """Every :func:`time_index` of ``[lo, hi]``."""
    at = lo.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    out = []
    while at <= hi:
        out.append(time_index(at))
        at += timedelta(hours=1)
    return out


def reconciled_index(remote: str | None) -> str:
    """The index of a reconciled call's state: by its remote number (a keyed digest in the
    store), so the webhook path finds it cheaply."""
    return f"reconciled|{remote or ''}"


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def reconciled_span(key: str, value: Any) -> CallSpan | None:
    """The span of a reconciled call's state (see :meth:`ReconcileView.mark`), else ``None``."""
    mark = value.get("reconciled") if isinstance(value, dict) else None
    if not isinstance(mark, dict):
        return None
    lo, hi = _time(mark.get("lo")), _time(mark.get("hi"))
    if lo is None or hi is None:
        return None
    direction = mark.get("direction")
    return CallSpan(key, mark.get("remote"), Direction(direction) if direction in ("in", "out") else None,
                    lo, hi, mark.get("local"), mark.get("ident"))


# --- the gate between webhooks and a reconciliation's decision -------------------------------


class _Gate:
    """Many webhooks at once, or one reconciliation deciding; a waiting decision goes first."""

    def __init__(self) -> None:
        self.readers = 0
        self.writing = False
        self.waiting = 0
        self.changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self.changed:
            await self.changed.wait_for(lambda: not self.writing and not self.waiting)
            self.readers += 1
        try:
            yield
        finally:
            async with self.changed:
                self.readers -= 1
                self.changed.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self.changed:
            self.waiting += 1
            try:
                await self.changed.wait_for(lambda: not self.writing and not self.readers)
            finally:
                self.waiting -= 1
            self.writing = True
        try:
            yield
        finally:
            async with self.changed:
                self.writing = False
                self.changed.notify_all()


# --- the service ----------------------------------------------------------------------------


def can_reconcile(source: Source | None) -> bool:
    """The source implements :meth:`~gateway.Source.reconcile`."""
    from .sources import Source
    return source is not None and type(source).reconcile is not Source.reconcile


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _from_ms(ms: Any) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, timezone.utc) if isinstance(ms, (int, float)) and ms > 0 else None


async def begin(store: Store, connection: Connection, now: datetime | None = None) -> None:
    """A new connection: its calls are reconcilable from now on (called when it is created)."""
    await PluginStorage(store, connection.plugin, connection.tenant).put(
        KIND, connection.id, {"origin": _ms(now or utcnow())})


async def forget(store: Store, connection: Connection) -> None:
    """A removed connection: its reconciliation records go too."""
    storage = PluginStorage(store, connection.plugin, connection.tenant)
    for key in (connection.id, f"{connection.id}|deciding"):
        await storage.delete(KIND, key)


class Reconciliation:
    """Runs sources' reconciliations: windows, schedule, back-off, metrics, the gate."""

    def __init__(self, gw: Gateway) -> None:
        self._gw = gw
        self._gates: dict[str, _Gate] = {}
        #: plugins whose task ran in this process (its first round runs every connection)
        self._started: set[str] = set()

    def _storage(self, connection: Connection) -> PluginStorage:
        return PluginStorage(self._gw.store, connection.plugin, connection.tenant)

    def gate(self, connection_id: str) -> _Gate:
        gate = self._gates.get(connection_id)
        if gate is None:
            gate = self._gates[connection_id] = _Gate()
        return gate

    def source(self, connection: Connection) -> Source:
        """The connection's source if it can reconcile, else :class:`BadRequest`."""
        source = self._gw.sources.get(connection.plugin)
        if source is None or not can_reconcile(source):
            raise BadRequest("this telephone system offers no call list to reconcile with")
        return source

    async def state(self, connection: Connection) -> dict[str, Any]:
        found = await self._storage(connection).get(KIND, connection.id)
        return dict(found) if isinstance(found, dict) else {}

    async def _save(self, connection: Connection, state: dict[str, Any]) -> None:
        await self._storage(connection).put(KIND, connection.id, state)

    async def status(self, connection: Connection) -> ReconcileStatus | None:
        """The connection's reconciliation for a status page, ``None`` if its source has none."""
        if not can_reconcile(self._gw.sources.get(connection.plugin)):
            return None
        state = await self.state(connection)
        failures = int(state.get("failures") or 0)
        return ReconcileStatus(_from_ms(state.get("last_ok")), failures > 0, failures)

    async def erased(self, tenant: str, now: datetime | None = None) -> None:
        """An erasure in the tenant: no reconciliation reads a window before it. Written to
        every reconciling plugin's storage of the tenant before anything is erased (no
        personal data: a time)."""
        at = _ms(now or utcnow())
        for name, source in self._gw.sources.items():
            if can_reconcile(source):
                await PluginStorage(self._gw.store, name, tenant).put(KIND, ERASED, {"at": at})

    async def erased_at(self, connection: Connection) -> datetime | None:
        found = await self._storage(connection).get(KIND, ERASED)
        return _from_ms(found.get("at")) if isinstance(found, dict) else None

    def floor(self, state: dict[str, Any], now: datetime, erased: datetime | None) -> datetime:
        """The earliest time a window of the connection may start."""
        retention = timedelta(days=self._gw.config.retention_days)
        margin = min(RETENTION_MARGIN, retention / 4)
        bounds = [now - retention + margin]
        for value in (_from_ms(state.get("origin")), erased):
            if value is not None:
                bounds.append(value)
        return max(bounds)

    async def run(self, connection: Connection, *, since: datetime | None = None,
                  progress: Callable[[str], None] | None = None, wait: float = 0.0) -> ReconcileResult:
        """Reconcile one connection now: from ``since`` (else where the last run ended) until
        :data:`SETTLE` ago, bounded as the module says. Raises :class:`ReconcileBusy` when
        another process holds the connection, :class:`ReconcileFailed` when the source failed
        (recorded, retried with back-off by the schedule)."""
        source = self.source(connection)
        ctx = self._gw.contexts[connection.plugin]
        async with self._held(connection, wait):
            return await self._run(source, ctx, connection, since, progress or (lambda _text: None))

    @contextlib.asynccontextmanager
    async def _held(self, connection: Connection, wait: float) -> AsyncIterator[None]:
        """The connection's lease, against other processes; :class:`ReconcileBusy` if taken."""
        lease = self._storage(connection).lease(f"reconcile:{connection.id}", ttl=LEASE_TTL, wait=wait)
        try:
            await lease.__aenter__()
        except TimeoutError:
            raise ReconcileBusy("another gateway process is reconciling this connection") from None
        try:
            yield
        finally:
            await lease.__aexit__(None, None, None)

    async def _run(self, source: Source, ctx: PluginContext, connection: Connection, since: datetime | None,
                   say: Callable[[str], None]) -> ReconcileResult:
        now = utcnow()
        state = await self.state(connection)
        if "origin" not in state:
            # Calls received before reconciliation existed are not indexed for it: start now.
            state.update(origin=_ms(now), until=_ms(now), last_ok=_ms(now), failures=0, requested=False)
            await self._save(connection, state)
            say("first reconciliation of this connection: calls from now on are compared")
            return ReconcileResult()
        previous = _from_ms(state.get("until"))
        floor = self.floor(state, now, await self.erased_at(connection))
        start = max(since or previous or now, floor)
        # a --since beyond what was read leaves a gap: the position stays, so it is read later
        gap = previous is not None and start > max(previous, floor)
        until = now - SETTLE
        state["last_try"] = _ms(now)
        if self._gw.interpreter.running:
            try:  # webhooks acknowledged before now are interpreted first, as far as they can be
                await asyncio.wait_for(self._gw.interpreter.drain(), DRAIN_WAIT)
            except TimeoutError:
                pass  # a steady stream: those interpreted later find the calls written (claim)
        try:
            if start < until:
                say(f"window {_iso(start)} to {_iso(until)}")
                result = await source.reconcile(ctx, connection, start, until, say)
            else:
                result = ReconcileResult()
        except Exception as exc:
            failures = int(state.get("failures") or 0) + 1
            wait = min(BACKOFF_BASE * 2 ** (failures - 1), BACKOFF_CAP)
            hint = exc.retry_after if isinstance(exc, RetryableError) else None
            state.update(failures=failures, next_try=_ms(now) + int(max(wait, hint or 0) * 1000),
                         error=type(exc).__name__)
            await self._save(connection, state)
            metrics.RECONCILIATIONS.labels(connection.plugin, "failed").inc()
            log.warning("reconciliation failed", extra={"plugin": connection.plugin, "connection": connection.id,
                                                        "error": type(exc).__name__, "failures": failures})
            raise ReconcileFailed(f"reconciliation failed ({type(exc).__name__}); it is retried") from None
        if not gap:
            state["until"] = _ms(max(until, previous) if previous else until)
        state.update(last_ok=_ms(now), failures=0, next_try=0, requested=False, error=None)
        await self._save(connection, state)
        metrics.RECONCILIATIONS.labels(connection.plugin, "ok").inc()
        metrics.RECONCILED.labels(connection.plugin).inc(result.created)
        log.info("reconciled", extra={"plugin": connection.plugin, "connection": connection.id,
                                      "listed": result.listed, "created": result.created,
                                      "ambiguous": result.ambiguous})
        return result

    @staticmethod
    def due(state: dict[str, Any], now: datetime, every: float) -> bool:
        """Requested, or its back-off is over after a failure, or ``every`` seconds passed."""
        if state.get("requested"):
            return True
        if state.get("failures"):
            return _ms(now) >= int(state.get("next_try") or 0)
        last = int(state.get("last_try") or state.get("last_ok") or 0)
        return _ms(now) - last >= every * 1000

    async def run_due(self, plugin: str, every: float) -> int:
        """The periodic round of one plugin: every connection that is due (all of them in the
        first round of this process, also those backing off: a start may follow an outage), one
        at a time; a connection another process holds is left to it. Updates the plugin's
        gauges. Returns how many ran."""
        first = plugin not in self._started
        self._started.add(plugin)
        ran = 0
        oldest: datetime | None = None
        failing = 0
        for connection in await self._gw.tenancy.connections(None, plugin):
            state = await self.state(connection)
            if connection.status != "broken" and (first or not state or self.due(state, utcnow(), every)):
                try:
                    await self.run(connection)
                    ran += 1
                except (ReconcileBusy, ReconcileFailed):
                    pass  # recorded by the run (or by the process holding it)
                state = await self.state(connection)
            failing += 1 if state.get("failures") else 0
            done = _from_ms(state.get("last_ok"))
            if done is not None and (oldest is None or done < oldest):
                oldest = done
        metrics.RECONCILE_FAILING.labels(plugin).set(failing)
        if oldest is not None:
            metrics.RECONCILE_OLDEST.labels(plugin).set(oldest.timestamp())
        return ran

    async def request(self, connection: Connection) -> None:
        """Run this connection's reconciliation at the next round (a subscription was found
        disabled and re-activated: what happened meanwhile never arrived)."""
        state = await self.state(connection)
        state["requested"] = True
        await self._save(connection, state)


class ReconcileView:
    """What a source plugin uses of reconciliation (``ctx.reconcile``)."""

    def __init__(self, plugin: str, gw: Gateway) -> None:
        self._plugin = plugin
        self._gw = gw

    def _mine(self, connection: Connection) -> Connection:
        if connection.plugin != self._plugin:
            raise BadRequest("not this plugin's connection")
        return connection

    async def run_due(self, every: float = DEFAULT_INTERVAL) -> int:
        """The periodic task: reconcile the plugin's connections that are due (see the module)."""
        return await self._gw.reconciliation.run_due(self._plugin, every)

    async def request(self, connection: Connection) -> None:
        """Reconcile the connection at the next round (after re-activating a subscription)."""
        await self._gw.reconciliation.request(self._mine(connection))

    def webhook(self, connection: Connection) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold around a webhook's per-call state (``ctx.calls.state``): a reconciliation
        deciding what is missing waits for it, and it waits for such a decision."""
        return self._gw.reconciliation.gate(connection.id).shared()

    @contextlib.asynccontextmanager
    async def deciding(self, connection: Connection) -> AsyncIterator[datetime | None]:
        """Hold while deciding which listed calls are missing and writing them: webhooks of
        the connection wait, what they wrote before is committed (so ``ctx.calls.find``
        sees it), and the value is the tenant's last erasure (read now): write no call
        that began before it."""
        self._mine(connection)
        async with self._gw.reconciliation.gate(connection.id).exclusive():
            await self._flush(connection)  # the webhooks' call states, queued before
            try:
                yield await self._gw.reconciliation.erased_at(connection)
            finally:
                await self._flush(connection)  # the calls written: the next webhook finds them

    async def _flush(self, connection: Connection) -> None:
        """A waited write commits after every write queued before it (``wait=False``)."""
        await PluginStorage(self._gw.store, self._plugin, connection.tenant).put(
            KIND, f"{connection.id}|deciding", {"at": _ms(utcnow())})

    async def known(self, connection: Connection, lo: datetime, hi: datetime) -> list[tuple[str, Any]]:
        """Call states of the connection indexed (:func:`time_index`) by an hour of ``[lo, hi]``."""
        found: list[tuple[str, Any]] = []
        for index in time_indexes(lo, hi):
            found += await self._gw.contexts[self._plugin].calls.find(self._mine(connection), index)
        return found

    async def reconciled(self, connection: Connection, remote: str | None) -> list[CallSpan]:
        """Spans of the calls reconciled before with this remote number."""
        found = await self._gw.contexts[self._plugin].calls.find(self._mine(connection), reconciled_index(remote))
        return [span for key, value in found if (span := reconciled_span(key, value)) is not None]

    @staticmethod
    def mark(call: CallMemory, span: CallSpan, phones: Iterable[str]) -> None:
        """Make ``call`` (the state of a call being written by reconciliation, its value set)
        a reconciled call: found by its number (:meth:`reconciled`, :meth:`claim`)."""
        value = dict(call.value)
        value["reconciled"] = {"ident": span.ident, "remote": span.remote, "local": span.local,
                               "direction": span.direction.value if span.direction else None,
                               "lo": _iso(span.lo), "hi": _iso(span.hi), "at": _iso(utcnow()), "claimed": None}
        call.value = value
        call.index = reconciled_index(span.remote)
        call.phones = [n for n in phones if n.startswith("+")]

    async def resolve(self, judged: Sequence[CallSpan], matching: Matching, erased: datetime | None, *,
                      write: Callable[[str], Awaitable[bool]],
                      received: Callable[[str, str], Awaitable[int]] | None = None) -> ReconcileResult:
        """Act on ``matching`` for the listed calls this window judges (``judged``, their
        spans): write each missing one that began after the tenant's last erasure
        (``write(listed key)`` says whether it wrote), count the ambiguous ones
        (``reconcile_ambiguous``), and hand each matched one to ``received(listed key, known
        key)`` (a source ending received calls whose end never came: how many it ended)."""
        created = completed = ambiguous = matched = skipped = 0
        for call in judged:
            if call.key in matching.missing:
                if erased is not None and call.lo < erased:
                    skipped += 1  # an erased person's call looks missing: it is never written again
                elif await write(call.key):
                    created += 1
            elif call.key in matching.ambiguous:
                ambiguous += 1
                self._gw.contexts[self._plugin].count("reconcile_ambiguous")
            else:
                matched += 1
                if received is not None:
                    completed += await received(call.key, matching.matched[call.key])
        return ReconcileResult(listed=len(judged), received=matched, created=created, completed=completed,
                               ambiguous=ambiguous, skipped=skipped)

    async def claim(self, connection: Connection, remote: str | None, when: datetime, *,
                    arrived: datetime | None = None, slack: timedelta = timedelta(seconds=180),
                    direction: Direction | None = None) -> tuple[str, Any] | None:
        """The webhook path met a call it has no state for: is it one reconciliation wrote
        already? The closest unclaimed reconciled call with this remote number whose span
        holds ``when`` (widened by ``slack``) is claimed and returned as ``(key, value)``;
        ``None`` when there is none. ``arrived`` (a vendor without timestamps: the webhook's
        arrival time) must be before the reconciliation wrote the call, else it is a new call
        from the same number."""
        calls = self._gw.contexts[self._plugin].calls
        point = CallSpan("webhook", remote, direction, when, when)
        options = sorted((abs((span.lo - when).total_seconds()), span.key)
                         for span in await self.reconciled(connection, remote) if may_be_same(point, span, slack))
        for _distance, key in options:
            async with calls.state(connection, key) as call:
                mark = call.value.get("reconciled") if isinstance(call.value, dict) else None
                if not isinstance(mark, dict) or mark.get("claimed"):
                    continue
                written = _time(mark.get("at"))
                if arrived is not None and written is not None and arrived >= written:
                    continue
                call.value = {**call.value, "reconciled": {**mark, "claimed": _iso(utcnow())}}
                call.index = reconciled_index(mark.get("remote"))  # the write replaces them
                call.phones = [n for n in (mark.get("remote"), mark.get("local"))
                               if isinstance(n, str) and n.startswith("+")]
                return key, call.value
        return None


__all__ = ["CallSpan", "Matching", "ReconcileBusy", "ReconcileFailed", "ReconcileResult", "ReconcileStatus",
           "ReconcileView", "Reconciliation", "match_calls", "may_be_same", "reconciled_index", "time_index",
           "time_indexes"]
