"""What each page shows, gathered through the plugin context (no store, no core internals).

Every function returns the plain data of :mod:`.views`; :mod:`.render` makes HTML of it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from gateway import BadRequest, Connection, DeliveryCount, PluginContext, RetryableError, Subject

from ..records import get_settings
from ..responses import AuthRevoked, Bitrix24Error
from ..users import USERMAP
from . import people as portal
from .people import Person
from .token import Identity
from .usermapping import mapping_rows, system_name, telephone_users
from .views import (
    AdminPage,
    Bucket,
    CallCounts,
    ConnectionStatus,
    FailedDelivery,
    PlacetelSection,
    PortalUser,
    PrivacyPage,
    SettingsSection,
    StatusSection,
    TelephonyAccount,
    UserPage,
    WebexUser,
)

log = logging.getLogger("gateway_bitrix24.app")

PLACETEL = "placetel"
WEBEX = "webex"
#: The app's own record per Placetel connection it made: the Notify secret it chose, to show
#: it again (the connection's settings belong to the Placetel plugin).
NOTIFY = "placetel-notify"
#: Failed deliveries listed at most.
FAILED_SHOWN = 50


def retention_days(ctx: PluginContext) -> int:
    return max(1, round(ctx.retention_days))


async def people_or_none(ctx: PluginContext, tenant: str) -> list[Person] | None:
    """The portal's users, or ``None`` when Bitrix24 cannot say just now (the page says so)."""
    try:
        return await portal.people(ctx, tenant)
    except (RetryableError, AuthRevoked, Bitrix24Error) as exc:
        log.warning("portal users not available", extra={"tenant": tenant, "error": type(exc).__name__})
        return None


async def _of(ctx: PluginContext, tenant: str, plugin: str) -> list[Connection]:
    return [c for c in await ctx.connections.of_tenant(tenant) if c.plugin == plugin]


async def placetel_section(ctx: PluginContext, tenant: str) -> PlacetelSection:
    conns = await _of(ctx, tenant, PLACETEL)
    if not conns:
        return PlacetelSection(False)
    kept = await ctx.storage(tenant).get(NOTIFY, conns[0].id)
    secret = kept.get("secret") if isinstance(kept, dict) else None
    return PlacetelSection(True, ctx.webhook_url(conns[0]), secret if isinstance(secret, str) else None)


async def webex_users(ctx: PluginContext, tenant: str) -> list[WebexUser]:
    out = []
    for conn in await _of(ctx, tenant, WEBEX):
        out += [WebexUser(u.name or u.email or u.user_id[:8], u.email, u.extension)
                for u in await ctx.users.list(conn) if u.status == "active"]
    return sorted(out, key=lambda u: u.name.casefold())


def _filled(counts: Sequence[DeliveryCount], start: datetime, step: timedelta, n: int) -> tuple[Bucket, ...]:
    """``n`` periods from ``start``, those without calls as zero (the store leaves them out)."""
    by_start = {c.start: c for c in counts}
    out = []
    for i in range(n):
        at = start + step * i
        found = by_start.get(at)
        out.append(Bucket(at, found.written if found else 0, found.failed if found else 0))
    return tuple(out)


async def status_section(ctx: PluginContext, tenant: str, now: datetime | None = None) -> StatusSection:
    now = now or datetime.now(timezone.utc)
    first_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    first_day = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=6)
    hourly = _filled(await ctx.deliveries.counts(tenant, since=first_hour, period="hour"),
                     first_hour, timedelta(hours=1), 24)
    daily = _filled(await ctx.deliveries.counts(tenant, since=first_day, period="day"),
                    first_day, timedelta(days=1), 7)
    last = await ctx.connections.last_webhooks(tenant)
    checked = await ctx.connections.reconciliations(tenant)
    connections = []
    for conn in await ctx.connections.of_tenant(tenant):
        health = await ctx.connections.health(conn.id)
        check = checked.get(conn.id)
        connections.append(ConnectionStatus(system_name(conn.plugin), system_name(conn.plugin), last.get(conn.id),
                                            health.status, health.reason, conn.created_at,
                                            check.last_success if check else None,
                                            check.failing if check else False))
    failed = [FailedDelivery(str(d.id), d.received_at, d.state.value if d.state else "unknown",
                             d.reason.rpartition(":")[2] or "unknown")
              for d in await ctx.deliveries.failed(tenant, limit=FAILED_SHOWN)]
    return StatusSection(
        now=now, connections=tuple(connections),
        last_24h=CallCounts(sum(b.written for b in hourly), sum(b.failed for b in hourly)),
        last_7d=CallCounts(sum(b.written for b in daily), sum(b.failed for b in daily)),
        daily=daily, hourly=hourly, failed=tuple(failed))


