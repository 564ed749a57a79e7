"""Sans-I/O classification of Bitrix24 REST and OAuth answers (status, headers, bytes in).

Error bodies are ``{"error": CODE, "error_description": text}``; some codes are empty (match
on the description), and limit errors sometimes come as HTML pages (pitfall 5): anything that
is not JSON is classified by its HTTP status alone. Exception messages carry codes, never
descriptions (they may quote input).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson

from gateway import RetryableError, retry_after

_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

#: Token problems a person must fix by reinstalling the app.
REINSTALL_CODES = frozenset({"invalid_token", "invalid_grant", "invalid_client", "NO_AUTH_FOUND",
                             "INVALID_CREDENTIALS", "insufficient_scope", "WRONG_AUTH_TYPE"})
#: The portal refuses the app as such (plan, payment, deleted portal).
ACCESS_CODES = frozenset({"ACCESS_DENIED", "PAYMENT_REQUIRED", "PORTAL_DELETED"})
RATE_CODES = {"QUERY_LIMIT_EXCEEDED": 1.0, "OPERATION_TIME_LIMIT": 30.0, "OVERLOAD_LIMIT": 300.0}


class Bitrix24Error(Exception):
    """Bitrix24 refused a call for a reason that is neither auth nor load."""

    def __init__(self, code: str, description: str = "", status: int = 400) -> None:
        self.code = safe_code(code) or "ERROR_CORE"
        self.description = description  # for matching only; never logged
        self.status = status
        super().__init__(self.code)


class ExpiredToken(Exception):
    """``expired_token``: refresh, then try once more."""


class AuthRevoked(Exception):
    """The grant is gone or the app lacks rights: the tenant must reinstall or pay."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = safe_code(code) or "NO_AUTH"
        self.reason = reason
        super().__init__(self.code)


def safe_code(code: Any) -> str:
    return code if isinstance(code, str) and _CODE.match(code) else ""


@dataclass(frozen=True, slots=True)
class ErrorBody:
    code: str
    description: str


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def error_of(data: Any) -> ErrorBody | None:
    if isinstance(data, dict) and "error" in data:
        desc = data.get("error_description")
        return ErrorBody(str(data.get("error") or ""), desc if isinstance(desc, str) else "")
    return None


def parse_rest(status: int, body: bytes, retry_after_header: str | None = None) -> Any:
    """The ``result`` of a REST answer, or the matching exception.

    Raises :class:`ExpiredToken`, :class:`AuthRevoked`, :class:`gateway.RetryableError` (limits,
    5xx, HTML pages) or :class:`Bitrix24Error`.
    """
    data = _json(body)
    err = error_of(data)
    if err is None and 200 <= status < 300 and isinstance(data, dict) and "result" in data:
        return data["result"]
    if err is None:
        if status == 429 or status >= 500 or not isinstance(data, dict):
            raise RetryableError("Bitrix24 answered without a usable body", code=f"HTTP_{status}",
                                 retry_after=retry_after(retry_after_header))
        raise Bitrix24Error("", "", status)
    raise_error(err, status, retry_after_header)


def raise_error(err: ErrorBody, status: int = 400, retry_after_header: str | None = None) -> NoReturn:
    """Raise the exception for an error body (also one command's error inside a ``batch``)."""
    code = safe_code(err.code)
    if code == "expired_token":
        raise ExpiredToken(code)
    if code in RATE_CODES:
        wait = retry_after(retry_after_header)
        raise RetryableError("Bitrix24 limit reached", code=code,
                             retry_after=wait if wait is not None else RATE_CODES[code])
    if code in REINSTALL_CODES:
        raise AuthRevoked(code, "reinstall_required")
    if code in ACCESS_CODES:
        raise AuthRevoked(code, "access_denied")
    if status >= 500 or status == 429:
        raise RetryableError("Bitrix24 failed", code=code or f"HTTP_{status}",
                             retry_after=retry_after(retry_after_header))
    raise Bitrix24Error(code, err.description, status)


@dataclass(frozen=True, slots=True)
class TokenGrant:
    access_token: str
    refresh_token: str
    expires: int
    member_id: str
    client_endpoint: str
    user_id: int

    def __repr__(self) -> str:
        return f"TokenGrant(member_id={self.member_id!r})"


def parse_oauth(status: int, body: bytes, now: int) -> TokenGrant:
    """A token endpoint answer. ``invalid_grant`` and friends → :class:`AuthRevoked`."""
    data = _json(body)
    err = error_of(data)
    if err is not None:
        code = safe_code(err.code)
        if code in REINSTALL_CODES or code in ACCESS_CODES or (400 <= status < 500 and status != 429):
            raise AuthRevoked(code or f"HTTP_{status}", "reinstall_required")
        raise RetryableError("OAuth server failed", code=code or f"HTTP_{status}")
    if not isinstance(data, dict) or not (200 <= status < 300):
        raise RetryableError("OAuth server answered without a usable body", code=f"HTTP_{status}")
    access, refresh = data.get("access_token"), data.get("refresh_token")
    if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
        raise RetryableError("OAuth answer lacks tokens", code="OAUTH_NO_TOKENS")
    expires_in = data.get("expires_in")
    expires = data.get("expires")
    if isinstance(expires_in, int) and expires_in > 0:
        at = now + expires_in
    elif isinstance(expires, int) and expires > now:
        at = expires
    else:
        at = now + 3600
    user = data.get("user_id")
    return TokenGrant(access_token=access, refresh_token=refresh, expires=at,
                      member_id=str(data.get("member_id") or ""),
                      client_endpoint=str(data.get("client_endpoint") or ""),
                      user_id=int(user) if isinstance(user, int) or (isinstance(user, str) and user.isdigit()) else 0)
