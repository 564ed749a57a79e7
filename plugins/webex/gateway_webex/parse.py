"""Sans-I/O parsing of Webex webhook deliveries into canonical call events.

Bytes in, plain values out; no storage, no HTTP. The I/O layer (:mod:`gateway_webex.source`)
looks up the webhook's secret, checks the signature, loads and stores the per-call state that
:func:`advance` threads through the deliveries of one call leg.

Call ids: ``call_id = "<callSessionId>:<callId>"``. ``callSessionId`` is shared by every leg
of one call (so CRM sinks can see legs of one call), ``callId`` is this user's own leg, so two
users of one tenant on the same call (transfer, queue) stay two calls with their own owners.

Per-call state is a JSON-ready dict (the I/O layer keeps it in PluginStorage as a call record)
that remembers which canonical states were emitted, so repeated and out-of-order deliveries
give each of ringing, answered, ended at most once, and nothing follows ``ended``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from gateway import (
    ANONYMOUS,
    CallEvent,
    CallState,
    Direction,
    Outcome,
    RecordingRef,
    normalize_number,
)

from .ids import session_key

SOURCE_NAME = "webex"
CALL_EVENTS = frozenset({"created", "updated", "deleted"})
#: Call states in which the user's leg talks to the remote party.
ANSWERED_STATES = frozenset({"connected", "held", "remoteHeld"})
OUTBOUND_PERSONALITIES = frozenset({"originator", "clickToDial"})
REDIRECT_REASONS = frozenset({"busy", "noAnswer", "unavailable", "unconditional", "timeOfDay",
                              "divert", "followMe", "huntGroup", "callQueue", "unknown"})


class MalformedNotification(ValueError):
    """The body is not a Webex webhook delivery we can read (the message names no value)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """The parts of a delivery envelope the gateway uses (``created`` is the webhook's time)."""

    webhook_id: str
    resource: str
    event: str
    created_by: str | None
    data: Mapping[str, Any]


def parse_envelope(body: bytes) -> Envelope:
    """Read the envelope of a delivery; raise :class:`MalformedNotification` if unusable."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedNotification("body is not JSON") from None
    if not isinstance(doc, dict):
        raise MalformedNotification("body is not a JSON object")
    hook_id = doc.get("id")
    if not isinstance(hook_id, str) or not hook_id or len(hook_id) > 512:
        raise MalformedNotification("webhook id missing")
    data = _field(doc, "data", dict)
    return Envelope(webhook_id=hook_id, resource=_field(doc, "resource", str) or "",
                    event=_field(doc, "event", str) or "", created_by=_field(doc, "createdBy", str),
                    data=data or {})


#: Fields Webex documents as present only sometimes ("only once answered"): ``null`` is
#: read as absent. Every other field, when present, must have its documented type.
_NULLABLE = frozenset({"answered", "disconnected", "redirections", "number", "name"})


def _field(doc: Mapping[str, Any], key: str, kind: type) -> Any:
    """``doc[key]`` if it has the type Webex documents, ``None`` when absent; any other type
    (``null`` too, but for :data:`_NULLABLE`) is :class:`MalformedNotification`: we never
    guess what was meant."""
    value = doc.get(key)
    if value is None and (key not in doc or key in _NULLABLE):
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise MalformedNotification(f"{key} has the wrong type")
    return value


def _text(doc: Mapping[str, Any], key: str) -> str:
    return _field(doc, key, str) or ""


#: Timestamps outside these years are nonsense; near year 1 or 9999 the arithmetic on them
#: (time zones, durations) overflows.
_YEARS = range(2000, 2200)


def _time(doc: Mapping[str, Any], key: str) -> datetime | None:
    """An ISO-8601 timestamp with its zone, as UTC; ``None`` when absent. Anything else (not a
    string, not ISO-8601, no zone, a date no call can have) is :class:`MalformedNotification`."""
    value = _field(doc, key, str)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedNotification(f"{key} is not an ISO-8601 time") from None
    if parsed.tzinfo is None or parsed.year not in _YEARS:
        raise MalformedNotification(f"{key} is out of range or has no time zone")
    return parsed.astimezone(timezone.utc)


@dataclass(frozen=True, slots=True)
class CallSnapshot:
    """One ``telephony_calls`` delivery, reduced to what the state machine needs."""

    event: str
    event_type: str
    event_time: datetime | None
    call_leg: str
    session_id: str
    personality: str
    state: str
    remote_number: str | None
    created: datetime | None
    answered: datetime | None
    disconnected: datetime | None
    completed_elsewhere: bool
    redirect_reasons: tuple[str, ...]

    @property
    def call_id(self) -> str:
        return f"{self.session_id}:{self.call_leg}"

    @property
    def ends(self) -> bool:
        return self.event == "deleted" or self.event_type == "disconnected" or self.state == "disconnected"

    @property
    def talking(self) -> bool:
        """The user's leg is connected to the remote party (not just the user's own device)."""
        return self.state in ANSWERED_STATES or (
            self.event_type == "answered" and self.personality != "clickToDial")


def remote_number(party: Mapping[str, Any] | None, region: str | None) -> str | None:
    """The remote party's number (E.164 where it parses), ``anonymous`` when hidden."""
    if party is None:
        return None
    number = _field(party, "number", str)
    hidden = _field(party, "privacyEnabled", bool)
    if number is not None and number.strip():
        return normalize_number(number, region)
    if hidden is True:
        return ANONYMOUS
    return None


