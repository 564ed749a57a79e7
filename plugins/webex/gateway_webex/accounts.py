"""Per-user Webex accounts: tokens, webhooks, login, logout, API calls on a user's behalf.

Everything here is kept in the plugin's encrypted PluginStorage (per tenant):

- ``token``   ``<connection>|<person>`` → the user's tokens (index: connection id);
- ``webhook`` ``<webhook id>`` → connection, person, secret, resource/event, back-off
  (index: ``<connection>|<person>``). After logout only ``{connection, secret, dropped}``
  remains, as a call record the core purges after the retention period, so late deliveries
  are still verified, then acknowledged and dropped;
- ``call``, ``recording``: per-call state (call records, see :mod:`.source`).

Logs carry connection ids and counts only: never person ids, names, tokens or secrets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import hashlib
import logging
import secrets
import time
from typing import Any
from urllib.parse import quote

from gateway import (
    Connection,
    ConnectionHealth,
    Forbidden,
    NotFound,
    PluginContext,
    RetryableError,
    SingleFlight,
    TelephonyUser,
    UpstreamError,
)

from .api import GrantRejected, TokenRejected, WebexApi
from .oauth import TokenSet
from .profile import user_from_profile
from .settings import RECORDINGS_SCOPE, WebexSettings

PLUGIN = "webex"
CALLBACK_PATH = "/callback"
#: Refresh on demand when the access token has less than this left (seconds).
REFRESH_MARGIN = 300.0
#: The periodic job refreshes tokens expiring within this window, and refresh tokens
#: expiring within REFRESH_TOKEN_AHEAD (using a refresh token keeps it alive).
REFRESH_AHEAD = 6 * 3600.0
REFRESH_TOKEN_AHEAD = 14 * 86400.0
CALL_WEBHOOKS = (("telephony_calls", "created"), ("telephony_calls", "updated"), ("telephony_calls", "deleted"))
RECORDING_WEBHOOKS = (("convergedRecordings", "created"), ("convergedRecordings", "updated"))

log = logging.getLogger("gateway_webex")


#: one refresh of a user's rotating refresh token at a time, also across processes
_REFRESH = SingleFlight()


class NeedsLogin(Exception):
    """The user has no usable tokens: they must log in again (status ``needs_login``)."""


def api(ctx: PluginContext) -> WebexApi:
    settings: WebexSettings = ctx.settings
    return WebexApi(ctx.http, settings)


def user_key(connection: Connection, person: str) -> str:
    return f"{connection.id}|{person}"


def _lease_name(connection: Connection, person: str) -> str:
    # lease names are stored as they are: keep the person id out of them
    return "token:" + hashlib.sha256(user_key(connection, person).encode()).hexdigest()[:24]


async def all_connections(ctx: PluginContext) -> list[Connection]:
    """Every Webex connection of every tenant (for the periodic jobs)."""
    return await ctx.connections.list()


async def logged_in(ctx: PluginContext, connection: Connection) -> list[str]:
    """Person ids of the connection's users that hold tokens."""
    found = await ctx.storage(connection.tenant).find("token", connection.id)
    return [key.split("|", 1)[1] for key, _ in found]


# --- tokens ---------------------------------------------------------------------------------


async def load_tokens(ctx: PluginContext, connection: Connection, person: str) -> TokenSet | None:
    data = await ctx.storage(connection.tenant).get("token", user_key(connection, person))
    return TokenSet.from_record(data) if isinstance(data, dict) else None


async def save_tokens(ctx: PluginContext, connection: Connection, person: str, tokens: TokenSet) -> None:
    await ctx.storage(connection.tenant).put("token", user_key(connection, person), tokens.to_record(),
                                                  index=connection.id)


async def mark_needs_login(ctx: PluginContext, connection: Connection, person: str) -> None:
    """Show the admin that this user must log in again (their webhooks keep firing)."""
    user = await ctx.users.get(connection, person)
    if user is not None and user.status == "active":
        await ctx.users.put(connection, dataclasses.replace(user, status="needs_login"))
    log.warning("webex user needs to log in again", extra={"connection": connection.id})


