"""A minimal telephony source for the core's own tests: JSON events, HMAC-SHA256 signed.

Body: {"id": event id, "call": call id, "state": ringing|answered|ended, "from": number,
"dir": in|out, "outcome": ...}; header ``X-Demo-Signature`` = hex HMAC-SHA256 with the
connection's ``secret`` setting.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from gateway import (
    BadRequest,
    CallEvent,
    CallState,
    Connection,
    Direction,
    OriginateResult,
    Outcome,
    PluginContext,
    Source,
    TelephonyUser,
    Unauthorized,
    WebhookRequest,
    hookimpl,
    normalize_number,
)


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class DemoSource(Source):
    name = "demo"
    content_types = frozenset({"application/json"})
    deferred = True

    def __init__(self) -> None:
        self.originated: list[tuple[str, str, str | None]] = []

    async def connect(self, ctx: PluginContext, connection: Connection) -> Mapping[str, Any]:
        secret = connection.settings.get("secret")
        if not isinstance(secret, str) or len(secret) < 8:
            raise BadRequest("settings.secret (at least 8 characters) is required")
        return {"secret": secret}

    async def check(self, ctx: PluginContext, connection: Connection, request: WebhookRequest) -> None:
        """Deferred: the signature and the body are checked before the request is journaled."""
        self._parse(connection, request)

    async def receive(self, ctx: PluginContext, connection: Connection,
                      request: WebhookRequest) -> Sequence[CallEvent]:
        return self._parse(connection, request)

    @staticmethod
    def _parse(connection: Connection, request: WebhookRequest) -> list[CallEvent]:
        given = request.headers.get("X-Demo-Signature", "").strip().lower()
        expected = sign(connection.settings["secret"], request.body)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("missing or bad signature")
        try:
            data = orjson.loads(request.body)
            return [CallEvent(
                event_id=str(data["id"]), call_id=str(data["call"]),
                direction=Direction(data.get("dir", "in")), state=CallState(data["state"]),
                occurred_at=request.received_at, remote_number=normalize_number(data.get("from")),
                outcome=Outcome(data["outcome"]) if data.get("outcome") else None,
                local_user=data.get("user"))]
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
            raise BadRequest("unparseable notification") from None

    async def originate(self, ctx: PluginContext, connection: Connection, user: TelephonyUser,
                        number: str) -> OriginateResult:
        """Click-to-call: remembered for the tests; the demo's events will carry ``demo-call``."""
        self.originated.append((user.user_id, number, None))
        return OriginateResult(call_id="demo-call")


SOURCE = DemoSource()


@hookimpl
def register_sources(register: Any) -> None:
    register(SOURCE)
