"""Helpers every backend shares: time in milliseconds, JSON, and the blind indexes that
more than one part computes (they must agree, so they are spelled once)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import orjson

from ..events import ANONYMOUS
from ..models import Connection
from .crypto import TenantKeys


def now_ms() -> int:
    return int(time.time() * 1000)


def ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def phone_key(keys: TenantKeys, number: str | None) -> str | None:
    """The blind index of a phone number, or ``None`` for no number or an anonymous caller.

    Events, plugin records and click-to-call rows all use it, so one lookup by a data
    subject's number finds them all."""
    if not number or number == ANONYMOUS:
        return None
    return keys.blind_index("phone", number)


def user_key(keys: TenantKeys, connection_id: str, user_id: str) -> str:
    """The blind index of a telephony user: names the user in the directory and in events."""
    return keys.blind_index("user", f"{connection_id}\x1f{user_id}")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A webhook acknowledged before it was interpreted, as the journal hands it back."""

    id: int
    tenant: str
    connection_id: str
    received_at: int  # ms since the epoch
    body: bytes
    headers: tuple[tuple[str, str], ...]
    content_type: str
    query: tuple[tuple[str, str], ...]


def seal_journal(keys: TenantKeys, row_key: str, body: bytes, headers: Sequence[tuple[str, str]],
                 content_type: str, query: Sequence[tuple[str, str]]) -> bytes:
    """One sealed payload: the request's metadata as JSON, a newline, the raw body."""
    meta = orjson.dumps([content_type, list(headers), list(query)])  # JSON escapes every newline
    return keys.encrypt("journal", "payload", row_key, meta + b"\n" + body)


def open_journal(keys: TenantKeys, row_id: int, tenant: str, connection_id: str, row_key: str,
                 payload: bytes, received_at: int) -> JournalEntry:
    meta, _, body = keys.decrypt("journal", "payload", row_key, payload).partition(b"\n")
    content_type, headers, query = orjson.loads(meta)
    return JournalEntry(row_id, tenant, connection_id, received_at, body,
                        tuple((str(k), str(v)) for k, v in headers), str(content_type),
                        tuple((str(k), str(v)) for k, v in query))


def updated_connection(current: Connection, settings: dict[str, Any] | None, status: str | None,
                       reason: str | None) -> Connection:
    """``current`` as ``Connections.update`` leaves it: what is given replaces what was, and a
    new status replaces the reason with its own (``None`` included)."""
    return replace(current, settings=current.settings if settings is None else dict(settings),
                   status=current.status if status is None else status,
                   status_reason=reason if status is not None else current.status_reason)
