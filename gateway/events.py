"""The canonical call event: what every telephony source produces and every CRM sink consumes.

CRM-neutral and small. Numbers are E.164 where ``phonenumbers`` can parse them, the raw string
otherwise, and ``anonymous`` stays ``anonymous``. Times are timezone-aware UTC. A recording is
only ever a *reference* (opaque to everyone but its source); the link is fetched at delivery.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
import phonenumbers

ANONYMOUS = "anonymous"


class Direction(enum.StrEnum):
    INBOUND = "in"
    OUTBOUND = "out"


class CallState(enum.StrEnum):
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"
    #: A recording of the (already ended) call became available; ``recording`` is set.
    RECORDING = "recording"


class Outcome(enum.StrEnum):
    ANSWERED = "answered"
    MISSED = "missed"
    BUSY = "busy"
    REJECTED = "rejected"
    VOICEMAIL = "voicemail"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class RecordingRef:
    """Points at a recording without being its link: ``source`` resolves ``ref`` on delivery.

    ``format`` is the file format the provider states (``"mp3"``, ``"wav"``), ``None`` when it
    does not say: a CRM that needs a file name (Bitrix24 takes only ``.mp3``/``.wav``) builds
    it from ``ref`` and ``format``, never from the link.
    """

    source: str
    ref: str
    format: str | None = None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; naive datetimes are refused (they hide a timezone bug)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: give a timezone")
    return value.astimezone(timezone.utc)


#: How long a normalised number may stay in the cache, and how many entries it holds: long
#: enough for the events of one call (and the company's own lines) to hit, short enough that
#: numbers do not linger in memory. Parsing a dialable number costs 20-40 µs, a hit under 1 µs.
NUMBER_CACHE_SECONDS = 60.0
NUMBER_CACHE_SIZE = 4096
#: Longer inputs are never cached: no phone number is this long, and keys stay small.
_CACHEABLE_LENGTH = 64
_cache_key = secrets.token_bytes(16)
#: keyed digest of (region, raw input) -> (expiry, result); insertion order is expiry order
_number_cache: OrderedDict[bytes, tuple[float, str | None]] = OrderedDict()


def forget_numbers() -> None:
    """Drop every cached number (after an erasure or an uninstall): nothing personal stays."""
    _number_cache.clear()


def normalize_number(raw: str | None, region: str | None = "DE") -> str | None:
    """Normalise a phone number to E.164 where it parses; keep it raw otherwise.

    ``None`` and empty strings give ``None``. ``anonymous`` (any case) and the empty-looking
    placeholders some systems send stay :data:`ANONYMOUS`. Short internal extensions (``23``),
    SIP URIs and service codes (``*73``) are kept as they are.

    Results are cached briefly (:data:`NUMBER_CACHE_SECONDS`, at most
    :data:`NUMBER_CACHE_SIZE` entries, inputs of at most 64 characters), because a call's
    events carry the same numbers. The cache is keyed by a keyed digest of the input, never
    by the raw text; :func:`forget_numbers` empties it on erasure and uninstall.
    """
    if raw is None:
        return None
    if len(raw) > _CACHEABLE_LENGTH:
        return _normalize(raw, region)
    key = hashlib.blake2b(f"{region}\x1f{raw}".encode("utf-8", "surrogatepass"),
                          key=_cache_key, digest_size=16).digest()
    now = time.monotonic()
    hit = _number_cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    result = _normalize(raw, region)
    cache = _number_cache
    while cache:  # expire from the front: entries are appended in expiry order
        first = next(iter(cache))
        if cache[first][0] > now and len(cache) < NUMBER_CACHE_SIZE:
            break
        del cache[first]
    cache[key] = (now + NUMBER_CACHE_SECONDS, result)
    return result


def _normalize(raw: str, region: str | None) -> str | None:
    text = raw.strip()
    if not text:
        return None
    if text.lower() in {ANONYMOUS, "unknown", "private", "restricted"}:
        return ANONYMOUS
    if text.lower().startswith("tel:"):
        text = text[4:]
    if "@" in text or not any(ch.isdigit() for ch in text):
        return text
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) <= 6 and not text.startswith("+"):
        return text  # an internal extension, not a dialable number
    return _parse(text, region)


def _parse(text: str, region: str | None) -> str:
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return text
    if not phonenumbers.is_possible_number(parsed):
        return text
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One thing that happened to one customer call, as the telephone system reported it.

    ``event_id`` is stable across redeliveries of the same notification and unique within the
    connection: the store deduplicates on it. ``call_id`` is shared by all events of one call
    and orders their delivery. ``source``, ``connection_id`` and ``tenant`` are stamped by the
    core when the event is accepted; sources may leave them empty.

    A call is what the *customer* experiences, not one leg per ringing phone: a source that
    sees several legs (queues, hunt groups, transfers) merges them into one ``call_id`` and
    emits, in this order: ``ringing`` (the first ring; again whenever the set of ringing
    users changes), ``answered`` (again when another user takes the call over, e.g. after a
    transfer), ``ended`` exactly once, then ``recording``. Nothing but ``recording`` follows
    ``ended``.

    - ``local_user``: the telephony user the call belongs to at this point: who rings alone,
      who answered last, who placed an outbound call; ``None`` when no single user can be
      named (a company number ringing a group, a missed queue call).
    - ``ringing``: the telephony users whose phones ring for this call right now, as far as
      the source knows (empty when it does not know, and after the answer).
    - ``internal``: both parties are the tenant's own users (a call between colleagues):
      CRMs must not create contacts or leads for it.
    """

    event_id: str
    call_id: str
    direction: Direction
    state: CallState
    occurred_at: datetime
    remote_number: str | None = None
    local_number: str | None = None
    local_user: str | None = None
    outcome: Outcome | None = None
    started_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    duration: int | None = None
    recording: RecordingRef | None = None
    ringing: tuple[str, ...] = ()
    internal: bool = False
    source: str = ""
    connection_id: str = ""
    tenant: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("occurred_at", "started_at", "answered_at", "ended_at"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_utc(value))
        if self.state is CallState.RECORDING and self.recording is None:
            raise ValueError("a recording event needs a recording reference")
        if self.duration is not None and self.duration < 0:
            raise ValueError("duration cannot be negative")
        if not self.event_id or not self.call_id:
            raise ValueError("event_id and call_id are required")

    def replace(self, **changes: Any) -> CallEvent:
        return dataclasses.replace(self, **changes)

    def stamped(self, *, source: str, connection_id: str, tenant: str) -> CallEvent:
        """A copy that names where it came from (the core's stamp). Field by field: a third
        of ``copy.copy``'s cost (which pickles slots), and nothing to re-validate."""
        out = object.__new__(CallEvent)
        for name in _FIELD_NAMES:
            object.__setattr__(out, name, getattr(self, name))
        object.__setattr__(out, "source", source)
        object.__setattr__(out, "connection_id", connection_id)
        object.__setattr__(out, "tenant", tenant)
        return out

    def to_json(self) -> bytes:
        """JSON bytes (datetimes as ISO-8601, enums as their values); ``from_dict`` reads it."""
        return orjson.dumps(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO-8601 strings, enums as their values)."""
        result: dict[str, Any] = orjson.loads(self.to_json())
        return result

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallEvent:
        # fields of older versions (``crm_call_id``) are dropped: an event stored before an
        # upgrade stays readable
        kw = {k: v for k, v in data.items() if k in _FIELD_SET}
        kw["direction"] = Direction(kw["direction"])
        kw["state"] = CallState(kw["state"])
        if kw.get("outcome") is not None:
            kw["outcome"] = Outcome(kw["outcome"])
        for name in ("occurred_at", "started_at", "answered_at", "ended_at"):
            if kw.get(name) is not None:
                kw[name] = datetime.fromisoformat(kw[name])
        if kw.get("recording") is not None:
            kw["recording"] = RecordingRef(**kw["recording"])
        if kw.get("ringing") is not None:
            kw["ringing"] = tuple(kw["ringing"])
        return cls(**kw)


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(CallEvent))
_FIELD_SET = frozenset(_FIELD_NAMES)
