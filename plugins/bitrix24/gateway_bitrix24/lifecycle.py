"""Install, update and uninstall of the Bitrix24 app; the application-token check.

Trust: an ``ONAPPINSTALL`` (or a UI install POST) is believed only after its refresh token has
been exchanged at the OAuth server (a setting, with our client secret) and the answer's
``member_id`` is the event's: that binds the tenant id to the portal that really installed
us, so nobody can overwrite another portal's tenant with tokens of their own, and proves the
grant is our app's. The ``ONAPPINSTALL`` that completes a UI install must also show, through
``app.info`` on the stored portal, that its access token is our app's. Every URL taken
from an event or a token answer must pass the host allow-list. Later events must carry the
stored ``application_token`` (constant-time). ``ONAPPUNINSTALL`` removes the tenant through the
core (crypto-shredding).
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import replace
from urllib.parse import urlsplit

from gateway import BadRequest, Forbidden, NotFound, PluginContext, RetryableError, Unauthorized, UpstreamError

from .api import Bitrix24Client, oauth_grant
from .hosts import is_allowed, rest_endpoint
from .parse import CALL_START, CALLBACK_START, INSTALL, UNINSTALL, Auth, UiInstall, tokens_equal
from .records import Portal, Tokens, get_portal, put_portal, put_tokens
from .responses import AuthRevoked, Bitrix24Error, TokenGrant

log = logging.getLogger("gateway_bitrix24.lifecycle")

#: Bound with ``event.bind`` at install and again on every update (updates drop bindings).
BOUND_EVENTS = (CALL_START, CALLBACK_START, UNINSTALL)


def events_url(ctx: PluginContext) -> str:
    """Our public ``/hooks/bitrix24/events`` URL, given to ``event.bind``."""
    return ctx.hook_url("/events")


async def stored_portal(ctx: PluginContext, tenant: str) -> Portal | None:
    """The tenant's portal record; ``None`` for an unknown tenant or one we never installed."""
    if await ctx.tenants.get(tenant) is None:
        return None
    try:
        return await get_portal(ctx.storage(tenant))
    except NotFound:  # removed between the two reads
        return None


async def verify_event(ctx: PluginContext, auth: Auth) -> Portal:
    """The tenant's portal, if the event carries its stored application token; else 401."""
    portal = await stored_portal(ctx, auth.member_id)
    if portal is None or not tokens_equal(portal.application_token, auth.application_token):
        raise Unauthorized("unknown portal or bad application token")
    return portal


def _allowed_endpoint(ctx: PluginContext, *candidates: str) -> str:
    allowed = ctx.settings.allowed
    for candidate in candidates:
        if not candidate:
            continue
        endpoint = rest_endpoint(candidate)
        if endpoint is not None and is_allowed(endpoint, allowed):
            return endpoint
        raise Forbidden("this portal is not allowed on this gateway")
    raise BadRequest("the portal address is missing")


async def verify_grant(ctx: PluginContext, member_id: str, refresh_token: str) -> TokenGrant:
    """Exchange the refresh token; the OAuth server must name the same ``member_id``."""
    try:
        grant = await oauth_grant(ctx, ctx.settings, refresh_token)
    except AuthRevoked:
        ctx.count("token_refresh", "failed")
        raise Unauthorized("the install tokens were refused") from None
    except RetryableError as exc:
        ctx.count("token_refresh", "failed")
        raise UpstreamError("the Bitrix24 OAuth server is not available") from exc
    ctx.count("token_refresh", "ok")
    if not hmac.compare_digest(grant.member_id.encode(), member_id.encode()):
        raise Unauthorized("the install tokens belong to another portal")
    return grant


async def _store_install(ctx: PluginContext, tenant: str, endpoint: str, grant: TokenGrant,
                         application_token: str, user_id: int) -> None:
    await ctx.tenants.ensure(tenant)
    st = ctx.storage(tenant)
    await put_tokens(st, Tokens(grant.access_token, grant.refresh_token, grant.expires))
    await put_portal(st, Portal(endpoint, urlsplit(endpoint).hostname or "", application_token, user_id))
    await ctx.tenants.bind(tenant)
    await ctx.tenants.set_status(tenant, "active", None)


async def bind_events(ctx: PluginContext, tenant: str, names: tuple[str, ...] = BOUND_EVENTS) -> bool:
    """``event.bind`` our handler; an existing binding is fine. False if any bind failed."""
    client = Bitrix24Client(ctx, tenant)
    handler = events_url(ctx)
    ok = True
    for name in names:
        try:
            await client.call("event.bind", {"event": name, "handler": handler, "event_type": "online"})
        except Bitrix24Error as exc:
            if exc.code == "ERROR_HANDLER_ALREADY_EXIST" or "already" in exc.description.lower():
                continue
            ok = False
            log.warning("event.bind refused", extra={"tenant": tenant, "event": name, "code": exc.code})
        except (AuthRevoked, RetryableError) as exc:
            ok = False
            log.warning("event.bind failed", extra={"tenant": tenant, "event": name,
                                                     "error": type(exc).__name__})
    if not ok:
        ctx.count("event_bind_failed")
    return ok


