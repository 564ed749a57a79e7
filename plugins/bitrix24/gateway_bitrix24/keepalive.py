"""Keep a quiet portal's tokens alive: refresh them on a schedule, not only when a call needs them.

A Bitrix24 refresh token dies unused (current docs: 180 days; legacy docs: 28 days, which the
reference says to assume), and a portal without calls never refreshes on demand, so it would
need a reinstall. The task refreshes every tenant's pair that is :data:`MAX_AGE` old (a week:
four chances inside 28 days, and far from the per-call refresh storm the docs warn of). It uses
the same single-flight refresh as a call (:class:`gateway.SingleFlight` in :mod:`.api`), so it
never spends a rotating refresh token twice. A refused refresh pauses the tenant, as a call's
would; a busy OAuth server is tried again at the next run.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway import NotFound, PluginContext, RetryableError

from .api import Bitrix24Client
from .records import get_tokens
from .responses import AuthRevoked

log = logging.getLogger("gateway_bitrix24.keepalive")

#: Refresh a pair once it is this old (seconds).
MAX_AGE = 7 * 86400
#: How often the task looks (seconds): a failed refresh is retried this soon.
INTERVAL = 6 * 3600.0


async def refresh_idle_tokens(ctx: PluginContext, now: float | None = None) -> int:
    """The registered task: refresh every active tenant's tokens older than :data:`MAX_AGE`.
    Returns how many were refreshed."""
    now = time.time() if now is None else now
    refreshed = 0
    for tenant in await ctx.tenants.list():
        if tenant.status != "active":
            continue
        try:
            tokens = await get_tokens(ctx.storage(tenant.id))
            if tokens is None or now - tokens.refreshed_at < MAX_AGE:
                continue
            client = Bitrix24Client(ctx, tenant.id)
            try:
                await client.refresh(stale=tokens.access_token)
            except AuthRevoked as exc:
                await client.pause(exc.reason)
                continue
            refreshed += 1
        except asyncio.CancelledError:
            raise
        except NotFound:
            continue  # removed meanwhile
        except (RetryableError, TimeoutError) as exc:
            log.info("scheduled token refresh failed; next run tries again",
                     extra={"tenant": tenant.id, "error": type(exc).__name__})
        except Exception as exc:
            log.warning("scheduled token refresh failed", extra={"tenant": tenant.id, "error": type(exc).__name__})
    return refreshed
