"""``GET /``: what this gateway is, whether it is healthy, its version, where the docs are.

A newcomer who opens the printed address sees this instead of a 404. It shows no tenant data
and offers no admin function; it is plain HTML built with :func:`html.escape` (the core has no
template engine) and needs no script, style sheet or image from anywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from html import escape

from aiohttp import web

#: Documentation shipped with the source; a deployment may point ``docs_url`` at its own copy.
DOCS = (
    ("README.md", "what the gateway does, quick start, configuration, privacy table"),
    ("docs/app.md", "the app inside Bitrix24, for a customer's CRM administrator"),
    ("docs/operations.md", "running it: container, keys, backups, reverse proxy, metrics"),
    ("docs/privacy.md", "how each privacy promise is enforced"),
    ("docs/plugins.md", "writing plugins for other CRMs and telephone systems"),
)

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:42rem;margin:3rem auto;padding:0 1rem;"
          "color:#1f2933;line-height:1.5}.ok{color:#1b6e3a}.bad{color:#b3261e}code{background:#f1f4f7;"
          "padding:0 .25rem}")


def render_home(version: str, healthy: bool, *, docs_url: str | None = None) -> str:
    """The page. ``docs_url``, when given, is where the documentation is published."""
    state = ('<strong class="ok">healthy</strong>' if healthy
             else '<strong class="bad">not ready</strong> (the store or the plugins are not up yet)')
    if docs_url:
        docs = f'<p><a href="{escape(docs_url, quote=True)}">Read the documentation</a>.</p>'
    else:
        items = "".join(f"<li><code>{escape(name)}</code>: {escape(what)}</li>" for name, what in DOCS)
        docs = f"<p>The documentation comes with the source:</p><ul>{items}</ul>"
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>callgate</title><style>{_STYLE}</style></head><body><main>"
            "<h1>callgate</h1>"
            "<p>A webhook gateway that writes calls from cloud telephone systems (Webex Calling, "
            "Placetel) into the Bitrix24 CRM, keeping as little personal data as it can.</p>"
            f"<p>Status: {state}. Version <code>{escape(version)}</code>.</p>"
            "<p>Telephone systems and CRMs talk to this address; people use it through the app "
            "inside their Bitrix24 portal. Health checks: <code>/healthz</code>, "
            "<code>/readyz</code>.</p>"
            f"<h2>Documentation</h2>{docs}"
            "</main></body></html>\n")


#: Inline style only: nothing else may load, no script may run, nobody may frame it.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def home_handler(version: str, healthy: Callable[[web.Request], Awaitable[bool]], *,
                 docs_url: str | None = None) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A ``GET /`` handler; ``healthy(request)`` answers whether the gateway is ready (it must
    not raise: a failing check is "not ready")."""
    async def home(request: web.Request) -> web.Response:
        try:
            ok = await healthy(request)
        except Exception:
            ok = False
        return web.Response(text=render_home(version, ok, docs_url=docs_url), content_type="text/html",
                            charset="utf-8", headers=HEADERS, status=200)
    return home
