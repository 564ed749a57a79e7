"""Periodic sweep: close click-to-call cards that a crash (or a silent telephone system) left open.

Bitrix24 never redelivers an event, and a click-to-call task lost in a crash leaves its CRM
call registered with the card up. A ``c2c`` record still ``dialing``/``dialed`` (no event of
the telephone system adopted it) or ``failed`` (the closing ``finish`` did not go through)
whose last change is older than :data:`STALE_AFTER` is finished with ``STATUS_CODE`` 503 and
deleted.
One process sweeps a tenant at a time (store lease); paused tenants are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from gateway import NotFound, PluginContext, RetryableError

from .api import Bitrix24Client
from .clicktocall import failed_finish_params
from .mapping import is_call_unknown
from .responses import AuthRevoked, Bitrix24Error
from .sink import C2C

log = logging.getLogger("gateway_bitrix24.sweep")

#: A click-to-call not adopted by then never will be: the core expects its call's first event
#: within five minutes of the request (``gateway.clicktocall.ADOPT_WINDOW``).
STALE_AFTER = 360
SWEEP_INTERVAL = 60.0
OPEN_STATES = frozenset({"dialing", "dialed", "failed"})


def _stale(value: Any, now: float) -> bool:
    return isinstance(value, dict) and now - float(value.get("at") or 0) > STALE_AFTER


async def sweep_lost_click_to_calls(ctx: PluginContext, now: float | None = None) -> int:
    """The registered task: sweep every active tenant; the number of cards closed."""
    now = time.time() if now is None else now
    closed = 0
    for tenant in await ctx.tenants.list():
        if tenant.status != "active":
            continue
        try:
            closed += await sweep_tenant(ctx, tenant.id, now)
        except asyncio.CancelledError:
            raise
        except NotFound:
            continue  # removed meanwhile
        except TimeoutError:
            continue  # another process sweeps this tenant
        except Exception as exc:
            log.warning("click-to-call sweep failed", extra={"tenant": tenant.id, "error": type(exc).__name__})
    return closed


async def sweep_tenant(ctx: PluginContext, tenant: str, now: float) -> int:
    st = ctx.storage(tenant)
    stale = [(key, value) for key, value in await st.all(C2C)
             if _stale(value, now) and value.get("state") in OPEN_STATES]
    if not stale:
        return 0
    closed = 0
    async with st.lease("c2c-sweep", ttl=120.0, wait=0.0):
        client = Bitrix24Client(ctx, tenant)
        for crm_call_id, _ in stale:
            current = await st.get(C2C, crm_call_id)  # adopted since we listed it?
            if not _stale(current, now) or current.get("state") not in OPEN_STATES:
                continue
            try:
                await client.call("telephony.externalCall.finish",
                                  failed_finish_params(crm_call_id, int(current["user_id"])))
                outcome = "ok"
            except Bitrix24Error as exc:
                # unknown: closed in Bitrix24 already; other refusals will not change on retry
                outcome = "unknown" if is_call_unknown(exc.description) else "refused"
                log.info("sweep: finish refused", extra={"tenant": tenant, "code": exc.code})
            except (RetryableError, AuthRevoked) as exc:
                log.info("sweep: Bitrix24 unavailable; next round", extra={
                    "tenant": tenant, "code": getattr(exc, "code", None)})
                break
            await st.delete(C2C, crm_call_id)
            ctx.count("click_to_call_swept", outcome)
            closed += 1
    if closed:
        log.info("sweep closed lost click-to-calls", extra={"tenant": tenant, "count": closed})
    return closed