def call_snapshot(envelope: Envelope, region: str | None = "DE") -> CallSnapshot:
    """Read a ``telephony_calls`` delivery; raise :class:`MalformedNotification` if unusable."""
    data = envelope.data
    leg, session = _field(data, "callId", str), _field(data, "callSessionId", str)
    if not leg or not session:
        raise MalformedNotification("callId or callSessionId missing")
    if len(leg) > 256 or len(session) > 256:
        raise MalformedNotification("call ids too long")
    reasons: list[str] = []
    for item in _field(data, "redirections", list) or []:
        if not isinstance(item, dict):
            raise MalformedNotification("redirections has the wrong type")
        reason = _field(item, "reason", str)
        if reason is not None:
            reasons.append(reason if reason in REDIRECT_REASONS else "unknown")
    return CallSnapshot(
        event=envelope.event, event_type=_text(data, "eventType"),
        event_time=_time(data, "eventTimestamp"), call_leg=leg, session_id=session,
        personality=_text(data, "personality"), state=_text(data, "state"),
        remote_number=remote_number(_field(data, "remoteParty", dict), region),
        created=_time(data, "created"), answered=_time(data, "answered"),
        disconnected=_time(data, "disconnected"),
        completed_elsewhere=_field(data, "completedElsewhere", bool) is True,
        redirect_reasons=tuple(reasons))


def event_id(call_leg: str, state: str, when: datetime | None) -> str:
    """Stable id from (callId, canonical state, the call's own timestamp for that state)."""
    stamp = when.isoformat() if when is not None else "-"
    return hashlib.sha256(f"{call_leg}\x1f{state}\x1f{stamp}".encode()).hexdigest()[:40]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def new_state(snap: CallSnapshot) -> dict[str, Any]:
    """The per-call state before any delivery was applied."""
    return {"call_id": snap.call_id, "leg": snap.call_leg, "session": session_key(snap.session_id),
            "direction": None, "remote": None, "started_at": None, "answered_at": None,
            "ended_at": None, "rang": False, "answered": False, "ended": False,
            "completed_elsewhere": False, "redirections": []}


def _direction(snap: CallSnapshot, previous: str | None) -> Direction:
    if snap.personality in OUTBOUND_PERSONALITIES:
        return Direction.OUTBOUND
    if snap.personality == "terminator":
        return Direction.INBOUND
    return Direction(previous) if previous else Direction.INBOUND


