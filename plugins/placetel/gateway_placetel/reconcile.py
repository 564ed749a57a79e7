"""Reconciliation with Placetel's call list (``GET /v2/calls``): write the calls whose
notifications never arrived.

The list ("Fetch all incoming calls") gives per call an integer ``id``, ``type`` (accepted,
missed, voicemail, blocked), ``from_number``, ``to_number``, ``duration`` and ``received_at``;
it has no Notify ``call_id`` (hex) and names no SIP user. So a listed call is matched to the
calls received by numbers, direction and time (the README's "Reconciliation" section):

- same remote number (``from_number``, normalised; ``anonymous`` only matches ``anonymous``),
  the same line (``to_number``) when both sides know it, inbound;
- overlapping times: the listed call lasts from ``received_at`` for ``duration`` seconds, a
  received call from its first known moment to its end (or now), each widened by
  :data:`SLACK` (Notify times are arrival times, the list's are Placetel's);
- one received call stands for one listed call; exact list ids first (a call reconciled
  before), then the closest starts. A listed call no received call could be is written; one
  whose candidates all went to closer listed calls (two calls from one number a minute
  apart, one received) is not: counted ``reconcile_ambiguous``.

A received call whose hang-up never came is ended as the list says; a missing call is written
as one ``ended`` event (``extra.reconciled``: no card pops up for a call long over), its
voicemail as a ``recording`` right after. Internal calls (a SIP id or extension calling) are
not reconciled.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway import (
    ANONYMOUS,
    CallEvent,
    CallSpan,
    Connection,
    Direction,
    Outcome,
    PluginContext,
    ReconcileResult,
    match_calls,
    normalize_number,
    utcnow,
)

from . import parse
from .api import KeyRejected, PlacetelClient, placetel_day
from .memory import remember, span
from .recordings import file_format, listed_number, listed_time
from .settings import HELD, OPEN

if TYPE_CHECKING:
    from .source import PlacetelSource

#: How far apart Notify's arrival times and the list's times may be for one call.
SLACK = timedelta(seconds=180)
#: Received calls that began this long before a listed one are compared too (still running).
LOOKBACK = timedelta(hours=2)
PER_PAGE = 100
#: Pages read per day at most (100 calls each); more: the list counts as truncated.
MAX_PAGES = 50
LISTED_TYPES = {"accepted": Outcome.ANSWERED, "missed": Outcome.MISSED, "voicemail": Outcome.VOICEMAIL,
                "blocked": Outcome.BLOCKED}
_ID = re.compile(r"^[0-9]{1,20}$")


@dataclass(frozen=True, slots=True)
class Listed:
    """One call of Placetel's list, as much of it as a notification would have given."""

    ident: str
    outcome: Outcome | None
    remote: str
    local: str | None
    started: datetime
    duration: int | None
    file_format: str

    @property
    def ended(self) -> datetime:
        return self.started + timedelta(seconds=self.duration or 0)

    @property
    def call_id(self) -> str:
        return f"reconciled-{self.ident}"

    def span(self) -> CallSpan:
        return CallSpan(self.ident, self.remote, Direction.INBOUND, self.started, self.ended, self.local, self.ident)


def read_item(item: Any, region: str) -> Listed | None:
    """A list item, or ``None`` when it is not usable (no id or time)."""
    if not isinstance(item, dict):
        return None
    ident, started = str(item.get("id", "")), listed_time(item.get("received_at"))
    if not _ID.match(ident) or started is None:
        return None
    kind = item.get("type")
    duration = item.get("duration")
    usable = isinstance(duration, int) and not isinstance(duration, bool) and 0 <= duration <= parse.MAX_DURATION
    return Listed(ident, LISTED_TYPES.get(kind) if isinstance(kind, str) else None,
                  normalize_number(str(item.get("from_number") or ""), region) or ANONYMOUS,
                  listed_number(item.get("to_number"), region), started,
                  duration if usable else None, file_format(item, "voicemail"))


