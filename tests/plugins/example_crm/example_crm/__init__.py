"""A complete third-party CRM sink: posts each call event as JSON to the tenant's CRM URL.

It imports nothing but the public ``gateway`` API and is found through the ``gateway.plugins``
entry point, like any stranger's plugin. The plugin guide walks through it.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

import gateway
from gateway import Delivery, PermanentError, RateLimit, RetryableError, Sink


class ExampleCRM(Sink):
    name = "example_crm"
    rate_limit = RateLimit(rate=20, burst=10)

    async def deliver(self, gw: gateway.Gateway, delivery: Delivery) -> None:
        url = delivery.binding.settings.get("url")
        if not isinstance(url, str):
            raise PermanentError("the tenant's example_crm binding has no url")
        event = delivery.event
        body = {"call": event.call_id, "state": event.state.value, "direction": event.direction.value,
                "number": event.remote_number, "outcome": event.outcome.value if event.outcome else None,
                # idempotency key: the CRM ignores a repeated (call, state)
                "key": f"{event.call_id}:{event.state.value}"}
        try:
            async with gw.http.post(url, json=body) as resp:
                if resp.status == 429 or resp.status >= 500:
                    retry_after = resp.headers.get("Retry-After")
                    raise RetryableError("CRM is busy", code=f"HTTP_{resp.status}",
                                         retry_after=float(retry_after) if retry_after else None)
                if resp.status >= 400:
                    raise PermanentError("CRM refused the event", code=f"HTTP_{resp.status}")
        except aiohttp.ClientError as exc:
            raise RetryableError("CRM unreachable", code="CONNECTION") from exc


@gateway.hookimpl
def register_sinks(register: Callable[[Sink], None]) -> None:
    register(ExampleCRM())
