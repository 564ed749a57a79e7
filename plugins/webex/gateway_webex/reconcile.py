"""Reconciliation with the Webex call history of each logged-in user
(``GET /telephony/calls/history``): write the calls whose webhooks never arrived.

The history lists per user at most 20 records per type (``placed``, ``missed``, ``received``),
each with ``number`` (absent when ``privacyEnabled``), ``name`` (not used) and ``time``: when
the call was placed, when the missed call was disconnected, when the received call was
answered. No call id, no session, no duration. So (the README's "Reconciliation" section):

- records of different users with the same number, direction and times within :data:`SLACK`
  are one customer call (a queue call rings several agents; one received it);
- a listed call may be a received session when the remote number and direction are equal
  and the times overlap (a record of a received or missed call lies up to :data:`RING` after
  the call began), widened by :data:`SLACK`; pairing and "ambiguous" as for every source
  (``gateway.match_calls``);
- a missing call is written as one ``ended`` event (``extra.reconciled``): ``placed`` →
  outbound, outcome unknown (``None``); ``received`` → inbound, answered by that user;
  ``missed`` → inbound, missed, for the user if only one missed it. The duration is unknown
  (``None``; a CRM writes 0): the history has none.

Calls with a colleague (a number or extension of the organisation's own users) are not
reconciled. The history holds the last 20 records per type: a user with more calls of a type
since the last reconciliation makes the list incomplete (``truncated``, counted).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from gateway import (
    ANONYMOUS,
    CallEvent,
    CallSpan,
    CallState,
    Connection,
    Direction,
    NotFound,
    Outcome,
    PluginContext,
    ReconcileResult,
    RetryableError,
    match_calls,
    normalize_number,
    utcnow,
)

from . import accounts, session
from .accounts import NeedsLogin
from . import parse
from .parse import OUTBOUND_PERSONALITIES, CallSnapshot, MalformedNotification

SLACK = timedelta(seconds=180)
#: A received or missed call's record is its answer or end: the call began up to this before.
RING = timedelta(minutes=5)
LOOKBACK = timedelta(hours=2)
#: Records per type Webex returns at most.
PER_TYPE = 20
#: ``Retry-After`` waits slept on in-line (seconds); a longer one fails the run (back-off).
INLINE_WAIT = 10.0
TRIES = 3
_KINDS = {"placed": Direction.OUTBOUND, "missed": Direction.INBOUND, "received": Direction.INBOUND}


@dataclass(frozen=True, slots=True)
class Record:
    """One history record of one user."""

    person: str
    kind: str
    remote: str
    at: datetime

    @property
    def direction(self) -> Direction:
        return _KINDS[self.kind]

    @property
    def lo(self) -> datetime:
        return self.at if self.kind == "placed" else self.at - RING


@dataclass
class Listed:
    """One customer call: the records of all users that are it."""

    records: list[Record] = field(default_factory=list)

    @property
    def first(self) -> Record:
        return self.records[0]

    @property
    def ident(self) -> str:
        r = self.first
        return hashlib.sha256(f"{r.person}\x1f{r.kind}\x1f{r.at.isoformat()}".encode()).hexdigest()[:32]

    @property
    def call_id(self) -> str:
        return f"reconciled-{self.ident}"

    @property
    def at(self) -> datetime:
        return min(r.at for r in self.records)

    def span(self) -> CallSpan:
        return CallSpan(self.ident, self.first.remote, self.first.direction, min(r.lo for r in self.records),
                        max(r.at for r in self.records), None, self.ident)

    def joins(self, record: Record) -> bool:
        return (record.remote == self.first.remote and record.direction is self.first.direction
                and all(r.person != record.person for r in self.records)
                and record.lo <= max(r.at for r in self.records) + SLACK)


def read_records(person: str, data: Any, region: str, own: frozenset[str]) -> tuple[list[Record], int]:
    """The user's history records, and how many were left out (unreadable, or internal)."""
    items = data.get("items") if isinstance(data, dict) else None
    out: list[Record] = []
    left = 0
    for item in items if isinstance(items, list) else []:
        kind = item.get("type") if isinstance(item, dict) else None
        at = _time(item.get("time")) if isinstance(item, dict) else None
        if kind not in _KINDS or at is None:
            left += 1
            continue
        number = item.get("number")
        if number is not None and not isinstance(number, str):
            left += 1
            continue
        if item.get("privacyEnabled") is True or number is None or not number.strip():
            remote = ANONYMOUS
        else:
            remote = normalize_number(number, region) or ANONYMOUS
        if remote in own or "@" in remote:
            left += 1  # a colleague: internal calls are not reconciled
            continue
        out.append(Record(person, str(kind), remote, at))
    return out, left


