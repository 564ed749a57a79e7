"""Small HTTP helpers shared by the core's handlers and available to plugins."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from .errors import BadRequest, GatewayError


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(exc: GatewayError) -> web.Response:
    """The error as JSON. The message is ours (never the caller's input): safe to return."""
    status = exc.status if 400 <= exc.status < 600 else 500
    return json_response({"error": str(exc) or type(exc).__name__}, status=status)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a clear 400/415."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text='{"error": "send application/json"}', content_type="application/json")
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data
