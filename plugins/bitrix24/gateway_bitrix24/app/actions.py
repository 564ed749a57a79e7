"""What the app's forms do, once their frame token was verified for the form's purpose.

Each function reads its form with :mod:`.forms` (anything a page could not have sent is a
:class:`gateway.BadRequest`) and answers with a notice or a problem for the page it leads back
to. Every change is audited with the portal user's id (never a name or address).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from gateway import BadRequest, PluginContext, UpstreamError

from ..records import put_settings
from ..settings import TenantSettings
from . import forms, pages
from . import people as portal
from .token import Identity
from .usermapping import save_mapping, telephone_users

log = logging.getLogger("gateway_bitrix24.app")


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where a form leads: back to ``page`` with a ``notice`` or a ``problem`` (text keys)."""

    notice: str | None = None
    problem: str | None = None
    page: str = "home"


async def _audit(ctx: PluginContext, action: str, identity: Identity, **ids: int | str) -> None:
    await ctx.audit(f"app.{action}", tenant=identity.tenant, portal_user=identity.user_id, **ids)


async def _people_ids(ctx: PluginContext, tenant: str) -> set[int] | None:
    found = await pages.people_or_none(ctx, tenant)
    return None if found is None else {p.id for p in found}


async def connect_placetel(ctx: PluginContext, identity: Identity, form: Mapping[str, str]) -> Outcome:
    """Check the key with Placetel (the Placetel plugin's ``connect``), keep the connection,
    and the Notify secret the app chose for it, to show it for pasting into Placetel."""
    api_key = forms.read_placetel_key(form)
    tenant = identity.tenant
    if [c for c in await ctx.connections.of_tenant(tenant) if c.plugin == pages.PLACETEL]:
        return Outcome(notice="notice.placetel_connected")
    secret = secrets.token_urlsafe(24)
    try:
        conn = await ctx.connections.create(tenant, pages.PLACETEL, {"api_key": api_key, "secret": secret})
    except BadRequest:
        ctx.count("app_placetel_connect", "refused")
        return Outcome(problem="problem.placetel_key_refused")
    except UpstreamError:
        ctx.count("app_placetel_connect", "unavailable")
        return Outcome(problem="problem.placetel_unavailable")
    await ctx.storage(tenant).put(pages.NOTIFY, conn.id, {"secret": secret})
    await _audit(ctx, "placetel_connected", identity, connection=conn.id)
    return Outcome(notice="notice.placetel_connected")


async def disconnect_placetel(ctx: PluginContext, identity: Identity, form: Mapping[str, str]) -> Outcome:
    forms.read_empty(form)
    for conn in await ctx.connections.of_tenant(identity.tenant):
        if conn.plugin == pages.PLACETEL:
            await ctx.connections.remove(conn.id)
            await ctx.storage(identity.tenant).delete(pages.NOTIFY, conn.id)
            await _audit(ctx, "placetel_disconnected", identity, connection=conn.id)
    return Outcome(notice="notice.placetel_disconnected")


async def save_settings(ctx: PluginContext, identity: Identity, form: Mapping[str, str]) -> Outcome:
    ids = await _people_ids(ctx, identity.tenant)
    if ids is None:
        return Outcome(problem="problem.portal_users_unavailable")
    choice = forms.read_settings(form, ids)
    await put_settings(ctx.storage(identity.tenant), TenantSettings(
        crm_create=choice.crm_create, responsible_user_id=choice.responsible_user_id,
        show_card=choice.show_card, log_internal=choice.log_internal))
    await _audit(ctx, "settings_changed", identity)
    return Outcome(notice="notice.saved")


async def save_user_mapping(ctx: PluginContext, identity: Identity, form: Mapping[str, str]) -> Outcome:
    ids = await _people_ids(ctx, identity.tenant)
    if ids is None:
        return Outcome(problem="problem.portal_users_unavailable")
    users = await telephone_users(ctx, identity.tenant)
    chosen = forms.read_mapping(form, {u.key for u in users}, ids)
    overrides = await save_mapping(ctx, identity.tenant, users, chosen)
    await _audit(ctx, "mapping_changed", identity, overrides=overrides)
    return Outcome(notice="notice.mapping_saved")


async def retry_failed(ctx: PluginContext, identity: Identity, form: Mapping[str, str]) -> Outcome:
    which = forms.read_retry(form)
    if which is None:
        ids = [d.id for d in await ctx.deliveries.failed(identity.tenant, limit=1000)]
    elif which.isdigit() and len(which) <= 18:
        ids = [int(which)]
    else:
        raise BadRequest("no failed delivery named")
    for delivery_id in ids:
        await ctx.deliveries.retry(identity.tenant, delivery_id)  # NotFound: not one of the tenant's
    return Outcome(notice="notice.retried")


async def erase_me(ctx: PluginContext, identity: Identity, form: Mapping[str, str]) -> Outcome:
    """The user's own erasure: the core's data-subject erasure by their portal e-mail."""
    forms.read_confirmation(form)
    found = await pages.people_or_none(ctx, identity.tenant)
    if found is None:
        return Outcome(problem="problem.portal_users_unavailable", page="me")
    subject = pages.subject_of(next((p for p in found if p.id == identity.user_id), None))
    if subject is not None:
        result = await ctx.subjects.erase(identity.tenant, subject)
        if result.get("incomplete"):
            log.warning("erasure incomplete", extra={"tenant": identity.tenant,
                                                     "failed_plugins": len(result["incomplete"])})
    portal.forget(ctx, identity.tenant)
    return Outcome(notice="notice.erased", page="me")

