"""Sans-I/O parsing of Webex webhook deliveries: envelopes, call legs, recordings.

Bytes in, plain values out; no storage, no HTTP. The I/O layer (:mod:`gateway_webex.source`)
looks up the webhook's secret, checks the signature, and threads a call session's state
through :mod:`gateway_webex.session`, which turns the legs of one session into the
canonical events of one customer call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from gateway import ANONYMOUS, normalize_number

from .ids import session_key

SOURCE_NAME = "webex"
CALL_EVENTS = frozenset({"created", "updated", "deleted"})
#: ``remoteParty.callType`` values of the organisation's own parties (colleagues, places).
INTERNAL_CALL_TYPES = frozenset({"location", "organization"})
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


def parse_time(doc: Mapping[str, Any], key: str) -> datetime | None:
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
    #: the remote party is one of the organisation's own (``callType`` location/organization)
    remote_internal: bool = False
    #: the number of the queue or hunt group that redirected the call to this user, if any
    redirect_number: str | None = None

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
    redirect_number: str | None = None
    for item in _field(data, "redirections", list) or []:
        if not isinstance(item, dict):
            raise MalformedNotification("redirections has the wrong type")
        reason = _field(item, "reason", str)
        if reason is not None:
            reasons.append(reason if reason in REDIRECT_REASONS else "unknown")
        party = _field(item, "redirectingParty", dict)
        if redirect_number is None and reason in ("callQueue", "huntGroup") and party is not None:
            number = remote_number(party, region)
            redirect_number = number if number != ANONYMOUS else None
    remote = _field(data, "remoteParty", dict)
    call_type = _field(remote, "callType", str) if remote is not None else None
    return CallSnapshot(
        event=envelope.event, event_type=_text(data, "eventType"),
        event_time=parse_time(data, "eventTimestamp"), call_leg=leg, session_id=session,
        personality=_text(data, "personality"), state=_text(data, "state"),
        remote_number=remote_number(remote, region),
        created=parse_time(data, "created"), answered=parse_time(data, "answered"),
        disconnected=parse_time(data, "disconnected"),
        completed_elsewhere=_field(data, "completedElsewhere", bool) is True,
        redirect_reasons=tuple(reasons), remote_internal=call_type in INTERNAL_CALL_TYPES,
        redirect_number=redirect_number)


@dataclass(frozen=True, slots=True)
class RecordingNotice:
    """A ``convergedRecordings`` delivery: which recording, and its call session if given."""

    event: str
    recording_id: str
    session: str | None
    status: str | None
    #: the file format if the notice states it (``MP3``)
    format: str | None = None


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
                           status=_field(data, "status", str), format=_field(data, "format", str))
