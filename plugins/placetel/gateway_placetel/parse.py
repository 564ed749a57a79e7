"""Placetel Notify bodies -> canonical call events. Sans-I/O: bytes and state in, events out.

Placetel posts one form-encoded request per call event (``IncomingCall``, ``OutgoingCall``,
``CallAccepted``, ``HungUp``) without timestamps or delivery ids. The caller hands in the
arrival time and the small per-call memory kept from earlier events of the same ``call_id``
(direction, start and answer time, the answering SIP user); :func:`to_events` returns the
events and the updated memory, which the caller stores.

One ``call_id`` is one customer call: a ring group sends one ``IncomingCall`` naming no phone
(so ``ringing`` names nobody), the agent who answers is ``CallAccepted.peer``, a transfer
shows as another ``CallAccepted`` with the new ``peer``; the last one ends the call. Events
come in the canonical order whatever the order of the notifications (see :func:`to_events`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from gateway import ANONYMOUS, CallEvent, CallState, Direction, Outcome, RecordingRef, normalize_number

INCOMING = "IncomingCall"
OUTGOING = "OutgoingCall"
ACCEPTED = "CallAccepted"
HUNGUP = "HungUp"
KNOWN_EVENTS = frozenset({INCOMING, OUTGOING, ACCEPTED, HUNGUP})

#: Every documented ``HungUp`` ``type`` and its canonical outcome.
OUTCOMES: dict[str, Outcome] = {
    "accepted": Outcome.ANSWERED,
    "missed": Outcome.MISSED,
    "voicemail": Outcome.VOICEMAIL,
    "blocked": Outcome.BLOCKED,
    "busy": Outcome.BUSY,
    "canceled": Outcome.CANCELLED,
    "cancelled": Outcome.CANCELLED,
    "unavailable": Outcome.UNAVAILABLE,
    "congestion": Outcome.FAILED,
}
#: ``HungUp`` types Placetel documents for outbound calls only: a hint when nothing else says.
_OUTBOUND_ONLY = frozenset({"busy", "canceled", "cancelled", "unavailable", "congestion"})

_CALL_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_MAX_FIELDS = 64
_MAX_VALUE = 512
#: Longest call duration taken as real: a week, in seconds.
MAX_DURATION = 7 * 24 * 3600


class ParseError(ValueError):
    """The body is not a usable Notify request. The message never quotes the body."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One Notify request, fields as sent (``None`` when absent or empty)."""

    event: str
    call_id: str | None
    from_: str | None
    to: str | None
    peer: str | None
    direction: Direction | None
    hangup_type: str | None
    duration: int | None
    #: SHA-256 over the sorted fields: equal for redeliveries of the same notification.
    digest: str

    @property
    def known(self) -> bool:
        return self.event in KNOWN_EVENTS


def parse_notification(body: bytes) -> Notification:
    """Parse a form-encoded Notify body. Raise :class:`ParseError` when it is unusable."""
    try:
        text = body.decode("utf-8")
        # strict: percent-escapes must decode as UTF-8 too, and every field must be k=v
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict",
                          max_num_fields=_MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise ParseError("body is not a form-encoded Placetel notification") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if len(value) > _MAX_VALUE:
            raise ParseError("a field of the notification is too long")
        if key in fields:  # ambiguous (which one counts?): refuse rather than guess
            raise ParseError("a field of the notification appears more than once")
        fields[key] = value
    event = fields.get("event", "").strip()
    if not event:
        raise ParseError("notification without an event name")
    call_id = _text(fields.get("call_id"))
    if event in KNOWN_EVENTS:
        if call_id is None or not _CALL_ID.match(call_id):
            raise ParseError("notification without a usable call_id")
    digest = hashlib.sha256(
        b"\x1e".join(f"{k}\x1f{v}".encode() for k, v in sorted(fields.items()))).hexdigest()
    return Notification(
        event=event, call_id=call_id, from_=_text(fields.get("from")), to=_text(fields.get("to")),
        peer=_text(fields.get("peer")), direction=_direction(fields.get("direction")),
        hangup_type=(_text(fields.get("type")) or "").lower() or None,
        duration=_duration(fields.get("duration")), digest=digest)


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _direction(value: str | None) -> Direction | None:
    value = (value or "").strip().lower()
    if value in {"in", "inbound", "incoming"}:
        return Direction.INBOUND
    if value in {"out", "outbound", "outgoing"}:
        return Direction.OUTBOUND
    return None


