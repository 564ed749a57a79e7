"""A tiny app that serves the rendered pages the way the gateway will, for the browser tests.

It stands in for the wiring of issue 15: a stand-in portal check (``AUTH_ID`` ``admin-auth`` is
an administrator, ``user-auth`` a user, anything else is refused), in-memory tenant state, and
everything else real: frame tokens, purposes, form parsing, rendering, security headers. It also
serves a page that looks like a Bitrix24 portal and opens the app in an iframe by POSTing the
fields Bitrix24 posts, from another origin (``portal.localhost``).
"""

from __future__ import annotations

from dataclasses import replace
from html import escape
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from app_samples import KEY, MEMBER, NOW, PORTAL_USERS, admin_page, user_page

from gateway import BadRequest
from gateway_bitrix24.app import forms, token
from gateway_bitrix24.app.assets import handle_asset
from gateway_bitrix24.app.csp import security_headers
from gateway_bitrix24.app.render import render_admin, render_error, render_install, render_privacy, render_user
from gateway_bitrix24.app.texts import choose_language
from gateway_bitrix24.app.views import ACTION_PATHS, AdminPage, ErrorPage, Frame, Links, PrivacyPage

BASE = Links().base
PORTAL_HOST = "portal.localhost"
AUTH = {"admin-auth": (1, True), "user-auth": (7, False)}
NOTICES = {"notice.saved", "notice.mapping_saved", "notice.placetel_connected", "notice.placetel_disconnected",
           "notice.retried", "notice.erased", "notice.webex_logged_out"}
STATE = web.AppKey("state", dict)


def _portal(request: web.Request) -> str:
    return f"http://{PORTAL_HOST}:{request.url.port}"


def _page(request: web.Request, html: str, status: int = 200, bx24: bool = True) -> web.Response:
    return web.Response(text=html, status=status, content_type="text/html",
                        headers=security_headers(_portal(request), bx24=bx24, bx24_src="https://api.bitrix24.com/api/v1/"))


def _error(request: web.Request, reason: str, status: int) -> web.Response:
    lang = choose_language(request.query.get("LANG"))
    return _page(request, render_error(ErrorPage(reason), Frame(lang=lang)), status)  # type: ignore[arg-type]


def _home(request: web.Request, identity: token.Identity, notice: str | None = None) -> web.Response:
    state = request.app[STATE]
    frame = Frame.signed(KEY, identity, now=state["now"], notice=notice)
    if identity.is_admin:
        return _page(request, render_admin(state["admin"], frame))
    return _page(request, render_user(state["user"], frame))


async def open_app(request: web.Request) -> web.Response:
    """``POST /apps/bitrix24/``: what Bitrix24 posts into the frame; nothing in it is trusted."""
    form = await request.post()
    who = AUTH.get(str(form.get("AUTH_ID", "")))
    if who is None:
        return _error(request, "invalid", 401)
    if form.get("member_id") != MEMBER:
        return _error(request, "foreign", 403)
    identity = token.Identity(MEMBER, who[0], who[1], choose_language(request.query.get("LANG")))
    return _home(request, identity)


def _claims(request: web.Request, value: str | None, purpose: str) -> token.Claims:
    return token.verify(KEY, value, purpose, now=request.app[STATE]["now"])


async def show(request: web.Request) -> web.Response:
    """``GET`` pages, with the view token in ``?t=``."""
    try:
        claims = _claims(request, request.query.get("t"), token.VIEW)
    except token.TokenError as exc:
        return _error(request, exc.reason, 401)
    page = request.match_info.get("page", "")
    frame = Frame.signed(KEY, claims.identity, now=request.app[STATE]["now"])
    if page == "me":
        return _page(request, render_user(request.app[STATE]["user"], frame))
    if page == "privacy":
        return _page(request, render_privacy(PrivacyPage(), frame))
    notice = request.query.get("n")
    return _home(request, claims.identity, notice if notice in NOTICES else None)


def _apply(state: dict[str, Any], purpose: str, form: Any) -> str:
    admin: AdminPage = state["admin"]
    ids = {u.id for u in PORTAL_USERS}
    if purpose == token.SETTINGS:
        choice = forms.read_settings(form, ids)
        state["admin"] = replace(admin, settings=replace(
            admin.settings, responsible_user_id=choice.responsible_user_id, crm_create=choice.crm_create,
            show_card=choice.show_card, log_internal=choice.log_internal))
        return "notice.saved"
    if purpose == token.MAPPING:
        chosen = forms.read_mapping(form, {r.key for r in admin.mapping}, ids)
        rows = []
        for r in admin.mapping:
            if r.key in chosen and chosen[r.key] is not None:
                r = replace(r, portal_user_id=chosen[r.key], matched_by="manual")
            elif r.key in chosen and r.matched_by == "manual":  # back to automatic: not matched yet
                r = replace(r, portal_user_id=None, matched_by=None)
            rows.append(r)
        state["admin"] = replace(admin, mapping=tuple(rows))
        return "notice.mapping_saved"
    if purpose == token.PLACETEL_CONNECT:
        forms.read_placetel_key(form)
        state["admin"] = replace(admin, placetel=admin_page().placetel)
        return "notice.placetel_connected"
    if purpose == token.RETRY:
        forms.read_retry(form)
        return "notice.retried"
    forms.read_empty(form) if purpose != token.ERASE_ME else forms.read_confirmation(form)
    return {token.PLACETEL_DISCONNECT: "notice.placetel_disconnected", token.ERASE_ME: "notice.erased",
            token.WEBEX_LOGOUT: "notice.webex_logged_out"}[purpose]


