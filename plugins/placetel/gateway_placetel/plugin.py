"""The pluggy hooks of the Placetel plugin (entry point ``placetel``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway import (
    ADMIN_SCOPE,
    GATEWAY,
    Connection,
    Gateway,
    NotFound,
    OriginateResult,
    RetryableError,
    Source,
    Subject,
    TelephonyUser,
    UpstreamError,
    hookimpl,
    json_response,
)

from . import background
from .settings import NAME, call_kind
from .source import PlacetelSource

SOURCE = PlacetelSource()
#: How often the background round runs; each part decides itself whether it is due.
TICK_SECONDS = 60.0


@hookimpl
def register_sources(register: Callable[[Source], None]) -> None:
    """The Placetel source (``/hooks/placetel/{connection_id}``)."""
    register(SOURCE)


async def background_round(gateway: Gateway) -> None:
    """The periodic task: recordings and user refreshes of every Placetel connection."""
    await background.run_round(SOURCE, gateway)


async def refresh_users(request: web.Request) -> web.Response:
    """``POST /admin/v1/plugins/placetel/connections/{connection_id}/refresh-users``."""
    gw: Gateway = request.app[GATEWAY]
    scope = request[ADMIN_SCOPE]
    connection = await gw.connection(request.match_info["connection_id"][:64])
    if connection.plugin != NAME or (scope is not None and connection.tenant != scope):
        raise NotFound("unknown connection")
    try:
        count = await SOURCE.sync_users(gw, connection)
    except RetryableError:
        raise UpstreamError("the Placetel API is unavailable; try again later") from None
    return json_response({"connection": connection.id, "users": count})


@hookimpl
def register_routes(register: Callable[..., None]) -> None:
    """The on-demand user refresh (admin area)."""
    register(plugin=NAME, method="POST", path="/connections/{connection_id}/refresh-users",
             handler=refresh_users, area="admin")


@hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    """The periodic round (:func:`background_round`)."""
    register(name="placetel-sync", interval=TICK_SECONDS, func=background_round)


@hookimpl
def originate_call(gateway: Gateway, connection: Connection, user: TelephonyUser,
                   number: str) -> Any:
    """Click-to-call for Placetel connections (an awaitable); ``None`` for other plugins."""
    if connection.plugin != NAME:
        return None

    async def go() -> OriginateResult:
        return await SOURCE.originate(gateway, connection, user, number)
    return go()


async def _calls_about(gateway: Gateway, tenant: str, subject: Subject) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, call id, memory) of every remembered call with the subject's number."""
    if subject.kind != "phone":
        return []  # the call memory holds numbers and SIP ids, never e-mails
    storage = gateway.storage(NAME, tenant)
    found = []
    for connection in await gateway.connections(tenant, NAME):
        kind = call_kind(connection.id)
        for call_id, memory in await storage.all(kind):
            if isinstance(memory, dict) and subject.value in (memory.get("remote"), memory.get("local")):
                found.append((kind, call_id, memory))
    return found


@hookimpl
async def subject_export(gateway: Gateway, tenant: str, subject: Subject) -> dict[str, Any] | None:
    """The per-call memory (kept at most for the retention period) about one phone number."""
    calls = await _calls_about(gateway, tenant, subject)
    if not calls:
        return None
    return {"calls": [{"call_id": call_id, **memory} for _, call_id, memory in calls]}


@hookimpl
async def subject_erase(gateway: Gateway, tenant: str, subject: Subject) -> int | None:
    """Delete the per-call memory about one phone number; the number of calls erased."""
    calls = await _calls_about(gateway, tenant, subject)
    storage = gateway.storage(NAME, tenant)
    for kind, call_id, _ in calls:
        await storage.delete(kind, call_id)
    return len(calls) or None
