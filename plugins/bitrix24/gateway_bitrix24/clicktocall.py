"""Click-to-call (``ONEXTERNALCALLSTART``) and callback forms (``ONEXTERNALCALLBACKSTART``).

Bitrix24 registered a click-to-call already: we never register it again. We find the CRM
user's telephony user (override map, else ``user.get`` by ID → e-mail / ``UF_PHONE_INNER``)
and ask the core to start the call as the CRM's ``CALL_ID`` (``ctx.clicktocall.start``); the
core recognises the call's events later (``ctx.clicktocall.find``), and the sink then uses
that ``CALL_ID`` instead of registering. Our own ``c2c`` record remembers the CRM user and
the state for the sweep. If originating fails, the ``CALL_ID`` is finished (503) so the card
closes. A duplicate event (same ``CALL_ID``) originates once.

The work runs detached from the request handler (``ctx.run_detached``): the handler waits
for it only a few seconds (``GATEWAY_BITRIX24_ORIGINATE_WAIT``, default 5) and then
acknowledges; a cancelled request (Bitrix24 hung up) does not cancel it, and the gateway gives
it a grace period at shutdown. Work lost in a crash leaves the card open until the sweep.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from datetime import datetime, timezone
from typing import Any

from gateway import NotFound, PluginContext, PluginStorage

from . import lines
from .api import Bitrix24Client
from .mapping import TYPE_CALLBACK, is_call_unknown
from .parse import AppEvent, CallbackRequest, ClickToCall
from .records import get_settings
from .responses import Bitrix24Error
from .sink import C2C, phones_of
from .users import responsible_user, telephony_identity

log = logging.getLogger("gateway_bitrix24.clicktocall")

CALLBACKS = "callback"
FAILED_REASON = "The telephone system could not place the call"


async def _claim(ctx: PluginContext, tenant: str, kind: str, key: str, value: dict[str, Any],
                 number: str) -> bool:
    """Store ``(kind, key)`` unless present; single-flight also across processes."""
    st = ctx.storage(tenant)
    async with st.lease(f"{kind}:{key}", ttl=30.0, wait=10.0):
        if await st.get(kind, key) is not None:
            return False
        await st.put(kind, key, value, phones=phones_of(number), call_record=True)
        return True


async def put_c2c(st: PluginStorage, crm_call_id: str, user_id: int, state: str, number: str) -> None:
    """The state of a CRM call we dial: ``dialing`` → ``dialed`` → ``adopted`` (events came), or
    ``failed`` (card not closed yet) → ``closed``. ``at`` is the last change (for the sweep)."""
    await st.put(C2C, crm_call_id, {"user_id": user_id, "state": state, "at": time.time()},
                 phones=phones_of(number), call_record=True)


async def claim_click_to_call(ctx: PluginContext, tenant: str, c2c: ClickToCall) -> bool:
    """Claim the CRM call (a repeated event is refused); the record keeps the line the user
    chose, which :func:`originate_for` reads."""
    return await _claim(ctx, tenant, C2C, c2c.call_id,
                        {"user_id": c2c.user_id, "state": "dialing", "at": time.time(),
                         "line": c2c.line_number}, c2c.number)


async def originate_for(ctx: PluginContext, tenant: str, crm_call_id: str, user_id: int, number: str,
                        line: str | None = None) -> None:
    """Dial for CRM user ``user_id`` on the chosen line (``line``, else the one the claimed
    ``c2c`` record names); on any failure finish ``crm_call_id`` so the card closes."""
    client = Bitrix24Client(ctx, tenant)
    st = client.st
    try:
        email, extension = await telephony_identity(client, user_id)
        if line is None:
            claimed = await st.get(C2C, crm_call_id)
            line = str(claimed.get("line") or "") if isinstance(claimed, dict) else ""
        await ctx.clicktocall.start(tenant, crm_call_id, number=number, email=email, extension=extension,
                                    line=await lines.chosen(client, line) if line else None)
        current = await st.get(C2C, crm_call_id)
        if not isinstance(current, dict) or current.get("state") == "dialing":  # not adopted meanwhile
            await put_c2c(st, crm_call_id, user_id, "dialed", number)
        ctx.count("click_to_call", "ok")
        log.info("click-to-call originated", extra={"tenant": tenant})
    except asyncio.CancelledError:
        raise
    except NotFound:
        return  # the tenant was removed meanwhile
    except Exception as exc:
        log.warning("click-to-call failed", extra={"tenant": tenant, "error": type(exc).__name__,
                                                   "code": getattr(exc, "code", None)})
        ctx.count("click_to_call_failed")
        await _close_card(client, crm_call_id, user_id, number)


def failed_finish_params(crm_call_id: str, user_id: int) -> dict[str, Any]:
    """``finish`` for a CRM call we could not place: the card closes as failed (503)."""
    return {"CALL_ID": crm_call_id, "USER_ID": user_id, "DURATION": 0, "STATUS_CODE": "503",
            "FAILED_REASON": FAILED_REASON}


async def _close_card(client: Bitrix24Client, crm_call_id: str, user_id: int, number: str) -> None:
    """Finish the CRM call as failed; if that fails too, the sweep closes it later."""
    try:
        await put_c2c(client.st, crm_call_id, user_id, "failed", number)
        try:
            await client.call("telephony.externalCall.finish", failed_finish_params(crm_call_id, user_id))
        except Bitrix24Error as exc:
            if not is_call_unknown(exc.description):
                raise
        await put_c2c(client.st, crm_call_id, user_id, "closed", number)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("could not close the click-to-call card", extra={
            "tenant": client.tenant, "error": type(exc).__name__})


def callback_key(event: AppEvent, cb: CallbackRequest) -> str:
    raw = f"{event.ts}|{event.handler_id}|{cb.number}|{cb.crm_entity_type}|{cb.crm_entity_id}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


async def claim_callback(ctx: PluginContext, tenant: str, key: str, number: str) -> bool:
    return await _claim(ctx, tenant, CALLBACKS, key, {"at": int(time.time())}, number)


async def _assigned_user(client: Bitrix24Client, cb: CallbackRequest) -> int | None:
    """The user the CRM entity of a callback form is assigned to, if Bitrix24 names one."""
    found = await client.call("telephony.externalCall.searchCrmEntities", {"PHONE_NUMBER": cb.number})
    for item in found if isinstance(found, list) else []:
        if not isinstance(item, dict):
            continue
        if cb.crm_entity_id and str(item.get("CRM_ENTITY_ID")) != str(cb.crm_entity_id):
            continue
        assigned = str(item.get("ASSIGNED_BY_ID") or (item.get("ASSIGNED_BY") or {}).get("ID") or "")
        if assigned.isdigit() and int(assigned) > 0:
            return int(assigned)
    return None


async def run_callback(ctx: PluginContext, tenant: str, key: str, cb: CallbackRequest) -> None:
    """Register the callback (TYPE 4) for the responsible user, then originate it."""
    client = Bitrix24Client(ctx, tenant)
    try:
        settings = await get_settings(client.st)
        user_id = await _assigned_user(client, cb) or await responsible_user(client, settings)
        if user_id is None:
            log.info("callback without a CRM user; not placed", extra={"tenant": tenant})
            ctx.count("callback_no_user")
            return
        params: dict[str, Any] = {
            "USER_ID": user_id, "PHONE_NUMBER": cb.number, "TYPE": TYPE_CALLBACK,
            "CALL_START_DATE": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "CRM_CREATE": 1 if settings.crm_create else 0, "SHOW": 1,
            "EXTERNAL_CALL_ID": f"callback-{key[:24]}"}
        if cb.line_number:
            params["LINE_NUMBER"] = cb.line_number
        if cb.crm_entity_type and cb.crm_entity_id:
            params["CRM_ENTITY_TYPE"] = cb.crm_entity_type
            params["CRM_ENTITY_ID"] = cb.crm_entity_id
        result = await client.call("telephony.externalCall.register", params)
        crm_call_id = result.get("CALL_ID") if isinstance(result, dict) else None
        if not isinstance(crm_call_id, str) or not crm_call_id:
            raise ValueError("register answered without a CALL_ID")
        await put_c2c(client.st, crm_call_id, user_id, "dialing", cb.number)
    except asyncio.CancelledError:
        raise
    except NotFound:
        return
    except Exception as exc:
        log.warning("callback could not be registered", extra={"tenant": tenant, "error": type(exc).__name__})
        ctx.count("callback_failed")
        return
    await originate_for(ctx, tenant, crm_call_id, user_id, cb.number, cb.line_number)