def _time(value: Any) -> datetime | None:
    """A history time (ISO-8601 with its zone), ``None`` when it is not one."""
    try:
        return parse.parse_time({"time": value}, "time")
    except MalformedNotification:
        return None


def group(records: list[Record]) -> list[Listed]:
    """Records of several users that are one customer call, together."""
    calls: list[Listed] = []
    for record in sorted(records, key=lambda r: (r.at, r.person)):
        found = next((c for c in calls if c.joins(record)), None)
        if found is None:
            calls.append(Listed([record]))
        else:
            found.records.append(record)
    return calls


async def _history(ctx: PluginContext, connection: Connection, person: str) -> Any:
    """One user's history; short ``Retry-After`` waits (429/423) are slept on in-line."""
    for attempt in range(1, TRIES + 1):
        try:
            return await accounts.call_as(ctx, connection, person, "GET", "/telephony/calls/history")
        except RetryableError as exc:
            wait = exc.retry_after
            if wait is None or wait > INLINE_WAIT or attempt == TRIES:
                raise
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")


async def fetch(ctx: PluginContext, connection: Connection, since: datetime,
                say: Callable[[str], None]) -> tuple[list[Record], int, bool]:
    """Every logged-in user's records (users who must log in again are left out), how many
    records were left out, and whether a user's list may miss records of the window."""
    region = connection.settings.get("region") or "DE"
    users = await ctx.users.list(connection)
    own = frozenset(n for u in users for n in (*u.numbers, u.extension or "") if n)
    people = await accounts.logged_in(ctx, connection)
    records: list[Record] = []
    left = 0
    truncated = False
    for n, person in enumerate(people, 1):
        try:
            data = await _history(ctx, connection, person)
        except (NeedsLogin, NotFound):
            say(f"user {n}/{len(people)}: no history (must log in again, or no calling)")
            continue
        found, unread = read_records(person, data, region, own)
        records += found
        left += unread
        say(f"user {n}/{len(people)}: {len(found)} history records")
        for kind in _KINDS:
            times = [r.at for r in found if r.kind == kind]
            truncated = truncated or (len(times) >= PER_TYPE and min(times) > since)
    return records, left, truncated


def span(key: str, state: Any, now: datetime) -> CallSpan | None:
    """A received session as reconciliation compares it; ``None`` for what is no such session."""
    if not isinstance(state, dict) or "legs" not in state or state.get("reconciled_as"):
        return None
    started = _time(state.get("started_at"))
    if started is None:
        return None
    direction = state.get("direction")
    return CallSpan(key, state.get("remote") or state.get("internal_remote"),
                    Direction(direction) if direction in ("in", "out") else None,
                    started, _time(state.get("ended_at")) or max(now, started))


async def reconcile(ctx: PluginContext, connection: Connection, since: datetime, until: datetime,
                    say: Callable[[str], None]) -> ReconcileResult:
    """Compare ``[since, until)`` of the users' histories with the sessions received; write
    what is missing."""
    records, skipped, truncated = await fetch(ctx, connection, since, say)
    context_from = since - 2 * SLACK
    listed = group([r for r in records if context_from <= r.at < until])
    judged = [c for c in listed if c.at >= since]
    if not judged:
        return ReconcileResult(skipped=skipped, truncated=truncated)
    now = utcnow()
    async with ctx.reconcile.deciding(connection) as erased:
        lo = min(c.span().lo for c in listed) - LOOKBACK
        states = dict(await ctx.reconcile.known(connection, lo, until + SLACK))
        states.update(await ctx.calls.find(connection, session.PENDING_END))
        known = [s for key, value in states.items() if (s := span(key, value, now)) is not None]
        for remote in {c.first.remote for c in listed}:
            known += await ctx.reconcile.reconciled(connection, remote)
        matching = match_calls([c.span() for c in listed], known, SLACK)
        by_ident = {c.ident: c for c in listed}

        async def write(ident: str) -> bool:
            return await _write_missing(ctx, connection, by_ident[ident])

        result = await ctx.reconcile.resolve([c.span() for c in judged], matching, erased, write=write)
    if truncated:
        ctx.count("reconcile_truncated")
    return replace(result, skipped=result.skipped + skipped, truncated=truncated)