def _days(lo: datetime, hi: datetime) -> list[str]:
    """The days Placetel files ``[lo, hi]`` under, newest first."""
    first, last = date.fromisoformat(placetel_day(lo)), date.fromisoformat(placetel_day(hi))
    return [(last - timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


async def fetch(client: PlacetelClient, lo: datetime, hi: datetime,
                say: Callable[[str], None]) -> tuple[list[dict[str, Any]], bool]:
    """Every list item of the days of ``[lo, hi]``, each day newest first until the page reaches
    back before ``lo``; and whether a day had more pages than :data:`MAX_PAGES`."""
    items: list[dict[str, Any]] = []
    truncated = False
    for day in _days(lo, hi):
        for page in range(1, MAX_PAGES + 1):
            got = await client.calls(day, page, PER_PAGE)
            items += got
            say(f"{day}: page {page}, {len(got)} calls")
            times = [t for t in (listed_time(i.get("received_at")) for i in got) if t is not None]
            if len(got) < PER_PAGE or (times and min(times) < lo):
                break
        else:
            truncated = True
    return items, truncated


async def reconcile(source: PlacetelSource, ctx: PluginContext, connection: Connection, since: datetime,
                    until: datetime, say: Callable[[str], None]) -> ReconcileResult:
    """Compare ``[since, until)`` of the list with the calls received; write what is missing."""
    region = source.region(connection)
    extensions = await source.extensions(ctx, connection)
    context_from = since - 2 * SLACK  # earlier calls take part in the pairing, judged before
    try:
        raw, truncated = await fetch(source.client(ctx, connection), context_from, until, say)
    except KeyRejected:
        await source.mark_broken(ctx, connection)
        raise
    listed: dict[str, Listed] = {}
    skipped = 0
    for item in raw:
        found = read_item(item, region)
        if found is None or not context_from <= found.started < until:
            skipped += found is None
            continue
        if parse.is_internal(found.remote, extensions):
            skipped += found.started >= since
            continue
        listed[found.ident] = found  # pages overlap when calls arrive while paging
    judged = [c for c in listed.values() if c.started >= since]
    if not judged:
        return ReconcileResult(skipped=skipped, truncated=truncated)
    now = utcnow()
    async with ctx.reconcile.deciding(connection) as erased:
        known, open_calls = await _known(ctx, connection, list(listed.values()), now)
        matching = match_calls([c.span() for c in listed.values()], known, SLACK)

        async def write(ident: str) -> bool:
            return await _write_missing(source, ctx, connection, listed[ident], now)

        async def received(ident: str, key: str) -> int:
            return await _complete(source, ctx, connection, key, listed[ident]) if key in open_calls else 0

        result = await ctx.reconcile.resolve([c.span() for c in judged], matching, erased, write=write,
                                             received=received)
    if truncated:
        ctx.count("reconcile_truncated")
    return replace(result, skipped=result.skipped + skipped, truncated=truncated)
async def _known(ctx: PluginContext, connection: Connection, listed: list[Listed],
                 now: datetime) -> tuple[list[CallSpan], set[str]]:
    """The received calls a listed call could be, and which of them have not ended."""
    lo = min(c.started for c in listed) - LOOKBACK
    hi = max(c.ended for c in listed) + SLACK
    states = dict(await ctx.reconcile.known(connection, lo, hi))
    waiting = dict(await ctx.calls.find(connection, OPEN)) | dict(await ctx.calls.find(connection, HELD))
    states.update(waiting)
    spans = [s for key, value in states.items() if (s := span(key, value, now)) is not None]
    for remote in {c.remote for c in listed}:
        spans += await ctx.reconcile.reconciled(connection, remote)
    open_calls = {k for k, v in waiting.items() if isinstance(v, dict) and not v.get("ended_at")}
    return spans, open_calls


async def _write_missing(source: PlacetelSource, ctx: PluginContext, connection: Connection, call: Listed,
                         now: datetime) -> bool:
    """Write a listed call never received: its ``ended`` (and voicemail), stored before its
    state says so (a crash in between writes it again under the same event ids)."""
    async with ctx.calls.state(connection, call.call_id) as state:
        if state.value is not None:
            return False
        memory: dict[str, Any] = {"direction": Direction.INBOUND.value, "remote": call.remote, "local": call.local,
                                  "internal": False, "started_at": call.started.isoformat(), "list_id": call.ident}
        events, memory = parse.listed_end(memory, call.call_id, ident=call.ident, ended_at=call.ended,
                                          outcome=call.outcome, duration=call.duration)
        voicemail = call.outcome is Outcome.VOICEMAIL and ctx.settings.recordings
        if voicemail:  # the listed item is the voicemail itself
            events.append(_recording(call, memory, now))
        await ctx.ingest(connection, events)
        remember(state, memory)
        ctx.reconcile.mark(state, call.span(), state.phones)
    if not voicemail:
        await source.after_end(ctx, connection, call.call_id, events)
    return True


def _recording(call: Listed, memory: dict[str, Any], now: datetime) -> CallEvent:
    event = parse.recording_event(call.call_id, f"voicemail:{call.ident}", memory, now, call.file_format)
    return event.replace(extra={**event.extra, "reconciled": True})


async def _complete(source: PlacetelSource, ctx: PluginContext, connection: Connection, key: str,
                    call: Listed) -> int:
    """End a received call whose hang-up never arrived as the list says."""
    async with ctx.calls.state(connection, key) as state:
        current = state.value if isinstance(state.value, dict) else None
        if current is None:
            return 0
        events, updated = parse.listed_end(current, key, ident=call.ident, ended_at=call.ended,
                                           outcome=call.outcome, duration=call.duration)
        if not events:
            return 0
        await ctx.ingest(connection, events)
        remember(state, updated)
    await source.after_end(ctx, connection, key, events)
    return 1


async def claim(ctx: PluginContext, connection: Connection, note: parse.Notification, received_at: datetime,
                region: str) -> dict[str, Any] | None:
    """The first notification of a call: if reconciliation wrote the call already (a
    notification journaled before it and interpreted after), the memory that stands for it
    (ended: this and later notifications of the call add nothing), else ``None``."""
    direction, _ = parse.resolve_direction(note, None)
    remote = normalize_number(note.from_, region) or ANONYMOUS
    if direction is not Direction.INBOUND:
        return None  # the list holds incoming calls only
    found = await ctx.reconcile.claim(connection, remote, received_at, arrived=received_at, slack=SLACK,
                                      direction=direction)
    if found is None:
        return None
    key, value = found
    ctx.count("reconcile_late_webhook")
    return {"direction": direction.value, "remote": value.get("remote"), "local": value.get("local"),
            "started_at": value.get("started_at"), "ended_at": value.get("ended_at"), "reconciled_as": key}
