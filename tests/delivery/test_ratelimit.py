"""Token buckets: a burst passes at once, the next request waits, buckets are per destination."""

from __future__ import annotations

import random

from gateway import RateLimit
from gateway.delivery.backoff import next_delay
from gateway.delivery.ratelimit import RateLimiter


async def test_burst_then_wait_and_destinations_are_independent():
    limiter = RateLimiter()
    limit = RateLimit(rate=1000.0, burst=3)
    assert [await limiter.acquire("s", "portal-a", limit) for _ in range(3)] == [False, False, False]
    assert await limiter.acquire("s", "portal-a", limit) is True  # the fourth had to wait
    assert await limiter.acquire("s", "portal-b", limit) is False  # another portal is untouched
    assert await limiter.acquire("s", "portal-a", None) is False  # no limit declared


def test_backoff_grows_with_jitter_and_respects_retry_after_and_cap():
    rng = random.Random(7)
    delays = [next_delay(n, base=1, cap=300, rng=rng) for n in range(1, 12)]
    for n, d in enumerate(delays, start=1):
        ceiling = min(300, 2 ** (n - 1))
        assert ceiling / 2 <= d <= ceiling
    assert next_delay(1, base=1, cap=300, retry_after=42, rng=rng) == 42
    assert next_delay(1, base=1, cap=300, retry_after=0.1, rng=rng) <= 1
