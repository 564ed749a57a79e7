"""``/admin/v1``: the operator's and the controllers' API. Bearer tokens, JSON, no surprises.

A token may be scoped to one tenant (``tenant:TOKEN`` in ``GATEWAY_ADMIN_TOKEN``): it then
sees and changes only that tenant. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import metrics
from .appkeys import GATEWAY
from .errors import BadRequest, Forbidden, GatewayError, NotFound, Unauthorized
from .http import error_response, json_response, read_json
from .models import Connection
from .privacy import Subject, breach, rights

if TYPE_CHECKING:
    from .runtime import Gateway

log = logging.getLogger("gateway.admin")

ADMIN_SCOPE: web.RequestKey[str | None] = web.RequestKey("admin_scope", object)  # type: ignore[arg-type]
_TENANT_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _token_scope(request: web.Request) -> str | None:
    """Check the bearer token; return the tenant it is scoped to (None: operator)."""
    gw = request.app[GATEWAY]
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    presented = presented.strip()
    # a header with bytes outside ASCII (decoded with surrogates) cannot hold a token
    if scheme.lower() != "bearer" or not presented or not presented.isascii() or not gw.config.admin_tokens:
        raise Unauthorized("a valid admin bearer token is required")
    match: str | None = None
    found = False
    for token, tenant in gw.config.admin_tokens.items():
        if hmac.compare_digest(token.encode(), presented.encode()):
            found, match = True, tenant
    if not found:
        raise Unauthorized("a valid admin bearer token is required")
    return match


#: At most one ``admin.refused`` audit entry per this many seconds, holding the count.
REFUSED_AUDIT_INTERVAL = 60.0


class _Refusals:
    """Requests refused for want of a valid token: counted, audited as one entry per interval.

    Anyone can send them, so one permanent audit row each would let strangers fill the log.
    """

    def __init__(self) -> None:
        self.pending = 0
        self.written_at = -REFUSED_AUDIT_INTERVAL

    async def record(self, request: web.Request) -> None:
        metrics.ADMIN_REFUSED.inc()
        self.pending += 1
        now = time.monotonic()
        if now - self.written_at < REFUSED_AUDIT_INTERVAL:
            return
        count, self.pending, self.written_at = self.pending, 0, now
        try:
            await request.app[GATEWAY].audit.record("admin.refused", batch=True, count=count,
                                             interval=int(REFUSED_AUDIT_INTERVAL))
        except Exception as exc:
            log.error("could not audit refused admin requests", extra={"error": type(exc).__name__})


REFUSALS: web.AppKey[_Refusals] = web.AppKey("admin_refusals", _Refusals)


@web.middleware
async def admin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every admin request needs a bearer token. Authenticated requests are audited one by
    one; refused ones are counted (``gateway_admin_refused_total``) and audited in aggregate."""
    if not request.path.startswith("/admin/"):
        return await handler(request)
    status = 500
    try:
        scope = _token_scope(request)
    except Unauthorized as exc:  # unknown routes too: a stranger learns nothing about them
        await request.app[REFUSALS].record(request)
        return error_response(exc)
    try:
        request[ADMIN_SCOPE] = scope
        _known_query(request)
        tenant = request.match_info.get("tenant")
        if tenant is not None and scope is not None and tenant != scope:
            raise Forbidden("this token is scoped to another tenant")
        response = await handler(request)
        status = response.status
        return response
    except GatewayError as exc:
        if exc.status >= 500:
            log.error("admin request failed", extra={"error": type(exc).__name__})
        response = error_response(exc)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        await _audit_access(request, status, scope)


def _known_query(request: web.Request) -> None:
    """Refuse query parameters the route does not document: a misspelt ``limt`` would
    otherwise be ignored without a word."""
    if not request.query:
        return
    from .openapi import PREFIX, query_names
    if set(request.query) - query_names(request.method, route_pattern(request).removeprefix(PREFIX)):
        raise BadRequest("unknown query parameter")


