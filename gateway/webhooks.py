"""``POST /hooks/{plugin}/{connection_id}``: the status policy, and nothing vendor-specific.

2xx only after the events are durable; 400 unparseable; 401 bad or missing signature; 404
unknown plugin or connection; 413 too large; 415 wrong content type. Bad input never gets a
5xx, stores nothing, and no response echoes the input back.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web

from . import logs, metrics
from .errors import GatewayError
from .events import utcnow
from .http import json_response
from .appkeys import GATEWAY
from .sources import WebhookRequest

log = logging.getLogger("gateway.webhooks")

_CONNECTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


_counters: dict[tuple[str, int], Any] = {}


def _reply(plugin: str, status: int, message: str, **extra: object) -> web.Response:
    counter = _counters.get((plugin, status))
    if counter is None:
        counter = _counters[(plugin, status)] = metrics.WEBHOOKS.labels(plugin, str(status))
    counter.inc()
    body: dict[str, object] = {"status": "accepted", **extra} if status < 300 else {"error": message}
    return json_response(body, status=status)


async def handle(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    plugin = request.match_info["plugin"]
    source = gw.sources.get(plugin)
    if source is None:
        return _reply("unknown", 404, "no such telephony plugin")
    connection_id = request.match_info["connection_id"]
    connection = await gw.tenancy.find_connection(connection_id) if _CONNECTION_ID.match(connection_id) else None
    if connection is None or connection.plugin != plugin:
        return _reply(plugin, 404, "unknown connection")
    logs.tenant_id.set(connection.tenant)
    if request.content_type not in source.content_types:
        return _reply(plugin, 415, "unsupported content type")
    if request.content_length is not None and request.content_length > gw.config.max_body:
        return _reply(plugin, 413, "body too large")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _reply(plugin, 413, "body too large")
    if len(body) > gw.config.max_body:
        return _reply(plugin, 413, "body too large")
    hook_request = WebhookRequest(body=body, headers=request.headers, content_type=request.content_type,
                                  received_at=utcnow(), query=request.query)
    try:
        count = await gw.ingest.accept(connection, hook_request)
    except GatewayError as exc:
        if 400 <= exc.status < 500:
            log.info("webhook refused", extra={"plugin": plugin, "status": exc.status})
            return _reply(plugin, exc.status, str(exc) or "bad request")
        log.error("webhook failed", extra={"plugin": plugin, "error": type(exc).__name__})
        return _reply(plugin, 503, "temporarily unavailable")
    except (ValueError, KeyError, TypeError, UnicodeError, AttributeError, IndexError) as exc:
        # A plugin that trips over hostile input must still answer 400, not 500.
        log.warning("plugin could not parse a webhook", extra={"plugin": plugin, "error": type(exc).__name__})
        return _reply(plugin, 400, "unparseable notification")
    except Exception as exc:
        log.error("webhook failed", extra={"plugin": plugin, "error": type(exc).__name__})
        return _reply(plugin, 503, "temporarily unavailable")
    gw.activity.seen(connection.id)  # in memory; written in batches (gateway/activity.py)
    return _reply(plugin, 200, "") if count is None else _reply(plugin, 200, "", events=count)
