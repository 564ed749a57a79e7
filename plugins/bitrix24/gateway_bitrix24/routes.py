"""HTTP handlers: Bitrix24's event endpoint, the UI install page, and the admin routes.

Status policy as the core's webhooks: 200 accepted (also duplicates and ignored events), 400
unparseable, 401 bad application token (nothing changes), 403 portal not allowed, 413, 415.
No response echoes the input.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from gateway import (
    CONTEXT,
    BadRequest,
    NotFound,
    PluginContext,
    json_response,
    read_json,
)

from . import clicktocall, lifecycle
from .parse import (
    CALL_START,
    AppEvent,
    CALLBACK_START,
    INSTALL,
    UNINSTALL,
    UPDATE,
    is_fresh,
    parse_callback,
    parse_click_to_call,
    parse_event,
    parse_ui_install,
)
from .records import get_settings, put_settings
from .settings import TenantSettings
from .users import Override, list_overrides, replace_overrides

log = logging.getLogger("gateway_bitrix24.routes")

FORM = "application/x-www-form-urlencoded"

INSTALL_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>callgate</title>
<script src="//api.bitrix24.com/api/v1/"></script></head>
<body><p>Telephony gateway installed.</p>
<script>BX24.init(function () { BX24.installFinish(); });</script></body></html>
"""


async def _form_body(request: web.Request) -> bytes:
    if request.content_type != FORM:
        raise web.HTTPUnsupportedMediaType(text='{"error": "send a form"}', content_type="application/json")
    limit = request[CONTEXT].max_body
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length,
                                            text='{"error": "body too large"}', content_type="application/json")
    # The whole body (the core reads it within its deadline and size limit): never
    # ``content.read(n)``, which returns only what arrived first and truncates split bodies.
    body = await request.read()
    if len(body) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body),
                                            text='{"error": "body too large"}', content_type="application/json")
    return body


async def _wait_briefly(ctx: PluginContext, task: asyncio.Task[None]) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=ctx.settings.originate_wait)
    except TimeoutError:
        log.info("click-to-call still running after the answer", extra={})


#: What an install is told while the operator has not configured the app's credentials.
UNCONFIGURED_RETRY_AFTER = 600


def _unconfigured(ctx: PluginContext) -> web.Response | None:
    """503 with ``Retry-After`` while the app credentials are unset: verifying an install needs
    them, and the fault is the operator's, not the sender's (a 4xx would blame the portal)."""
    settings = ctx.settings
    if settings.client_id and settings.client_secret:
        return None
    log.warning("Bitrix24 install refused: GATEWAY_BITRIX24_CLIENT_ID/CLIENT_SECRET are not set")
    ctx.count("install_unconfigured")
    response = json_response({"error": "the Bitrix24 app is not configured on this gateway"}, status=503)
    response.headers["Retry-After"] = str(UNCONFIGURED_RETRY_AFTER)
    return response


async def handle_event(request: web.Request) -> web.Response:
    ctx = request[CONTEXT]
    event = parse_event(await _form_body(request))
    if event.name in (INSTALL, UPDATE) and (refused := _unconfigured(ctx)) is not None:
        return refused
    if event.name == INSTALL:
        result = await lifecycle.on_install(ctx, event.auth)
        return json_response({"status": result})
    if event.name == UPDATE:
        await lifecycle.on_update(ctx, event.auth)
        return json_response({"status": "updated"})
    if event.name == UNINSTALL:
        await lifecycle.on_uninstall(ctx, event.auth)
        return json_response({"status": "removed"})
    await lifecycle.verify_event(ctx, event.auth)
    if event.name in (CALL_START, CALLBACK_START) and not is_fresh(event.ts, time.time()):
        ctx.count("stale_event")
        raise BadRequest("the event is missing its ts or is older than an hour")
    try:
        return await _telephony_event(ctx, event)
    except TimeoutError:  # the dedup lease is held elsewhere: Bitrix24 does not redeliver anyway
        return json_response({"error": "busy"}, status=503)


