"""The app's HTTP handlers under ``/apps/bitrix24``: opening it, its pages, its forms, its files.

``POST /``           Bitrix24 opens the app in its frame (:func:`.access.open_app`)
``POST /install``    the install page of an app with a UI (``BX24.installFinish``)
``GET /``, ``/me``, ``/privacy``   pages, with the view token in ``?t=``
``POST`` the paths of :data:`.views.ACTION_PATHS`   forms, each with its purpose's token in ``t``
``GET /static/{name}``   CSS and JavaScript

Pages are HTML in every case, errors too (:func:`.render.render_error`: what happened, what
to do, no data). A form answers ``303 See Other`` back to its page (post/redirect/get), with a
fresh view token and the text key of what happened. No cookies; every answer says who may
frame it (the tenant's portal only, for anything showing data) and that nothing may cache it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from gateway import (
    CONTEXT,
    BadRequest,
    Forbidden,
    GatewayError,
    NotFound,
    PluginContext,
    RetryableError,
    Unauthorized,
    UpstreamError,
)

from .. import lifecycle
from ..parse import parse_ui_install
from ..responses import AuthRevoked, Bitrix24Error
from . import actions, forms, pages, token
from .access import AppRefused, frame_ancestors, installed_portal, open_app, token_key, whoami
from .assets import handle_asset
from .csp import security_headers
from .render import render_admin, render_error, render_install, render_privacy, render_user
from .texts import Texts, choose_language
from .views import ACTION_PATHS, ErrorPage, Frame, Links

log = logging.getLogger("gateway_bitrix24.app")

FORM = "application/x-www-form-urlencoded"
#: The largest form the app reads (the mapping form of a big portal stays far below).
MAX_FORM = 256 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FormAction = Callable[[PluginContext, token.Identity, Mapping[str, str]], Awaitable[actions.Outcome]]

ACTIONS: Mapping[str, FormAction] = {
    token.PLACETEL_CONNECT: actions.connect_placetel,
    token.PLACETEL_DISCONNECT: actions.disconnect_placetel,
    token.SETTINGS: actions.save_settings,
    token.MAPPING: actions.save_user_mapping,
    token.RETRY: actions.retry_failed,
    token.ERASE_ME: actions.erase_me,
}


def links(ctx: PluginContext) -> Links:
    return Links(base=f"/apps/{ctx.name}")


def _html(html: str, status: int, ancestors: str | Sequence[str], *, bx24: bool) -> web.Response:
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8",
                        headers=security_headers(ancestors, bx24=bx24))


#: How long to come back after, while the operator has not configured the app's credentials.
UNCONFIGURED_RETRY_AFTER = 600


def _error(ctx: PluginContext, reason: Any, status: int, lang: str) -> web.Response:
    """An error page; it holds no data, so any portal the operator allows may frame it."""
    frame = Frame(lang=choose_language(lang), links=links(ctx))
    response = _html(render_error(ErrorPage(reason), frame), status, frame_ancestors(ctx, None), bx24=frame.bx24)
    if reason == "not_configured":  # the operator's fault, not the portal's: come back later
        response.headers["Retry-After"] = str(UNCONFIGURED_RETRY_AFTER)
        ctx.count("install_unconfigured" if status == 503 else "app_unconfigured")
    return response


def pages_handler(handler: Handler) -> Handler:
    """Every failure as the app's error page (never JSON, never a traceback)."""
    async def handle(request: web.Request) -> web.StreamResponse:
        ctx: PluginContext = request[CONTEXT]
        lang = request.query.get("LANG", "en")
        try:
            return await handler(request)
        except AppRefused as exc:
            return _error(ctx, exc.reason, exc.status, exc.lang)
        except token.TokenError as exc:
            return _error(ctx, exc.reason, 403 if exc.reason == "forbidden" else 401, lang)
        except (BadRequest, Forbidden, Unauthorized):
            return _error(ctx, "bad_request", 400, lang)
        except NotFound:
            return _error(ctx, "not_found", 404, lang)
        except (RetryableError, UpstreamError, AuthRevoked, Bitrix24Error):
            return _error(ctx, "unavailable", 503, lang)
        except (web.HTTPException, GatewayError):
            raise
        except Exception as exc:
            log.error("app page failed", extra={"error": type(exc).__name__})
            return _error(ctx, "unavailable", 500, lang)
    return handle


async def read_body(request: web.Request) -> bytes:
    """A posted form's bytes; anything but a small URL-encoded form is refused."""
    if request.content_type != FORM:
        raise BadRequest("send a form")
    if request.content_length is not None and request.content_length > MAX_FORM:
        raise BadRequest("form too large")
    body = await request.read()  # whole, however it is split (aiohttp bounds it: client_max_size)
    if len(body) > MAX_FORM:
        raise BadRequest("form too large")
    return body


async def read_form(request: web.Request) -> dict[str, str]:
    """A posted form's fields (later duplicates win)."""
    body = await read_body(request)
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=5000))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form cannot be read") from None