async def on_install(ctx: PluginContext, auth: Auth) -> str:
    """``ONAPPINSTALL``: verify, create the tenant, store everything, bind events."""
    if not auth.application_token:
        raise Unauthorized("the install event carries no application token")
    existing = await stored_portal(ctx, auth.member_id)
    if existing is not None and tokens_equal(existing.application_token, auth.application_token):
        return "duplicate"
    if existing is not None and not existing.application_token:
        await _complete_ui_install(ctx, auth, existing)
        return "completed"
    if not auth.refresh_token:
        raise Unauthorized("the install event carries no tokens")
    _allowed_endpoint(ctx, auth.client_endpoint or auth.domain)
    grant = await verify_grant(ctx, auth.member_id, auth.refresh_token)
    endpoint = _allowed_endpoint(ctx, grant.client_endpoint or auth.client_endpoint or auth.domain)
    await _store_install(ctx, auth.member_id, endpoint, grant, auth.application_token,
                         auth.user_id or grant.user_id)
    await bind_events(ctx, auth.member_id)
    log.info("Bitrix24 app installed", extra={"tenant": auth.member_id})
    return "installed"


async def _app_of(client: Bitrix24Client, access_token: str) -> tuple[str, str]:
    """Which app ``access_token`` belongs to on the client's stored portal: ``app.info``'s
    ``ID`` (the app's id on that portal) and ``CODE`` (a local app's client id, a Market
    app's code). The answer holds no client id of its own."""
    try:
        info = await client.call_with_token("app.info", {}, access_token)
    except (AuthRevoked, Bitrix24Error):
        raise Unauthorized("the install tokens were refused") from None
    except RetryableError as exc:
        raise UpstreamError("the portal is not available") from exc
    app_id = info.get("ID") if isinstance(info, dict) else None
    code = info.get("CODE") if isinstance(info, dict) else None
    if not isinstance(app_id, (int, str)) or isinstance(app_id, bool) or not str(app_id) \
            or not isinstance(code, str) or not code:
        raise Unauthorized("the portal did not say which app the install tokens belong to")
    return str(app_id), code


async def _complete_ui_install(ctx: PluginContext, auth: Auth, existing: Portal) -> None:
    """Bitrix24's own ``ONAPPINSTALL`` after a UI install: it brings the application token
    that later events must carry, so it must come from Bitrix24 for our app. Its refresh
    token must be exchangeable with our client id and secret and name this portal (the grant
    is ours), and ``app.info`` on the portal we stored (never one the event names) must say
    that its access token belongs to the same app as the token we got from that exchange."""
    if not auth.access_token or not auth.refresh_token:
        raise Unauthorized("the install event carries no tokens")
    grant = await verify_grant(ctx, auth.member_id, auth.refresh_token)
    client = Bitrix24Client(ctx, auth.member_id)
    ours = await _app_of(client, grant.access_token)
    theirs = await _app_of(client, auth.access_token)
    if not (hmac.compare_digest(ours[0].encode(), theirs[0].encode())
            and hmac.compare_digest(ours[1].encode(), theirs[1].encode())):
        ctx.count("install_refused", "foreign_app")
        raise Unauthorized("the install tokens belong to another app")
    st = ctx.storage(auth.member_id)
    async with st.lease("oauth-refresh", ttl=30.0, wait=35.0):
        await put_tokens(st, Tokens(grant.access_token, grant.refresh_token, grant.expires))
    await put_portal(st, replace(existing, application_token=auth.application_token,
                                 installer_user_id=existing.installer_user_id or auth.user_id))
    await ctx.tenants.set_status(auth.member_id, "active", None)
    log.info("Bitrix24 app install completed", extra={"tenant": auth.member_id})


async def on_ui_install(ctx: PluginContext, ui: UiInstall) -> None:
    """The install page of an app with a UI. It carries no application token (``APP_SID`` is
    not one): bind ``ONAPPINSTALL`` too, which Bitrix24 sends after ``installFinish``."""
    _allowed_endpoint(ctx, ui.domain)
    grant = await verify_grant(ctx, ui.member_id, ui.refresh_token)
    endpoint = _allowed_endpoint(ctx, grant.client_endpoint or ui.domain)
    await _store_install(ctx, ui.member_id, endpoint, grant, "", grant.user_id)
    await bind_events(ctx, ui.member_id, (INSTALL, *BOUND_EVENTS))
    log.info("Bitrix24 app UI install", extra={"tenant": ui.member_id})


async def on_update(ctx: PluginContext, auth: Auth) -> None:
    """``ONAPPUPDATE``: a new application token and maybe new tokens; bindings are rebound."""
    portal = await stored_portal(ctx, auth.member_id)
    if portal is None:
        raise Unauthorized("unknown portal or bad application token")
    st = ctx.storage(auth.member_id)
    if tokens_equal(portal.application_token, auth.application_token):
        pass
    elif auth.refresh_token and auth.application_token:
        grant = await verify_grant(ctx, auth.member_id, auth.refresh_token)
        endpoint = _allowed_endpoint(ctx, grant.client_endpoint or portal.client_endpoint)
        async with st.lease("oauth-refresh", ttl=30.0, wait=35.0):
            await put_tokens(st, Tokens(grant.access_token, grant.refresh_token, grant.expires))
        portal = replace(portal, application_token=auth.application_token, client_endpoint=endpoint,
                         domain=urlsplit(endpoint).hostname or portal.domain,
                         installer_user_id=portal.installer_user_id or auth.user_id or grant.user_id)
        await put_portal(st, portal)
    else:
        raise Unauthorized("unknown portal or bad application token")
    await ctx.tenants.set_status(auth.member_id, "active", None)
    await bind_events(ctx, auth.member_id)
    log.info("Bitrix24 app updated", extra={"tenant": auth.member_id})


async def on_uninstall(ctx: PluginContext, auth: Auth) -> None:
    """``ONAPPUNINSTALL`` (no tokens, only the application token): forget the tenant."""
    await verify_event(ctx, auth)
    await ctx.tenants.remove(auth.member_id)
    log.info("Bitrix24 app uninstalled; tenant removed", extra={"tenant": auth.member_id})
