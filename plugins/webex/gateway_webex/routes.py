"""HTTP routes: per-user login and logout through Webex OAuth, the admin's pin link and logout.

- ``GET /apps/webex/login?connection=<id>`` (the link users are given, also by the CRM's app
  pages): a small page whose button posts to the same path. The GET changes nothing, so a
  cross-site link or image cannot start a login; it gives the browser a random nonce in an
  ``HttpOnly``, ``SameSite=Lax`` cookie scoped to ``/apps/webex/``.
- ``POST /apps/webex/login``: the form must carry an HMAC of that nonce (a page of another
  site cannot read it); answers 303 to Webex with a state bound to the nonce's hash.
- ``GET|POST /apps/webex/logout``: the same, for a logout (Webex proves who the person is:
  the browser holds no session of ours).
- ``GET /apps/webex/callback``: the OAuth redirect URI. The state must be ours, unexpired,
  started by this browser (the cookie) and unused (remembered in the store until it expires).
- ``POST /admin/v1/plugins/webex/tenants/{tenant}/connections/{connection_id}/pin-link``: a
  signed, single-use, expiring link with which the tenant's admin ties a connection that has
  no ``org_id`` to their Webex organisation by logging in. Other logins on such a connection
  are refused.
- ``POST /admin/v1/plugins/webex/tenants/{tenant}/connections/{connection_id}/users/{user_id}/logout``.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from gateway import (
    CONTEXT,
    BadRequest,
    Conflict,
    Connection,
    Forbidden,
    NotFound,
    PluginContext,
    RetryableError,
    json_response,
)

from . import accounts, oauth, once
from .accounts import CALLBACK_PATH
from .api import GrantRejected
from .settings import WebexSettings

log = logging.getLogger("gateway_webex")

#: The browser's nonce for the login round trip.
COOKIE = "callgate_webex"
#: How long an admin's pin link stays valid (seconds).
PIN_TTL = 3600

START_AGAIN = "Start again from the login link."
NOT_PINNED = ("This connection is not tied to a Webex organisation yet. Your administrator ties it "
              "by logging in once through a pin link, or by setting org_id on the connection.")
_ACTIONS = {"login": ("Log in with Webex", "Your Webex calls will reach the CRM once you log in."),
            "logout": ("Log out of Webex", "Webex asks who you are; then your name and e-mail are deleted here.")}


def _page(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text + "\n", status=status, content_type="text/plain",
                        headers={"Cache-Control": "no-store"})


async def _connection(ctx: PluginContext, connection_id: object) -> Connection:
    if not isinstance(connection_id, str) or not connection_id or len(connection_id) > 64:
        raise NotFound("unknown connection")
    return await ctx.connections.own(connection_id)


def _cookie_path(ctx: PluginContext) -> str:
    return urlsplit(ctx.app_url("/")).path


def _pin_of(cfg: WebexSettings, conn: Connection, text: object) -> oauth.Pin | None:
    """The admin's pin link given with a login, if any; :class:`BadState` when it is not valid
    for this connection (or the connection is tied already)."""
    if text in (None, ""):
        return None
    if not isinstance(text, str):
        raise oauth.BadState("malformed pin link")
    pin = oauth.check_pin(cfg.client_secret, text)
    if pin.connection_id != conn.id or conn.settings.get("org_id"):
        raise oauth.BadState("the pin link is not for this connection")
    return pin


def _form_page(request: web.Request, cfg: WebexSettings, conn: Connection, purpose: str, pin: str) -> web.Response:
    """The page behind the login link: one button that posts the form, nothing else."""
    ctx = request[CONTEXT]
    nonce = oauth.browser_nonce(request.cookies.get(COOKIE))
    token = oauth.form_token(cfg.client_secret, nonce, conn.id, purpose, pin)
    title, note = _ACTIONS[purpose]
    fields = "".join(f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
                     for name, value in (("connection", conn.id), ("token", token), ("pin", pin)) if value)
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1"></head><body>'
            f'<h1>{title}</h1><p>{note}</p>'
            f'<form method="post" action="{purpose}">{fields}'
            '<button type="submit">Continue to Webex</button></form></body></html>')
    webex = urlsplit(cfg.authorize_url)
    resp = web.Response(text=body, content_type="text/html", headers={
        "Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": f"default-src 'none'; form-action 'self' {webex.scheme}://{webex.netloc}; "
                                   "frame-ancestors 'none'; base-uri 'none'"})
    resp.set_cookie(COOKIE, nonce, max_age=cfg.state_ttl, path=_cookie_path(ctx), httponly=True,
                    samesite="Lax", secure=ctx.app_url("/").startswith("https://"))
    return resp


async def _start_page(request: web.Request, purpose: str) -> web.Response:
    ctx = request[CONTEXT]
    cfg = ctx.settings.require()
    conn = await _connection(ctx, request.query.get("connection"))
    pin_text = request.query.get("pin", "")
    try:
        pin = _pin_of(cfg, conn, pin_text)
    except oauth.BadState as exc:
        return _page(f"Invalid pin link: {exc}. Ask your administrator for a new one.", 400)
    if purpose == "login" and pin is None and not conn.settings.get("org_id"):
        return _page(NOT_PINNED, 403)
    return _form_page(request, cfg, conn, purpose, pin_text if pin is not None else "")


async def _begin(request: web.Request, purpose: str) -> web.Response:
    """The page's form came back from the browser that got the nonce: off to Webex."""
    ctx = request[CONTEXT]
    cfg = ctx.settings.require()
    form = await request.post()
    conn = await _connection(ctx, form.get("connection"))
    token, pin_text = form.get("token"), form.get("pin", "")
    if not isinstance(token, str) or not isinstance(pin_text, str):
        return _page(f"This login form is incomplete. {START_AGAIN}", 400)
    nonce = request.cookies.get(COOKIE, "")
    try:
        oauth.check_form_token(cfg.client_secret, token, nonce, conn.id, purpose, pin_text)
        pin = _pin_of(cfg, conn, pin_text)
    except oauth.BadState:
        ctx.count("login_refused", "form")
        return _page(f"This login form was not opened in this browser, or has expired. {START_AGAIN}", 403)
    if purpose == "login" and pin is None and not conn.settings.get("org_id"):
        return _page(NOT_PINNED, 403)
    state = oauth.make_state(cfg.client_secret, conn.id, purpose, cfg.state_ttl, browser=nonce,
                             pin=pin.pin_id if pin is not None else None)
    url = oauth.authorize_url(cfg.authorize_url, cfg.client_id, ctx.app_url(CALLBACK_PATH), cfg.scopes, state)
    return web.Response(status=303, headers={"Location": url, "Cache-Control": "no-store"})