def _duration(value: str | None) -> int | None:
    """Seconds, or ``None`` when absent or not a number: unknown is not zero. A number no call
    can last is nonsense (and would overflow the time arithmetic): :class:`ParseError`."""
    value = (value or "").strip()
    if not (value.isascii() and value.isdigit()):
        return None
    if len(value) > 7 or int(value) > MAX_DURATION:
        raise ParseError("the duration is out of range")
    return int(value)


def is_internal(party: str | None, extensions: frozenset[str] = frozenset()) -> bool:
    """An internal party: a SIP id (``7777abc@fpbx.de``) or one of the tenant's own
    extensions (the SIP users' ``did``). No length rule: ``110``, ``112``, ``116117`` are
    short and external."""
    if not party or party == ANONYMOUS:
        return False
    return "@" in party or party in extensions


def event_id(n: Notification) -> str:
    """Stable across redeliveries: call id, event name and a hash of the fields."""
    return f"{n.call_id}:{n.event}:{n.digest[:16]}"


def resolve_direction(n: Notification, memory: dict[str, Any] | None) -> tuple[Direction, str]:
    """The call's direction and where it came from (``field``, ``event``, ``call``, ``guess``).

    The first event of a call decides: a ``CallAccepted`` without ``direction`` (older field
    set) arriving for a call known as outbound keeps it outbound.
    """
    if n.direction is not None:
        return n.direction, "field"
    if n.event == INCOMING:
        return Direction.INBOUND, "event"
    if n.event == OUTGOING:
        return Direction.OUTBOUND, "event"
    if memory and memory.get("direction") in {"in", "out"}:
        return Direction(memory["direction"]), "call"
    if n.event == ACCEPTED:  # CallAccepted exists for incoming calls only
        return Direction.INBOUND, "event"
    if n.hangup_type in _OUTBOUND_ONLY:
        return Direction.OUTBOUND, "guess"
    return Direction.INBOUND, "guess"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 string from the call memory back to a datetime; anything else gives None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def to_events(n: Notification, memory: dict[str, Any] | None, received_at: datetime,
              region: str = "DE", extensions: frozenset[str] = frozenset(),
              hold_for: float = 0) -> tuple[list[CallEvent], dict[str, Any] | None]:
    """Canonical events for one notification, and the call's updated memory.

    ``memory`` is what an earlier call of this function returned for the same ``call_id``
    (``None`` for the first). Unknown events give ``([], memory)``: acknowledged, ignored.
    ``received_at`` stands in for every timestamp: Placetel sends none. ``extensions``: the
    tenant's own extensions (internal parties). The events of a call come in the canonical
    order whatever the order of the notifications: ``ringing`` only before an answer,
    ``answered`` once per answering SIP user (a second one after a transfer), ``ended`` once
    and nothing after it. With ``hold_for`` > 0 an answered ``HungUp`` of an inbound call that
    arrives before any ``CallAccepted`` (so names no agent) is held that many seconds for it:
    the memory gets ``held`` and :func:`release_held` ends the call when nothing came.
    Outgoing calls have no ``CallAccepted``: their answered ``HungUp`` ends them at once.
    """
    if not n.known or n.call_id is None:
        return [], memory
    mem: dict[str, Any] = dict(memory or {})
    if mem.get("ended_at") and (not mem.get("held") or n.event == HUNGUP):
        return [], memory  # ended (or its hang-up waits): redeliveries and late events change nothing
    direction, direction_from = resolve_direction(n, memory)
    inbound = direction is Direction.INBOUND
    remote_raw, local_raw = (n.from_, n.to) if inbound else (n.to, n.from_)
    remote = normalize_number(remote_raw, region) or _remembered(mem, "remote")
    local = normalize_number(local_raw, region) or _remembered(mem, "local")
    peer = n.peer or mem.get("peer")
    if peer is None and not inbound and n.from_ and "@" in n.from_:
        peer = n.from_  # internal outgoing calls name the calling SIP user in ``from``
    internal = bool(mem.get("internal")) or is_internal(remote, extensions)
    started = parse_time(mem.get("started_at"))
    answered = parse_time(mem.get("answered_at"))
    mem.update({"direction": direction.value, "remote": remote, "local": local, "internal": internal})
    extra: dict[str, Any] = {"placetel_event": n.event, "direction_from": direction_from}

    def event(state: CallState, local_user: str | None, **more: Any) -> CallEvent:
        return CallEvent(
            event_id=event_id(n), call_id=str(n.call_id), direction=direction, state=state,
            occurred_at=received_at, remote_number=remote, local_number=local, local_user=local_user,
            started_at=parse_time(mem.get("started_at")), answered_at=parse_time(mem.get("answered_at")),
            internal=internal, extra=extra, **more)

    events: list[CallEvent] = []
    if n.event in (INCOMING, OUTGOING):
        mem["started_at"] = _iso(started or received_at)
        if not mem.get("rang") and answered is None and not mem.get("held"):
            mem["rang"] = True
            events.append(event(CallState.RINGING, None if inbound else peer))
        mem["peer"] = peer
        return events, mem
    if n.event == ACCEPTED:
        mem["answered_at"] = _iso(answered or received_at)
        if not mem.get("answered") or (n.peer is not None and n.peer != mem.get("agent")):
            mem["answered"] = True
            mem["agent"] = n.peer or mem.get("agent")
            events.append(event(CallState.ANSWERED, mem["agent"]))
        mem["peer"] = peer
        if mem.get("held"):  # the hang-up came first and waited for this answer
            events.append(_held_end(mem, n.call_id))
        return events, mem
    outcome = OUTCOMES.get(n.hangup_type or "")
    if n.hangup_type and outcome is None:
        extra["unknown_hangup_type"] = True
    if outcome is Outcome.ANSWERED and answered is None and n.duration is not None:
        mem["answered_at"] = _iso(received_at - timedelta(seconds=n.duration))
    mem["peer"] = peer
    end = {"event_id": event_id(n), "ended_at": _iso(received_at), "outcome": outcome.value if outcome else None,
           "duration": n.duration, "extra": extra}
    # only an inbound call has a CallAccepted to wait for: Placetel sends none for outgoing ones
    if hold_for > 0 and inbound and outcome is Outcome.ANSWERED and not mem.get("answered") \
            and mem.get("agent") is None:
        mem["held"] = {**end, "until": _iso(received_at + timedelta(seconds=hold_for))}
        mem["ended_at"] = end["ended_at"]
        return [], mem
    mem["held"] = end
    return [_held_end(mem, n.call_id)], mem