async def _page(ctx: PluginContext, identity: token.Identity, page: str, *, notice: str | None = None,
                problem: str | None = None) -> web.Response:
    """A page of the app for a checked identity, framed by the tenant's portal only."""
    portal = await installed_portal(ctx, identity.tenant, identity.lang)
    frame = Frame.signed(token_key(ctx), identity, links=links(ctx), notice=notice, problem=problem)
    if page == "privacy":
        html = render_privacy(pages.privacy_page(ctx), frame)
    elif page == "home" and identity.is_admin:
        admin, people = await pages.admin_page(ctx, identity.tenant)
        if people is None and problem is None:
            frame = replace(frame, problem="problem.portal_users_unavailable")
        html = render_admin(admin, frame)
    else:
        html = render_user(await pages.user_page(ctx, identity), frame)
    return _html(html, 200, frame_ancestors(ctx, portal), bx24=frame.bx24)


@pages_handler
async def handle_open(request: web.Request) -> web.StreamResponse:
    """``POST /apps/bitrix24/``: Bitrix24 opens the app; who it is for is asked of the portal."""
    ctx: PluginContext = request[CONTEXT]
    identity = await open_app(ctx, await read_form(request), request.query)
    return await _page(ctx, identity, "home")


PAGES = {"": "home", "me": "me", "privacy": "privacy"}


def _text_key(texts: Texts, value: str | None, prefix: str) -> str | None:
    return value if value and value.startswith(prefix) and texts.has(value) else None


@pages_handler
async def handle_page(request: web.Request) -> web.StreamResponse:
    """``GET /``, ``/me``, ``/privacy`` with the view token."""
    ctx: PluginContext = request[CONTEXT]
    claims = token.verify(token_key(ctx), request.query.get("t"), token.VIEW)
    texts = Texts.load(claims.identity.lang)
    page = PAGES.get(request.match_info.get("page", ""), "home")
    return await _page(ctx, claims.identity, page, notice=_text_key(texts, request.query.get("n"), "notice."),
                       problem=_text_key(texts, request.query.get("p"), "problem."))


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store",
                                             "Referrer-Policy": "no-referrer"})


def _back(ctx: PluginContext, identity: token.Identity, outcome: actions.Outcome) -> web.Response:
    """``303`` to the page the form came from, with a fresh view token."""
    view = token.issue(token_key(ctx), identity, token.VIEW)
    query = {"t": view, **({"n": outcome.notice} if outcome.notice else {}),
             **({"p": outcome.problem} if outcome.problem else {})}
    target = links(ctx).me if outcome.page == "me" else links(ctx).home
    return _see_other(f"{target}?{urlencode(query)}")


def action_handler(purpose: str) -> Handler:
    """``POST`` of one form: its token must be for this purpose (an administrator's purpose is
    never issued to, nor accepted from, anyone else)."""
    @pages_handler
    async def handle(request: web.Request) -> web.StreamResponse:
        ctx: PluginContext = request[CONTEXT]
        form = await read_form(request)
        claims = token.verify(token_key(ctx), forms.form_token(form), purpose)
        await installed_portal(ctx, claims.identity.tenant, claims.identity.lang)
        return _back(ctx, claims.identity, await ACTIONS[purpose](ctx, claims.identity, form))
    return handle


@pages_handler
async def handle_install(request: web.Request) -> web.StreamResponse:
    """``POST /apps/bitrix24/install``: store the install (issue 6, :func:`..lifecycle.on_ui_install`),
    then the page that calls ``BX24.installFinish()``, with a way into the app."""
    ctx: PluginContext = request[CONTEXT]
    lang = choose_language(request.query.get("LANG"))
    key = token_key(ctx, lang)
    ui = parse_ui_install(await read_body(request))
    if not ui.domain:  # Bitrix24 names the portal in the query
        ui = replace(ui, domain=request.query.get("DOMAIN", ""))
    try:
        await lifecycle.on_ui_install(ctx, ui)
    except (Unauthorized, Forbidden):
        raise AppRefused("invalid", 401, lang) from None
    portal = await installed_portal(ctx, ui.member_id, lang)
    try:
        frame = Frame.signed(key, await whoami(ctx, ui.member_id, ui.access_token, lang), links=links(ctx))
    except AppRefused:  # the install stands; the app is opened from the portal's menu instead
        frame = Frame(lang=lang, links=links(ctx))
    return _html(render_install(frame), 200, frame_ancestors(ctx, portal), bx24=True)


def register_all(register: Callable[..., None]) -> None:
    """The app's routes (``area="apps"``: mounted at ``/apps/bitrix24``)."""
    register(method="POST", path="/", handler=handle_open, area="apps")
    register(method="GET", path="/", handler=handle_page, area="apps")
    register(method="GET", path="/{page:me|privacy}", handler=handle_page, area="apps")
    register(method="POST", path="/install", handler=handle_install, area="apps")
    register(method="GET", path="/static/{name}", handler=handle_asset, area="apps")
    for purpose, path in ACTION_PATHS.items():
        register(method="POST", path=path, handler=action_handler(purpose), area="apps")
