"""Realistic Placetel Notify bodies (from the vendor reference) and shared test helpers."""

from __future__ import annotations

import hashlib
import hmac
import re

API = "https://api.placetel.test/v2"
SECRET = "n0tify-s3cret-xyz"
API_KEY = "pt-api-key-0123456789abcdef"
CALL_IN = "f4591ba315d81671d7a06c2a3b4f963dafd119de39cb26edd8a6476676b2f447"
CALL_OUT = "9b2e0c5d7f1a3b4c6d8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e"
CALLER = "022129191999"
CALLER_E164 = "+4922129191999"
OURS = "022199998560"
OURS_E164 = "+4922199998560"
MOBILE = "017312345678"
MOBILE_E164 = "+4917312345678"
SIPUID = "7777abcdefg@fpbx.de"
EMAIL = "anna.agent@example.com"
NAME = "Anna Agent"
RECORDING_LINK = "https://files.placetel.test/recordings/77.mp3?signature=abcdef123456"
VOICEMAIL_LINK = "https://files.placetel.test/voicemail/5.mp3?signature=fedcba654321"

VECTOR_1 = (
    "12345",
    b"call_id=4a4cbb39578170aed9a2761a7bec8c7e704a541f52291ef603d6f5f152980c3c&event=CallAccepted"
    b"&from=0123456789&to=0987654321",
    "c4f823c5b8806432fe2b83b1fc2ee714422e0cdfb4b5129152a7d0bbcd7792d0",
)
VECTOR_2 = (
    "12345",
    b"event=HungUp&from=0221234567&to=0301234567"
    b"&call_id=f4591ba315d81671d7a06c2a3b4f963dafd119de39cb26edd8a6476676b2f447"
    b"&type=accepted&duration=42&direction=in",
    "0e28bc21b3c314d1ee4f064ffa0d8a629a70b1b58fdc8895a54307ff98aebb73",
)


def incoming(call_id: str = CALL_IN, caller: str = CALLER, direction: bool = True) -> bytes:
    body = f"event=IncomingCall&from={caller}&to={OURS}&call_id={call_id}"
    return (body + "&direction=in" if direction else body).encode()


def accepted(call_id: str = CALL_IN, caller: str = CALLER) -> bytes:
    return (f"event=CallAccepted&from={caller}&to={OURS}&call_id={call_id}"
            f"&peer=7777abcdefg%40fpbx.de&direction=in").encode()


def hungup(type_: str, call_id: str = CALL_IN, duration: str | None = "0",
           direction: str | None = "in", caller: str = CALLER, to: str = OURS) -> bytes:
    body = f"event=HungUp&from={caller}&to={to}&call_id={call_id}&type={type_}"
    if duration is not None:
        body += f"&duration={duration}"
    if direction is not None:
        body += f"&direction={direction}"
    return body.encode()


def outgoing(call_id: str = CALL_OUT, to: str = MOBILE) -> bytes:
    return (f"event=OutgoingCall&from={OURS}&to={to}&peer=7777abcdefg%40fpbx.de"
            f"&call_id={call_id}&direction=out").encode()


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/x-www-form-urlencoded", "X-PLACETEL-SIGNATURE": sign(body, secret)}


def url(path: str) -> re.Pattern[str]:
    """A pattern for an API path with any query string."""
    return re.compile("^" + re.escape(API + path) + r"(\?.*)?$")


SIP_USERS = [
    {"id": 4711, "sipuid": SIPUID, "name": "Zentrale Anna", "did": 23, "callerid": OURS,
     "webuser_id": 815, "online": True},
    {"id": 4712, "sipuid": "7777xyz@fpbx.de", "name": "Empfang", "did": 24, "callerid": OURS,
     "webuser_id": None},
]
WEB_USERS = [
    {"id": 815, "email": EMAIL, "first_name": "Anna", "last_name": "Agent", "primary_sip_user_id": 4711},
    {"id": 816, "email": "nosip@example.com", "first_name": "No", "last_name": "Sip"},
]


# --- a fake Placetel Web API: a real aiohttp server on 127.0.0.1 ---------------------------
# (aioresponses 0.7.9 cannot build responses for aiohttp 3.14: ClientResponse now needs
# ``stream_writer``; so the vendor is mocked at the HTTP boundary with a local server.)

import json as _json  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import datetime  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402