def _held_end(mem: dict[str, Any], call_id: str) -> CallEvent:
    """The ``ended`` event from the hang-up kept in the memory (``held``); ends the memory."""
    end = mem.pop("held")
    outcome = Outcome(end["outcome"]) if end.get("outcome") else None
    ended = parse_time(end["ended_at"])
    assert ended is not None
    mem.update({"ended_at": end["ended_at"], "outcome": end.get("outcome"), "duration": end.get("duration")})
    return CallEvent(
        event_id=end["event_id"], call_id=call_id,
        direction=Direction(mem.get("direction") or "in"), state=CallState.ENDED, occurred_at=ended,
        remote_number=_remembered(mem, "remote"), local_number=_remembered(mem, "local"),
        local_user=mem.get("agent") or mem.get("peer"), outcome=outcome,
        started_at=parse_time(mem.get("started_at")), answered_at=parse_time(mem.get("answered_at")),
        ended_at=ended, duration=end.get("duration"), internal=bool(mem.get("internal")),
        extra=dict(end.get("extra") or {}))


def release_held(memory: dict[str, Any], call_id: str,
                 now: datetime) -> tuple[list[CallEvent], dict[str, Any]]:
    """End a call whose answered hang-up waited in vain for its ``CallAccepted``: written for
    nobody in particular (the CRM's responsible user). Nothing when not held or not yet due."""
    held = memory.get("held")
    until = parse_time(held.get("until")) if isinstance(held, dict) else None
    if until is None or now < until:
        return [], memory
    mem = dict(memory)
    return [_held_end(mem, call_id)], mem


