"""A thin client for the Placetel Web API v2 (JSON, ``Authorization: Bearer <key>``).

Error policy, the same for every call: 401 -> :class:`KeyRejected` (the caller marks the
connection broken); 429 -> retried in-line when ``Retry-After`` is short, else
:class:`~gateway.RetryableError` with ``retry_after``; 5xx and network errors -> retried with
exponential back-off for idempotent requests, then :class:`~gateway.RetryableError`; other 4xx
-> :class:`ApiRefused`. Messages carry status codes only, never payloads, keys or links.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import aiohttp

from gateway import RetryableError, UpstreamError, retry_after

log = logging.getLogger("gateway.placetel.api")

DEFAULT_BASE_URL = "https://api.placetel.de/v2"


class KeyRejected(UpstreamError):
    """Placetel refused the API key (401)."""


class ApiRefused(UpstreamError):
    """Placetel answered 4xx (other than 401 and 429) to a request; 403 is a missing right."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try in-line before handing a retry to the caller.

    ``attempts`` tries in all for idempotent requests; waits grow as ``base * 2**n``;
    a ``Retry-After`` longer than ``max_wait`` is not slept on but raised.
    """

    attempts: int = 3
    base: float = 0.5
    max_wait: float = 5.0


class PlacetelClient:
    """One account's view of the Web API v2."""

    def __init__(self, http: aiohttp.ClientSession, api_key: str, *,
                 base_url: str = DEFAULT_BASE_URL, retry: RetryPolicy | None = None) -> None:
        self._http = http
        self._key = api_key
        self._base = base_url.rstrip("/")
        self._retry = retry or RetryPolicy()

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      json: Any = None, idempotent: bool | None = None) -> Any:
        """Call ``path`` (relative to the base URL); return the decoded JSON (``None`` if empty)."""
        idempotent = method in {"GET", "PUT", "DELETE"} if idempotent is None else idempotent
        headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}
        url = self._base + path
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._http.request(method, url, params=params, json=json,
                                              headers=headers) as resp:
                    status = resp.status
                    if status < 300:
                        text = await resp.text()
                        if not text.strip():
                            return None
                        try:
                            return await resp.json(content_type=None)
                        except ValueError:
                            raise UpstreamError("Placetel answered with malformed JSON") from None
                    wait_hint = retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                if not idempotent or attempt >= self._retry.attempts:
                    raise RetryableError("Placetel API unreachable", code=type(exc).__name__) from None
                await asyncio.sleep(self._retry.base * 2 ** (attempt - 1))
                continue
            if status == 401:
                raise KeyRejected("Placetel rejected the API key")
            if status == 429 or status >= 500:
                wait = wait_hint if wait_hint is not None else self._retry.base * 2 ** (attempt - 1)
                retry_ok = status == 429 or idempotent  # a 429 was refused before any effect
                if not retry_ok or attempt >= self._retry.attempts or wait > self._retry.max_wait:
                    log.warning("placetel api busy or failing", extra={"status": status, "path_kind": path.split("/")[1]})
                    raise RetryableError(f"Placetel API answered {status}", retry_after=wait_hint,
                                         code=f"HTTP_{status}")
                await asyncio.sleep(wait)
                continue
            raise ApiRefused(f"Placetel API refused the request ({status})", status=status)

    # --- the endpoints the gateway uses --------------------------------------------------

    async def me(self) -> dict[str, Any]:
        data = await self.request("GET", "/me")
        return data if isinstance(data, dict) else {}

    async def _list(self, path: str, params: Mapping[str, str] | None = None,
                    max_pages: int = 50) -> list[dict[str, Any]]:
        """All items of a bare-array list endpoint, 100 per page."""
        out: list[dict[str, Any]] = []
        for page in range(1, max_pages + 1):
            items = await self._page(path, params or {}, page, 100)
            out.extend(items)
            if len(items) < 100:
                break
        return out

    async def _page(self, path: str, params: Mapping[str, str], page: int, per_page: int) -> list[dict[str, Any]]:
        """One page of a bare-array list endpoint: its items that are objects."""
        data = await self.request("GET", path, params={**params, "page": str(page), "per_page": str(per_page)})
        return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []

    async def sip_users(self) -> list[dict[str, Any]]:
        return await self._list("/sip_users")

    async def users(self) -> list[dict[str, Any]]:
        return await self._list("/users")

    async def subscribe(self, url: str) -> str | None:
        """Subscribe ``url`` to call notifications; the subscription id, if Placetel gives one."""
        data = await self.request("PUT", "/subscriptions", json={
            "service": "calls", "url": url, "incoming": True, "outgoing": True,
            "accepted": True, "hungup": True})
        if isinstance(data, list):  # some accounts answer with the full list
            data = next((d for d in data if isinstance(d, dict) and d.get("url") == url), None)
        sub_id = data.get("id") if isinstance(data, dict) else None
        return str(sub_id) if sub_id not in (None, "") else None

    async def unsubscribe(self, subscription_id: str) -> None:
        try:
            await self.request("DELETE", f"/subscriptions/{quote(subscription_id, safe='')}")
        except ApiRefused as exc:
            if exc.status != 404:  # already gone is what we want
                raise

    async def originate(self, sipuid: str, target: str) -> None:
        """Click-to-dial: ring ``sipuid``, then dial ``target``. Never retried on 5xx."""
        await self.request("POST", "/calls", json={"sipuid": sipuid, "target": target}, idempotent=False)

    async def recordings(self, date: str) -> list[dict[str, Any]]:
        return await self._list("/recordings", {"filter[date]": date}, max_pages=5)

    async def voicemails(self, date: str) -> list[dict[str, Any]]:
        return await self._list("/calls", {"filter[date]": date, "filter[type]": "voicemail"}, max_pages=5)

    async def calls(self, date: str, page: int, per_page: int = 100) -> list[dict[str, Any]]:
        """One page of a day's call list, newest first (reconciliation pages it itself: it
        stops at the start of its window)."""
        return await self._page("/calls", {"filter[date]": date, "order": "desc"}, page, per_page)

    async def recording(self, recording_id: str) -> dict[str, Any]:
        data = await self.request("GET", f"/recordings/{quote(recording_id, safe='')}")
        return data if isinstance(data, dict) else {}

    async def call(self, call_id: str) -> dict[str, Any]:
        data = await self.request("GET", f"/calls/{quote(call_id, safe='')}")
        return data if isinstance(data, dict) else {}


def placetel_day(when: datetime) -> str:
    """The calendar day Placetel files a call under (German time; UTC if zoneinfo lacks it)."""
    try:
        from zoneinfo import ZoneInfo
        return when.astimezone(ZoneInfo("Europe/Berlin")).date().isoformat()
    except Exception:  # noqa: BLE001  no tz database in a slim container
        return when.astimezone(timezone.utc).date().isoformat()
