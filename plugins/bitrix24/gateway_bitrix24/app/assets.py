"""The app's own CSS and JavaScript, served by the gateway (no CDN; the pages allow no inline
script or style). Only the files named here are served, read once from the package."""

from __future__ import annotations

from functools import cache
from importlib import resources

from aiohttp import web

from gateway import NotFound

TYPES = {"app.css": "text/css", "app.js": "text/javascript"}


@cache
def asset(name: str) -> tuple[bytes, str]:
    """(content, media type) of a static file; :class:`gateway.NotFound` for any other name."""
    media = TYPES.get(name)
    if media is None:
        raise NotFound("no such file")
    return resources.files(__package__).joinpath("static", name).read_bytes(), media


async def handle_asset(request: web.Request) -> web.Response:
    """``GET .../static/{name}``: needs no token (the files hold nothing about anybody)."""
    body, media = asset(request.match_info.get("name", ""))
    return web.Response(body=body, content_type=media, charset="utf-8",
                        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})