async def login_page(request: web.Request) -> web.Response:
    return await _start_page(request, "login")


async def logout_page(request: web.Request) -> web.Response:
    return await _start_page(request, "logout")


async def login(request: web.Request) -> web.Response:
    return await _begin(request, "login")


async def logout(request: web.Request) -> web.Response:
    return await _begin(request, "logout")


async def callback(request: web.Request) -> web.Response:
    ctx = request[CONTEXT]
    cfg = ctx.settings.require()
    code, state_text = request.query.get("code"), request.query.get("state")
    if request.query.get("error") or not code or not state_text or len(code) > 2048:
        return _page(f"The Webex login was cancelled or failed. {START_AGAIN}", 400)
    try:
        state = oauth.check_state(cfg.client_secret, state_text, browser=request.cookies.get(COOKIE))
    except oauth.BadState as exc:
        ctx.count("login_refused", "state")
        return _page(f"Invalid login link: {exc}. {START_AGAIN}", 400)
    conn = await _connection(ctx, state.connection_id)
    if not await once.use(ctx, conn.tenant, "state", state.state_id, state.expires_at):
        ctx.count("login_refused", "replay")
        return _page(f"This login was completed already. {START_AGAIN}", 400)
    return await _complete(ctx, conn, state, code)


async def _complete(ctx: PluginContext, conn: Connection, state: oauth.State, code: str) -> web.Response:
    try:
        if state.purpose == "login":
            may_pin = state.pin is not None and await once.use(ctx, conn.tenant, "pin", state.pin,
                                                               time.time() + PIN_TTL)
            if state.pin is not None and not may_pin:
                return _page("This pin link was used already. Ask your administrator for a new one.", 400)
            await accounts.login(ctx, conn, code, may_pin=may_pin)
            return _page("You are logged in: your Webex calls now reach the CRM. You can close this window.")
        await accounts.logout_with_code(ctx, conn, code)
        return _page("You are logged out: your name and e-mail were deleted. You can close this window.")
    except GrantRejected:
        return _page(f"Webex refused the login. {START_AGAIN}", 400)
    except RetryableError as exc:
        resp = _page("Webex is busy. Try again in a minute.", 503)
        if exc.retry_after:
            resp.headers["Retry-After"] = str(int(exc.retry_after))
        return resp
    except accounts.NotPinned:
        return _page(NOT_PINNED, 403)
    except Forbidden:
        return _page("This Webex account belongs to another organisation than this connection.", 403)


async def _tenants_connection(request: web.Request) -> Connection:
    """The connection named in an admin path, if it is this plugin's and the tenant's."""
    ctx = request[CONTEXT]
    tenant = request.match_info["tenant"]  # a token scoped to another tenant was refused (403)
    conn = await _connection(ctx, request.match_info["connection_id"])
    if conn.tenant != tenant:
        raise NotFound("unknown connection")
    return conn


async def admin_pin_link(request: web.Request) -> web.Response:
    ctx = request[CONTEXT]
    cfg = ctx.settings.require()
    conn = await _tenants_connection(request)
    if conn.settings.get("org_id"):
        raise Conflict("this connection is tied to a Webex organisation already")
    pin = oauth.make_pin(cfg.client_secret, conn.id, PIN_TTL)
    await ctx.audit("webex.pin_link", tenant=conn.tenant, connection=conn.id)
    url = ctx.app_url("/login?" + urlencode({"connection": conn.id, "pin": pin}))
    return json_response({"url": url, "expires_in": PIN_TTL}, status=201)


async def admin_logout(request: web.Request) -> web.Response:
    ctx = request[CONTEXT]
    conn = await _tenants_connection(request)
    user_id = request.match_info["user_id"]
    user = await ctx.users.get(conn, user_id)
    if user is None:
        raise NotFound("unknown user")
    try:
        await accounts.logout(ctx, conn, user_id)
    except RetryableError:
        raise BadRequest("Webex is busy; try again later") from None
    return json_response({"user_id": user_id, "status": "logged_out"})


def register_all(register: Callable[..., None]) -> None:
    """Hand every route to the core's ``register`` callable."""
    register(method="GET", path="/login", handler=login_page)
    register(method="POST", path="/login", handler=login)
    register(method="GET", path="/logout", handler=logout_page)
    register(method="POST", path="/logout", handler=logout)
    register(method="GET", path=CALLBACK_PATH, handler=callback)
    register(method="POST", area="admin", handler=admin_pin_link,
             path="/tenants/{tenant}/connections/{connection_id}/pin-link")
    register(method="POST", area="admin", handler=admin_logout,
             path="/tenants/{tenant}/connections/{connection_id}/users/{user_id}/logout")
