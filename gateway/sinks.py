"""What a CRM sink is: the object a plugin registers through ``register_sinks``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from .events import CallEvent
from .models import SinkBinding

if TYPE_CHECKING:
    from .context import PluginContext


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket per destination: ``rate`` requests per second, at most ``burst`` at once."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be positive and burst at least 1")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event on its way to one sink for one tenant."""

    id: int
    event: CallEvent
    binding: SinkBinding
    #: 1 on the first try.
    attempt: int
    received_at: datetime


class Sink:
    """A CRM. Subclass it and register an instance in ``register_sinks``.

    The core calls :meth:`deliver` at least once per (event, sink) and in per-call order;
    make every CRM call idempotent (keyed by the event's ``call_id``), so a retry after a crash
    has no second effect.
    """

    #: The plugin's name; tenants bind to it (``POST /admin/v1/tenants/{t}/sinks``).
    name: ClassVar[str] = ""
    #: Requests per destination that the CRM tolerates; the queue waits before exceeding it.
    rate_limit: ClassVar[RateLimit | None] = None

    def destination(self, binding: SinkBinding) -> str:
        """The key the rate limit applies to (one portal); by default the tenant."""
        return binding.tenant

    async def deliver(self, ctx: PluginContext, delivery: Delivery) -> None:
        """Apply one event to the CRM. Return normally when the CRM acknowledged it.

        Raise :class:`~gateway.errors.RetryableError` (with ``retry_after`` where the CRM said
        so) for anything worth a retry, :class:`~gateway.errors.TenantPaused` when a person
        must act first, and :class:`~gateway.errors.PermanentError` when it will never work.
        Any other exception counts as retryable and is logged by type only.
        """
        raise NotImplementedError


__all__ = ["Delivery", "RateLimit", "Sink"]
