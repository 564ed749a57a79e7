"""The admin API on the wire: headers no client library would send."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest


async def raw_request(h: Any, head: bytes) -> int:
    """Send a raw request head (no body) and return the status of the answer."""
    server = h.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(head)
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


@pytest.mark.parametrize("token", [b"\xff\xfe", b"test-admin-token-0123456789\xff", "t\u00f6ken".encode()])
async def test_a_token_with_bytes_outside_ascii_is_401(gateway_harness: Any, token: bytes) -> None:
    h = await gateway_harness()
    head = (b"GET /admin/v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token
            + b"\r\nConnection: close\r\n\r\n")
    assert await raw_request(h, head) == 401


async def test_unknown_query_parameters_and_malformed_tenants_are_400(gateway_harness: Any) -> None:
    """Found by schemathesis in negative mode: both were silently ignored (200)."""
    h = await gateway_harness()
    for path in ("/admin/v1/audit?limt=5", "/admin/v1/tenants?x=1", "/admin/v1/deadletters?tenant=%F0%B6%99%84"):
        resp = await h.client.get(path, headers=h.headers)
        assert resp.status == 400, path
    resp = await h.client.get("/admin/v1/audit?limit=5&after=0", headers=h.headers)
    assert resp.status == 200


async def test_a_body_announced_too_large_is_refused_before_it_is_read(gateway_harness: Any) -> None:
    h = await gateway_harness()
    head = (b"POST /admin/v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000\r\n\r\n{")
    assert await asyncio.wait_for(raw_request(h, head), 5) == 413