async def refresh(ctx: PluginContext, connection: Connection, person: str, *, window: float = REFRESH_MARGIN,
                  stale: str | None = None) -> TokenSet:
    """Refresh the user's tokens, single-flight across processes.

    Refreshes when the stored access token expires within ``window`` seconds (or its refresh
    token within :data:`REFRESH_TOKEN_AHEAD` when ``window`` is the periodic one), or, with
    ``stale``, when the stored access token is still the one Webex just refused. A refused
    refresh marks the user ``needs_login`` and raises :class:`NeedsLogin`.
    """
    async def current() -> TokenSet:
        tokens = await load_tokens(ctx, connection, person)
        if tokens is None:
            raise NeedsLogin()
        return tokens

    def due(tokens: TokenSet) -> bool:
        now = time.time()
        if stale is not None:
            return tokens.access_token == stale  # else someone else refreshed meanwhile
        return tokens.expires_within(window, now) or (
            window >= REFRESH_AHEAD and tokens.refresh_expires_at is not None
            and tokens.refresh_expires_at - now <= REFRESH_TOKEN_AHEAD)

    async def renew(tokens: TokenSet) -> TokenSet:
        if not tokens.refresh_token:
            await mark_needs_login(ctx, connection, person)
            raise NeedsLogin()
        try:
            data = await api(ctx).token({"grant_type": "refresh_token", "refresh_token": tokens.refresh_token})
            fresh = TokenSet.from_response(data, time.time(), previous=tokens)
        except GrantRejected:
            ctx.count("token_refresh", "failed")
            await mark_needs_login(ctx, connection, person)
            raise NeedsLogin() from None
        except (RetryableError, UpstreamError, ValueError):
            ctx.count("token_refresh", "failed")
            raise
        await save_tokens(ctx, connection, person, fresh)
        ctx.count("token_refresh", "ok")
        return fresh

    return await _REFRESH.run(ctx.storage(connection.tenant), _lease_name(connection, person),
                              current=current, stale=due, refresh=renew)


async def access_token(ctx: PluginContext, connection: Connection, person: str) -> str:
    """A usable access token for the user, refreshed first when it is about to expire."""
    tokens = await load_tokens(ctx, connection, person)
    if tokens is None:
        raise NeedsLogin()
    if tokens.expires_within(REFRESH_MARGIN, time.time()):
        tokens = await refresh(ctx, connection, person)
    return tokens.access_token


async def call_as(ctx: PluginContext, connection: Connection, person: str, method: str, path: str,
                  **kwargs: Any) -> Any:
    """A Webex API call with the user's token; a 401 refreshes once, then needs a login."""
    token = await access_token(ctx, connection, person)
    client = api(ctx)
    try:
        return await client.call(method, path, token, **kwargs)
    except TokenRejected:
        tokens = await refresh(ctx, connection, person, stale=token)
    try:
        return await client.call(method, path, tokens.access_token, **kwargs)
    except TokenRejected:
        await mark_needs_login(ctx, connection, person)
        raise NeedsLogin() from None


# --- webhooks -------------------------------------------------------------------------------


async def create_webhooks(ctx: PluginContext, connection: Connection, person: str, scopes: tuple[str, ...]) -> int:
    """One webhook per call event (and recording events where the scopes allow), each with a
    fresh random secret, all targeting the connection's webhook URL."""
    st = ctx.storage(connection.tenant)
    specs = list(CALL_WEBHOOKS)
    if RECORDINGS_SCOPE in scopes:
        specs += RECORDING_WEBHOOKS
    for resource, event in specs:
        secret = secrets.token_urlsafe(32)
        name = f"callgate {resource} {event}"
        created = await call_as(ctx, connection, person, "POST", "/webhooks", json={
            "name": name, "targetUrl": ctx.webhook_url(connection), "resource": resource,
            "event": event, "secret": secret})
        hook_id = created.get("id") if isinstance(created, dict) else None
        if not isinstance(hook_id, str) or not hook_id:
            raise UpstreamError("Webex did not return a webhook id")
        await st.put("webhook", hook_id, {"connection": connection.id, "person": person, "secret": secret,
                                          "resource": resource, "event": event, "name": name,
                                          "attempts": 0, "next_try": 0},
                     index=user_key(connection, person))
        forget_webhooks(connection.tenant, [hook_id])
    return len(specs)