def route_pattern(request: web.Request) -> str:
    """The route's pattern (``/admin/v1/tenants/{tenant}``), never the raw path with its ids."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"


async def _audit_access(request: web.Request, status: int, scope: str | None) -> None:
    """Written before the answer leaves (one commit): only token holders get here, and an
    entry queued in memory would be lost if the process were killed."""
    gw = request.app[GATEWAY]
    kind = "operator" if scope is None else "tenant"
    try:
        await gw.audit.record("admin.access", tenant=scope, method=request.method,
                              route=route_pattern(request), status=status, scope=kind)
    except Exception as exc:  # auditing must not turn an answered request into a failure
        log.error("could not audit an admin request", extra={"error": type(exc).__name__})


def require_scope(request: web.Request, tenant: str) -> None:
    """The admin token may act on a resource of ``tenant`` found by its id (a connection, a
    user): operator tokens may, a tenant-scoped token only for its own tenant; otherwise the
    resource does not exist for it (404, which reveals nothing). Paths that name the tenant
    (``/tenants/{tenant}/...``) are checked before the handler runs (403)."""
    scope = request[ADMIN_SCOPE]
    if scope is not None and scope != tenant:
        raise NotFound("unknown resource")


def _operator_only(request: web.Request) -> None:
    if request[ADMIN_SCOPE] is not None:
        raise Forbidden("this needs an operator token")


def _tenant_arg(request: web.Request) -> str:
    tenant = request.match_info["tenant"]
    if not _TENANT_ID.match(tenant):
        raise NotFound("unknown tenant")
    return tenant


def _connection_json(gw: Gateway, conn: Connection) -> dict[str, Any]:
    return {"id": conn.id, "tenant": conn.tenant, "plugin": conn.plugin, "status": conn.status,
            "status_reason": conn.status_reason, "webhook_url": gw.webhook_url(conn),
            "created_at": conn.created_at.isoformat() if conn.created_at else None}


async def list_tenants(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    scope = request[ADMIN_SCOPE]
    tenants = [t for t in await gw.tenancy.list() if scope is None or t.id == scope]
    return json_response({"tenants": [
        {"id": t.id, "status": t.status, "status_reason": t.status_reason,
         "created_at": t.created_at.isoformat()} for t in tenants]})


async def create_tenant(request: web.Request) -> web.Response:
    _operator_only(request)
    data = await read_json(request)
    tenant = data.get("id")
    if not isinstance(tenant, str) or not _TENANT_ID.match(tenant):
        raise BadRequest("id must be 1-128 characters of letters, digits, '.', '_' or '-'")
    created = await request.app[GATEWAY].tenancy.create(tenant)
    return json_response({"id": created.id, "status": created.status}, status=201)


async def get_tenant(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    tenant = await gw.tenancy.require(_tenant_arg(request))
    conns = await gw.tenancy.connections(tenant.id)
    sinks = await gw.tenancy.bindings(tenant.id)
    return json_response({"id": tenant.id, "status": tenant.status, "status_reason": tenant.status_reason,
                          "connections": [_connection_json(gw, c) for c in conns],
                          "sinks": [b.plugin for b in sinks]})


async def delete_tenant(request: web.Request) -> web.Response:
    _operator_only(request)
    removed = await request.app[GATEWAY].tenancy.remove(_tenant_arg(request))
    return json_response({"removed": True, **removed})


async def list_connections(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    tenant = (await gw.tenancy.require(_tenant_arg(request))).id
    return json_response({"connections": [_connection_json(gw, c) for c in await gw.tenancy.connections(tenant)]})


async def create_connection(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    tenant = _tenant_arg(request)
    data = await read_json(request)
    plugin = data.get("plugin")
    settings = data.get("settings", {})
    if not isinstance(plugin, str) or not isinstance(settings, dict):
        raise BadRequest("send {\"plugin\": name, \"settings\": {...}}")
    conn = await gw.tenancy.connect(tenant, plugin, settings)
    return json_response(_connection_json(gw, conn), status=201)


async def _tenant_connection(request: web.Request) -> Connection:
    gw = request.app[GATEWAY]
    conn = await gw.tenancy.find_connection(request.match_info["connection_id"][:64])
    if conn is None or conn.tenant != _tenant_arg(request):
        raise NotFound("unknown connection")
    return conn


async def get_connection(request: web.Request) -> web.Response:
    """One connection, with its reconciliation (``null`` when its telephone system has no call list)."""
    gw = request.app[GATEWAY]
    conn = await _tenant_connection(request)
    found = await gw.reconciliation.status(conn)
    checked = None if found is None else {
        "last_success": found.last_success.isoformat() if found.last_success else None,
        "failing": found.failing, "failures": found.failures}
    return json_response({**_connection_json(gw, conn), "reconciliation": checked})


async def delete_connection(request: web.Request) -> web.Response:
    conn = await _tenant_connection(request)
    await request.app[GATEWAY].tenancy.disconnect(conn.id)
    return json_response({"removed": True})


async def list_users(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    conn = await _tenant_connection(request)
    users = await gw.directory.list(conn)
    return json_response({"users": [
        {"user_id": u.user_id, "name": u.name, "email": u.email, "extension": u.extension,
         "status": u.status} for u in users]})


async def put_sink(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    tenant = (await gw.tenancy.require(_tenant_arg(request))).id
    data = await read_json(request)
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise BadRequest("settings must be an object")
    binding = await gw.tenancy.bind(tenant, request.match_info["plugin"], settings)
    return json_response({"tenant": binding.tenant, "plugin": binding.plugin})


async def delete_sink(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    await gw.tenancy.unbind(_tenant_arg(request), request.match_info["plugin"])
    return json_response({"removed": True})


async def list_dead_letters(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    scope = request[ADMIN_SCOPE]
    tenant = scope if scope is not None else request.query.get("tenant")
    if tenant is not None and not _TENANT_ID.match(tenant):
        raise BadRequest("tenant is not a tenant id")
    letters = await gw.deadletters.list(tenant)
    return json_response({"dead_letters": [
        {"id": d.id, "tenant": d.tenant, "sink": d.sink, "attempts": d.attempts, "reason": d.reason,
         "received_at": d.received_at, "updated_at": d.updated_at} for d in letters]})


async def replay_dead_letter(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    try:
        delivery_id = int(request.match_info["delivery_id"])
    except ValueError:
        raise NotFound("no such dead letter") from None
    await gw.deadletters.replay(delivery_id, request[ADMIN_SCOPE])
    return json_response({"replayed": delivery_id})


def _subject(data: dict[str, Any]) -> Subject:
    phone, email = data.get("phone"), data.get("email")
    if not isinstance(phone, (str, type(None))) or not isinstance(email, (str, type(None))):
        raise BadRequest("phone and email must be strings")
    if phone is not None and len(phone) > 64:
        raise BadRequest("phone is not a phone number")
    return Subject.parse(phone=phone, email=email)


def subject_handler(operation: str) -> Handler:
    """``POST .../subjects/{operation}``: a data-subject request of the tenant's controller."""
    async def handle(request: web.Request) -> web.Response:
        tenant = _tenant_arg(request)
        data = await read_json(request)
        result = await rights.run(request.app[GATEWAY], operation, tenant, _subject(data),
                                  data.get("changes"))
        return json_response(result)
    handle.__doc__ = SUBJECT_OPERATIONS[operation]
    return handle