def ring_timeout(memory: dict[str, Any], call_id: str, now: datetime,
                 after: float) -> tuple[list[CallEvent], dict[str, Any]]:
    """End a call that rang for ``after`` seconds with no answer and no hang-up: Placetel's
    Contact Center signals queue calls with ``IncomingCall`` only (maintainer, issue #17).
    Written as missed (``extra.closed_by`` says why); nothing when the call is not such a one."""
    started = parse_time(memory.get("started_at"))
    if (memory.get("ended_at") or memory.get("answered") or started is None
            or now - started < timedelta(seconds=after)):
        return [], memory
    key = hashlib.sha256(started.isoformat().encode()).hexdigest()[:16]
    return _end_now(memory, call_id, f"{call_id}:RingTimeout:{key}", now, Outcome.MISSED, 0,
                    {"placetel_event": "RingTimeout", "closed_by": "timeout"})


def listed_end(memory: dict[str, Any], call_id: str, *, ident: str, ended_at: datetime,
               outcome: Outcome | None, duration: int | None) -> tuple[list[CallEvent], dict[str, Any]]:
    """End a call as Placetel's call list shows it (reconciliation): a received call whose
    hang-up never arrived, or a call never received (``memory`` then holds what the list
    says). ``extra.reconciled`` marks it; ``ident`` is the list's id of the call. Nothing
    when the memory says the call has ended."""
    if memory.get("ended_at"):
        return [], memory
    return _end_now(memory, call_id, f"{call_id}:Reconciled:{ident}", ended_at, outcome, duration,
                    {"placetel_event": "Listed", "reconciled": True})


def _end_now(memory: dict[str, Any], call_id: str, event_id: str, ended_at: datetime, outcome: Outcome | None,
             duration: int | None, extra: dict[str, Any]) -> tuple[list[CallEvent], dict[str, Any]]:
    mem = dict(memory)
    if outcome is Outcome.ANSWERED and not mem.get("answered_at") and duration is not None:
        mem["answered_at"] = _iso(ended_at - timedelta(seconds=duration))
    mem["held"] = {"event_id": event_id, "ended_at": _iso(ended_at), "outcome": outcome.value if outcome else None,
                   "duration": duration, "extra": extra}
    return [_held_end(mem, call_id)], mem


def _remembered(mem: dict[str, Any], key: str) -> str | None:
    value = mem.get(key)
    return value if isinstance(value, str) else None


def recording_event(call_id: str, ref: str, memory: dict[str, Any] | None,
                    found_at: datetime, file_format: str | None = "mp3") -> CallEvent:
    """The ``RECORDING`` event for a call whose recording (or voicemail) was found later.

    ``ref`` is the opaque reference (``recording:<id>``); the link itself is resolved only at
    delivery. The call's details come from its memory, which the caller kept. ``file_format``
    is what the listing said (:func:`~.recordings.file_format`).
    """
    mem = memory or {}
    direction = Direction(mem["direction"]) if mem.get("direction") in {"in", "out"} else Direction.INBOUND
    outcome = Outcome(mem["outcome"]) if mem.get("outcome") in {o.value for o in Outcome} else None
    duration = mem.get("duration") if isinstance(mem.get("duration"), int) else None
    return CallEvent(
        event_id=f"{call_id}:recording:{hashlib.sha256(ref.encode()).hexdigest()[:16]}",
        call_id=call_id, direction=direction, state=CallState.RECORDING, occurred_at=found_at,
        remote_number=_remembered(mem, "remote"), local_number=_remembered(mem, "local"),
        local_user=_remembered(mem, "agent") or _remembered(mem, "peer"), outcome=outcome,
        started_at=parse_time(mem.get("started_at")), answered_at=parse_time(mem.get("answered_at")),
        ended_at=parse_time(mem.get("ended_at")), duration=duration, internal=bool(mem.get("internal")),
        recording=RecordingRef(source="placetel", ref=ref, format=file_format),
        extra={"placetel_event": "RecordingFound"})
