"""Helpers every backend shares: time in milliseconds, JSON, and the blind indexes that
more than one part computes (they must agree, so they are spelled once)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import orjson

from ..events import ANONYMOUS
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
