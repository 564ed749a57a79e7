"""A complete third-party CRM sink: posts each call event as JSON to the tenant's CRM URL.

It imports nothing but the public ``gateway`` API and is found through the ``gateway.plugins``
entry point, like any stranger's plugin. The plugin guide (docs/plugins.md) walks through it
line by line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

import gateway
from gateway import Delivery, PermanentError, PluginContext, RateLimit, RetryableError, Sink


@dataclass(frozen=True)
class Settings:
    """The operator's settings: ``GATEWAY_EXAMPLE_CRM_TIMEOUT`` or ``[plugins.example_crm]``."""

    timeout: float = gateway.setting(10.0, help="seconds one request to the CRM may take")

    def __post_init__(self) -> None:
        if not 0 < self.timeout <= 60:
            raise ValueError("setting timeout must be between 0 and 60 seconds")


class ExampleCRM(Sink):
    name = "example_crm"
    rate_limit = RateLimit(rate=20, burst=10)      # per tenant, enforced by the queue

    async def deliver(self, ctx: PluginContext, delivery: Delivery) -> None:
        url = delivery.binding.settings.get("url")  # the tenant's settings, decrypted
        if not isinstance(url, str):
            raise PermanentError("the tenant's example_crm binding has no url")
        event = delivery.event
        body = {"call": event.call_id, "state": event.state.value,
                "direction": event.direction.value, "number": event.remote_number,
                "outcome": event.outcome.value if event.outcome else None,
                "key": f"{event.call_id}:{event.state.value}"}   # idempotency key
        timeout = aiohttp.ClientTimeout(total=ctx.settings.timeout)
        try:
            async with ctx.http.post(url, json=body, timeout=timeout) as resp:
                error = gateway.error_for_status(resp.status,
                                                 retry_after_header=resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableError("CRM unreachable", code="CONNECTION") from exc
        if error is not None:
            raise error


@gateway.hookimpl
def register_sinks(register: Callable[[Sink], None]) -> None:
    register(ExampleCRM())


@gateway.hookimpl
def declare_settings() -> type[Settings]:
    return Settings
