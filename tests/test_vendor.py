"""The vendor helpers every plugin shares: Retry-After, status to error, single-flight refresh."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import PermanentError, RetryableError, error_for_status, retry_after
from gateway.vendor import RETRY_AFTER_CAP, SingleFlight

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("header, seconds", [
    ("120", 120.0), (" 7 ", 7.0), ("1.5", 1.5), ("0", 0.0), ("-5", 0.0),
    ("Sun, 29 Nov 2026 12:01:30 GMT", 90.0),      # an HTTP date
    ("Sun, 29 Nov 2026 11:00:00 GMT", 0.0),       # in the past: no wait
    ("99999999", RETRY_AFTER_CAP),                # capped
    (None, None), ("", None), ("soon", None), ("nan", None), ("inf", None),
])
def test_retry_after_reads_seconds_and_http_dates(header: str | None, seconds: float | None) -> None:
    assert retry_after(header, now=NOW) == seconds


@given(st.text(max_size=40))
def test_retry_after_never_raises_and_stays_in_bounds(header: str) -> None:
    value = retry_after(header, now=NOW)
    assert value is None or 0.0 <= value <= RETRY_AFTER_CAP


@pytest.mark.parametrize("status, kind", [
    (200, None), (204, None), (302, None),
    (408, RetryableError), (423, RetryableError), (429, RetryableError), (500, RetryableError),
    (502, RetryableError), (503, RetryableError),
    (400, PermanentError), (404, PermanentError), (410, PermanentError), (422, PermanentError),
])
def test_error_for_status(status: int, kind: type[Exception] | None) -> None:
    error = error_for_status(status, retry_after_header="3")
    if kind is None:
        assert error is None
        return
    assert type(error) is kind
    assert error.code == f"HTTP_{status}"
    if kind is RetryableError:
        assert isinstance(error, RetryableError) and error.retry_after == 3.0


class FakeStorage:
    """What SingleFlight needs of a PluginStorage: a tenant and a lease (here: one lock)."""

    tenant = "acme"

    def __init__(self) -> None:
        self._lease = asyncio.Lock()

    def lease(self, name: str, *, ttl: float, wait: float) -> Any:
        return self._lease


async def test_single_flight_refreshes_a_rotating_token_once_for_many_waiters() -> None:
    token = {"access": "old", "refresh": "r1"}
    refreshes: list[str] = []

    async def current() -> dict[str, str]:
        return dict(token)

    async def refresh(stale: dict[str, str]) -> dict[str, str]:
        refreshes.append(stale["refresh"])  # a rotating refresh token may be spent once
        await asyncio.sleep(0.01)
        token.update(access="new", refresh="r2")
        return dict(token)

    flight = SingleFlight()
    storage = FakeStorage()
    results = await asyncio.gather(*(
        flight.run(storage, "oauth", current=current, stale=lambda t: t["access"] == "old", refresh=refresh)  # type: ignore[arg-type]
        for _ in range(10)))
    assert refreshes == ["r1"]
    assert {r["access"] for r in results} == {"new"}
