"""``GET /``: what the gateway is, health and version, documentation; nothing of any tenant."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from aiohttp import web

from gateway.home import HEADERS, render_home, home_handler


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.hrefs += [v or "" for k, v in attrs if k == "href"]


def test_render_home_says_what_this_is_and_how_it_is() -> None:
    html = render_home("1.2.3", True)
    assert "<h1>callgate</h1>" in html and "healthy" in html and "1.2.3" in html
    assert "docs/privacy.md" in html and "docs/app.md" in html
    assert "not ready" in render_home("1.2.3", False)
    tags = Tags()
    tags.feed(html)
    assert not {"form", "input", "script", "img", "iframe"} & set(tags.tags)


def test_render_home_escapes_and_links_the_docs() -> None:
    html = render_home("<b>1</b>", True, docs_url='https://docs.example/"x')
    assert "<b>1</b>" not in html and "&lt;b&gt;1&lt;/b&gt;" in html
    tags = Tags()
    tags.feed(html)
    assert tags.hrefs == ['https://docs.example/"x']


async def test_home_handler(aiohttp_client: Any) -> None:
    state = {"ok": True}

    async def healthy(request: web.Request) -> bool:
        if state["ok"] is None:
            raise RuntimeError("store gone")
        return bool(state["ok"])

    app = web.Application()
    app.router.add_get("/", home_handler("0.1.0", healthy))
    client = await aiohttp_client(app)
    resp = await client.get("/")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "healthy" in await resp.text()
    for name, value in HEADERS.items():
        assert resp.headers[name] == value
    state["ok"] = None  # type: ignore[assignment]
    assert "not ready" in await (await client.get("/")).text()


async def test_the_gateway_serves_the_home_page_and_shows_no_tenant(gateway_harness: Any) -> None:
    h = await gateway_harness()
    await h.create_tenant("acme-secret-tenant")
    resp = await h.client.get("/")
    assert resp.status == 200 and resp.content_type == "text/html"
    html = await resp.text()
    assert "healthy" in html and "acme-secret-tenant" not in html
    assert resp.headers["Content-Security-Policy"] == HEADERS["Content-Security-Policy"]
    assert (await h.client.post("/")).status == 405
