"""Canonical call events → ``telephony.externalCall.*`` parameters. Pure functions.

Decisions (see README):
- ``STATUS_CODE`` is always sent explicitly (pitfall 3): answered 200, missed 304, busy 486,
  rejected 603, cancelled 603-S, unavailable 480, failed 503, blocked 423, and voicemail 304
  (the caller reached a mailbox, not a person: Bitrix24 shows it as a missed call and fires
  its missed-call automation, which is what a team wants for a voicemail).
- ``DURATION`` is always sent: the event's duration, else answer→end, else 0.
- ``EXTERNAL_CALL_ID`` is a digest of (connection, provider call id): unique per physical
  call, stable across retries, so Bitrix24's 30-minute dedup returns the same ``CALL_ID`` for a
  retried register and never merges two calls (pitfall 1).
"""

from __future__ import annotations

import hashlib
from typing import Any

from gateway import CallEvent, Direction, Outcome

TYPE_OUTBOUND = 1
TYPE_INBOUND = 2
TYPE_CALLBACK = 4

STATUS_CODES: dict[Outcome, str] = {
    Outcome.ANSWERED: "200",
    Outcome.MISSED: "304",
    Outcome.BUSY: "486",
    Outcome.REJECTED: "603",
    Outcome.CANCELLED: "603-S",
    Outcome.UNAVAILABLE: "480",
    Outcome.FAILED: "503",
    Outcome.VOICEMAIL: "304",
    Outcome.BLOCKED: "423",
}


def status_code(event: CallEvent) -> str:
    """The finish ``STATUS_CODE``; without an outcome: 200 if the call was answered, else 304."""
    if event.outcome is not None:
        return STATUS_CODES[event.outcome]
    return "200" if event.answered_at is not None or (event.duration or 0) > 0 else "304"


def duration(event: CallEvent) -> int:
    if event.duration is not None:
        return int(event.duration)
    if event.answered_at is not None and event.ended_at is not None:
        return max(0, int((event.ended_at - event.answered_at).total_seconds()))
    return 0


def call_type(event: CallEvent) -> int:
    return TYPE_OUTBOUND if event.direction is Direction.OUTBOUND else TYPE_INBOUND


def external_call_id(event: CallEvent) -> str:
    digest = hashlib.sha256(f"{event.connection_id}\x1f{event.call_id}".encode()).hexdigest()
    return f"{event.source or 'call'}-{digest[:24]}"[:64]


def start_date(event: CallEvent) -> str:
    """ISO-8601 with an offset, as ``register`` demands (``+00:00``; times are UTC)."""
    return (event.started_at or event.occurred_at).isoformat(timespec="seconds")


def register_params(event: CallEvent, *, user_id: int, crm_create: bool, show: bool) -> dict[str, Any]:
    params: dict[str, Any] = {
        "USER_ID": user_id,
        "PHONE_NUMBER": event.remote_number,
        "TYPE": call_type(event),
        "CALL_START_DATE": start_date(event),
        "CRM_CREATE": 1 if crm_create else 0,
        "SHOW": 1 if show else 0,
        "EXTERNAL_CALL_ID": external_call_id(event),
    }
    if event.local_number:
        params["LINE_NUMBER"] = event.local_number
    return params


def finish_params(event: CallEvent, *, crm_call_id: str, user_id: int) -> dict[str, Any]:
    return {
        "CALL_ID": crm_call_id,
        "USER_ID": user_id,
        "DURATION": duration(event),
        "STATUS_CODE": status_code(event),
    }


def is_call_unknown(description: str) -> bool:
    """Bitrix24 no longer knows the call (error code may be ``""`` or ``ERROR_CORE``)."""
    text = description.lower()
    return "call is not found" in text or "call not found" in text