@dataclass(frozen=True, slots=True)
class Hook:
    """What a delivery's webhook id stands for: whose, with which secret, dropped or not."""

    connection: str
    secret: str
    person: str | None
    dropped: bool


#: Seconds a webhook's record is believed from memory. Every delivery needs it before the
#: answer (the secret); a change made by this process is seen at once, one made by another
#: gateway process within this time (a delivery of a just-dropped webhook is then acknowledged
#: and dropped when interpreted, which re-reads the user).
HOOK_TTL = 60.0
_HOOK_CACHE_SIZE = 10_000
_hooks: dict[tuple[str, str], tuple[float, Hook | None]] = {}


async def webhook(ctx: PluginContext, tenant: str, hook_id: str) -> Hook | None:
    """The webhook record of ``hook_id`` (from memory for :data:`HOOK_TTL` seconds)."""
    now = time.monotonic()
    cached = _hooks.get((tenant, hook_id))
    if cached is not None and now - cached[0] < HOOK_TTL:
        return cached[1]
    rec = await ctx.storage(tenant).get("webhook", hook_id)
    hook = None
    if isinstance(rec, dict) and isinstance(rec.get("connection"), str):
        person = rec.get("person")
        hook = Hook(rec["connection"], str(rec.get("secret", "")), person if isinstance(person, str) else None,
                    bool(rec.get("dropped")))
    if len(_hooks) >= _HOOK_CACHE_SIZE:
        _hooks.clear()
    _hooks[(tenant, hook_id)] = (now, hook)
    return hook


def forget_webhooks(tenant: str | None, hook_ids: list[str] | None = None) -> None:
    """Drop cached webhook records: some of a tenant's, all of a tenant's, or all."""
    for key in [k for k in _hooks if tenant is None or (k[0] == tenant and (hook_ids is None or k[1] in hook_ids))]:
        del _hooks[key]


async def drop_webhooks(ctx: PluginContext, connection: Connection, person: str, *, at_webex: bool) -> int:
    """Delete the user's webhooks at Webex (best effort) and keep only what verifies late
    deliveries (secret, dropped) as call records the core purges after the retention period."""
    st = ctx.storage(connection.tenant)
    dropped = 0
    for hook_id, rec in await st.find("webhook", user_key(connection, person)):
        if at_webex:
            try:
                await call_as(ctx, connection, person, "DELETE", f"/webhooks/{quote(hook_id, safe='')}")
            except NotFound:
                pass
            except (NeedsLogin, RetryableError, UpstreamError) as exc:
                log.warning("could not delete a webhook at Webex",
                            extra={"connection": connection.id, "error": type(exc).__name__})
        # delete first: an upsert keeps the record's creation time, and the retention clock
        # for the dropped record must start now
        await st.delete("webhook", hook_id)
        await st.put("webhook", hook_id, {"connection": connection.id, "secret": rec.get("secret", ""),
                                          "dropped": True}, call_record=True)
        forget_webhooks(connection.tenant, [hook_id])
        dropped += 1
    return dropped


# --- login and logout -----------------------------------------------------------------------


async def exchange_code(ctx: PluginContext, code: str) -> TokenSet:
    """Trade the authorization code for tokens (redirect URI = our callback)."""
    data = await api(ctx).token({"grant_type": "authorization_code", "code": code,
                                     "redirect_uri": ctx.app_url(CALLBACK_PATH)})
    try:
        return TokenSet.from_response(data, time.time())
    except ValueError:
        raise UpstreamError("Webex sent no usable token") from None


async def _profile(ctx: PluginContext, tokens: TokenSet) -> dict[str, Any]:
    try:
        me = await api(ctx).call("GET", "/people/me", tokens.access_token, params={"callingData": "true"})
    except TokenRejected:
        raise UpstreamError("Webex refused the new token") from None
    if not isinstance(me, dict) or not isinstance(me.get("id"), str):
        raise UpstreamError("Webex sent no usable profile")
    return me


class NotPinned(Forbidden):
    """The connection is not tied to a Webex organisation yet, and this login may not tie it."""


