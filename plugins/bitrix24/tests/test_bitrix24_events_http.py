"""The event endpoint on the wire: bodies that arrive in pieces, and input that must stay 4xx."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from bitrix24_fakes import (
    ENV,
    FORM,
    MEMBER,
    BitrixMock,
    click_body,
    form,
    install_body,
    install_with_user,
    oauth_calls,
    uninstall_body,
)
from gateway_bitrix24.parse import EVENT_WINDOW


@pytest.fixture
def mock() -> Any:
    with BitrixMock(passthrough=["http://127.0.0.1"]) as m:
        yield m


async def post_in_pieces(h: Any, path: str, body: bytes, pieces: int = 3, chunked: bool = False) -> int:
    """POST ``body`` over a raw socket in ``pieces`` separate writes; return the status.

    ``chunked`` sends it with ``Transfer-Encoding: chunked`` (no length known up front)."""
    server = h.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    writer.write((f"POST {path} HTTP/1.1\r\nHost: {server.host}\r\n"
                  "Content-Type: application/x-www-form-urlencoded\r\n"
                  f"{length}\r\nConnection: close\r\n\r\n").encode())
    await writer.drain()
    step = -(-len(body) // pieces)
    for start in range(0, len(body), step):
        await asyncio.sleep(0.05)  # each piece reaches the server as its own segment
        piece = body[start:start + step]
        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


async def test_an_uninstall_split_across_segments_is_read_whole(gateway_harness: Any, mock: Any) -> None:
    h, _, _ = await install_with_user(gateway_harness, mock)
    assert await post_in_pieces(h, "/hooks/bitrix24/events", uninstall_body()) == 200
    await h.admin("GET", f"/tenants/{MEMBER}", expect=404)


async def test_a_chunked_body_is_read_whole_and_bounded(gateway_harness: Any, mock: Any) -> None:
    h, _, _ = await install_with_user(gateway_harness, mock)
    too_big = uninstall_body() + b"&pad=" + b"x" * h.gw.config.max_body
    assert await post_in_pieces(h, "/hooks/bitrix24/events", too_big, pieces=4, chunked=True) == 413
    await h.admin("GET", f"/tenants/{MEMBER}", expect=200)
    assert await post_in_pieces(h, "/hooks/bitrix24/events", uninstall_body(), chunked=True) == 200
    await h.admin("GET", f"/tenants/{MEMBER}", expect=404)


@pytest.mark.parametrize("ts", ["%C2%B2", "%D9%A3", "1e9", "-1", "9" * 12])
async def test_a_ts_that_is_not_a_unix_time_is_400(gateway_harness: Any, ts: str) -> None:
    h = await gateway_harness(env=ENV)
    body = uninstall_body().replace(b"ts=1466439714", f"ts={ts}".encode())
    resp = await h.client.post("/hooks/bitrix24/events", data=body, headers=FORM)
    assert resp.status == 400


async def test_an_install_while_the_app_is_not_configured_is_503_with_retry_after(
        gateway_harness: Any, mock: Any) -> None:
    h = await gateway_harness()  # no GATEWAY_BITRIX24_CLIENT_ID / CLIENT_SECRET
    resp = await h.client.post("/hooks/bitrix24/events", data=install_body(), headers=FORM)
    assert resp.status == 503 and int(resp.headers["Retry-After"]) > 0
    assert "not configured" in (await resp.json())["error"]
    ui = form({"member_id": MEMBER, "DOMAIN": "example.bitrix24.de", "AUTH_ID": "a" * 32,
               "REFRESH_ID": "r" * 32, "AUTH_EXPIRES": "3600"})
    resp = await h.client.post("/apps/bitrix24/install", data=ui, headers=FORM)
    assert resp.status == 503 and "Retry-After" in resp.headers
    assert oauth_calls(mock) == []
    await h.admin("GET", f"/tenants/{MEMBER}", expect=404)


@pytest.mark.parametrize("extra", [
    b"&auth%5Bmember_id%5D=someoneelse",  # the same key twice, another value: which one counts?
    b"&auth%5Bapplication_token%5D=forged",
    b"&event=ONAPPINSTALL",
    b"&data%5BLANGUAGE_ID%5D=%ff%fe",  # percent-escapes that are not UTF-8
    b"&data",  # a field that is not key=value
])
async def test_ambiguous_or_malformed_forms_are_400(gateway_harness: Any, mock: Any, extra: bytes) -> None:
    h, _, _ = await install_with_user(gateway_harness, mock)
    resp = await h.client.post("/hooks/bitrix24/events", data=uninstall_body() + extra, headers=FORM)
    assert resp.status == 400
    await h.admin("GET", f"/tenants/{MEMBER}", expect=200)
    same_twice = uninstall_body() + b"&auth%5Bmember_id%5D=" + MEMBER.encode()
    resp = await h.client.post("/hooks/bitrix24/events", data=same_twice, headers=FORM)
    assert resp.status == 200  # the same value twice is not ambiguous


async def test_telephony_events_outside_the_window_are_refused(gateway_harness: Any, mock: Any) -> None:
    h, fake, _ = await install_with_user(gateway_harness, mock)
    now = int(time.time())

    def with_ts(call_id: str, ts: int | None) -> bytes:
        fields = [(k, v) for k, v in parse_qsl(click_body(call_id).decode()) if k != "ts"]
        return urlencode(fields + ([("ts", str(ts))] if ts is not None else [])).encode()

    for n, ts in enumerate((now - EVENT_WINDOW - 60, now + 3600, None, 0)):
        resp = await h.client.post("/hooks/bitrix24/events", data=with_ts(f"externalCall.old.{n}", ts),
                                   headers=FORM)
        assert resp.status == 400, ts
    assert fake.source.originated == []
    resp = await h.client.post("/hooks/bitrix24/events", data=with_ts("externalCall.late.1", now - 3000),
                               headers=FORM)
    assert resp.status == 200  # queued by Bitrix24 for 50 minutes: still acted on
