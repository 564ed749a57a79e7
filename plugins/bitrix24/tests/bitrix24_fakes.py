"""Test helpers: a tiny telephony source (``fakesrc``) and Bitrix24 payloads/mocks.

The source takes JSON bodies ``{"id", "call", "state", "dir", "from", "to", "user", "outcome",
"duration", "recording"}`` signed with a shared secret header (modelled on the core's demo
source), resolves recordings to a secret link, and records click-to-call requests.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
import pytest
from aiohttp import ClientResponse
from aioresponses import aioresponses

from gateway import (
    BadRequest,
    CallEvent,
    CallState,
    Connection,
    Direction,
    OriginateResult,
    Outcome,
    PluginContext,
    RecordingRef,
    Source,
    TelephonyUser,
    Unauthorized,
    UpstreamError,
    WebhookRequest,
    normalize_number,
)
from gateway.testing import SourcePlugin

MEMBER = "a223c6b3710f85df22e9377d6c4f7553"
APP_TOKEN = "51856fefc120afa4b628cc82d3935cce"
PORTAL = "https://example.bitrix24.de/rest/"
OAUTH = "https://oauth.bitrix.test/oauth/token/"
OAUTH_RE = re.compile(r"^https://oauth\.bitrix\.test/oauth/token/.*$")
EVENT_ACCESS = "s6p6eclrvim6da22ft9ch94ekreb52lv"
EVENT_REFRESH = "4s386p3q0tr8dy89xvmt96234v3dljg8"
ACCESS_1 = "ydtj8pho532wydb5ixk78ol7uqlb7sch"
REFRESH_1 = "3s6lr4kr3cv2od4v853gvrchb875bwxb"
RECORDING_LINK = "https://rec.fake.test/secret-recording-link-7f3a.mp3"
SECRET = "fake-secret-123"

ENV = {
    "GATEWAY_BITRIX24_CLIENT_ID": "app.abc123.test",
    "GATEWAY_BITRIX24_CLIENT_SECRET": "client-secret-xyz",
    "GATEWAY_BITRIX24_OAUTH_URL": OAUTH,
    "GATEWAY_BITRIX24_ORIGINATE_WAIT": "5",
}


class FakeSource(Source):
    name = "fakesrc"
    content_types = frozenset({"application/json"})

    def __init__(self) -> None:
        self.originated: list[tuple[str, str]] = []
        self.fail_originate = False

    async def connect(self, ctx: PluginContext, connection: Connection) -> Mapping[str, Any]:
        return {"secret": SECRET}

    async def receive(self, ctx: PluginContext, connection: Connection, request: WebhookRequest) -> Sequence[CallEvent]:
        if not hmac.compare_digest(request.headers.get("X-Fake-Secret", "").encode(), SECRET.encode()):
            raise Unauthorized("bad secret")
        try:
            d = orjson.loads(request.body)
            return [CallEvent(
                event_id=d["id"], call_id=d["call"], direction=Direction(d.get("dir", "in")),
                state=CallState(d["state"]), occurred_at=request.received_at,
                remote_number=normalize_number(d.get("from")), local_number=normalize_number(d.get("to")),
                local_user=d.get("user"), outcome=Outcome(d["outcome"]) if d.get("outcome") else None,
                duration=d.get("duration"),
                recording=RecordingRef("fakesrc", d["recording"], d.get("format", "mp3")) if d.get("recording") else None,
                ringing=tuple(d.get("ringing", ())), internal=bool(d.get("internal")))]
        except (KeyError, ValueError, TypeError):
            raise BadRequest("unparseable") from None

    async def resolve_recording(self, ctx: PluginContext, connection: Connection, ref: RecordingRef) -> str | None:
        return RECORDING_LINK

    async def originate(self, ctx: PluginContext, connection: Connection, user: TelephonyUser,
                        number: str) -> OriginateResult:
        """Like Placetel: the telephone system says nothing about the call it placed."""
        if self.fail_originate:
            raise UpstreamError("telephone system refused")
        self.originated.append((user.user_id, number))
        return OriginateResult()


class FakeSourcePlugin(SourcePlugin[FakeSource]):
    def __init__(self) -> None:
        super().__init__(FakeSource())


def form(fields: Mapping[str, Any]) -> bytes:
    return urlencode(list(fields.items())).encode()


def auth(**extra: Any) -> dict[str, Any]:
    base = {"auth[domain]": "example.bitrix24.de", "auth[client_endpoint]": PORTAL,
            "auth[server_endpoint]": "https://oauth.bitrix.info/rest/", "auth[member_id]": MEMBER,
            "auth[application_token]": APP_TOKEN}
    base.update({f"auth[{k}]": v for k, v in extra.items()})
    return base


def install_body(**auth_extra: Any) -> bytes:
    return form({"event": "ONAPPINSTALL", "ts": "1773130000", "data[VERSION]": "1", "data[ACTIVE]": "Y",
                 "data[INSTALLED]": "Y", "data[LANGUAGE_ID]": "de",
                 **auth(access_token=EVENT_ACCESS, expires="1773133600", expires_in="3600",
                        scope="telephony,crm,user", status="L", user_id="1", refresh_token=EVENT_REFRESH,
                        **auth_extra)})


def ui_install_body() -> bytes:
    """The POST of the app's install page in the portal's frame (our tokens, no application token)."""
    return urlencode({"DOMAIN": "example.bitrix24.de", "PROTOCOL": "1", "LANG": "de", "APP_SID": "frame-sid-1",
                      "AUTH_ID": "ui-access", "AUTH_EXPIRES": "3600", "REFRESH_ID": "ui-refresh",
                      "member_id": MEMBER, "status": "L", "PLACEMENT": "DEFAULT"}).encode()


def uninstall_body(token: str = APP_TOKEN) -> bytes:
    a = auth()
    a["auth[application_token]"] = token
    return form({"event": "ONAPPUNINSTALL", "data[LANGUAGE_ID]": "de", "data[CLEAN]": "1", "ts": "1466439714", **a})


def click_body(call_id: str, number: str = "+494951234567", token: str = APP_TOKEN,
               is_mobile: str = "0", user_id: str = "1269") -> bytes:
    a = auth(access_token="s7p6event", expires_in="3600", scope="telephony", status="F")
    a["auth[application_token]"] = token
    return form({"event": "ONEXTERNALCALLSTART", "event_handler_id": "1055", "ts": str(int(time.time())),
                 "data[PHONE_NUMBER]": number, "data[PHONE_NUMBER_INTERNATIONAL]": number,
                 "data[EXTENSION]": "", "data[USER_ID]": user_id, "data[CALL_LIST_ID]": "0",
                 "data[LINE_NUMBER]": "7", "data[IS_MOBILE]": is_mobile, "data[CALL_ID]": call_id,
                 "data[CRM_ENTITY_TYPE]": "CONTACT", "data[CRM_ENTITY_ID]": "797", **a})


def oauth_answer(access: str = ACCESS_1, refresh: str = REFRESH_1, member: str = MEMBER) -> dict[str, Any]:
    return {"access_token": access, "client_endpoint": PORTAL, "domain": "oauth.bitrix.info",
            "expires": 1780319382, "expires_in": 3600, "member_id": member, "refresh_token": refresh,
            "scope": "telephony,crm,user", "server_endpoint": "https://oauth.bitrix.info/rest/",
            "status": "L", "user_id": 1}


def ok(result: Any) -> dict[str, Any]:
    return {"result": result, "time": {"start": 1773130778, "finish": 1773130779.12, "duration": 1.12,
                                       "processing": 1, "operating_reset_at": 1773131378, "operating": 0.22}}


def calls(m: Any, method: str) -> list[dict[str, Any]]:
    """JSON bodies posted to a REST method, in order."""
    out = []
    for (verb, url), reqs in m.requests.items():
        if verb == "POST" and str(url) == PORTAL + method:
            out.extend(r.kwargs.get("json") or {} for r in reqs)
    return out


def batches(m: Any) -> list[tuple[int, dict[str, tuple[str, dict[str, str]]]]]:
    """``batch`` requests as (halt, {key: (method, params)}), commands decoded, in order."""
    out = []
    for body in calls(m, "batch"):
        cmds = {}
        for key, cmd in body["cmd"].items():
            method, _, query = cmd.partition("?")
            cmds[key] = (method, dict(parse_qsl(query, keep_blank_values=True)))
        out.append((body["halt"], cmds))
    return out


def batch_answer(results: dict[str, Any], errors: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``batch`` answer; empty maps come as ``[]`` like Bitrix24's PHP arrays."""
    return ok({"result": results or [], "result_error": errors or [], "result_total": [],
               "result_next": [], "result_time": {k: {"start": 1773130778, "duration": 0.1} for k in results} or []})