async def _telephony_event(ctx: PluginContext, event: AppEvent) -> web.Response:
    tenant = event.auth.member_id
    if event.name == CALL_START:
        c2c = parse_click_to_call(event.data)
        if not await clicktocall.claim_click_to_call(ctx, tenant, c2c):
            return json_response({"status": "duplicate"})
        task = ctx.run_detached("click-to-call", lambda: clicktocall.originate_for(
            ctx, tenant, c2c.call_id, c2c.user_id, c2c.number))
        await _wait_briefly(ctx, task)
        return json_response({"status": "accepted"})
    if event.name == CALLBACK_START:
        cb = parse_callback(event.data)
        key = clicktocall.callback_key(event, cb)
        if not await clicktocall.claim_callback(ctx, tenant, key, cb.number):
            return json_response({"status": "duplicate"})
        task = ctx.run_detached("callback", lambda: clicktocall.run_callback(ctx, tenant, key, cb))
        await _wait_briefly(ctx, task)
        return json_response({"status": "accepted"})
    ctx.count("ignored_notification")
    return json_response({"status": "ignored"})


async def handle_ui_install(request: web.Request) -> web.Response:
    """``POST /apps/bitrix24/install``: the install page of an app with a UI."""
    ctx = request[CONTEXT]
    ui = parse_ui_install(await _form_body(request))
    if (refused := _unconfigured(ctx)) is not None:
        return refused
    await lifecycle.on_ui_install(ctx, ui)
    return web.Response(text=INSTALL_PAGE, content_type="text/html")


# --- admin -------------------------------------------------------------------------------


async def _admin_tenant(request: web.Request) -> str:
    """The ``{tenant}`` of an admin route (a token scoped to another tenant was refused with
    403 before the handler), if the app is installed there."""
    tenant = request.match_info["tenant"]
    if await lifecycle.stored_portal(request[CONTEXT], tenant) is None:
        raise NotFound("unknown Bitrix24 tenant")
    return tenant


async def get_tenant(request: web.Request) -> web.Response:
    ctx = request[CONTEXT]
    tenant = await _admin_tenant(request)
    portal = await lifecycle.stored_portal(ctx, tenant)
    assert portal is not None
    return json_response({"tenant": tenant, "domain": portal.domain,
                          "application_token_known": bool(portal.application_token)})


async def get_user_map(request: web.Request) -> web.Response:
    ctx = request[CONTEXT]
    tenant = await _admin_tenant(request)
    entries = await list_overrides(ctx.storage(tenant))
    return json_response({"entries": [e.to_dict() for e in entries]})


async def put_user_map(request: web.Request) -> web.Response:
    """Replace the tenant's explicit telephony user → Bitrix24 user map."""
    ctx = request[CONTEXT]
    tenant = await _admin_tenant(request)
    body = await read_json(request)
    raw = body.get("entries")
    if not isinstance(raw, list) or len(raw) > 5000:
        raise BadRequest("entries must be a list")
    entries = [Override.from_dict(item) for item in raw]
    await replace_overrides(ctx.storage(tenant), entries)
    return json_response({"entries": [e.to_dict() for e in entries]})


async def get_tenant_settings(request: web.Request) -> web.Response:
    ctx = request[CONTEXT]
    tenant = await _admin_tenant(request)
    return json_response((await get_settings(ctx.storage(tenant))).to_dict())


async def put_tenant_settings(request: web.Request) -> web.Response:
    ctx = request[CONTEXT]
    tenant = await _admin_tenant(request)
    settings = TenantSettings.from_dict(await read_json(request))
    await put_settings(ctx.storage(tenant), settings)
    return json_response(settings.to_dict())


def register_all(register: Any) -> None:
    register(method="POST", path="/events", handler=handle_event, area="hooks")
    register(method="POST", path="/install", handler=handle_ui_install, area="apps")
    t = "/tenants/{tenant}"
    register(method="GET", path=t, handler=get_tenant, area="admin")
    register(method="GET", path=f"{t}/user-map", handler=get_user_map, area="admin")
    register(method="PUT", path=f"{t}/user-map", handler=put_user_map, area="admin")
    register(method="GET", path=f"{t}/settings", handler=get_tenant_settings, area="admin")
    register(method="PUT", path=f"{t}/settings", handler=put_tenant_settings, area="admin")
