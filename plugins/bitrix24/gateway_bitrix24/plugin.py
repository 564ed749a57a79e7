"""The pluggy hooks of the Bitrix24 plugin (entry point ``bitrix24``)."""

from __future__ import annotations

from typing import Any

from gateway import Connection, PluginContext, Subject, hookimpl

from . import keepalive, lines, routes
from .app import people
from .settings import PluginSettings
from .sink import Bitrix24Sink
from .sweep import SWEEP_INTERVAL, sweep_lost_click_to_calls
from .users import USERCACHE, USERMAP, override_key

SINK = Bitrix24Sink()


@hookimpl
def register_sinks(register: Any) -> None:
    register(SINK)


@hookimpl
def register_routes(register: Any) -> None:
    routes.register_all(register)


@hookimpl
def register_tasks(register: Any) -> None:
    register(name="bitrix24-click-to-call-sweep", interval=SWEEP_INTERVAL, func=sweep_lost_click_to_calls)
    register(name="bitrix24-token-refresh", interval=keepalive.INTERVAL, func=keepalive.refresh_idle_tokens)
    register(name="bitrix24-lines", interval=lines.SYNC_INTERVAL, func=lines.sync_lines)


@hookimpl
def declare_settings() -> type[PluginSettings]:
    return PluginSettings


@hookimpl
def tenant_removed(context: PluginContext, tenant: str) -> None:
    """The app forgets the portal's users it keeps in memory for its pages."""
    people.forget(context, tenant)


@hookimpl
async def user_logged_out(context: PluginContext, connection: Connection, user_id: str) -> None:
    """Forget which CRM user the telephony user was matched to: the match was made from the
    e-mail and extension that the logout deleted."""
    await context.storage(connection.tenant).delete(USERCACHE, f"{connection.id}|{user_id}")


@hookimpl
async def subject_export(context: PluginContext, tenant: str, subject: Subject) -> dict[str, Any] | None:
    """The admin's user-map entry naming the person's e-mail (call records found by number
    are exported by the core)."""
    if subject.kind != "email" or await context.tenants.get(tenant) is None:
        return None
    entry = await context.storage(tenant).get(USERMAP, override_key(email=subject.value))
    return {"user_map": entry} if entry else None


@hookimpl
async def subject_erase(context: PluginContext, tenant: str, subject: Subject) -> int | None:
    """Delete the user-map entry naming the person's e-mail, and the matches made from it."""
    if subject.kind != "email" or await context.tenants.get(tenant) is None:
        return None
    st = context.storage(tenant)
    removed = await st.delete(USERMAP, override_key(email=subject.value))
    if removed:
        await st.delete(USERCACHE)
    return removed or None