def oauth_calls(m: Any) -> list[Any]:
    return [r for (verb, url), reqs in m.requests.items() if verb == "GET" and str(url).startswith(OAUTH) for r in reqs]


def rest_methods(m: Any) -> list[str]:
    return [str(url)[len(PORTAL):] for (verb, url), reqs in m.requests.items()
            if verb == "POST" and str(url).startswith(PORTAL) for _ in reqs]


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def found(*lookups: Callable[[], Any], timeout: float = 5.0) -> bool:
    """Until one of the lookups (coroutine functions) finds something, or ``timeout``; whether
    it did. For records written without waiting for their commit (a source's call state
    when a webhook gave no events)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for lookup in lookups:
            if await lookup():
                return True
        await asyncio.sleep(0.02)
    return False


def call_event(event_id: str, call: str, state: str, **kw: Any) -> bytes:
    return orjson.dumps({"id": event_id, "call": call, "state": state, **kw})


class _CompatResponse(ClientResponse):
    """aioresponses 0.7.9 builds responses without ``stream_writer``, which aiohttp 3.14
    requires; this fills in a stand-in so the mock works with the installed aiohttp."""

    def __init__(self, method: str, url: Any, **kw: Any) -> None:
        kw.setdefault("stream_writer", _NoWriter())
        super().__init__(method, url, **kw)


class _NoWriter:
    output_size = 0


class BitrixMock(aioresponses):
    """aioresponses with the compatible response class as the default."""

    def add(self, url: Any, method: str = "GET", *args: Any, **kw: Any) -> None:  # type: ignore[override]
        kw.setdefault("response_class", _CompatResponse)
        super().add(url, method, *args, **kw)


@pytest.fixture
def mock() -> Any:
    """Bitrix24 (and the OAuth server) mocked at the HTTP boundary; local servers pass."""
    with BitrixMock(passthrough=["http://127.0.0.1"]) as m:
        yield m


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
EMAIL = "anna.schmidt@example.com"


async def install_with_user(gateway_harness: Any, mock: Any) -> tuple[Any, FakeSourcePlugin, str]:
    """A gateway with the fake source, the app installed, one connection with one user."""
    fake = FakeSourcePlugin()
    h = await gateway_harness(env=ENV, plugins=[("fakesrc", fake)])
    mock.get(OAUTH_RE, payload=oauth_answer())
    mock.post(PORTAL + "event.bind", payload=ok(True), repeat=True)
    mock.post(PORTAL + "telephony.externalLine.add", payload=ok({"ID": 7}), repeat=True)
    resp = await h.client.post("/hooks/bitrix24/events", data=install_body(), headers=FORM)
    assert resp.status == 200, await resp.text()
    conn = await h.connect(MEMBER, "fakesrc")
    await h.gw.directory.put(await h.gw.tenancy.connection(conn["id"]),
                        TelephonyUser("u1", name="Anna Schmidt", email=EMAIL, extension="101"))
    return h, fake, conn["id"]


# --- a Bitrix24 portal at the HTTP boundary, for whole calls ---------------------------------

PORTAL_RE = re.compile(r"^https://example\.bitrix24\.de/rest/.*$")
INSTALLER = 1  # ``auth[user_id]`` of ``install_body``: the user who installed the app


def _php_params(query: str) -> dict[str, Any]:
    """A batch command's query back to params; ``KEY[0]=..`` become lists."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.endswith("]") and "[" in key:
            out.setdefault(key.split("[", 1)[0], []).append(value)
        else:
            out[key] = value
    return out