from gateway.testing import ADMIN_TOKEN  # noqa: E402


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class FakePlacetel:
    """Answers ``(method, path)`` with queued replies (the last one repeats); records requests.

    ``call_list`` (when set) is the account's call list: ``GET /calls`` without a type filter
    answers from it as Placetel documents it (``filter[date]`` a German day, ``order``,
    ``page``, ``per_page``). ``once`` queues replies used up before anything else.
    """

    def __init__(self) -> None:
        self.replies: dict[tuple[str, str], list[Reply]] = {}
        self.first: dict[tuple[str, str], list[Reply]] = {}
        self.call_list: list[dict[str, Any]] | None = None
        self.seen: list[Seen] = []
        self.server: TestServer | None = None
        self.base = ""

    def on(self, method: str, path: str, status: int = 200, json: Any = None, body: str | None = None,
           headers: dict[str, str] | None = None, *, replace: bool = False) -> None:
        key = (method.upper(), path)
        if replace:
            self.replies.pop(key, None)
        self.replies.setdefault(key, []).append(Reply(status, json, body, headers or {}))

    def once(self, method: str, path: str, status: int = 200, json: Any = None,
             headers: dict[str, str] | None = None) -> None:
        self.first.setdefault((method.upper(), path), []).append(Reply(status, json, None, headers or {}))

    def listing(self, query: Any) -> list[dict[str, Any]]:
        """One page of :attr:`call_list` as ``GET /v2/calls`` gives it."""
        from gateway_placetel.api import placetel_day

        day = query.get("filter[date]")
        items = [c for c in self.call_list or []
                 if day is None or placetel_day(datetime.fromisoformat(c["received_at"])) == day]
        items.sort(key=lambda c: datetime.fromisoformat(c["received_at"]), reverse=query.get("order", "desc") == "desc")
        page, per_page = int(query.get("page", "1")), int(query.get("per_page", "25"))
        return items[(page - 1) * per_page: page * per_page]

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path[len("/v2"):]
        raw = await request.read()
        self.seen.append(Seen(request.method, path, dict(request.query), dict(request.headers),
                              _json.loads(raw) if raw else None))
        first = self.first.get((request.method, path))
        if first:
            reply = first.pop(0)
            return web.json_response(reply.json, status=reply.status, headers=reply.headers)
        if (request.method, path) == ("GET", "/calls") and self.call_list is not None \
                and "filter[type]" not in request.query:
            return web.json_response(self.listing(request.query))
        queue = self.replies.get((request.method, path))
        if not queue:
            return web.json_response({"error": "not found"}, status=404)
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if reply.json is not None:
            return web.json_response(reply.json, status=reply.status, headers=reply.headers)
        return web.Response(text=reply.body or "", status=reply.status, headers=reply.headers)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/v2/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        self.base = str(self.server.make_url("/v2"))
        return self.base

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


@pytest.fixture
async def fake_api():
    fake = FakePlacetel()
    await fake.start()
    yield fake
    await fake.close()


# --- a connected gateway -----------------------------------------------------------------------

PUBLIC = "https://gw.example.test"
SCOPED = "other:other-tenant-token-0123456789"


def env(fake) -> dict[str, str]:
    return {"GATEWAY_PLACETEL_API_URL": fake.base, "GATEWAY_PLACETEL_RETRY_BASE": "0",
            "GATEWAY_PLACETEL_RECORDING_DELAY": "0", "GATEWAY_PUBLIC_URL": PUBLIC,
            "GATEWAY_ADMIN_TOKEN": f"{ADMIN_TOKEN},{SCOPED}"}


def account(fake) -> None:
    fake.on("GET", "/me", json={"id": 1, "name": "Acme GmbH", "email": "admin@example.com"})
    fake.on("PUT", "/subscriptions", json={"id": "sub-112ba1", "url": "x"})
    fake.on("GET", "/sip_users", json=SIP_USERS)
    fake.on("GET", "/users", json=WEB_USERS)


@pytest.fixture
async def pt(gateway_harness, fake_api):
    """A gateway with tenant ``acme`` (recorded) connected to a Placetel account."""
    account(fake_api)
    h = await gateway_harness(env=env(fake_api))
    await h.create_tenant("acme")
    h.conn = await h.connect("acme", "placetel", {"api_key": API_KEY, "secret": SECRET})
    h.api = fake_api
    return h


async def post(h, body: bytes, hdrs: dict[str, str] | None = None, conn: str | None = None):
    return await h.post_hook("placetel", conn or h.conn["id"], body, hdrs if hdrs is not None else headers(body))


async def post_all(h, *bodies: bytes) -> None:
    for body in bodies:
        resp = await post(h, body)
        assert resp.status == 200, await resp.text()
