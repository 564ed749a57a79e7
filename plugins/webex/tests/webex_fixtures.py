"""Realistic Webex payloads (from /work/shared/reference/webex.md) and a logged-in harness."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp import web
from yarl import URL

from gateway.testing import Harness
from gateway_webex.signature import sign

CLIENT_ID = "C0ffee-client-id"
CLIENT_SECRET = "integration-client-secret-0123456789"
ENV = {"GATEWAY_WEBEX_CLIENT_ID": CLIENT_ID, "GATEWAY_WEBEX_CLIENT_SECRET": CLIENT_SECRET}

PERSON = "Y2lzY29zcGFyazovL3VzL1BFT1BMRS84OWYwOGUyYi0xYTVjLTRiNWUtOWI0ZS0zYzJmMWQwYTdlMTE"
ORG = "Y2lzY29zcGFyazovL3VzL09SR0FOSVpBVElPTi8xZWI2NWZkZi05NjQzLTQxN2YtOTk3NC1hZDcyY2FlMGUxMGY"
APP = "Y2lzY29zcGFyazovL3VzL0FQUExJQ0FUSU9OL0MyNzljYjMw"
LEG = "Y2lzY29zcGFyazovL3VzL0NBTEwvY2FsbGhhbGYtOTYwNjg4MjIxNjow"
SESSION = "ZWM1NmY0MDUtODU3My00MDkzLThkOTAtMjY2OWZmMjRjM2Iz"
SESSION_UUID = "ec56f405-8573-4093-8d90-2669ff24c3b3"
RECORDING_ID = "ea0efc7c-f83a-4972-b0eb-c0f30cff5e61"
CALLER = "+19055550100"
CALLER_NAME = "Jane Doe"
AGENT_NAME = "Agent Smith"
AGENT_EMAIL = "agent@example.com"
AGENT_PHONE = "+1 408 526 7209"
ACCESS_TOKEN = "access-token-AAAA-1111"
REFRESH_TOKEN = "refresh-token-BBBB-2222"
AUDIO_LINK = "https://recordings.webex.test/audio.mp3?sig=very-secret-link"

PROFILE = {
    "id": PERSON, "emails": [AGENT_EMAIL], "displayName": AGENT_NAME, "orgId": ORG,
    "phoneNumbers": [{"type": "work", "value": AGENT_PHONE, "primary": True},
                     {"type": "work_extension", "value": "7209"}],
    "extension": "7209", "type": "person",
}

TOKEN_RESPONSE = {"access_token": ACCESS_TOKEN, "expires_in": 1209600, "refresh_token": REFRESH_TOKEN,
                  "refresh_token_expires_in": 7776000, "token_type": "Bearer",
                  "scope": "spark:calls_read spark:calls_write spark:people_read spark:recordings_read spark:kms"}


def call_data(event_type: str, state: str, *, personality: str = "terminator", leg: str = LEG,
              session: str = SESSION, ts: str = "2025-08-05T17:44:52.301Z", **more: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "eventType": event_type, "eventTimestamp": ts, "callId": leg, "callSessionId": session,
        "personality": personality, "state": state,
        "remoteParty": {"name": CALLER_NAME, "number": CALLER, "privacyEnabled": False, "callType": "external"},
        "created": "2025-08-05T17:44:52.284Z", "muteCapable": False, "muted": False,
        "completedElsewhere": False}
    data.update(more)
    return data


def envelope(hook_id: str, resource: str, event: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": hook_id, "name": f"callgate {resource} {event}", "targetUrl": "https://gw.example.com/hook",
            "resource": resource, "event": event, "orgId": ORG, "createdBy": PERSON, "appId": APP,
            "ownedBy": "creator", "status": "active", "created": "2025-06-30T20:13:25.614Z",
            "actorId": PERSON, "data": data}


ANSWERED_AT = "2025-08-05T17:44:58.100Z"
ENDED_AT = "2025-08-05T17:46:31.524Z"

#: (event, data) sequences as observed (reference §5); outbound/click-to-dial are inferred.
INBOUND_ANSWERED = [
    ("created", call_data("received", "alerting")),
    ("updated", call_data("updated", "alerting", ts="2025-08-05T17:44:53.000Z")),
    ("updated", call_data("answered", "connected", ts=ANSWERED_AT, answered=ANSWERED_AT)),
    ("deleted", call_data("disconnected", "disconnected", ts=ENDED_AT, answered=ANSWERED_AT, disconnected=ENDED_AT)),
]
INBOUND_MISSED = [
    ("created", call_data("received", "alerting")),
    ("updated", call_data("updated", "alerting", ts="2025-08-05T17:44:53.000Z")),
    ("deleted", call_data("disconnected", "disconnected", ts=ENDED_AT, disconnected=ENDED_AT)),
]
QUEUE_ABANDONED = [
    ("created", call_data("received", "alerting",
                          redirections=[{"reason": "callQueue", "redirectingParty": {"name": "Sales Queue",
                                                                                       "number": "+4922100000"}}])),
    ("updated", call_data("updated", "alerting", ts="2025-08-05T17:44:53.000Z")),
    ("deleted", call_data("disconnected", "disconnected", ts=ENDED_AT, disconnected=ENDED_AT,
                          completedElsewhere=True)),
]
OUTBOUND = [
    ("created", call_data("originated", "connecting", personality="originator")),
    ("updated", call_data("updated", "alerting", personality="originator", ts="2025-08-05T17:44:53.000Z")),
    ("updated", call_data("answered", "connected", personality="originator", ts=ANSWERED_AT, answered=ANSWERED_AT)),
    ("deleted", call_data("disconnected", "disconnected", personality="originator", ts=ENDED_AT,
                          answered=ANSWERED_AT, disconnected=ENDED_AT)),
]
CLICK_TO_DIAL = [
    ("created", call_data("received", "alerting", personality="clickToDial")),
    ("updated", call_data("updated", "connecting", personality="originator", ts="2025-08-05T17:44:54.000Z")),
    ("updated", call_data("answered", "connected", personality="originator", ts=ANSWERED_AT, answered=ANSWERED_AT)),
    ("deleted", call_data("disconnected", "disconnected", personality="originator", ts=ENDED_AT,
                          answered=ANSWERED_AT, disconnected=ENDED_AT)),
]
_HIDDEN = {"privacyEnabled": True, "callType": "external"}
PRIVATE_CALLER = [
    ("created", call_data("received", "alerting", remoteParty=_HIDDEN)),
    ("updated", call_data("answered", "connected", ts=ANSWERED_AT, answered=ANSWERED_AT, remoteParty=_HIDDEN)),
    ("deleted", call_data("disconnected", "disconnected", ts=ENDED_AT, answered=ANSWERED_AT,
                          disconnected=ENDED_AT, remoteParty=_HIDDEN)),
]

RECORDING = {
    "id": RECORDING_ID, "topic": "Call with Jane Doe-20250805 1744", "createTime": "2025-08-05T17:47:10Z",
    "timeRecorded": "2025-08-05T17:44:58Z", "ownerId": "89f08e2b-1a5c-4b5e-9b4e-3c2f1d0a7e11",
    "ownerType": "user", "ownerEmail": AGENT_EMAIL, "format": "MP3", "serviceType": "calling",
    "durationSeconds": 93, "sizeBytes": 372044, "status": "available", "storageRegion": "US",
    "serviceData": {"locationId": "02a43ee9-0000", "callSessionId": SESSION_UUID},
    "temporaryDirectDownloadLinks": {"audioDownloadLink": AUDIO_LINK,
                                     "transcriptDownloadLink": "https://recordings.webex.test/t.txt?sig=x",
                                     "expiration": "2025-08-05T20:50:00Z"}}


@dataclass
class Seen:
    """One request the fake Webex received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None
    form: dict[str, str] | None = None