SUBJECT_OPERATIONS = {
    "export": "Everything the gateway and its plugins hold about the person (access, portability).",
    "erase": "Delete everything about the person: call events, user entries, plugin records.",
    "rectify": "Correct the name, e-mail or extension of the telephony user who is the person.",
    "restrict": "Stop forwarding events involving the person to the CRM until lifted or erased.",
    "object": "Record an objection; treated as a restriction until lifted or erased.",
    "unrestrict": "Lift a restriction or objection.",
}


MAX_AUDIT_PAGE = 10_000


def _int_query(request: web.Request, name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not minimum <= int(raw) <= maximum:
        raise BadRequest(f"{name} must be an integer from {minimum}")
    return int(raw)


async def list_audit(request: web.Request) -> web.Response:
    """Audit entries in order; a tenant-scoped token sees its own tenant's only."""
    gw = request.app[GATEWAY]
    scope = request[ADMIN_SCOPE]
    after = _int_query(request, "after", 0, minimum=0, maximum=2**63 - 1)
    limit = min(_int_query(request, "limit", 1000, minimum=1, maximum=2**63 - 1), MAX_AUDIT_PAGE)
    entries = await gw.audit.entries(after=after, limit=limit, tenant=scope)
    return json_response({"entries": [e.to_dict() for e in entries]})


async def purge_now(request: web.Request) -> web.Response:
    """Retention on demand, in this process: its batches share the writer with ingestion,
    where a second process (``gateway purge``) would contend for the database's write lock."""
    _operator_only(request)
    return json_response({"deleted": await request.app[GATEWAY].retention.purge_now()})


async def breach_report(request: web.Request) -> web.Response:
    """Counts of what was held in a window, per tenant (operator only)."""
    _operator_only(request)
    since = breach.parse_time(request.query.get("since", ""), "since")
    until = breach.parse_time(request.query.get("until", ""), "until")
    return json_response(await breach.report(request.app[GATEWAY], since, until))


async def openapi_document(request: web.Request) -> web.Response:
    from .openapi import document
    return json_response(document(request.app))


def setup(app: web.Application) -> None:
    app[REFUSALS] = _Refusals()
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
    for operation in SUBJECT_OPERATIONS:
        r.add_post(f"{p}/tenants/{{tenant}}/subjects/{operation}", subject_handler(operation))
    r.add_get(f"{p}/audit", list_audit)
    r.add_get(f"{p}/breach-report", breach_report)
    r.add_post(f"{p}/retention/purge", purge_now)
    r.add_get(f"{p}/openapi.json", openapi_document)