def missing_event(call: Listed) -> CallEvent:
    """The one ``ended`` event of a call the history lists and the gateway never received
    (without its line: the caller adds the user's own number)."""
    kinds = [r.kind for r in call.records]
    answered = [r for r in call.records if r.kind == "received"]
    outcome: Outcome | None
    user: str | None
    if call.first.kind == "placed":
        outcome, user, answered_at = None, call.first.person, None
    elif answered:
        outcome, user, answered_at = Outcome.ANSWERED, answered[-1].person, answered[0].at
    else:
        people = {r.person for r in call.records}
        outcome, user, answered_at = Outcome.MISSED, (next(iter(people)) if len(people) == 1 else None), None
    ended = max(r.at for r in call.records)
    return CallEvent(
        event_id=f"{call.call_id}:ended", call_id=call.call_id, direction=call.first.direction,
        state=CallState.ENDED, occurred_at=ended, remote_number=call.first.remote,
        local_user=user, outcome=outcome, started_at=call.at, answered_at=answered_at, ended_at=ended,
        duration=0 if outcome is Outcome.MISSED else None,
        extra={"reconciled": True, "history": sorted(set(kinds))})


async def _write_missing(ctx: PluginContext, connection: Connection, call: Listed) -> bool:
    """Write a call never received; its event is stored before its state says so (a crash in
    between writes it again under the same event id)."""
    async with ctx.calls.state(connection, call.call_id) as state:
        if state.value is not None:
            return False
        event = missing_event(call)
        owner = await ctx.users.get(connection, event.local_user or call.first.person)
        if owner is not None and owner.numbers:  # the line: the user's own number
            event = event.replace(local_number=owner.numbers[0])
        await ctx.ingest(connection, [event])
        state.value = {"call_id": call.call_id, "direction": event.direction.value, "remote": event.remote_number,
                       "local": event.local_number, "agent": event.local_user,
                       "started_at": _iso(event.started_at), "answered_at": _iso(event.answered_at),
                       "ended_at": _iso(event.ended_at), "ended": True}
        ctx.reconcile.mark(state, call.span(), [call.first.remote])
    return True


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def claim(ctx: PluginContext, connection: Connection, snap: CallSnapshot,
                received_at: datetime) -> dict[str, Any] | None:
    """The first delivery of a session: if reconciliation wrote the call already (a late
    delivery), the session state that stands for it: ended (later legs add nothing), its
    ``call_id`` the reconciled call's (a recording of the session goes to that call).
    ``None`` when there is no such call."""
    if snap.remote_internal or snap.remote_number is None:
        return None
    when = snap.created or snap.event_time or received_at
    # a session going the other way (the agent calling back) is another call
    direction = Direction.OUTBOUND if snap.personality in OUTBOUND_PERSONALITIES else Direction.INBOUND
    found = await ctx.reconcile.claim(connection, snap.remote_number, when, slack=SLACK, direction=direction)
    if found is None:
        return None
    key, value = found
    ctx.count("reconcile_late_webhook")
    state = session.new_state(snap)
    state.update(call_id=value.get("call_id") or key, direction=value.get("direction"),
                 remote=value.get("remote"), local=value.get("local"), agent=value.get("agent"),
                 started_at=value.get("started_at"), answered_at=value.get("answered_at"),
                 ended_at=value.get("ended_at"), ended=True, reconciled_as=key)
    return state
