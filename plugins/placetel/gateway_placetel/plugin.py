"""The pluggy hooks of the Placetel plugin (entry point ``placetel``)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from gateway import (
    CONTEXT,
    PluginContext,
    RetryableError,
    Source,
    UpstreamError,
    hookimpl,
    json_response,
    require_scope,
)

from . import background
from .settings import Settings
from .source import PlacetelSource

SOURCE = PlacetelSource()
#: How often the background round runs; each part decides itself whether it is due.
TICK_SECONDS = 60.0
#: How often reconciliation looks for due connections (the first look after start runs all).
RECONCILE_TICK = 60.0


@hookimpl
def register_sources(register: Callable[[Source], None]) -> None:
    """The Placetel source (``/hooks/placetel/{connection_id}``)."""
    register(SOURCE)


@hookimpl
def declare_settings() -> type[Settings]:
    return Settings


async def background_round(ctx: PluginContext) -> None:
    """The periodic task: recordings and user refreshes of every Placetel connection."""
    await background.run_round(SOURCE, ctx)


async def reconcile_round(ctx: PluginContext) -> None:
    """The periodic task: compare the call list of every connection that is due."""
    await ctx.reconcile.run_due(ctx.settings.reconcile_interval)


async def refresh_users(request: web.Request) -> web.Response:
    """``POST /admin/v1/plugins/placetel/connections/{connection_id}/refresh-users``."""
    ctx = request[CONTEXT]
    connection = await ctx.connections.own(request.match_info["connection_id"][:64])
    require_scope(request, connection.tenant)
    try:
        count = await SOURCE.sync_users(ctx, connection)
    except RetryableError:
        raise UpstreamError("the Placetel API is unavailable; try again later") from None
    return json_response({"connection": connection.id, "users": count})


@hookimpl
def register_routes(register: Callable[..., None]) -> None:
    """The on-demand user refresh (admin area)."""
    register(method="POST", path="/connections/{connection_id}/refresh-users", handler=refresh_users,
             area="admin")


@hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    """The periodic round (:func:`background_round`) and reconciliation (:func:`reconcile_round`)."""
    register(name="placetel-sync", interval=TICK_SECONDS, func=background_round)
    register(name="placetel-reconcile", interval=RECONCILE_TICK, func=reconcile_round)
