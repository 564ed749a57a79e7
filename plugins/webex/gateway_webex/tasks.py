"""Periodic jobs: refresh tokens ahead of expiry, keep the users' webhooks active, and write
unanswered calls as missed once their grace time is over."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from gateway import NotFound, PluginContext, RetryableError, UpstreamError

from . import accounts
from .accounts import REFRESH_AHEAD, NeedsLogin
from .source import close_missed_calls

log = logging.getLogger("gateway_webex")

REFRESH_INTERVAL = 1800.0
HEALTH_INTERVAL = 600.0
#: How often unanswered calls are checked for the end of their grace time (seconds).
MISSED_INTERVAL = 10.0
#: How often reconciliation looks for due connections (the first look after start runs all).
RECONCILE_TICK = 60.0
#: Back-off between re-activations of a webhook that keeps being disabled (seconds).
BACKOFF_BASE = 300.0
BACKOFF_CAP = 6 * 3600.0


async def refresh_tokens(ctx: PluginContext) -> int:
    """Refresh every token that expires within :data:`REFRESH_AHEAD`; return how many were due."""
    done = 0
    for conn in await accounts.all_connections(ctx):
        for person in await accounts.logged_in(ctx, conn):
            try:
                await accounts.refresh(ctx, conn, person, window=REFRESH_AHEAD)
                done += 1
            except NeedsLogin:
                continue  # already marked needs_login
            except (RetryableError, UpstreamError, TimeoutError) as exc:
                log.warning("webex token refresh failed", extra={"connection": conn.id,
                                                                "error": type(exc).__name__})
    return done


async def check_webhooks(ctx: PluginContext) -> int:
    """List each user's webhooks; re-activate ours that Webex disabled, with back-off."""
    reactivated = 0
    for conn in await accounts.all_connections(ctx):
        st = ctx.storage(conn.tenant)
        for person in await accounts.logged_in(ctx, conn):
            try:
                listing = await accounts.call_as(ctx, conn, person, "GET", "/webhooks", params={"max": "100"})
            except (NeedsLogin, RetryableError, UpstreamError, NotFound, TimeoutError) as exc:
                log.warning("could not list webex webhooks", extra={"connection": conn.id,
                                                                   "error": type(exc).__name__})
                continue
            ours = dict(await st.find("webhook", accounts.user_key(conn, person)))
            items = listing.get("items") if isinstance(listing, dict) else None
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict) or item.get("id") not in ours:
                    continue
                hook_id, rec = item["id"], ours[item["id"]]
                reactivated += await _check_one(ctx, conn, person, hook_id, rec, item)
    return reactivated


async def _check_one(ctx: PluginContext, conn: Any, person: str, hook_id: str, rec: dict[str, Any],
                     item: dict[str, Any]) -> int:
    st = ctx.storage(conn.tenant)
    now = time.time()
    if item.get("status") != "inactive":
        if rec.get("attempts"):
            await st.put("webhook", hook_id, {**rec, "attempts": 0, "next_try": 0},
                         index=accounts.user_key(conn, person))
        return 0
    if now < float(rec.get("next_try") or 0):
        return 0
    attempts = int(rec.get("attempts") or 0)
    ok = 0
    try:
        await accounts.call_as(ctx, conn, person, "PUT", f"/webhooks/{quote(hook_id, safe='')}", json={
            "name": rec.get("name") or item.get("name") or "callgate", "targetUrl": ctx.webhook_url(conn),
            "status": "active"})
        ctx.count("webhook_reactivated")
        log.info("re-activated a disabled webex webhook", extra={"connection": conn.id, "attempt": attempts + 1})
        await ctx.reconcile.request(conn)  # what happened while it was off never arrived
        ok = 1
    except (NeedsLogin, RetryableError, UpstreamError, NotFound) as exc:
        log.warning("could not re-activate a webex webhook", extra={"connection": conn.id,
                                                                    "error": type(exc).__name__})
    await st.put("webhook", hook_id, {**rec, "attempts": attempts + 1,
                                      "next_try": now + min(BACKOFF_BASE * 2 ** attempts, BACKOFF_CAP)},
                 index=accounts.user_key(conn, person))
    return ok


async def reconcile_due(ctx: PluginContext) -> int:
    """Compare the call histories of every connection that is due (:mod:`.reconcile`)."""
    return await ctx.reconcile.run_due(ctx.settings.reconcile_interval)


def register_all(register: Callable[..., None]) -> None:
    register(name="webex-token-refresh", interval=REFRESH_INTERVAL, func=refresh_tokens)
    register(name="webex-webhook-health", interval=HEALTH_INTERVAL, func=check_webhooks)
    register(name="webex-missed-calls", interval=MISSED_INTERVAL, func=close_missed_calls)
    register(name="webex-reconcile", interval=RECONCILE_TICK, func=reconcile_due)
