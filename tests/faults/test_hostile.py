"""A hostile-input corpus against every webhook endpoint: only 4xx or an idempotent 2xx,
never a 5xx, and nothing stored."""

from __future__ import annotations

import gzip
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from demo_secret import SECRET as DEMO_SECRET
from demo_source import sign as demo_sign

PLACETEL_SECRET = "hostile-placetel-secret"
PLACETEL_BODY = (b"event=IncomingCall&from=022129191999&to=022199998560"
                 b"&call_id=f4591ba315d81671d7a06c2a3b4f963dafd119de39cb26edd8a6476676b2f447&direction=in")
DEMO_BODY = orjson.dumps({"id": "h1", "call": "hc", "state": "ringing", "from": "+4922112345678"})


def hmac_hex(secret: str, body: bytes, algo: str = "sha256") -> str:
    return hmac.new(secret.encode(), body, getattr(hashlib, algo)).hexdigest()


def corpus(body: bytes, ctype: str, header: str, signer: Callable[[bytes], str]) -> list[tuple[str, bytes, dict[str, str]]]:
    """(name, body, headers) of hostile variants of one valid, signed request."""
    def signed(b: bytes, **extra: str) -> dict[str, str]:
        return {"Content-Type": ctype, header: signer(b), **extra}
    deep = b"[" * 100_000 + b"]" * 100_000
    dup = body + b"&" + body if ctype.endswith("urlencoded") else b'{"id": "a", "id": "b", "call": "c"}'
    bomb = gzip.compress(b"0" * (20 * 1024 * 1024))
    return [
        ("missing signature", body, {"Content-Type": ctype}),
        ("bad signature", body, {"Content-Type": ctype, header: "00" * 32}),
        ("signature of another body", body, {"Content-Type": ctype, header: signer(body + b"x")}),
        ("non-hex signature", body, {"Content-Type": ctype, header: "zz" * 32}),
        ("non-ascii signature", body, {"Content-Type": ctype, header: "é" * 10}),
        ("truncated body", body[: len(body) // 2], {"Content-Type": ctype, header: signer(body)}),
        ("oversized body", body + b"x" * 400_000, signed(body + b"x" * 400_000)),
        ("invalid utf-8, signed", b"\xff\xfe\xfa" + body, signed(b"\xff\xfe\xfa" + body)),
        ("duplicated keys, signed", dup, signed(dup)),
        ("deep json, signed", deep, signed(deep)),
        ("empty body, signed", b"", signed(b"")),
        ("gzip bomb", bomb, {"Content-Type": ctype, "Content-Encoding": "gzip", header: signer(bomb)}),
        ("wrong content type", body, {"Content-Type": "text/plain", header: signer(body)}),
        ("multipart", body, {"Content-Type": "multipart/form-data; boundary=x", header: signer(body)}),
        ("no content type", body, {header: signer(body)}),
    ]


async def count_rows(h: Any) -> tuple[int, int, int, int]:
    """Rows of the tables a webhook may write, once every acknowledged one was interpreted."""
    await h.settled()
    store = h.gw.store
    return tuple([(await store.db.all(f"SELECT COUNT(*) FROM {t}"))[0][0]  # type: ignore[return-value]
                  for t in ("events", "deliveries", "tenants", "journal")])


async def assert_hostile(h: Any, path: str, body: bytes, ctype: str, header: str,
                         signer: Callable[[bytes], str], replay_ok: bool = True) -> None:
    before = await count_rows(h)
    journaled = h.gw.interpreter.journaled
    for name, data, headers in corpus(body, ctype, header, signer):
        resp = await h.client.post(path, data=data, headers=headers)
        assert 400 <= resp.status < 500, (name, resp.status)
        assert "Traceback" not in await resp.text()
    assert h.gw.interpreter.journaled == journaled, "hostile input was journaled"
    assert await count_rows(h) == before, "hostile input stored something"
    if replay_ok:  # a valid request, replayed: 2xx each time, stored once
        headers = {"Content-Type": ctype, header: signer(body)}
        statuses = [(await h.client.post(path, data=body, headers=headers)).status for _ in range(3)]
        assert statuses == [200, 200, 200]
        events_after = (await count_rows(h))[0]
        assert events_after - before[0] >= 1
        again = (await h.client.post(path, data=body, headers=headers)).status
        assert again == 200 and (await count_rows(h))[0] == events_after


async def test_demo_endpoint(demo):
    await assert_hostile(demo, f"/hooks/demo/{demo.connection_id}", DEMO_BODY, "application/json",
                         "X-Demo-Signature", lambda b: demo_sign(DEMO_SECRET, b))


@pytest.fixture
async def placetel_api(aiohttp_server):
    async def me(request: web.Request) -> web.Response:
        return web.json_response({"id": 1, "name": "Account"})

    async def listing(request: web.Request) -> web.Response:
        return web.json_response([])

    async def subscribe(request: web.Request) -> web.Response:
        return web.json_response({"id": "sub-1"})

    app = web.Application()
    app.router.add_get("/v2/me", me)
    app.router.add_get("/v2/sip_users", listing)
    app.router.add_get("/v2/users", listing)
    app.router.add_put("/v2/subscriptions", subscribe)
    app.router.add_route("*", "/v2/{tail:.*}", listing)
    server = await aiohttp_server(app)
    return str(server.make_url("/v2"))


async def test_placetel_endpoint(gateway_harness, placetel_api):
    h = await gateway_harness(env={"GATEWAY_PLACETEL_API_URL": placetel_api})
    await h.create_tenant("acme")
    conn = await h.connect("acme", "placetel", {"api_key": "hostile-api-key-0123", "secret": PLACETEL_SECRET})
    await assert_hostile(h, f"/hooks/placetel/{conn['id']}", PLACETEL_BODY, "application/x-www-form-urlencoded",
                         "X-PLACETEL-SIGNATURE", lambda b: hmac_hex(PLACETEL_SECRET, b))


async def test_webex_endpoint(gateway_harness):
    h = await gateway_harness(env={"GATEWAY_WEBEX_CLIENT_ID": "cid", "GATEWAY_WEBEX_CLIENT_SECRET": "csecret-0123",
                                   "GATEWAY_WEBEX_API_URL": "http://127.0.0.1:9/v1"})
    await h.create_tenant("acme")
    conn = await h.connect("acme", "webex", {})
    body = orjson.dumps({"id": "wh-unknown", "resource": "telephony_calls", "event": "created",
                         "data": {"callId": "c1"}})
    # no user logged in: no webhook secret exists, so even a "valid" body is refused
    await assert_hostile(h, f"/hooks/webex/{conn['id']}", body, "application/json", "X-Spark-Signature",
                         lambda b: hmac_hex("somesupersecretphrase", b, "sha1"), replay_ok=False)


async def test_bitrix24_events_endpoint(gateway_harness):
    h = await gateway_harness()
    body = (b"event=ONEXTERNALCALLSTART&data%5BCALL_ID%5D=externalCall.1&auth%5Bmember_id%5D=abc"
            b"&auth%5Bapplication_token%5D=forged&auth%5Bdomain%5D=example.bitrix24.de")
    await assert_hostile(h, "/hooks/bitrix24/events", body, "application/x-www-form-urlencoded",
                         "X-Unused", lambda b: "", replay_ok=False)
