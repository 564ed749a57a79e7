"""Request generators: distinct, correctly signed webhooks in each vendor's shape.

A request is ``(path, signature, content type, body)``; bodies hold no tabs or newlines, so
they fit the line format :mod:`bench.wrk` feeds to wrk. The shapes follow the plugins' test
data (``placetel_testdata.py``, ``webex_fixtures.py``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass

import orjson

Request = tuple[str, str, str, bytes]

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
PLACETEL_HEADER = "X-PLACETEL-SIGNATURE"
WEBEX_HEADER = "X-Spark-Signature"
DEMO_HEADER = "X-Demo-Signature"
OURS = "022199998560"


@dataclass(frozen=True)
class Shape:
    """What the baseline needs to check a shape's signatures the same way."""

    name: str
    header: str
    algo: str


SHAPES = {"demo": Shape("demo", DEMO_HEADER, "sha256"),
          "placetel": Shape("placetel", PLACETEL_HEADER, "sha256"),
          "webex": Shape("webex", WEBEX_HEADER, "sha1")}


def sign(secret: str, body: bytes, algo: str) -> str:
    return hmac.new(secret.encode(), body, getattr(hashlib, algo)).hexdigest()


def caller(i: int) -> str:
    """A distinct German landline number per index, E.164 (the CRM mock matches calls by it)."""
    return f"+49221{3000000 + i:07d}"


def national(i: int) -> str:
    """:func:`caller` as Placetel sends it (national format, no ``+`` to encode)."""
    return f"0221{3000000 + i:07d}"


def demo_requests(connection: str, secret: str, n: int) -> list[Request]:
    """n distinct events of the core's test-only demo source."""
    out = []
    for i in range(n):
        body = orjson.dumps({"id": f"ev{i}", "call": f"call{i // 3}",
                             "state": ("ringing", "answered", "ended")[i % 3],
                             "from": f"+49221{1000000 + i // 3}"})
        out.append((f"/hooks/demo/{connection}", sign(secret, body, "sha256"), JSON, body))
    return out


def placetel_call_id(tag: str, i: int) -> str:
    return hashlib.sha256(f"{tag}-{i}".encode()).hexdigest()


def placetel_body(event: str, call_id: str, number: str) -> bytes:
    """One Notify body: ``IncomingCall``, ``CallAccepted`` or ``HungUp`` (type missed)."""
    if event == "IncomingCall":
        body = f"event=IncomingCall&from={number}&to={OURS}&call_id={call_id}&direction=in"
    elif event == "CallAccepted":
        body = (f"event=CallAccepted&from={number}&to={OURS}&call_id={call_id}"
                f"&peer=7777abcdefg%40fpbx.de&direction=in")
    else:
        body = f"event=HungUp&from={number}&to={OURS}&call_id={call_id}&type=missed&duration=0&direction=in"
    return body.encode()


def placetel_request(connection: str, secret: str, body: bytes) -> Request:
    return (f"/hooks/placetel/{connection}", sign(secret, body, "sha256"), FORM, body)


def placetel_requests(connection: str, secret: str, n: int, tag: str = "ingest") -> list[Request]:
    """n distinct notifications, each of a different call (so concurrent requests never wait
    on one call's lock), cycling through the three event kinds."""
    kinds = ("IncomingCall", "CallAccepted", "HungUp")
    return [placetel_request(connection, secret,
                             placetel_body(kinds[i % 3], placetel_call_id(tag, i), national(i)))
            for i in range(n)]


@dataclass(frozen=True)
class WebexHook:
    """One of a logged-in user's webhooks, as the fake Webex recorded it at creation."""

    id: str
    secret: str
    resource: str
    event: str


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode().rstrip("=")


def webex_body(hook: WebexHook, i: int, tag: str = "ingest") -> bytes:
    """A ``telephony_calls`` delivery for call i (its own leg and session)."""
    session = _b64(str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tag}-{i}")))
    leg = _b64(f"ciscospark://us/CALL/callhalf-{tag}-{i}:0")
    ts = "2025-08-05T17:44:52.301Z"
    data: dict[str, object] = {
        "callId": leg, "callSessionId": session, "personality": "terminator",
        "remoteParty": {"name": "Bench Caller", "number": caller(i), "privacyEnabled": False,
                        "callType": "external"},
        "created": ts, "muteCapable": False, "muted": False, "completedElsewhere": False}
    if hook.event == "created":
        data.update(eventType="received", state="alerting", eventTimestamp=ts)
    elif hook.event == "updated":
        data.update(eventType="answered", state="connected", eventTimestamp="2025-08-05T17:44:58.100Z",
                    answered="2025-08-05T17:44:58.100Z")
    else:
        data.update(eventType="disconnected", state="disconnected", eventTimestamp="2025-08-05T17:46:31.524Z",
                    disconnected="2025-08-05T17:46:31.524Z")
    return orjson.dumps({"id": hook.id, "name": f"callgate {hook.resource} {hook.event}",
                         "targetUrl": "https://gw.example.test/hook", "resource": hook.resource,
                         "event": hook.event, "orgId": "bench-org", "createdBy": "bench-person",
                         "appId": "bench-app", "ownedBy": "creator", "status": "active",
                         "created": "2025-06-30T20:13:25.614Z", "actorId": "bench-person", "data": data})


def webex_requests(connection: str, hooks: list[WebexHook], n: int, *,
                   secret: str | None = None, tag: str = "ingest") -> list[Request]:
    """n distinct deliveries over the user's call webhooks (created/updated/deleted), each of
    a different call, signed with the webhook's own secret (or ``secret``: the baseline's)."""
    calls = [h for h in hooks if h.resource == "telephony_calls"]
    calls.sort(key=lambda h: ("created", "updated", "deleted").index(h.event))
    out = []
    for i in range(n):
        hook = calls[i % len(calls)]
        body = webex_body(hook, i, tag)
        out.append((f"/hooks/webex/{connection}", sign(secret or hook.secret, body, "sha1"), JSON, body))
    return out


def resign(reqs: list[Request], secret: str, algo: str) -> list[Request]:
    """The same bodies signed with one secret (for the baseline, which knows only one)."""
    return [(p, sign(secret, b, algo), c, b) for p, _, c, b in reqs]
