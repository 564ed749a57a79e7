"""What every vendor adapter needs and used to write for itself: ``Retry-After``, the
meaning of an HTTP status for a retry, and single-flight refresh of rotating tokens.

Plugins call these instead of their own copies, so every vendor is treated by the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, TypeVar

from .errors import DeliveryError, PermanentError, RetryableError
from .locks import KeyedLocks

if TYPE_CHECKING:
    from .store import PluginStorage

T = TypeVar("T")

#: The longest wait a ``Retry-After`` is believed for: beyond it a vendor's value is capped.
RETRY_AFTER_CAP = 3600.0
#: Statuses worth another try: timeouts, "too early", rate limits, locks and server failures.
RETRYABLE_STATUSES = frozenset({408, 423, 425, 429})


def retry_after(value: str | None, *, now: datetime | None = None,
                cap: float = RETRY_AFTER_CAP) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    ``None`` when absent or unreadable (the caller uses its own back-off); never negative,
    never more than ``cap`` (a vendor's "come back next year" must not park a call for good).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), cap)


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP answer with this status may succeed when repeated later."""
    return status in RETRYABLE_STATUSES or status >= 500


def error_for_status(status: int, *, retry_after_header: str | None = None, code: str | None = None,
                     message: str = "") -> DeliveryError | None:
    """The delivery error an HTTP status means: ``None`` for 2xx/3xx, :class:`RetryableError`
    (honouring ``Retry-After``) for what may pass later, :class:`PermanentError` for the rest.

    Authentication failures (401/403) are a vendor's own business (refresh a token, pause the
    tenant): handle them before calling this, or they count as permanent.
    """
    if status < 400:
        return None
    code = code or f"HTTP_{status}"
    if is_retryable_status(status):
        return RetryableError(message or "the vendor is busy or failing", code=code,
                              retry_after=retry_after(retry_after_header))
    return PermanentError(message or "the vendor refused the request", code=code)


class SingleFlight:
    """One refresh of a rotating credential at a time, in this process and across processes.

    Rotating refresh tokens (Bitrix24, Webex) are spent by use: two refreshes from the same
    token and one of them loses the grant. ``run`` holds an in-process lock and the store's
    lease for ``name``, reads the current value again once both are held, and refreshes only
    if it is still stale: whoever waited uses the winner's result.
    """

    def __init__(self) -> None:
        self._locks = KeyedLocks()

    async def run(self, storage: PluginStorage, name: str, *, current: Callable[[], Awaitable[T]],
                  stale: Callable[[T], bool], refresh: Callable[[T], Awaitable[T]],
                  ttl: float = 30.0, wait: float = 35.0) -> T:
        """Return ``current()`` if it is not ``stale``, else ``refresh(current())``.

        Raises :class:`TimeoutError` when another process holds the lease beyond ``wait``.
        """
        async with self._locks.hold(f"{storage.tenant}\x1f{name}"):
            async with storage.lease(name, ttl=ttl, wait=wait):
                value = await current()
                if not stale(value):
                    return value
                return await refresh(value)


__all__ = ["RETRY_AFTER_CAP", "SingleFlight", "error_for_status", "is_retryable_status", "retry_after"]
