"""The frame token: who is looking at the app, carried from page to page and in every form.

Inside the Bitrix24 iframe third-party cookies are blocked, so the identity checked once
against the portal (``AUTH_ID``) travels as a short-lived signed token instead: in links
(``?t=``) and as a hidden field of every form. A token is bound to one *purpose*: the token
that lets a page be viewed does not let a form be posted, and the token of one form does not
let another be posted, which makes every form CSRF-safe without cookies.

Wire format: ``base64url(payload) "." base64url(HMAC-SHA256(key, "cg1." payload))``, where the
payload is compact JSON ``{"t": tenant, "u": user id, "a": 0|1, "e": expiry, "p": purpose,
"l": language}``. Nothing in it is secret (ids only); the MAC makes it unforgeable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway import Unauthorized

#: Longest token accepted; anything longer is refused before it is decoded.
MAX_TOKEN_LENGTH = 400
#: How long a token lives unless told otherwise (seconds).
DEFAULT_TTL = 1800
#: The longest lifetime a token may be issued with (Bitrix24's ``AUTH_ID`` lives an hour).
MAX_TTL = 3600
KEY_LENGTH = 32
_MAC_PREFIX = b"cg1."
_DEFAULT_INFO = b"callgate bitrix24 frame token v1"

_TENANT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PURPOSE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_LANG = re.compile(r"^[a-z]{2}$")
_B64 = re.compile(r"^[A-Za-z0-9_-]+$")

# --- purposes ---------------------------------------------------------------------------
VIEW = "view"  #: open any page the identity may see
PLACETEL_CONNECT = "placetel-connect"
PLACETEL_DISCONNECT = "placetel-disconnect"
SETTINGS = "settings"
MAPPING = "mapping"
RETRY = "retry"
ERASE_ME = "erase-me"

#: Purposes only a portal administrator may hold (checked again at verification).
ADMIN_PURPOSES = frozenset({PLACETEL_CONNECT, PLACETEL_DISCONNECT, SETTINGS, MAPPING, RETRY})
#: Purposes every user holds.
USER_PURPOSES = frozenset({VIEW, ERASE_ME})


class TokenError(Unauthorized):
    """The frame token cannot be used; ``reason`` says why, for the error page."""

    reason = "invalid"


class TokenMalformed(TokenError):
    """Missing, too long or not in the token format."""

    reason = "invalid"


class TokenForged(TokenError):
    """The signature does not match: altered, or signed with another key."""

    reason = "invalid"


class TokenExpired(TokenError):
    """Signed by us, but its time is over: the app must be opened again."""

    reason = "expired"


class TokenWrongPurpose(TokenError):
    """Signed by us for something else (a view token posted to a form, a user's token to an
    administrator's form)."""

    reason = "forbidden"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who opened the app, as checked against the portal."""

    tenant: str  #: the portal's ``member_id``
    user_id: int  #: the Bitrix24 user id
    is_admin: bool
    lang: str = "en"  #: the page language chosen from Bitrix24's ``LANG``

    def __post_init__(self) -> None:
        if not _TENANT.match(self.tenant):
            raise ValueError("tenant id is malformed")
        if isinstance(self.user_id, bool) or not isinstance(self.user_id, int) or not 0 < self.user_id < 2**53:
            raise ValueError("user id must be a positive integer")
        if not _LANG.match(self.lang):
            raise ValueError("language must be two lower-case letters")


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says."""

    identity: Identity
    purpose: str
    expires: int


def derive_key(secret: bytes | str, info: bytes = _DEFAULT_INFO) -> bytes:
    """A 32-byte token key derived (HKDF-SHA256) from a secret the plugin is given, so the
    secret itself is never used as a MAC key and another use of it cannot produce our tokens."""
    raw = secret.encode() if isinstance(secret, str) else secret
    if len(raw) < 16:
        raise ValueError("the secret for frame tokens must be at least 16 bytes")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LENGTH, salt=None, info=info).derive(raw)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _B64.match(text):
        raise TokenMalformed("the frame token is malformed")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenMalformed("the frame token is malformed") from None
    if _b64(raw) != text:  # unused low bits set: one token has exactly one spelling
        raise TokenMalformed("the frame token is malformed")
    return raw


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, _MAC_PREFIX + payload, hashlib.sha256).digest()


