"""Sans-I/O parsing of Webex webhook deliveries: envelopes, call legs, recordings.

Bytes in, plain values out; no storage, no HTTP. The I/O layer (:mod:`gateway_webex.source`)
looks up the webhook's secret, checks the signature, and threads a call session's state
through :mod:`gateway_webex.session`, which turns the legs of one session into the
canonical events of one customer call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
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
    data = doc.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MalformedNotification("data is not an object")
    created_by = doc.get("createdBy")
    return Envelope(webhook_id=hook_id, resource=_text(doc.get("resource")), event=_text(doc.get("event")),
                    created_by=created_by if isinstance(created_by, str) else None, data=data)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _time(value: Any) -> datetime | None:
    """An ISO-8601 timestamp as aware UTC, ``None`` when missing or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


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


def remote_number(party: Any, region: str | None) -> str | None:
    """The remote party's number (E.164 where it parses), ``anonymous`` when hidden."""
    if not isinstance(party, dict):
        return None
    number = party.get("number")
    if isinstance(number, str) and number.strip():
        return normalize_number(number, region)
    if party.get("privacyEnabled") is True:
        return ANONYMOUS
    return None


def call_snapshot(envelope: Envelope, region: str | None = "DE") -> CallSnapshot:
    """Read a ``telephony_calls`` delivery; raise :class:`MalformedNotification` if unusable."""
    data = envelope.data
    leg, session = data.get("callId"), data.get("callSessionId")
    if not isinstance(leg, str) or not leg or not isinstance(session, str) or not session:
        raise MalformedNotification("callId or callSessionId missing")
    if len(leg) > 256 or len(session) > 256:
        raise MalformedNotification("call ids too long")
    reasons: list[str] = []
    redirect_number: str | None = None
    redirections = data.get("redirections")
    if isinstance(redirections, list):
        for item in redirections:
            reason = item.get("reason") if isinstance(item, dict) else None
            if isinstance(reason, str):
                reasons.append(reason if reason in REDIRECT_REASONS else "unknown")
            party = item.get("redirectingParty") if isinstance(item, dict) else None
            if redirect_number is None and reason in ("callQueue", "huntGroup") and isinstance(party, dict):
                number = remote_number(party, region)
                redirect_number = number if number != ANONYMOUS else None
    party = data.get("remoteParty")
    call_type = party.get("callType") if isinstance(party, dict) else None
    return CallSnapshot(
        event=envelope.event, event_type=_text(data.get("eventType")),
        event_time=_time(data.get("eventTimestamp")), call_leg=leg, session_id=session,
        personality=_text(data.get("personality")), state=_text(data.get("state")),
        remote_number=remote_number(data.get("remoteParty"), region),
        created=_time(data.get("created")), answered=_time(data.get("answered")),
        disconnected=_time(data.get("disconnected")),
        completed_elsewhere=data.get("completedElsewhere") is True,
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
    rec_id = data.get("id") or data.get("recordingId")
    if not isinstance(rec_id, str) or not rec_id or len(rec_id) > 256:
        raise MalformedNotification("recording id missing")
    service = data.get("serviceData")
    session = service.get("callSessionId") if isinstance(service, dict) else None
    if session is None:
        session = data.get("callSessionId")
    status, file_format = data.get("status"), data.get("format")
    return RecordingNotice(event=envelope.event, recording_id=rec_id,
                           session=session_key(session) if isinstance(session, str) and session else None,
                           status=status if isinstance(status, str) else None,
                           format=file_format if isinstance(file_format, str) else None)