async def _check_org(ctx: PluginContext, connection: Connection, me: dict[str, Any], may_pin: bool) -> Connection:
    """A connection serves one Webex organisation, set by someone the tenant trusts: its
    ``org_id`` setting, or the login of the tenant's admin through a pin link (``may_pin``).
    Anyone else's login on a connection without one is refused: the first login must not
    decide which organisation's calls reach the tenant's CRM."""
    org = me.get("orgId") if isinstance(me.get("orgId"), str) else None
    pinned = connection.settings.get("org_id")
    if pinned:
        if org != pinned:
            raise Forbidden("this Webex account belongs to another organisation")
        return connection
    if not may_pin or not org:
        raise NotPinned("this connection is not tied to a Webex organisation yet")
    updated = await ctx.connections.update(connection.id, settings={**connection.settings, "org_id": org})
    await ctx.audit("webex.org_pinned", tenant=connection.tenant, connection=connection.id)
    log.info("webex connection tied to its organisation", extra={"connection": connection.id})
    return updated


async def login(ctx: PluginContext, connection: Connection, code: str, *, may_pin: bool = False) -> TelephonyUser:
    """Complete a login: tokens, profile into the directory, fresh webhooks. ``may_pin``: the
    login came through the admin's pin link and may tie an unpinned connection to its org."""
    tokens = await exchange_code(ctx, code)
    me = await _profile(ctx, tokens)
    connection = await _check_org(ctx, connection, me, may_pin)
    user = user_from_profile(me, connection.settings.get("region") or "DE")
    await save_tokens(ctx, connection, user.user_id, tokens)
    await drop_webhooks(ctx, connection, user.user_id, at_webex=True)  # a repeated login
    await ctx.users.put(connection, user)
    await create_webhooks(ctx, connection, user.user_id, tokens.scopes or ctx.settings.scopes)
    ctx.count("user_login")
    await ctx.audit("user.login", tenant=connection.tenant, connection=connection.id)
    log.info("webex user logged in", extra={"connection": connection.id})
    return user


async def logout(ctx: PluginContext, connection: Connection, person: str) -> None:
    """Delete the user's webhooks at Webex, forget the tokens, delete name and e-mail now."""
    await drop_webhooks(ctx, connection, person, at_webex=True)
    await ctx.storage(connection.tenant).delete("token", user_key(connection, person))
    await ctx.users.logout(connection, person)
    ctx.count("user_logout")
    log.info("webex user logged out", extra={"connection": connection.id})


async def forget(ctx: PluginContext, connection: Connection, person: str) -> None:
    """Undo a login whose directory entry is gone already (a data subject's erasure): the
    webhooks are deleted at Webex and the tokens forgotten; nothing about the person is
    written back."""
    await drop_webhooks(ctx, connection, person, at_webex=True)
    await ctx.storage(connection.tenant).delete("token", user_key(connection, person))
    log.info("webex login of an erased user removed", extra={"connection": connection.id})


async def logout_with_code(ctx: PluginContext, connection: Connection, code: str) -> None:
    """Logout proven by a fresh Webex login of the same person (the browser has no session)."""
    tokens = await exchange_code(ctx, code)
    me = await _profile(ctx, tokens)
    person = me["id"]
    if await ctx.users.get(connection, person) is None:
        raise NotFound("this Webex account is not logged in here")
    await save_tokens(ctx, connection, person, tokens)  # lets logout delete the webhooks
    await logout(ctx, connection, person)


async def webhook_health(ctx: PluginContext, connection: Connection) -> ConnectionHealth:
    """The connection's webhook health from what :func:`.tasks.check_webhooks` and the token refresh
    recorded (no Webex call): failing while a user must log in again or one of their webhooks
    is disabled at Webex, unknown while nobody is logged in, else ok."""
    if connection.status == "broken":
        return ConnectionHealth("failing", "connection_broken")
    people = await logged_in(ctx, connection)
    if not people:
        return ConnectionHealth("unknown", "no_users")
    st = ctx.storage(connection.tenant)
    for person in people:
        user = await ctx.users.get(connection, person)
        if user is not None and user.status == "needs_login":
            return ConnectionHealth("failing", "login_needed")
        hooks = [rec for _, rec in await st.find("webhook", user_key(connection, person))
                 if isinstance(rec, dict) and not rec.get("dropped")]
        if not hooks:
            return ConnectionHealth("failing", "no_webhooks")
        if any(int(rec.get("attempts") or 0) for rec in hooks):
            return ConnectionHealth("failing", "webhook_disabled")
    return ConnectionHealth("ok")
