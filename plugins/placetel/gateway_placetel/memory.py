"""A call's memory (the per-call state of :mod:`.parse`) as the core keeps it: its numbers for
data-subject requests, and the index the background round and reconciliation look for."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from gateway import ANONYMOUS, CallMemory, CallSpan, Direction, time_index

from .parse import parse_time
from .settings import HELD, OPEN


def first_time(memory: dict[str, Any]) -> datetime | None:
    """The earliest moment of the call the memory knows: its start, else its answer, else its
    end less its duration (Placetel sends no times: these are arrival times)."""
    known = [t for t in (parse_time(memory.get(k)) for k in ("started_at", "answered_at", "ended_at")) if t]
    ended = parse_time(memory.get("ended_at"))
    duration = memory.get("duration")
    if ended is not None and isinstance(duration, int) and duration > 0:
        known.append(ended - timedelta(seconds=duration))
    return min(known) if known else None


def remember(call: CallMemory, memory: dict[str, Any]) -> None:
    """Keep a call's memory with its numbers (data-subject requests find it) and its index:
    :data:`HELD` and :data:`OPEN` for the background round, else the hour it began
    (``gateway.time_index``), by which reconciliation finds it."""
    call.value = memory
    call.phones = [n for n in (memory.get("remote"), memory.get("local"))
                   if isinstance(n, str) and n and n != ANONYMOUS]
    begun = first_time(memory)
    call.index = HELD if memory.get("held") else (
        OPEN if not memory.get("ended_at") else (time_index(begun) if begun else None))


def span(key: str, memory: Any, now: datetime) -> CallSpan | None:
    """The call as reconciliation compares it: from its first known moment to its end (now, if
    it has not ended). ``None`` for what is not a received call: a call reconciliation wrote
    (found by its number instead) or one it stands for."""
    if not isinstance(memory, dict) or "reconciled" in memory or memory.get("reconciled_as"):
        return None
    lo = first_time(memory)
    if lo is None:
        return None
    ended = parse_time(memory.get("ended_at"))
    direction = memory.get("direction")
    remote, local = memory.get("remote"), memory.get("local")
    return CallSpan(key, remote if isinstance(remote, str) else None,
                    Direction(direction) if direction in ("in", "out") else None,
                    lo, ended or max(now, lo), local if isinstance(local, str) else None)
