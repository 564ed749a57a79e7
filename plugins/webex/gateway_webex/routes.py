"""HTTP routes: per-user login and logout through Webex OAuth, and an admin logout.

- ``GET /apps/webex/login?connection=<id>``: redirect to Webex with a signed, expiring state.
- ``GET /apps/webex/logout?connection=<id>``: the same round trip; the person who comes back
  is logged out (the browser holds no session of ours, so Webex proves who it is).
- ``GET /apps/webex/callback``: the OAuth redirect URI (register it in the integration).
- ``POST /admin/v1/plugins/webex/tenants/{tenant}/connections/{connection_id}/users/{user_id}/logout``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from gateway import (
    CONTEXT,
    BadRequest,
    Connection,
    Forbidden,
    NotFound,
    PluginContext,
    RetryableError,
    json_response,
)

from . import accounts, oauth
from .accounts import CALLBACK_PATH
from .api import GrantRejected

log = logging.getLogger("gateway_webex")


def _page(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text + "\n", status=status, content_type="text/plain")


async def _connection(ctx: PluginContext, connection_id: str | None) -> Connection:
    if not connection_id or len(connection_id) > 64:
        raise NotFound("unknown connection")
    return await ctx.connections.own(connection_id)


async def _redirect(request: web.Request, purpose: str) -> web.Response:
    ctx = request[CONTEXT]
    cfg = ctx.settings.require()
    conn = await _connection(ctx, request.query.get("connection"))
    state = oauth.make_state(cfg.client_secret, conn.id, purpose, cfg.state_ttl)
    url = oauth.authorize_url(cfg.authorize_url, cfg.client_id, ctx.app_url(CALLBACK_PATH),
                              cfg.scopes, state)
    return web.Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})


async def login(request: web.Request) -> web.Response:
    return await _redirect(request, "login")


async def logout(request: web.Request) -> web.Response:
    return await _redirect(request, "logout")


async def callback(request: web.Request) -> web.Response:
    ctx = request[CONTEXT]
    cfg = ctx.settings.require()
    code, state_text = request.query.get("code"), request.query.get("state")
    if request.query.get("error") or not code or not state_text or len(code) > 2048:
        return _page("The Webex login was cancelled or failed. Start again from the login link.", 400)
    try:
        state = oauth.check_state(cfg.client_secret, state_text)
    except oauth.BadState as exc:
        return _page(f"Invalid login link: {exc}. Start again from the login link.", 400)
    conn = await _connection(ctx, state.connection_id)
    try:
        if state.purpose == "login":
            await accounts.login(ctx, conn, code)
            return _page("You are logged in: your Webex calls now reach the CRM. You can close this window.")
        await accounts.logout_with_code(ctx, conn, code)
        return _page("You are logged out: your name and e-mail were deleted. You can close this window.")
    except GrantRejected:
        return _page("Webex refused the login. Start again from the login link.", 400)
    except RetryableError as exc:
        headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else {}
        resp = _page("Webex is busy. Try again in a minute.", 503)
        resp.headers.update(headers)
        return resp
    except Forbidden:
        return _page("This Webex account belongs to another organisation than this connection.", 403)


async def admin_logout(request: web.Request) -> web.Response:
    ctx = request[CONTEXT]
    tenant = request.match_info["tenant"]  # a token scoped to another tenant was refused (403)
    conn = await _connection(ctx, request.match_info["connection_id"])
    if conn.tenant != tenant:
        raise NotFound("unknown connection")
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
    register(method="GET", path="/login", handler=login)
    register(method="GET", path="/logout", handler=logout)
    register(method="GET", path=CALLBACK_PATH, handler=callback)
    register(method="POST", area="admin", handler=admin_logout,
             path="/tenants/{tenant}/connections/{connection_id}/users/{user_id}/logout")
