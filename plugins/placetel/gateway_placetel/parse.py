"""Placetel Notify bodies -> canonical call events. Sans-I/O: bytes and state in, events out.

Placetel posts one form-encoded request per call event (``IncomingCall``, ``OutgoingCall``,
``CallAccepted``, ``HungUp``) without timestamps or delivery ids. The caller hands in the
arrival time and the small per-call memory kept from earlier events of the same ``call_id``
(direction, start and answer time, the answering SIP user); :func:`to_events` returns the
events and the updated memory, which the caller stores.
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


def is_internal(party: str | None) -> bool:
    """An internal party: a SIP id (``7777abc@fpbx.de``) or a short extension (``23``)."""
    if not party or party == ANONYMOUS:
        return False
    if "@" in party:
        return True
    return not party.startswith("+") and party.isdigit() and len(party) <= 6


def event_id(n: Notification) -> str:
    """Stable across redeliveries: call id, event name and a hash of the fields."""
    return f"{n.call_id}:{n.event}:{n.digest[:16]}"


def resolve_direction(n: Notification, memory: dict[str, Any] | None) -> tuple[Direction, str]:
    """The call's direction and where it came from (``field``, ``event``, ``call``, ``guess``)."""
    if n.direction is not None:
        return n.direction, "field"
    if n.event == INCOMING or n.event == ACCEPTED:  # CallAccepted exists for incoming calls only
        return Direction.INBOUND, "event"
    if n.event == OUTGOING:
        return Direction.OUTBOUND, "event"
    if memory and memory.get("direction") in {"in", "out"}:
        return Direction(memory["direction"]), "call"
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
              region: str = "DE") -> tuple[list[CallEvent], dict[str, Any] | None]:
    """Canonical events for one notification, and the call's updated memory.

    ``memory`` is what an earlier call of this function returned for the same ``call_id``
    (``None`` for the first). Unknown events give ``([], memory)``: acknowledged, ignored.
    ``received_at`` stands in for every timestamp: Placetel sends none.
    """
    if not n.known or n.call_id is None:
        return [], memory
    mem: dict[str, Any] = dict(memory or {})
    direction, direction_from = resolve_direction(n, memory)
    inbound = direction is Direction.INBOUND
    remote_raw, local_raw = (n.from_, n.to) if inbound else (n.to, n.from_)
    remote = normalize_number(remote_raw, region) or _remembered(mem, "remote")
    local = normalize_number(local_raw, region) or _remembered(mem, "local")
    peer = n.peer or mem.get("peer")
    if peer is None and not inbound and n.from_ and "@" in n.from_:
        peer = n.from_  # internal outgoing calls name the calling SIP user in ``from``
    started = parse_time(mem.get("started_at"))
    answered = parse_time(mem.get("answered_at"))
    extra: dict[str, Any] = {"placetel_event": n.event, "direction_from": direction_from}
    if is_internal(remote):
        extra["internal"] = True

    state: CallState
    outcome: Outcome | None = None
    ended: datetime | None = None
    duration: int | None = None
    if n.event in (INCOMING, OUTGOING):
        state = CallState.RINGING
        started = started or received_at
    elif n.event == ACCEPTED:
        state = CallState.ANSWERED
        answered = answered or received_at
    else:
        state = CallState.ENDED
        ended = parse_time(mem.get("ended_at")) or received_at  # a redelivery keeps the first end
        outcome = OUTCOMES.get(n.hangup_type or "")
        duration = n.duration
        if n.hangup_type and outcome is None:
            extra["unknown_hangup_type"] = True
        if outcome is Outcome.ANSWERED and answered is None and duration is not None:
            answered = received_at - timedelta(seconds=duration)
    event = CallEvent(
        event_id=event_id(n), call_id=n.call_id, direction=direction, state=state,
        occurred_at=received_at, remote_number=remote, local_number=local, local_user=peer,
        outcome=outcome, started_at=started, answered_at=answered, ended_at=ended,
        duration=duration, extra=extra)
    mem.update({"direction": direction.value, "started_at": _iso(started),
                "answered_at": _iso(answered), "peer": peer, "remote": remote, "local": local})
    if state is CallState.ENDED:
        mem["ended_at"] = _iso(ended)
        mem["outcome"] = outcome.value if outcome else None
        mem["duration"] = duration
    return [event], mem


def _remembered(mem: dict[str, Any], key: str) -> str | None:
    value = mem.get(key)
    return value if isinstance(value, str) else None


def recording_event(call_id: str, ref: str, memory: dict[str, Any] | None,
                    found_at: datetime) -> CallEvent:
    """The ``RECORDING`` event for a call whose recording (or voicemail) was found later.

    ``ref`` is the opaque reference (``recording:<id>``); the link itself is resolved only at
    delivery. The call's details come from its memory, which the caller kept.
    """
    mem = memory or {}
    direction = Direction(mem["direction"]) if mem.get("direction") in {"in", "out"} else Direction.INBOUND
    outcome = Outcome(mem["outcome"]) if mem.get("outcome") in {o.value for o in Outcome} else None
    duration = mem.get("duration") if isinstance(mem.get("duration"), int) else None
    return CallEvent(
        event_id=f"{call_id}:recording:{hashlib.sha256(ref.encode()).hexdigest()[:16]}",
        call_id=call_id, direction=direction, state=CallState.RECORDING, occurred_at=found_at,
        remote_number=_remembered(mem, "remote"), local_number=_remembered(mem, "local"),
        local_user=_remembered(mem, "peer"), outcome=outcome, started_at=parse_time(mem.get("started_at")),
        answered_at=parse_time(mem.get("answered_at")), ended_at=parse_time(mem.get("ended_at")),
        duration=duration, recording=RecordingRef(source="placetel", ref=ref),
        extra={"placetel_event": "RecordingFound"})
