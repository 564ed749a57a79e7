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
- An anonymous caller (or a call without a number) is registered as :data:`ANONYMOUS_NUMBER`
  with ``CRM_CREATE=0``; internal calls too never create CRM entities.
- ``LINE_NUMBER`` is the call's own number (E.164), the same form ``externalLine.add`` uses.
- A recording's ``FILENAME`` is built from the provider's recording id and stated format
  (``.mp3``/``.wav``, the only ones Bitrix24 takes), never from numbers or names.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import urlsplit

from gateway import ANONYMOUS, CallEvent, Direction, Outcome

TYPE_OUTBOUND = 1
TYPE_INBOUND = 2
TYPE_CALLBACK = 4

#: ``PHONE_NUMBER`` for callers without a number. ``register`` strips everything but digits and
#: ``#*+,;`` and refuses an empty (PHP-falsy) result ("Unsupported phone number format"), so
#: ``anonymous`` and ``"0"`` cannot be used; ten zeros survive, are no valid number, match no
#: employee extension, and the unique ``EXTERNAL_CALL_ID`` keeps such calls from merging.
ANONYMOUS_NUMBER = "0000000000"
#: Recording file formats Bitrix24 accepts (``attachRecord``: "Only wav and mp3 are allowed").
RECORDING_FORMATS = frozenset({"mp3", "wav"})
_E164 = re.compile(r"^\+[1-9][0-9]{5,15}$")
_SAFE = re.compile(r"[^A-Za-z0-9-]+")

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


def is_anonymous(event: CallEvent) -> bool:
    return not event.remote_number or event.remote_number == ANONYMOUS


def line_number(event: CallEvent) -> str | None:
    """The call's own number as a Bitrix24 line: E.164 only (extensions and SIP ids are not lines)."""
    number = event.local_number
    return number if number and _E164.match(number) else None


def register_params(event: CallEvent, *, user_id: int, crm_create: bool, show: bool) -> dict[str, Any]:
    anonymous = is_anonymous(event)
    params: dict[str, Any] = {
        "USER_ID": user_id,
        "PHONE_NUMBER": ANONYMOUS_NUMBER if anonymous else event.remote_number,
        "TYPE": call_type(event),
        "CALL_START_DATE": start_date(event),
        "CRM_CREATE": 1 if crm_create and not anonymous and not event.internal else 0,
        "SHOW": 1 if show else 0,
        "EXTERNAL_CALL_ID": external_call_id(event),
    }
    line = line_number(event)
    if line:
        params["LINE_NUMBER"] = line
    return params


def finish_params(event: CallEvent, *, crm_call_id: str, user_id: int) -> dict[str, Any]:
    return {
        "CALL_ID": crm_call_id,
        "USER_ID": user_id,
        "DURATION": duration(event),
        "STATUS_CODE": status_code(event),
    }


def recording_filename(event: CallEvent, link: str) -> str | None:
    """``<source>-<recording id>.<mp3|wav>``: the format the source stated (when it states
    none: the extension of the link's path); ``None`` when that is not one Bitrix24 takes. The
    id is the provider's (no personal data); an odd or long one is replaced by its digest."""
    ref = event.recording
    if ref is None:
        return None
    if ref.format is not None:
        fmt = ref.format.strip().lower()
    else:  # the source did not say: the link's path may
        path = urlsplit(link).path.lower()
        fmt = next((f for f in sorted(RECORDING_FORMATS) if path.endswith(f".{f}")), "")
    if fmt not in RECORDING_FORMATS:
        return None
    ident = _SAFE.sub("-", ref.ref).strip("-")
    if not ident or len(ident) > 64:
        ident = hashlib.sha256(ref.ref.encode()).hexdigest()[:24]
    source = _SAFE.sub("-", ref.source)[:24] or "call"
    return f"{source}-{ident}.{fmt}"


def is_call_unknown(description: str) -> bool:
    """Bitrix24 no longer knows the call (error code may be ``""`` or ``ERROR_CORE``)."""
    text = description.lower()
    return "call is not found" in text or "call not found" in text
