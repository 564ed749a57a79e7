"""Sans-I/O OAuth pieces: the signed ``state``, the authorize URL, token responses.

``state`` = ``base64url(JSON payload) "." base64url(HMAC-SHA256)``, keyed by a key derived
from the client secret, carrying the connection id, the purpose (login or logout), a nonce
and the expiry. Checked in constant time before anything in it is trusted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

PURPOSES = frozenset({"login", "logout"})


class BadState(ValueError):
    """The ``state`` is forged, malformed or expired (the message names no value)."""


def _key(client_secret: str) -> bytes:
    return hmac.new(client_secret.encode("utf-8"), b"callgate-webex-oauth-state-v1", hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_state(client_secret: str, connection_id: str, purpose: str, ttl: int,
               now: float | None = None) -> str:
    """A signed, expiring state for one login or logout round trip."""
    if purpose not in PURPOSES:
        raise ValueError("unknown purpose")
    payload = _b64(orjson.dumps({"c": connection_id, "p": purpose, "n": secrets.token_urlsafe(12),
                                 "e": int((now if now is not None else time.time()) + ttl)}))
    mac = hmac.new(_key(client_secret), payload.encode("ascii"), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


@dataclass(frozen=True, slots=True)
class State:
    connection_id: str
    purpose: str


def check_state(client_secret: str, state: str, now: float | None = None) -> State:
    """The state's content when its MAC is right and it has not expired; else :class:`BadState`."""
    payload, dot, mac_text = state.partition(".")
    if not dot or len(state) > 1024:
        raise BadState("malformed state")
    try:
        given = _unb64(mac_text)
        expected = hmac.new(_key(client_secret), payload.encode("ascii"), hashlib.sha256).digest()
    except (binascii.Error, UnicodeError, ValueError):
        raise BadState("malformed state") from None
    if not hmac.compare_digest(given, expected):
        raise BadState("bad state signature")
    try:
        data = orjson.loads(_unb64(payload))
        conn, purpose, expiry = str(data["c"]), str(data["p"]), int(data["e"])
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise BadState("malformed state") from None
    if expiry < (now if now is not None else time.time()):
        raise BadState("the login link has expired")
    if purpose not in PURPOSES:
        raise BadState("malformed state")
    return State(conn, purpose)


def authorize_url(base: str, client_id: str, redirect_uri: str, scopes: tuple[str, ...], state: str) -> str:
    """Webex's authorize URL for the authorization-code flow."""
    query = urlencode({"client_id": client_id, "response_type": "code", "redirect_uri": redirect_uri,
                       "scope": " ".join(scopes), "state": state})
    return f"{base}?{query}"


@dataclass(frozen=True, slots=True)
class TokenSet:
    """Tokens of one user; times are epoch seconds computed from the returned ``*_expires_in``."""

    access_token: str
    refresh_token: str | None
    expires_at: float
    refresh_expires_at: float | None
    scopes: tuple[str, ...]

    @classmethod
    def from_response(cls, data: Any, now: float, previous: TokenSet | None = None) -> TokenSet:
        """Read a token endpoint answer; keep the previous refresh token if none is returned."""
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            raise ValueError("token response without access_token")
        expires_in = float(data.get("expires_in") or 3600)
        refresh = data.get("refresh_token") if isinstance(data.get("refresh_token"), str) else None
        refresh_in = data.get("refresh_token_expires_in")
        scope = data.get("scope")
        scopes = tuple(scope.replace(",", " ").split()) if isinstance(scope, str) else (
            previous.scopes if previous else ())
        return cls(access_token=data["access_token"],
                   refresh_token=refresh or (previous.refresh_token if previous else None),
                   expires_at=now + expires_in,
                   refresh_expires_at=(now + float(refresh_in)) if isinstance(refresh_in, (int, float))
                   else (previous.refresh_expires_at if previous else None),
                   scopes=scopes)

    def to_record(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token,
                "expires_at": self.expires_at, "refresh_expires_at": self.refresh_expires_at,
                "scopes": list(self.scopes)}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> TokenSet:
        return cls(access_token=data["access_token"], refresh_token=data.get("refresh_token"),
                   expires_at=float(data["expires_at"]), refresh_expires_at=data.get("refresh_expires_at"),
                   scopes=tuple(data.get("scopes") or ()))

    def expires_within(self, seconds: float, now: float) -> bool:
        return self.expires_at - now <= seconds