async def admin_page(ctx: PluginContext, tenant: str) -> tuple[AdminPage, list[Person] | None]:
    """The administrator's page, and the portal users it offers (``None``: not available)."""
    people = await people_or_none(ctx, tenant)
    settings = await get_settings(ctx.storage(tenant))
    users = await telephone_users(ctx, tenant)
    return AdminPage(
        placetel=await placetel_section(ctx, tenant),
        webex_users=tuple(await webex_users(ctx, tenant)),
        settings=SettingsSection(settings.responsible_user_id, settings.crm_create, settings.show_card,
                                 settings.log_internal, tuple(PortalUser(p.id, p.name) for p in people or ())),
        mapping=tuple(await mapping_rows(ctx, tenant, users, people or ())),
        status=await status_section(ctx, tenant)), people


def subject_of(person: Person | None) -> Subject | None:
    """Who the user is for data-subject rights: their portal e-mail (telephone systems know
    people by it); ``None`` without a usable one."""
    if person is None or not person.email:
        return None
    try:
        return Subject.parse(email=person.email)
    except BadRequest:
        return None


async def me(ctx: PluginContext, identity: Identity) -> Person | None:
    found = await people_or_none(ctx, identity.tenant)
    return next((p for p in found or () if p.id == identity.user_id), None)


def webex_url(conns: Sequence[Connection], flow: str) -> str | None:
    """The Webex plugin's ``login`` or ``logout`` flow for the tenant's Webex connection (in a
    new tab; there Webex proves who it is, which the app, knowing the portal user, cannot)."""
    return f"/apps/{WEBEX}/{flow}?connection={quote(conns[0].id, safe='')}" if conns else None


async def user_page(ctx: PluginContext, identity: Identity) -> UserPage:
    """Every user's own page: Webex login, and what is kept about them (a data-subject export
    by their e-mail, audited like any other)."""
    tenant = identity.tenant
    person = await me(ctx, identity)
    subject = subject_of(person)
    accounts: list[TelephonyAccount] = []
    logged_in = False
    call_records = 0
    if subject is not None:
        kept = await ctx.subjects.export(tenant, subject)
        plugins = {c.id: c.plugin for c in await ctx.connections.of_tenant(tenant)}
        for u in kept["gateway"]["telephony_users"]:
            plugin = plugins.get(u["connection"], "")
            accounts.append(TelephonyAccount(system_name(plugin), u["name"], u["email"], u["extension"]))
            logged_in = logged_in or (plugin == WEBEX and u["status"] == "active")
        call_records = len(kept["gateway"]["call_events"]) + len(kept["gateway"]["restricted_call_events"])
    mapped = bool(await ctx.storage(tenant).find(USERMAP, str(identity.user_id)))
    webex = await _of(ctx, tenant, WEBEX)
    return UserPage(name=person.name if person else f"#{identity.user_id}", webex_logged_in=logged_in,
                    webex_login_url=webex_url(webex, "login"), webex_logout_url=webex_url(webex, "logout"),
                    accounts=tuple(accounts), mapped=mapped, call_records=call_records,
                    retention_days=retention_days(ctx))


def privacy_page(ctx: PluginContext) -> PrivacyPage:
    return PrivacyPage(retention_days=retention_days(ctx))
