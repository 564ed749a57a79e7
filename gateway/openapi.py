"""The OpenAPI 3.1 document of ``/admin/v1``, served at ``/admin/v1/openapi.json``.

The core's routes are described here by hand (what they do, who may call them, what they
take); a test checks that every admin route registered on the app appears, so a new route
without a description fails the suite. Plugin admin routes are listed as the plugins
registered them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

PREFIX = "/admin/v1"
_OPERATOR = "operator token only"
_ANY = "operator token, or a token scoped to this tenant"

_SUBJECT_BODY = {
    "type": "object",
    "description": "the person, by exactly one of phone (E.164 or national) or email",
    "oneOf": [{"required": ["phone"], "not": {"required": ["email"]}},
              {"required": ["email"], "not": {"required": ["phone"]}}],
    "properties": {"phone": {"type": "string", "minLength": 1, "maxLength": 64},
                   "email": {"type": "string", "format": "email", "maxLength": 320},
                   "changes": {"type": "object", "description": "rectify only: new name, email or extension",
                               "properties": {"name": {"type": ["string", "null"]},
                                              "email": {"type": ["string", "null"]},
                                              "extension": {"type": ["string", "null"]}}}},
}
_TENANT_ID = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"}
_TENANT_BODY = {"type": "object", "required": ["id"], "properties": {"id": _TENANT_ID}}
_CONNECTION_BODY = {"type": "object", "required": ["plugin"],
                    "properties": {"plugin": {"type": "string", "minLength": 1}, "settings": {"type": "object"}}}
_SINK_BODY = {"type": "object", "properties": {"settings": {"type": "object"}}}

#: (method, path) -> (summary, who may call, request body schema or None)
CORE: dict[tuple[str, str], tuple[str, str, dict[str, Any] | None]] = {
    ("GET", "/tenants"): ("List tenants (a scoped token sees its own)", _ANY, None),
    ("POST", "/tenants"): ("Create a tenant and its data key", _OPERATOR, _TENANT_BODY),
    ("GET", "/tenants/{tenant}"): ("A tenant with its connections and sinks", _ANY, None),
    ("DELETE", "/tenants/{tenant}"): ("Uninstall: crypto-shred everything of the tenant", _OPERATOR, None),
    ("GET", "/tenants/{tenant}/connections"): ("The tenant's telephone accounts", _ANY, None),
    ("POST", "/tenants/{tenant}/connections"): ("Connect a telephone account", _ANY, _CONNECTION_BODY),
    ("GET", "/tenants/{tenant}/connections/{connection_id}"): ("One connection", _ANY, None),
    ("DELETE", "/tenants/{tenant}/connections/{connection_id}"): (
        "Disconnect; the connection's user directory is deleted", _ANY, None),
    ("GET", "/tenants/{tenant}/connections/{connection_id}/users"): (
        "The connection's telephony users", _ANY, None),
    ("PUT", "/tenants/{tenant}/sinks/{plugin}"): ("Bind the tenant to a CRM sink", _ANY, _SINK_BODY),
    ("DELETE", "/tenants/{tenant}/sinks/{plugin}"): ("Unbind a CRM sink", _ANY, None),
    ("GET", "/deadletters"): ("Deliveries given up on (query: tenant)", _ANY, None),
    ("POST", "/deadletters/{delivery_id}/replay"): ("Queue a dead letter again", _ANY, None),
    ("POST", "/tenants/{tenant}/subjects/export"): (
        "Data-subject access: everything held about the person, as JSON", _ANY, _SUBJECT_BODY),
    ("POST", "/tenants/{tenant}/subjects/erase"): (
        "Data-subject erasure: call events, user entries, plugin records", _ANY, _SUBJECT_BODY),
    ("POST", "/tenants/{tenant}/subjects/rectify"): (
        "Rectify a telephony user's name, e-mail or extension", _ANY, _SUBJECT_BODY),
    ("POST", "/tenants/{tenant}/subjects/restrict"): (
        "Restrict processing: events involving the person are not forwarded", _ANY, _SUBJECT_BODY),
    ("POST", "/tenants/{tenant}/subjects/object"): (
        "Record an objection (treated as a restriction)", _ANY, _SUBJECT_BODY),
    ("POST", "/tenants/{tenant}/subjects/unrestrict"): (
        "Lift a restriction or objection", _ANY, _SUBJECT_BODY),
    ("GET", "/audit"): ("Audit log entries (query: after >= 0, limit 1-10000, default 1000); "
                        "a scoped token sees its tenant's", _ANY, None),
    ("GET", "/breach-report"): ("Counts of data held in a window (query: since, until)", _OPERATOR, None),
    ("POST", "/retention/purge"): (
        "Run the retention purge now, inside the serving gateway; answers its counts", _OPERATOR, None),
    ("GET", "/openapi.json"): ("This document", _ANY, None),
}

_JSON = {"application/json": {"schema": {"type": "object"}}}
_ERRORS = {
    "400": {"description": "invalid input (never echoed)", "content": _JSON},
    "401": {"description": "missing or bad bearer token", "content": _JSON},
    "403": {"description": "token not allowed here (scoped to another tenant, or not an operator)",
            "content": _JSON},
    "404": {"description": "unknown tenant or resource", "content": _JSON},
    "409": {"description": "the resource exists already or its state forbids the change", "content": _JSON},
    "413": {"description": "body too large", "content": _JSON},
    "415": {"description": "send application/json", "content": _JSON},
}
#: Query parameters, by (method, path); path parameters are derived from the path.
_QUERY: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("GET", "/audit"): [
        {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}],
    ("GET", "/breach-report"): [
        {"name": name, "in": "query", "required": True, "description": "ISO-8601 date or date-time (UTC if no zone)",
         "schema": {"type": "string", "format": "date-time"}} for name in ("since", "until")],
    ("GET", "/deadletters"): [{"name": "tenant", "in": "query", "schema": _TENANT_ID}],
}


def query_names(method: str, path: str) -> frozenset[str]:
    """The query parameters documented for a route (``path`` below ``/admin/v1``)."""
    return frozenset(p["name"] for p in _QUERY.get((method, path), []))


def _parameters(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]


def _operation(summary: str, who: str, body: dict[str, Any] | None, path: str, method: str) -> dict[str, Any]:
    ok = "201" if method == "POST" and path in ("/tenants", "/tenants/{tenant}/connections") else "200"
    op: dict[str, Any] = {"summary": summary, "description": f"Who: {who}.",
                          "parameters": _parameters(path) + _QUERY.get((method, path), []),
                          "responses": {ok: {"description": "JSON", "content": _JSON}, **_ERRORS}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def plugin_routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, path below /admin/v1) of the admin routes plugins registered."""
    found = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        path = resource.canonical
        if path.startswith(f"{PREFIX}/plugins/"):
            found.append((route.method, path[len(PREFIX):]))
    return found


def document(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), (summary, who, body) in CORE.items():
        paths.setdefault(path, {})[method.lower()] = _operation(summary, who, body, path, method)
    for method, path in plugin_routes(app):
        plugin = path.split("/")[2]
        paths.setdefault(path, {})[method.lower()] = _operation(
            f"Route of the {plugin} plugin (see its README)", _ANY, None, path, method)
    return {
        "openapi": "3.1.0",
        "info": {"title": "callgate admin API", "version": "1",
                 "description": "Operators and controllers manage tenants, connections and "
                                "data-subject requests. Every request needs a bearer token "
                                "(GATEWAY_ADMIN_TOKEN) and is recorded in the audit log."},
        "servers": [{"url": PREFIX}],
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
