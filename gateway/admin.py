"""``/admin/v1``: the operator's and the controllers' API. Bearer tokens, JSON, no surprises.

A token may be scoped to one tenant (``tenant:TOKEN`` in ``GATEWAY_ADMIN_TOKEN``): it then
sees and changes only that tenant. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .appkeys import GATEWAY
from .errors import BadRequest, Forbidden, GatewayError, NotFound, Unauthorized
from .http import error_response, json_response, read_json
from .models import Connection

log = logging.getLogger("gateway.admin")

ADMIN_SCOPE: web.RequestKey[str | None] = web.RequestKey("admin_scope", object)  # type: ignore[arg-type]
_TENANT_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _token_scope(request: web.Request) -> str | None:
    """Check the bearer token; return the tenant it is scoped to (None: operator)."""
    gw = request.app[GATEWAY]
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented or not gw.config.admin_tokens:
        raise Unauthorized("a valid admin bearer token is required")
    match: str | None = None
    found = False
    for token, tenant in gw.config.admin_tokens.items():
        if hmac.compare_digest(token.encode(), presented.strip().encode()):
            found, match = True, tenant
    if not found:
        raise Unauthorized("a valid admin bearer token is required")
    return match


@web.middleware
async def admin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/admin/"):
        return await handler(request)
    try:
        scope = _token_scope(request)
        request[ADMIN_SCOPE] = scope
        tenant = request.match_info.get("tenant")
        if tenant is not None and scope is not None and tenant != scope:
            raise Forbidden("this token is scoped to another tenant")
        return await handler(request)
    except GatewayError as exc:
        if exc.status >= 500:
            log.error("admin request failed", extra={"error": type(exc).__name__})
        return error_response(exc)


def _operator_only(request: web.Request) -> None:
    if request[ADMIN_SCOPE] is not None:
        raise Forbidden("this needs an operator token")


def _tenant_arg(request: web.Request) -> str:
    tenant = request.match_info["tenant"]
    if not _TENANT_ID.match(tenant):
        raise NotFound("unknown tenant")
    return tenant


def _connection_json(gw: Any, conn: Connection) -> dict[str, Any]:
    return {"id": conn.id, "tenant": conn.tenant, "plugin": conn.plugin, "status": conn.status,
            "status_reason": conn.status_reason, "webhook_url": gw.webhook_url(conn),
            "created_at": conn.created_at.isoformat() if conn.created_at else None}


async def list_tenants(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    scope = request[ADMIN_SCOPE]
    tenants = [t for t in await gw.store.list_tenants() if scope is None or t.id == scope]
    return json_response({"tenants": [
        {"id": t.id, "status": t.status, "status_reason": t.status_reason,
         "created_at": t.created_at.isoformat()} for t in tenants]})


async def create_tenant(request: web.Request) -> web.Response:
    _operator_only(request)
    data = await read_json(request)
    tenant = data.get("id")
    if not isinstance(tenant, str) or not _TENANT_ID.match(tenant):
        raise BadRequest("id must be 1-128 characters of letters, digits, '.', '_' or '-'")
    created = await request.app[GATEWAY].store.create_tenant(tenant)
    return json_response({"id": created.id, "status": created.status}, status=201)


async def get_tenant(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    tenant = await gw.store.get_tenant(_tenant_arg(request))
    if tenant is None:
        raise NotFound("unknown tenant")
    conns = await gw.connections(tenant.id)
    sinks = await gw.store.sink_bindings(tenant.id)
    return json_response({"id": tenant.id, "status": tenant.status, "status_reason": tenant.status_reason,
                          "connections": [_connection_json(gw, c) for c in conns],
                          "sinks": [b.plugin for b in sinks]})


async def delete_tenant(request: web.Request) -> web.Response:
    _operator_only(request)
    counts = await request.app[GATEWAY].remove_tenant(_tenant_arg(request))
    return json_response({"removed": True, "deleted": counts})


async def list_connections(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    tenant = _tenant_arg(request)
    if await gw.store.get_tenant(tenant) is None:
        raise NotFound("unknown tenant")
    return json_response({"connections": [_connection_json(gw, c) for c in await gw.connections(tenant)]})


async def create_connection(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    tenant = _tenant_arg(request)
    data = await read_json(request)
    plugin = data.get("plugin")
    settings = data.get("settings", {})
    if not isinstance(plugin, str) or not isinstance(settings, dict):
        raise BadRequest("send {\"plugin\": name, \"settings\": {...}}")
    conn = await gw.connect(tenant, plugin, settings)
    return json_response(_connection_json(gw, conn), status=201)


async def _tenant_connection(request: web.Request) -> Connection:
    gw = request.app[GATEWAY]
    conn = await gw.store.get_connection(request.match_info["connection_id"][:64])
    if conn is None or conn.tenant != _tenant_arg(request):
        raise NotFound("unknown connection")
    return conn


async def get_connection(request: web.Request) -> web.Response:
    return json_response(_connection_json(request.app[GATEWAY], await _tenant_connection(request)))


async def delete_connection(request: web.Request) -> web.Response:
    conn = await _tenant_connection(request)
    await request.app[GATEWAY].disconnect(conn.id)
    return json_response({"removed": True})


async def list_users(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    conn = await _tenant_connection(request)
    users = await gw.list_users(conn)
    return json_response({"users": [
        {"user_id": u.user_id, "name": u.name, "email": u.email, "extension": u.extension,
         "status": u.status} for u in users]})


async def put_sink(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    tenant = _tenant_arg(request)
    if await gw.store.get_tenant(tenant) is None:
        raise NotFound("unknown tenant")
    data = await read_json(request)
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise BadRequest("settings must be an object")
    binding = await gw.bind_sink(tenant, request.match_info["plugin"], settings)
    return json_response({"tenant": binding.tenant, "plugin": binding.plugin})


async def delete_sink(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    await gw.store.unbind_sink(_tenant_arg(request), request.match_info["plugin"])
    return json_response({"removed": True})


async def list_dead_letters(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    scope = request[ADMIN_SCOPE]
    tenant = scope if scope is not None else request.query.get("tenant")
    letters = await gw.store.dead_letters(tenant)
    return json_response({"dead_letters": [
        {"id": d.id, "tenant": d.tenant, "sink": d.sink, "attempts": d.attempts, "reason": d.reason,
         "received_at": d.received_at, "updated_at": d.updated_at} for d in letters]})


async def replay_dead_letter(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    try:
        delivery_id = int(request.match_info["delivery_id"])
    except ValueError:
        raise NotFound("no such dead letter") from None
    pending = await gw.store.replay_dead_letter(delivery_id, request[ADMIN_SCOPE])
    gw.dispatcher.submit([pending])
    return json_response({"replayed": delivery_id})


def setup(app: web.Application) -> None:
    r = app.router
    p = "/admin/v1"
    r.add_get(f"{p}/tenants", list_tenants)
    r.add_post(f"{p}/tenants", create_tenant)
    r.add_get(f"{p}/tenants/{{tenant}}", get_tenant)
    r.add_delete(f"{p}/tenants/{{tenant}}", delete_tenant)
    r.add_get(f"{p}/tenants/{{tenant}}/connections", list_connections)
    r.add_post(f"{p}/tenants/{{tenant}}/connections", create_connection)
    r.add_get(f"{p}/tenants/{{tenant}}/connections/{{connection_id}}", get_connection)
    r.add_delete(f"{p}/tenants/{{tenant}}/connections/{{connection_id}}", delete_connection)
    r.add_get(f"{p}/tenants/{{tenant}}/connections/{{connection_id}}/users", list_users)
    r.add_put(f"{p}/tenants/{{tenant}}/sinks/{{plugin}}", put_sink)
    r.add_delete(f"{p}/tenants/{{tenant}}/sinks/{{plugin}}", delete_sink)
    r.add_get(f"{p}/deadletters", list_dead_letters)
    r.add_post(f"{p}/deadletters/{{delivery_id}}/replay", replay_dead_letter)
