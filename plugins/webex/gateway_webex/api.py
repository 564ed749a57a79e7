"""Thin HTTP adapter for webexapis.com: one place that maps Webex answers to gateway errors.

- 2xx → the JSON body (``None`` when empty); 401 → :class:`TokenRejected` (the caller refreshes
  once and then marks the user for re-login); 404 → :class:`gateway.NotFound`;
  429/423 → :class:`gateway.RetryableError` with ``Retry-After``; 5xx and network errors →
  :class:`gateway.RetryableError`; other 4xx → :class:`gateway.UpstreamError`.
- Response bodies are never logged or put into messages (they hold names and links).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from gateway import NotFound, RetryableError, UpstreamError, retry_after

from .settings import WebexSettings


class TokenRejected(Exception):
    """Webex answered 401 to an API call: the access token is expired or revoked."""


class GrantRejected(Exception):
    """The token endpoint refused a code or refresh token: the user has to log in again."""


async def _read_json(resp: aiohttp.ClientResponse) -> Any:
    raw = await resp.read()
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError("Webex sent an unreadable answer") from None


def _fail(status: int, headers: Any) -> Exception:
    if status in (429, 423):
        return RetryableError("Webex asks to slow down", retry_after=retry_after(headers.get("Retry-After")),
                              code=f"WEBEX_{status}")
    if status >= 500:
        return RetryableError("Webex is unavailable", retry_after=retry_after(headers.get("Retry-After")),
                              code=f"WEBEX_{status}")
    if status == 404:
        return NotFound("Webex does not know this resource")
    return UpstreamError(f"Webex refused the request ({status})")


class WebexApi:
    """Calls to the Webex REST API with a user's bearer token, and to the token endpoint."""

    def __init__(self, http: aiohttp.ClientSession, settings: WebexSettings) -> None:
        self.http = http
        self.settings = settings

    async def call(self, method: str, path: str, token: str, *, json: Any = None,
                   params: dict[str, str] | None = None) -> Any:
        """One API call; ``path`` is relative to the API base (``/people/me``)."""
        url = f"{self.settings.api_url}{path}"
        try:
            async with self.http.request(method, url, json=json, params=params,
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Accept": "application/json"}) as resp:
                if resp.status == 401:
                    raise TokenRejected()
                if resp.status >= 300:
                    raise _fail(resp.status, resp.headers)
                return await _read_json(resp)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            raise RetryableError("Webex is unreachable", code="WEBEX_UNREACHABLE") from None

    async def token(self, form: dict[str, str]) -> Any:
        """POST to the token endpoint (code exchange or refresh) with the client credentials."""
        body = {**form, "client_id": self.settings.client_id, "client_secret": self.settings.client_secret}
        try:
            async with self.http.post(self.settings.token_url, data=body,
                                      headers={"Accept": "application/json"}) as resp:
                if resp.status in (400, 401, 403):
                    raise GrantRejected()
                if resp.status >= 300:
                    raise _fail(resp.status, resp.headers)
                return await _read_json(resp)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            raise RetryableError("Webex is unreachable", code="WEBEX_UNREACHABLE") from None