class FakeWebex:
    """A local stand-in for webexapis.com (a real aiohttp server on 127.0.0.1).

    Stateful where the gateway relies on state (tokens, webhooks); ``script()`` queues one-shot
    answers (status, body, headers) for a method and path to play errors and rate limits.
    """

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.scripted: dict[tuple[str, str], list[tuple[int, Any, dict[str, str]]]] = {}
        self.token_response: dict[str, Any] = dict(TOKEN_RESPONSE)
        self.profile: dict[str, Any] = dict(PROFILE)
        self.valid_tokens: set[str] = set()
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.refreshes = 0
        self.created = 0
        #: call history records per access token (``"*"``: any user's), newest first as Webex
        #: lists them, at most 20 per type
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.app = web.Application()
        self.app.router.add_route("*", "/v1/{tail:.*}", self.handle)

    def script(self, method: str, path: str, status: int, body: Any = None,
               headers: dict[str, str] | None = None) -> None:
        self.scripted.setdefault((method, path), []).append((status, body, headers or {}))

    def requests(self, method: str, path: str) -> list[Seen]:
        return [r for r in self.seen if r.method == method and re.fullmatch(path, r.path)]

    @staticmethod
    def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> web.Response:
        if body is None:
            return web.Response(status=status, headers=headers)
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                            headers=headers)

    async def handle(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        seen = Seen(request.method, path, dict(request.query), dict(request.headers))
        if request.content_type == "application/json":
            seen.json = await request.json()
        elif request.method == "POST":
            seen.form = {k: str(v) for k, v in (await request.post()).items()}
        self.seen.append(seen)
        queue = self.scripted.get((request.method, path))
        if queue:
            return self.reply(*queue.pop(0))
        if path == "/access_token":
            return self.token(seen.form or {})
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.valid_tokens:
            return self.reply(401, {"message": "token expired"})
        return self.api(request.method, path, seen)

    def token(self, form: dict[str, str]) -> web.Response:
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return self.reply(401, {"message": "bad client"})
        body = dict(self.token_response)
        if form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") != body.get("refresh_token"):
                return self.reply(400, {"error": "invalid_grant"})
            self.refreshes += 1
            body["access_token"] = f"access-token-refreshed-{self.refreshes}"
        self.valid_tokens.add(body["access_token"])
        return self.reply(200, body)

    def api(self, method: str, path: str, seen: Seen) -> web.Response:
        parts = path.strip("/").split("/")
        if (method, path) == ("GET", "/people/me"):
            return self.reply(200, self.profile)
        if parts[0] == "webhooks":
            if method == "POST" and len(parts) == 1:
                self.created += 1
                hook = {**seen.json, "id": f"WH-{seen.json['resource']}-{seen.json['event']}-{self.created}",
                        "status": "active", "ownedBy": "creator", "created": "2025-06-30T20:13:25.614Z",
                        "createdBy": self.profile["id"]}
                self.webhooks[hook["id"]] = hook
                return self.reply(200, hook)
            if method == "GET" and len(parts) == 1:
                return self.reply(200, {"items": list(self.webhooks.values())})
            hook = self.webhooks.get(parts[1]) if len(parts) == 2 else None
            if hook is None:
                return self.reply(404, {"message": "not found"})
            if method == "DELETE":
                del self.webhooks[parts[1]]
                return self.reply(204)
            if method == "PUT":
                hook.update(seen.json)
                return self.reply(200, hook)
        if (method, path) == ("GET", "/telephony/calls/history"):
            token = seen.headers.get("Authorization", "").removeprefix("Bearer ")
            records = self.history.get(token, self.history.get("*", []))
            kinds = [seen.query["type"]] if "type" in seen.query else ["placed", "missed", "received"]
            items = [r for kind in kinds
                     for r in sorted((r for r in records if r["type"] == kind), key=lambda r: r["time"],
                                     reverse=True)[:20]]
            return self.reply(200, {"items": items})
        if (method, path) == ("POST", "/telephony/calls/dial"):
            return self.reply(200, {"callId": LEG, "callSessionId": SESSION})
        if (method, path) == ("GET", f"/convergedRecordings/{RECORDING_ID}"):
            return self.reply(200, RECORDING)
        if (method, path) == ("GET", f"/convergedRecordings/{RECORDING_ID}/metadata"):
            return self.reply(200, {"serviceData": {"callSessionId": SESSION_UUID, "personality": "terminator"}})
        return self.reply(404, {"message": "not found"})


@dataclass
class Webex:
    """A gateway with a tenant, a Webex connection, one logged-in user, and the fake Webex."""

    h: Harness
    fake: FakeWebex
    api: str
    connection_id: str

    def hook(self, resource: str, event: str, person: str | None = None) -> tuple[str, str]:
        """(id, secret) of the user's webhook for ``resource``/``event`` (the first logged-in
        user's unless ``person`` names another)."""
        for hook_id, hook in self.fake.webhooks.items():
            if (hook["resource"], hook["event"]) == (resource, event) and hook["createdBy"] == (person or PERSON):
                return hook_id, hook["secret"]
        raise KeyError((resource, event))

    async def deliver(self, event: str, data: dict[str, Any], resource: str = "telephony_calls",
                      *, secret: str | None = None, hook_id: str | None = None, person: str | None = None) -> Any:
        hid, hsecret = self.hook(resource, event, person)
        body = orjson.dumps(envelope(hook_id or hid, resource, event, data))
        return await self.h.post_hook("webex", self.connection_id, body, {
            "Content-Type": "application/json", "X-Spark-Signature": sign(secret or hsecret, body)})

    async def replay(self, delivery: dict[str, Any], person: str | None = None) -> Any:
        """Post a whole delivery (a capture) as the webhook of ``person`` for its resource and
        event: the envelope's ``id`` becomes that webhook's id (the captured one is another
        system's), the body is signed with its secret; everything else is sent as given."""
        hid, hsecret = self.hook(delivery["resource"], delivery["event"], person)
        body = orjson.dumps({**delivery, "id": hid})
        return await self.h.post_hook("webex", self.connection_id, body, {
            "Content-Type": "application/json", "X-Spark-Signature": sign(hsecret, body)})

    async def login_as(self, person: str, *, email: str, name: str, number: str, extension: str) -> None:
        """Log in one more user of the same organisation (their own webhooks)."""
        self.fake.profile = {**PROFILE, "id": person, "emails": [email], "displayName": name,
                             "phoneNumbers": [{"type": "work", "value": number, "primary": True}],
                             "extension": extension}
        resp = await login(self.h, self.connection_id, code=f"code-{person}")
        assert resp.status == 200, await resp.text()

    async def sequence(self, steps: list[tuple[str, dict[str, Any]]]) -> list[int]:
        statuses = []
        for event, data in steps:
            resp = await self.deliver(event, copy.deepcopy(data))
            statuses.append(resp.status)
        return statuses

    async def users(self) -> list[dict[str, Any]]:
        body = await self.h.admin("GET", f"/tenants/acme/connections/{self.connection_id}/users", expect=200)
        return list(body["users"])


def form_of(page: str) -> dict[str, str]:
    """The hidden fields of the login page's form."""
    return dict(re.findall(r'name="(\w+)" value="([^"]*)"', page))


async def start(h: Harness, connection_id: str, path: str = "/apps/webex/login", pin: str | None = None) -> str:
    """Open the login link in the harness's browser, press the page's button: the authorize
    URL's ``state`` (the browser keeps the cookie the page set)."""
    page = await h.client.get(path, params={"connection": connection_id, **({"pin": pin} if pin else {})})
    assert page.status == 200, await page.text()
    resp = await h.client.post(path, data=form_of(await page.text()), allow_redirects=False)
    assert resp.status == 303, await resp.text()
    return URL(resp.headers["Location"]).query["state"]


async def login(h: Harness, connection_id: str, code: str = "auth-code-1", path: str = "/apps/webex/login",
                pin: str | None = None) -> Any:
    """A whole login (or logout) round trip; Webex's answer comes back to the same browser."""
    state = await start(h, connection_id, path, pin)
    return await h.client.get("/apps/webex/callback", params={"code": code, "state": state})


@pytest.fixture
async def fake_webex(aiohttp_server: Any) -> tuple[FakeWebex, str]:
    fake = FakeWebex()
    server = await aiohttp_server(fake.app)
    return fake, str(server.make_url("/v1"))


@pytest.fixture
async def webex(gateway_harness: Any, fake_webex: tuple[FakeWebex, str]) -> Webex:
    fake, api = fake_webex
    h = await gateway_harness(env={**ENV, "GATEWAY_WEBEX_API_URL": api})
    await h.create_tenant("acme")
    conn = await h.connect("acme", "webex", {"org_id": ORG})
    resp = await login(h, conn["id"])
    assert resp.status == 200, await resp.text()
    return Webex(h=h, fake=fake, api=api, connection_id=conn["id"])
