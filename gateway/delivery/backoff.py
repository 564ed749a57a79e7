"""Retry timing: exponential back-off with jitter, never sooner than the CRM asked."""

from __future__ import annotations

import random


def next_delay(attempts: int, *, base: float, cap: float, retry_after: float | None = None,
               rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempts + 1`` ("equal jitter": half fixed, half random)."""
    uniform = (rng or random).uniform
    ceiling: float = min(cap, base * 2.0 ** max(0, attempts - 1))
    delay = ceiling / 2 + float(uniform(0, ceiling / 2))
    if retry_after is not None and retry_after > delay:
        delay = retry_after  # the CRM said so, even beyond our cap
    return delay