def action(purpose: str) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        try:
            claims = _claims(request, forms.form_token(form), purpose)  # type: ignore[arg-type]
            notice = _apply(request.app[STATE], purpose, form)
        except token.TokenError as exc:
            return _error(request, exc.reason, 403 if isinstance(exc, token.TokenWrongPurpose) else 401)
        except BadRequest:
            return _error(request, "bad_request", 400)
        view = token.issue(KEY, claims.identity, token.VIEW, now=request.app[STATE]["now"])
        raise web.HTTPSeeOther(f"{BASE}/?{urlencode({'t': view, 'n': notice})}")
    return handle


async def install(request: web.Request) -> web.Response:
    return _page(request, render_install(Frame(lang=choose_language(request.query.get("LANG")))))


PORTAL_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Bitrix24</title><style>
body{{margin:0;font-family:"Open Sans",Helvetica,Arial,sans-serif;background:#eef2f4}}
.bar{{height:56px;background:#2fc6f6;color:#fff;display:flex;align-items:center;padding:0 20px;font-weight:700;font-size:20px}}
.bar span{{font-weight:400;font-size:14px;margin-left:auto}}
.wrap{{display:flex}} .menu{{width:200px;padding:16px 0;color:#525c69;font-size:14px}}
.menu p{{margin:0;padding:8px 24px}} .menu .on{{background:#fff;font-weight:600}}
.content{{flex:1;padding:16px 20px 20px 0}} h1{{font-size:22px;color:#333;font-weight:400;margin:4px 0 12px}}
iframe{{width:100%;height:600px;border:0;background:#fff;border-radius:8px;display:block}}
</style></head><body>
<div class="bar">Bitrix<span>example.bitrix24.de</span></div>
<div class="wrap"><nav class="menu"><p>Feed</p><p>Tasks</p><p>CRM</p><p>Telephony</p><p class="on">Applications</p></nav>
<div class="content"><h1>callgate telephony</h1>
<form id="open" method="post" target="app" action="{action}">{fields}</form>
<iframe name="app" id="app" title="callgate telephony"></iframe></div></div>
<script>
window.addEventListener("message", function (e) {{
  var app = document.getElementById("app");
  if (e.data && e.data.bx24 === "fitWindow") {{
    app.style.height = (e.data.height + 4) + "px";
    app.setAttribute("data-fits", String(Number(app.getAttribute("data-fits") || 0) + 1));
  }}
  if (e.data && e.data.bx24 === "installFinish") {{ document.body.setAttribute("data-installed", "1"); }}
}});
document.getElementById("open").submit();
</script></body></html>
"""


async def portal(request: web.Request) -> web.Response:
    """``GET /portal?auth=&lang=&path=``: a page like a Bitrix24 portal with the app in a frame."""
    q = request.query
    fields = {"AUTH_ID": q.get("auth", ""), "AUTH_EXPIRES": "3600", "REFRESH_ID": "r", "status": "L",
              "member_id": q.get("member", MEMBER), "PLACEMENT": "DEFAULT", "PLACEMENT_OPTIONS": "{}"}
    app_host = q.get("app_host", "127.0.0.1")
    query = urlencode({"DOMAIN": f"{PORTAL_HOST}:{request.url.port}", "PROTOCOL": "0",
                       "LANG": q.get("lang", "en"), "APP_SID": "sid"})
    target = f"http://{app_host}:{request.url.port}{BASE}{q.get('path', '/')}?{query}"
    html = PORTAL_PAGE.format(action=escape(target), fields="".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items()))
    return web.Response(text=html, content_type="text/html")


def make_app() -> web.Application:
    app = web.Application()
    app[STATE] = {"now": NOW.timestamp(), "admin": admin_page(connected=False), "user": user_page()}
    app.router.add_get("/portal", portal)
    app.router.add_post(f"{BASE}/", open_app)
    app.router.add_post(f"{BASE}/install", install)
    app.router.add_get(f"{BASE}/", show)
    app.router.add_get(BASE + "/{page:me|privacy}", show)
    app.router.add_get(BASE + "/static/{name}", handle_asset)
    for purpose, path in ACTION_PATHS.items():
        app.router.add_post(BASE + path, action(purpose))
    return app
