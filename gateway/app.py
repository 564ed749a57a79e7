"""``create_app(config)``: routes, middlewares and the gateway's lifecycle in ``cleanup_ctx``."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web, web_response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import __version__, admin, home, logs, metrics, webhooks
from .appkeys import CONTEXT, GATEWAY
from .config import Config
from .context import PluginContext
from .errors import GatewayError
from .http import error_response, json_response
from .plugins import collect, load_plugins, make_manager
from .runtime import Gateway

log = logging.getLogger("gateway.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: seconds the database may take to answer a readiness probe
READY_TIMEOUT = 2.0

# request ids: unique per process start, cheap to make (no system call per request)
_RID_PREFIX = secrets.token_hex(4)
_rid_counter = itertools.count(1)


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request ids for the logs, and the error policy: our errors as JSON, never a traceback."""
    rid = request.headers.get("X-Request-Id", "")
    if not (0 < len(rid) <= 64 and rid.replace("-", "").isalnum()):
        rid = f"{_RID_PREFIX}-{next(_rid_counter):x}"
    token = logs.request_id.set(rid)
    tenant_token = logs.tenant_id.set(None)
    try:
        response = await handler(request)
    except GatewayError as exc:
        response = error_response(exc)
    except web.HTTPException:
        raise
    except Exception as exc:
        log.error("request failed", extra={"path_kind": request.match_info.route.name or "",
                                           "error": type(exc).__name__})
        response = json_response({"error": "internal error"}, status=500)
    finally:
        logs.request_id.reset(token)
        logs.tenant_id.reset(tenant_token)
    response.headers["X-Request-Id"] = rid
    return response


@web.middleware
async def body_deadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read the body first, within ``GATEWAY_BODY_TIMEOUT``: aiohttp bounds the wait for a
    request head (the keep-alive timer) but not for a body, so a client trickling one byte at
    a time would hold its connection and handler for ever. Handlers get the body from
    ``request.read()`` (cached); sizes are still bounded by ``client_max_size``."""
    if request.body_exists and not request.content.is_eof():
        if (request.content_length or 0) > client_max_size(request.app[GATEWAY].config):
            return json_response({"error": "body too large"}, status=413)  # refused unread
        try:
            async with asyncio.timeout(request.app[GATEWAY].config.body_timeout):
                await request.read()
        except TimeoutError:
            metrics.SLOW_BODIES.inc()
            response = json_response({"error": "request body too slow"}, status=408)
            await response.prepare(request)
            await response.write_eof()
            # close now: the default close would first drain the body for lingering_time
            request.protocol.force_close()
            return response
        except web.HTTPRequestEntityTooLarge:
            return json_response({"error": "body too large"}, status=413)
    return await handler(request)


#: The ``Server`` header: the product, not the aiohttp and Python versions an attacker would
#: look up. aiohttp fills the header from a module global, also in the 400s it writes itself
#: for malformed requests (those bypass the app and its signals), so the global is replaced.
SERVER_NAME = "callgate"


def client_max_size(config: Config) -> int:
    """The largest body read at all: webhooks enforce ``max_body`` themselves, admin and
    plugin routes get headroom."""
    return max(config.max_body, 1024 * 1024)


def server_options(config: Config) -> dict[str, Any]:
    """Keyword arguments for aiohttp's server (``AppRunner``). Its keep-alive timer closes a
    connection that is idle or has not finished sending its request head when it fires;
    there is no separate header timeout (docs/operations.md)."""
    return {"keepalive_timeout": config.idle_timeout}


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _store_ok(request: web.Request) -> bool:
    gw = request.app[GATEWAY]
    try:
        return bool(gw.started and await asyncio.wait_for(gw.store.ping(), READY_TIMEOUT))
    except Exception:
        return False


async def _ready(request: web.Request) -> bool:
    gw = request.app[GATEWAY]
    return await _store_ok(request) and bool(gw.sources or gw.sinks)


async def readyz(request: web.Request) -> web.Response:
    """Ready when the database answers (and plugins are loaded): a load balancer sends this
    replica requests only then. ``database`` says which, how fast it answered and, on a
    shared store, how many lanes this replica delivers."""
    gw = request.app[GATEWAY]
    started = time.perf_counter()
    store_ok = await _store_ok(request)
    database: dict[str, object] = {
        "backend": "sqlite" if gw.store.fleet is None else "postgresql", "reachable": store_ok,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    if gw.store.fleet is not None:
        database["lanes_held"] = gw.dispatcher.depth
    ready = store_ok and bool(gw.sources or gw.sinks)
    return json_response({"status": "ready" if ready else "not ready", "store": store_ok, "database": database,
                          "plugins": [p.name for p in gw.plugins]}, status=200 if ready else 503)


async def metrics_view(request: web.Request) -> web.Response:
    metrics.QUEUE_DEPTH.set(request.app[GATEWAY].dispatcher.depth)
    return web.Response(body=generate_latest(metrics.REGISTRY),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


def _in_context(handler: Handler, context: PluginContext) -> Handler:
    """A plugin's handler, given its plugin's context as ``request[CONTEXT]``."""
    async def handle(request: web.Request) -> web.StreamResponse:
        request[CONTEXT] = context
        return await handler(request)
    return handle


def build_gateway(config: Config, extra_plugins: Iterable[tuple[str, object]] = ()) -> Gateway:
    """Load the plugins and assemble a (not yet opened) gateway."""
    pm = make_manager()
    infos = load_plugins(pm, config.plugins_disabled, extra_plugins)
    return Gateway(config, pm, collect(pm), infos)


def create_app(config: Config, *, extra_plugins: Iterable[tuple[str, object]] = (),
               gateway: Gateway | None = None) -> web.Application:
    """The aiohttp application. The gateway opens on start-up and closes on clean-up."""
    gw = gateway or build_gateway(config, extra_plugins)
    app = web.Application(middlewares=[body_deadline_middleware, context_middleware, admin.admin_middleware],
                          client_max_size=client_max_size(config))
    app[GATEWAY] = gw
    setattr(web_response, "SERVER_SOFTWARE", SERVER_NAME)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await gw.open()
        yield
        await gw.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/", home.home_handler(__version__, _ready))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    for route in gw.registry.routes:  # before the generic webhook route: theirs are fixed paths
        app.router.add_route(route.method, route.prefix + route.path,
                             _in_context(route.handler, gw.contexts[route.plugin]))
    app.router.add_post("/hooks/{plugin}/{connection_id}", webhooks.handle)
    admin.setup(app)
    return app
