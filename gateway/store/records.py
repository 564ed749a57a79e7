"""Rows the store hands to the delivery queue and to the admin API."""

from __future__ import annotations

from dataclasses import dataclass

from ..events import CallEvent


@dataclass(slots=True)
class PendingDelivery:
    """One (event, sink) pair that has not reached its CRM yet."""

    id: int
    event_seq: int
    tenant: str
    sink: str
    call_key: str
    attempts: int
    next_at: int  # ms since the epoch
    received_at: int  # ms since the epoch
    since: int  # ms: when the retry horizon started (receipt, or the last replay)
    dedup_key: str
    event: CallEvent | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A delivery given up on. ``reason`` is a short code, never personal data."""

    id: int
    tenant: str
    sink: str
    attempts: int
    reason: str
    received_at: int
    updated_at: int
    event_seq: int = 0  #: the event it would have delivered (``Events.load``)
