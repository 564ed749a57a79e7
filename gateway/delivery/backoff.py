"""Retry timing: exponential back-off with jitter, never sooner than the CRM asked."""

from __future__ import annotations

import random


def next_delay(attempts: int, *, base: float, cap: float, retry_after: float | None = None,
               rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempts + 1`` ("equal jitter": half fixed, half random)."""
    r = rng or random
    ceiling = min(cap, base * (2 ** max(0, attempts - 1)))
    delay = ceiling / 2 + r.uniform(0, ceiling / 2)
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, max(cap, retry_after))
    return delay
