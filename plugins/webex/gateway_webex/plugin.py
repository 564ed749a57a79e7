"""The pluggy entry point ``webex``: hook implementations wiring the plugin into callgate."""

from __future__ import annotations

from collections.abc import Callable

from gateway import PluginContext, Source, Subject, hookimpl

from . import accounts, routes, tasks
from .settings import WebexSettings
from .source import WebexSource

SOURCE = WebexSource()


@hookimpl
def register_sources(register: Callable[[Source], None]) -> None:
    register(SOURCE)


@hookimpl
def register_routes(register: Callable[..., None]) -> None:
    routes.register_all(register)


@hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    tasks.register_all(register)


@hookimpl
def declare_settings() -> type[WebexSettings]:
    return WebexSettings


@hookimpl
async def subject_erase(context: PluginContext, tenant: str, subject: Subject) -> int | None:
    """The core has erased the person's directory entries: their Webex logins go too (webhooks
    deleted at Webex, tokens forgotten), so no call of theirs reaches the gateway any more."""
    removed = 0
    for connection in await context.connections.list(tenant):
        for person in await accounts.logged_in(context, connection):
            if await context.users.get(connection, person) is None:
                await accounts.forget(context, connection, person)
                removed += 1
    return removed or None


@hookimpl
def tenant_removed(context: PluginContext, tenant: str) -> None:
    """Webhook records of the tenant kept in memory go (its data goes with the core)."""
    accounts.forget_webhooks(tenant)


@hookimpl
def purge_expired(context: PluginContext) -> None:
    """Dropped webhooks are call records the core just may have purged: none is believed from
    memory any more. Nothing of the plugin's own to count."""
    accounts.forget_webhooks(None)
