"""The real gateway with the app, around the fake vendors of ``app_fakes.py``: its settings and
what a test does through HTTP (install, open the app, read the tokens a page holds)."""

from __future__ import annotations

import html
import re
from typing import Any

from app_fakes import ADMIN_AUTH, CLIENT_ID, CLIENT_SECRET, MEMBER, WEBEX_CLIENT_ID, WEBEX_CLIENT_SECRET

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
APP = "/apps/bitrix24"


def gateway_env(vendors: str, public_url: str | None = None) -> dict[str, str]:
    """Settings of a gateway whose vendors all live at ``vendors`` (``http://127.0.0.1:port``)."""
    env = {
        "GATEWAY_BITRIX24_CLIENT_ID": CLIENT_ID, "GATEWAY_BITRIX24_CLIENT_SECRET": CLIENT_SECRET,
        "GATEWAY_BITRIX24_OAUTH_URL": f"{vendors}/oauth/token/",
        "GATEWAY_BITRIX24_ALLOWED_PORTALS": "http://127.0.0.1:*,https://127.0.0.1:*",
        "GATEWAY_PLACETEL_API_URL": f"{vendors}/placetel/v2", "GATEWAY_PLACETEL_RETRY_BASE": "0",
        "GATEWAY_PLACETEL_RECORDINGS": "false",
        "GATEWAY_WEBEX_CLIENT_ID": WEBEX_CLIENT_ID, "GATEWAY_WEBEX_CLIENT_SECRET": WEBEX_CLIENT_SECRET,
        "GATEWAY_WEBEX_API_URL": f"{vendors}/webex/v1",
    }
    if public_url:
        env["GATEWAY_PUBLIC_URL"] = public_url
    return env


def portal_domain(vendors: str) -> str:
    return vendors.removeprefix("http://")


def install_form(auth: str = ADMIN_AUTH, member: str = MEMBER) -> dict[str, str]:
    return {"AUTH_ID": auth, "AUTH_EXPIRES": "3600", "REFRESH_ID": "install-refresh-1", "member_id": member,
            "status": "L", "PLACEMENT": "DEFAULT", "PLACEMENT_OPTIONS": "{}"}


def open_query(vendors: str, lang: str = "en", domain: str | None = None) -> dict[str, str]:
    return {"DOMAIN": domain if domain is not None else portal_domain(vendors), "PROTOCOL": "0",
            "LANG": lang, "APP_SID": "frame-sid-1"}


_FORM = re.compile(r'<form method="post" action="([^"]+)"[^>]*>\s*<input type="hidden" name="t" value="([^"]+)">')
_VIEW = re.compile(r'href="[^"]*\?t=([^"&]+)"')


def form_tokens(page: str) -> dict[str, str]:
    """The token of each form on a page, by the form's action path."""
    return {html.unescape(action): html.unescape(value) for action, value in _FORM.findall(page)}


def view_token(page: str) -> str:
    found = _VIEW.search(page)
    assert found, "the page holds no view token"
    return html.unescape(found.group(1))


_ROW = re.compile(r'<label class="sr-only" for="f-map-\d+">Portal user for ([^<]*)</label>\s*'
                  r'<select id="f-map-\d+" name="map\.([^"]+)">')


def mapping_rows(page: str) -> dict[str, str]:
    """The mapping form's rows: telephone user's name → the row's field name."""
    return {html.unescape(name): f"map.{key}" for name, key in _ROW.findall(page)}


def error_of(page: str) -> str:
    """The error page's message (its first paragraph)."""
    found = re.search(r'<h1 id="error-title">[^<]*</h1>\s*<p>([^<]*)</p>', page)
    return html.unescape(found.group(1)) if found else ""


async def post_form(client: Any, path: str, form: dict[str, str], **kw: Any) -> Any:
    return await client.post(path, data=form, headers=FORM, allow_redirects=False, **kw)