class FakePortal:
    """Bitrix24's REST answers for a portal with the given users (``user.get`` filters by
    ``UF_PHONE_INNER``, ``EMAIL`` or ``ID``), mocked with aioresponses at the HTTP boundary.

    ``log`` holds every method called with its params, a ``batch``'s commands one by one (in
    order, marked ``batch=True``), so a test reads the whole conversation as it happened.
    """

    def __init__(self, mock: Any, users: list[dict[str, Any]]) -> None:
        self.users = users
        self.log: list[tuple[str, dict[str, Any], bool]] = []
        self.registered = 0
        mock.post(PORTAL_RE, callback=self.handle, repeat=True)

    def handle(self, url: Any, **kwargs: Any) -> Any:
        from aioresponses import CallbackResult
        method = str(url)[len(PORTAL):]
        params = dict(kwargs.get("json") or {})
        params.pop("auth", None)
        if method == "batch":
            results: dict[str, Any] = {}
            for key, cmd in params["cmd"].items():
                name, _, query = cmd.partition("?")
                sub = _php_params(query)
                for k, v in sub.items():
                    if isinstance(v, str) and v.startswith("$result["):
                        ref_cmd, ref_field = v[len("$result["):-1].split("][")
                        sub[k] = results[ref_cmd][ref_field]
                self.log.append((name, sub, True))
                results[key] = self.answer(name, sub)
            return CallbackResult(payload=batch_answer(results), response_class=_CompatResponse)
        self.log.append((method, params, False))
        return CallbackResult(payload=ok(self.answer(method, params)), response_class=_CompatResponse)

    def answer(self, method: str, params: dict[str, Any]) -> Any:
        if method == "user.get":
            wanted = params.get("FILTER") or {}
            if "ID" in params:
                wanted = {"ID": str(params["ID"])}
            return [u for u in self.users if all(str(u.get(k)) == str(v) for k, v in wanted.items()
                                                 if k in ("UF_PHONE_INNER", "EMAIL", "ID"))]
        if method == "telephony.externalCall.register":
            self.registered += 1
            return {"CALL_ID": f"externalCall.{self.registered:032d}.1773130779", "CRM_CREATED_LEAD": None,
                    "CRM_CREATED_ENTITIES": [], "CRM_ENTITY_TYPE": "", "CRM_ENTITY_ID": None}
        if method == "telephony.externalLine.add":
            return {"ID": 100 + len(self.called("telephony.externalLine.add"))}
        if method == "profile":
            return {"ID": str(INSTALLER), "ADMIN": True}
        if method == "app.info":  # every token here is our app's
            return {"ID": 12, "CODE": "app.abc123", "VERSION": 1, "STATUS": "L", "INSTALLED": True}
        if method in ("telephony.externalCall.finish",):
            return {"ID": "3291", "CALL_ID": params.get("CALL_ID")}
        if method == "telephony.externalCall.attachRecord":
            return {"FILE_ID": 5}
        return True  # event.bind, show, hide

    def called(self, method: str) -> list[dict[str, Any]]:
        """The params of every call of ``method`` (also inside batches), in order."""
        return [p for m, p, _ in self.log if m == method]

    def methods(self, *, only: tuple[str, ...] = ("telephony.",)) -> list[str]:
        return [m for m, _, _ in self.log if m.startswith(only)]


async def install(h: Any, mock: Any, users: list[dict[str, Any]]) -> FakePortal:
    """Install the app for portal ``MEMBER`` (ONAPPINSTALL by user ``INSTALLER``); nothing else
    is set by anyone: no settings, no user map."""
    mock.get(OAUTH_RE, payload=oauth_answer())  # the install's token exchange
    portal = FakePortal(mock, users)
    resp = await h.client.post("/hooks/bitrix24/events", data=install_body(), headers=FORM)
    assert resp.status == 200, await resp.text()
    return portal


def b24_user(uid: int, extension: str, email: str) -> dict[str, Any]:
    return {"ID": str(uid), "ACTIVE": True, "EMAIL": email, "UF_PHONE_INNER": extension, "NAME": f"User {uid}"}