def advance(state: Mapping[str, Any] | None, snap: CallSnapshot, *, local_user: str | None,
            received_at: datetime) -> tuple[dict[str, Any], list[CallEvent]]:
    """Apply one delivery to a call's state; return the new state and the events it causes.

    - the first delivery of a call that has not ended emits ``ringing``;
    - the first delivery in which the leg talks (``connected``/``held``/``remoteHeld`` or
      ``eventType: answered``) emits ``answered``; a ``clickToDial`` leg answering the user's
      own device does not count;
    - ``deleted``/``disconnected`` emits ``ended`` with the outcome: answered when the call
      was seen answered or carries ``answered``; otherwise missed (inbound) or cancelled
      (outbound). Nothing is emitted after ``ended``: late ``updated`` deliveries are dropped.
    """
    st: dict[str, Any] = dict(state) if state else new_state(snap)
    if st["ended"]:
        return st, []
    direction = _direction(snap, st.get("direction"))
    st["direction"] = direction.value
    if snap.remote_number is not None and (st["remote"] in (None, ANONYMOUS) or snap.remote_number != ANONYMOUS):
        st["remote"] = snap.remote_number
    if st["started_at"] is None:
        st["started_at"] = _iso(snap.created or snap.event_time or received_at)
    st["completed_elsewhere"] = bool(st["completed_elsewhere"] or snap.completed_elsewhere)
    for reason in snap.redirect_reasons:
        if reason not in st["redirections"]:
            st["redirections"].append(reason)
    events: list[CallEvent] = []

    def emit(kind: CallState, when: datetime, key_time: datetime | None, **more: Any) -> None:
        events.append(CallEvent(
            event_id=event_id(snap.call_leg, kind.value, key_time), call_id=st["call_id"],
            direction=direction, state=kind, occurred_at=when, remote_number=st["remote"],
            local_user=local_user, started_at=_dt(st["started_at"]), answered_at=_dt(st["answered_at"]),
            extra={"personality": snap.personality or None, "completed_elsewhere": st["completed_elsewhere"],
                   "redirections": list(st["redirections"])},
            **more))

    if not snap.ends:
        if not st["rang"]:
            st["rang"] = True
            emit(CallState.RINGING, snap.created or snap.event_time or received_at, snap.created or snap.event_time)
        if snap.talking and not st["answered"]:
            st["answered"] = True
            answered = snap.answered or snap.event_time or received_at
            st["answered_at"] = _iso(answered)
            emit(CallState.ANSWERED, answered, snap.answered or snap.event_time)
        return st, events

    if st["answered_at"] is None and snap.answered is not None:
        st["answered_at"] = _iso(snap.answered)
    was_answered = bool(st["answered"] or snap.answered is not None)
    ended = snap.disconnected or snap.event_time or received_at
    st["ended"] = True
    st["ended_at"] = _iso(ended)
    answered_at = _dt(st["answered_at"])
    if was_answered:
        outcome = Outcome.ANSWERED
        duration = max(0, int((ended - answered_at).total_seconds())) if answered_at else 0
    else:
        outcome = Outcome.MISSED if direction is Direction.INBOUND else Outcome.CANCELLED
        duration = 0
    emit(CallState.ENDED, ended, snap.disconnected or snap.event_time, outcome=outcome,
         ended_at=ended, duration=duration)
    return st, events


@dataclass(frozen=True, slots=True)
class RecordingNotice:
    """A ``convergedRecordings`` delivery: which recording, and its call session if given."""

    event: str
    recording_id: str
    session: str | None
    status: str | None


def recording_notice(envelope: Envelope) -> RecordingNotice:
    """Read a ``convergedRecordings`` delivery (its ``data`` is not documented: be lenient)."""
    data = envelope.data
    rec_id = _field(data, "id", str) or _field(data, "recordingId", str)
    if not rec_id or len(rec_id) > 256:
        raise MalformedNotification("recording id missing")
    service = _field(data, "serviceData", dict)
    session = _field(service, "callSessionId", str) if service is not None else None
    if session is None:
        session = _field(data, "callSessionId", str)
    return RecordingNotice(event=envelope.event, recording_id=rec_id,
                           session=session_key(session) if session else None,
                           status=_field(data, "status", str))


def recording_event(state: Mapping[str, Any], recording_id: str, *, local_user: str | None,
                    received_at: datetime) -> CallEvent:
    """The ``recording`` event for a call whose state is known (joined by call session)."""
    return CallEvent(
        event_id=hashlib.sha256(f"recording\x1f{recording_id}".encode()).hexdigest()[:40],
        call_id=state["call_id"], direction=Direction(state.get("direction") or "in"),
        state=CallState.RECORDING, occurred_at=received_at, remote_number=state.get("remote"),
        local_user=local_user, started_at=_dt(state.get("started_at")),
        answered_at=_dt(state.get("answered_at")), ended_at=_dt(state.get("ended_at")),
        recording=RecordingRef(source=SOURCE_NAME, ref=recording_id))
