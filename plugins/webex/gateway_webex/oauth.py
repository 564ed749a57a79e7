"""Sans-I/O OAuth pieces: the signed ``state``, the login form's token, the admin's pin link,
the authorize URL, token responses.

Tokens here are ``base64url(JSON payload) "." base64url(HMAC-SHA256)``, keyed by a key derived
from the client secret, each with a purpose (``login``, ``logout``, ``pin``), a random id and an
expiry, checked in constant time before anything in them is trusted.

- The ``state`` is bound to the browser that started the flow: it carries the SHA-256 of a
  random nonce that only that browser holds (an ``HttpOnly`` cookie), so a state (or a
  callback URL with a code) taken to another browser is refused. It is also single-use: the
  callback remembers its id until it expires (see ``routes``).
- The login page's form carries an HMAC of the same nonce: a cross-site page cannot post it.
- A pin link lets the tenant's admin tie an unpinned connection to their Webex organisation.
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
PIN = "pin"


class BadState(ValueError):
    """The ``state`` (or pin link, or form) is forged, malformed, expired or from another
    browser (the message names no value)."""


def _key(client_secret: str) -> bytes:
    return hmac.new(client_secret.encode("utf-8"), b"callgate-webex-oauth-state-v1", hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _now(now: float | None) -> float:
    return now if now is not None else time.time()


def _seal(client_secret: str, data: dict[str, Any]) -> str:
    payload = _b64(orjson.dumps(data))
    mac = hmac.new(_key(client_secret), payload.encode("ascii"), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def _open(client_secret: str, token: str, now: float | None) -> dict[str, Any]:
    """The payload of a token we signed that has not expired; else :class:`BadState`."""
    payload, dot, mac_text = token.partition(".")
    if not dot or len(token) > 1024:
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
        if not isinstance(data, dict):
            raise TypeError
        data["c"], data["p"], data["n"], data["e"] = str(data["c"]), str(data["p"]), str(data["n"]), int(data["e"])
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise BadState("malformed state") from None
    if data["e"] < _now(now):
        raise BadState("the login link has expired")
    return data


_NONCE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def browser_nonce(current: str | None = None) -> str:
    """The secret of one browser's cookie: the one it holds (so logins started in two tabs
    both work), or a fresh one."""
    if current is not None and len(current) == 43 and set(current) <= _NONCE_CHARS:
        return current
    return secrets.token_urlsafe(32)


def _browser_hash(nonce: str) -> str:
    return _b64(hashlib.sha256(nonce.encode("utf-8")).digest())


def make_state(client_secret: str, connection_id: str, purpose: str, ttl: int, *, browser: str,
               pin: str | None = None, now: float | None = None) -> str:
    """A signed, expiring state for one login or logout round trip started by the browser
    holding the nonce ``browser``; ``pin`` is the id of the admin's pin link it came from."""
    if purpose not in PURPOSES:
        raise ValueError("unknown purpose")
    data: dict[str, Any] = {"c": connection_id, "p": purpose, "n": secrets.token_urlsafe(12),
                            "e": int(_now(now) + ttl), "b": _browser_hash(browser)}
    if pin is not None:
        data["k"] = pin
    return _seal(client_secret, data)


@dataclass(frozen=True, slots=True)
class State:
    connection_id: str
    purpose: str
    #: random, unique per state: what the callback remembers to accept it only once
    state_id: str
    expires_at: int
    #: the pin link's id when the login may tie the connection to its organisation
    pin: str | None = None


def check_state(client_secret: str, state: str, *, browser: str | None, now: float | None = None) -> State:
    """The state's content when its MAC is right, it has not expired and ``browser`` (the
    nonce of the browser the callback came to) is the one that started it; else :class:`BadState`."""
    data = _open(client_secret, state, now)
    if data["p"] not in PURPOSES:
        raise BadState("malformed state")
    bound = data.get("b")
    if not browser or not isinstance(bound, str) \
            or not hmac.compare_digest(_browser_hash(browser).encode(), bound.encode()):
        raise BadState("the login was started in another browser")
    pin = data.get("k")
    return State(data["c"], data["p"], data["n"], data["e"], pin if isinstance(pin, str) else None)


def form_token(client_secret: str, browser: str, connection_id: str, purpose: str, pin: str = "") -> str:
    """What the login page's form must carry: an HMAC of the browser's nonce and the request."""
    message = "\x1f".join(("form", browser, connection_id, purpose, pin)).encode("utf-8")
    return _b64(hmac.new(_key(client_secret), message, hashlib.sha256).digest())


def check_form_token(client_secret: str, given: str, browser: str, connection_id: str,
                     purpose: str, pin: str = "") -> None:
    """:class:`BadState` unless ``given`` is the form token of this browser and request."""
    if not browser or not hmac.compare_digest(
            given.encode("utf-8", "replace"), form_token(client_secret, browser, connection_id, purpose, pin).encode()):
        raise BadState("the login form is not from this browser")


def make_pin(client_secret: str, connection_id: str, ttl: int, now: float | None = None) -> str:
    """A link token with which one login may tie ``connection_id`` to its organisation."""
    return _seal(client_secret, {"c": connection_id, "p": PIN, "n": secrets.token_urlsafe(12),
                                 "e": int(_now(now) + ttl)})


@dataclass(frozen=True, slots=True)
class Pin:
    connection_id: str
    pin_id: str
    expires_at: int


def check_pin(client_secret: str, token: str, now: float | None = None) -> Pin:
    """The pin link's content when it is ours and unexpired; else :class:`BadState`."""
    data = _open(client_secret, token, now)
    if data["p"] != PIN:
        raise BadState("malformed pin link")
    return Pin(data["c"], data["n"], data["e"])


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