def _check_key(key: bytes) -> None:
    if len(key) < KEY_LENGTH:
        raise ValueError("the token key must be at least 32 bytes (use derive_key)")


def issue(key: bytes, identity: Identity, purpose: str, *, ttl: int = DEFAULT_TTL,
          now: float | None = None) -> str:
    """A token for ``identity`` and one ``purpose``, valid for ``ttl`` seconds."""
    _check_key(key)
    if not _PURPOSE.match(purpose):
        raise ValueError("purpose is malformed")
    if purpose in ADMIN_PURPOSES and not identity.is_admin:
        raise ValueError("an administrator's purpose for a user who is not one")
    if not 0 < ttl <= MAX_TTL:
        raise ValueError("token lifetime out of range")
    expires = int(now if now is not None else time.time()) + ttl
    payload = orjson.dumps({"t": identity.tenant, "u": identity.user_id, "a": int(identity.is_admin),
                            "e": expires, "p": purpose, "l": identity.lang})
    token = f"{_b64(payload)}.{_b64(_mac(key, payload))}"
    if len(token) > MAX_TOKEN_LENGTH:  # only a pathological tenant id could get here
        raise ValueError("token too long")
    return token


def issue_all(key: bytes, identity: Identity, *, ttl: int = DEFAULT_TTL,
              now: float | None = None) -> dict[str, str]:
    """One token per purpose this identity may hold: what a page needs for its links and forms.
    A user who is not an administrator gets no administrator tokens at all."""
    purposes = USER_PURPOSES | (ADMIN_PURPOSES if identity.is_admin else frozenset())
    return {p: issue(key, identity, p, ttl=ttl, now=now) for p in sorted(purposes)}


def _payload(raw: bytes) -> tuple[Identity, str, int]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise TokenMalformed("the frame token is malformed") from None
    if not isinstance(data, dict) or set(data) != {"t", "u", "a", "e", "p", "l"}:
        raise TokenMalformed("the frame token is malformed")
    tenant, user, admin, expires, purpose, lang = (data[k] for k in ("t", "u", "a", "e", "p", "l"))
    if not (isinstance(tenant, str) and isinstance(user, int) and admin in (0, 1)
            and isinstance(expires, int) and isinstance(purpose, str) and isinstance(lang, str)
            and _PURPOSE.match(purpose)):
        raise TokenMalformed("the frame token is malformed")
    try:
        identity = Identity(tenant, user, bool(admin), lang)
    except ValueError:
        raise TokenMalformed("the frame token is malformed") from None
    return identity, purpose, expires


def verify(key: bytes, token: str | None, purpose: str, *, now: float | None = None) -> Claims:
    """The claims of ``token`` if it is ours, unexpired and issued for ``purpose``.

    Raises a :class:`TokenError` subclass otherwise. The MAC is compared in constant time
    before anything in the payload is believed.
    """
    _check_key(key)
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise TokenMalformed("the frame token is missing or malformed")
    body, sig = token.split(".")
    payload, mac = _unb64(body), _unb64(sig)
    if not hmac.compare_digest(mac, _mac(key, payload)):
        raise TokenForged("the frame token is not valid")
    identity, got_purpose, expires = _payload(payload)
    if expires <= int(now if now is not None else time.time()):
        raise TokenExpired("the frame token has expired")
    if not hmac.compare_digest(got_purpose.encode(), purpose.encode()):
        raise TokenWrongPurpose("the frame token was issued for something else")
    if purpose in ADMIN_PURPOSES and not identity.is_admin:
        raise TokenWrongPurpose("the frame token was issued for something else")
    return Claims(identity, got_purpose, expires)
