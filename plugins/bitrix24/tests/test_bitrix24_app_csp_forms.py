"""Security headers of the app's pages, reading its forms, serving its static files."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from gateway import BadRequest
from gateway_bitrix24.app.assets import asset, handle_asset
from gateway_bitrix24.app.csp import content_security_policy, portal_origin, security_headers
from gateway_bitrix24.app.forms import (
    SettingsChoice,
    form_token,
    read_confirmation,
    read_empty,
    read_mapping,
    read_placetel_key,
    read_retry,
    read_settings,
)


def directives(policy: str) -> dict[str, str]:
    return dict(d.split(" ", 1) for d in policy.split("; "))


def test_frame_ancestors_is_only_the_portal() -> None:
    policy = directives(content_security_policy("Example.Bitrix24.de"))
    assert policy["frame-ancestors"] == "https://example.bitrix24.de"
    assert policy["default-src"] == "'self'" and policy["script-src"] == "'self'"
    assert policy["object-src"] == "'none'" and policy["form-action"] == "'self'"
    assert "unsafe-inline" not in content_security_policy("example.bitrix24.de", bx24=True)


def test_bx24_library_only_where_asked() -> None:
    policy = directives(content_security_policy("example.bitrix24.de", bx24=True))
    assert policy["script-src"] == "'self' https://api.bitrix24.com/api/v1/"
    with pytest.raises(ValueError):
        content_security_policy("example.bitrix24.de", bx24=True, bx24_src="http://api.bitrix24.com/api/v1/")
    with pytest.raises(ValueError):
        content_security_policy("example.bitrix24.de", bx24=True, bx24_src="https://x.test/a; script-src *")


@pytest.mark.parametrize("portal", ["example.bitrix24.de; script-src *", "evil.test/path", "a b.test",
                                    "https://user@example.test", "javascript:alert(1)", "", "exa\nmple.test",
                                    "https://example.test:99999"])
def test_a_portal_address_cannot_extend_the_header(portal: str) -> None:
    with pytest.raises(ValueError):
        portal_origin(portal)


def test_portal_origins() -> None:
    assert portal_origin("https://crm.example.com/") == "https://crm.example.com"
    assert portal_origin("http://portal.localhost:8123") == "http://portal.localhost:8123"
    assert portal_origin("example.bitrix24.de") == "https://example.bitrix24.de"


def test_security_headers() -> None:
    headers = security_headers("example.bitrix24.de")
    assert headers["Referrer-Policy"] == "no-referrer"  # tokens travel in URLs
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"


USERS = {1, 7, 12}


def test_settings_form() -> None:
    form = {"t": "tok", "responsible_user_id": "7", "crm_create": "on", "log_internal": "on"}
    assert read_settings(form, USERS) == SettingsChoice(7, crm_create=True, show_card=False, log_internal=True)
    assert read_settings({"responsible_user_id": ""}, USERS).responsible_user_id is None
    assert form_token(form) == "tok" and form_token({}) == ""
    for bad in ({"responsible_user_id": "99"}, {"responsible_user_id": "-1"}, {"crm_create": "yes"},
                {"is_admin": "on"}, {"responsible_user_id": "1" * 40}):
        with pytest.raises(BadRequest):
            read_settings(bad, USERS)


def test_mapping_form() -> None:
    rows = {"c1.u1", "c2.u9"}
    assert read_mapping({"t": "x", "map.c1.u1": "12", "map.c2.u9": "auto"}, rows, USERS) == {"c1.u1": 12, "c2.u9": None}
    for bad in ({"map.c3.u1": "1"}, {"map.c1.u1": "99"}, {"other": "1"}, {"map.": "1"}):
        with pytest.raises(BadRequest):
            read_mapping(bad, rows, USERS)


def test_placetel_retry_and_confirmation_forms() -> None:
    assert read_placetel_key({"api_key": "  abc123DEF  "}) == "abc123DEF"
    for bad in ({"api_key": ""}, {"api_key": "with space"}, {"api_key": "x" * 201}, {"api_key": "k", "x": "1"}):
        with pytest.raises(BadRequest) as exc:
            read_placetel_key(bad)
        assert "with space" not in str(exc.value)
    assert read_retry({"delivery": "all"}) is None
    assert read_retry({"delivery": "4711"}) == "4711"
    with pytest.raises(BadRequest):
        read_retry({"delivery": "1; drop"})
    read_confirmation({"t": "x", "confirm": "yes"})
    with pytest.raises(BadRequest):
        read_confirmation({"t": "x"})
    read_empty({"t": "x"})
    with pytest.raises(BadRequest):
        read_empty({"t": "x", "extra": "1"})


async def test_static_files_are_served_and_nothing_else(aiohttp_client: Any) -> None:
    app = web.Application()
    app.router.add_get("/static/{name}", handle_asset)
    client = await aiohttp_client(app)
    resp = await client.get("/static/app.css")
    assert resp.status == 200 and resp.content_type == "text/css"
    assert (await resp.read()) == asset("app.css")[0]
    assert (await client.get("/static/app.js")).content_type == "text/javascript"
    for name in ("../texts.py", "en.json", "app.css.map"):
        with pytest.raises(Exception) as exc:
            asset(name)
        assert getattr(exc.value, "status", None) == 404
