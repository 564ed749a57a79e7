"""The I/O adapter for Bitrix24: REST calls with the tenant's stored tokens, OAuth refresh.

Every URL called is the *stored* portal endpoint, checked against the allow-list on each
call; tokens travel in the JSON body (never in a URL). Refresh tokens rotate, so a refresh
is single-flight per tenant (:class:`gateway.SingleFlight`: in this process and across
processes sharing the store); whoever waited uses the winner's tokens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from gateway import PluginContext, RetryableError, SingleFlight

from .hosts import is_allowed, rest_endpoint
from .records import Portal, Tokens, get_portal, get_tokens, put_portal, put_tokens
from .responses import AuthRevoked, ExpiredToken, TokenGrant, parse_oauth, parse_rest
from .settings import PluginSettings

log = logging.getLogger("gateway_bitrix24.api")

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=20)
MAX_BODY = 2 * 1024 * 1024
_REDIRECTS = {301, 302, 303, 307, 308}
#: one refresh of a portal's rotating refresh token at a time, also across processes
_REFRESH = SingleFlight()


async def oauth_grant(ctx: PluginContext, settings: PluginSettings, refresh_token: str) -> TokenGrant:
    """Exchange a refresh token at the OAuth server (a setting, never a URL from an event)."""
    if not settings.client_id or not settings.client_secret:
        raise RetryableError("the Bitrix24 app credentials are not configured", code="NO_CLIENT_CREDENTIALS")
    params = {"grant_type": "refresh_token", "client_id": settings.client_id,
              "client_secret": settings.client_secret, "refresh_token": refresh_token}
    try:
        async with ctx.http.get(settings.oauth_url, params=params, allow_redirects=False,
                               timeout=REQUEST_TIMEOUT) as resp:
            body = await resp.content.read(MAX_BODY)
            return parse_oauth(resp.status, body, int(time.time()))
    except (aiohttp.ClientError, asyncio.TimeoutError):
        raise RetryableError("OAuth server unreachable", code="NETWORK") from None


class Bitrix24Client:
    """REST access to one tenant's portal."""

    def __init__(self, ctx: PluginContext, tenant: str) -> None:
        self.ctx = ctx
        self.tenant = tenant
        self.st = ctx.storage(tenant)
        self.settings = ctx.settings

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """Call ``method``; refresh once on ``expired_token``. Raises what :func:`parse_rest` does."""
        try:
            tokens = await self.tokens()
            try:
                return await self._post(method, params, tokens.access_token)
            except ExpiredToken:
                tokens = await self.refresh(stale=tokens.access_token)
                try:
                    return await self._post(method, params, tokens.access_token)
                except ExpiredToken:
                    raise RetryableError("token expired again after a refresh", code="expired_token") from None
        except AuthRevoked as exc:
            await self.pause(exc.reason)
            raise

    async def call_with_token(self, method: str, params: dict[str, Any], access_token: str) -> Any:
        """One call with a token that is not (yet) ours, e.g. to verify an event's token."""
        try:
            return await self._post(method, params, access_token)
        except ExpiredToken:
            raise AuthRevoked("expired_token", "verification_failed") from None

    async def pause(self, reason: str) -> None:
        log.warning("Bitrix24 tenant paused", extra={"tenant": self.tenant, "reason": reason})
        try:
            await self.ctx.tenants.set_status(self.tenant, "paused", reason)
        except Exception as exc:  # the tenant may be gone (uninstalled meanwhile)
            log.info("could not mark tenant", extra={"tenant": self.tenant, "error": type(exc).__name__})

    async def tokens(self) -> Tokens:
        tokens = await get_tokens(self.st)
        if tokens is None:
            raise AuthRevoked("NOT_INSTALLED", "reinstall_required")
        if tokens.fresh():
            return tokens
        return await self.refresh(stale=tokens.access_token)

    async def refresh(self, stale: str) -> Tokens:
        """Refresh unless someone else already replaced the ``stale`` access token."""
        async def current() -> Tokens:
            tokens = await get_tokens(self.st)
            if tokens is None:
                raise AuthRevoked("NOT_INSTALLED", "reinstall_required")
            return tokens

        async def renew(tokens: Tokens) -> Tokens:
            try:
                grant = await oauth_grant(self.ctx, self.settings, tokens.refresh_token)
            except (AuthRevoked, RetryableError):
                self.ctx.count("token_refresh", "failed")
                raise
            fresh = Tokens(grant.access_token, grant.refresh_token, grant.expires)
            await put_tokens(self.st, fresh)
            self.ctx.count("token_refresh", "ok")
            log.info("Bitrix24 access token renewed", extra={"tenant": self.tenant})
            return fresh

        try:
            return await _REFRESH.run(self.st, "oauth-refresh", current=current, refresh=renew,
                                      stale=lambda t: t.access_token == stale or not t.fresh())
        except TimeoutError:
            raise RetryableError("token refresh is busy elsewhere", code="REFRESH_BUSY") from None

    async def _portal(self) -> Portal:
        portal = await get_portal(self.st)
        if portal is None or not portal.client_endpoint:
            raise AuthRevoked("NOT_INSTALLED", "reinstall_required")
        return portal

    async def _post(self, method: str, params: dict[str, Any], access_token: str) -> Any:
        portal = await self._portal()
        url = portal.client_endpoint + method
        for hop in range(2):
            if not is_allowed(url, self.settings.allowed):
                raise AuthRevoked("PORTAL_NOT_ALLOWED", "portal_not_allowed")
            try:
                async with self.ctx.http.post(url, json={**params, "auth": access_token},
                                             allow_redirects=False, timeout=REQUEST_TIMEOUT) as resp:
                    body = await resp.content.read(MAX_BODY)
                    location = resp.headers.get("Location", "")
                    if resp.status in _REDIRECTS and location and hop == 0:
                        url = await self._moved(portal, urljoin(url, location), method)
                        continue
                    return parse_rest(resp.status, body, resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, asyncio.TimeoutError):
                raise RetryableError("Bitrix24 unreachable", code="NETWORK") from None
        raise RetryableError("Bitrix24 redirected twice", code="REDIRECT_LOOP")

    async def _moved(self, portal: Portal, target: str, method: str) -> str:
        """A renamed portal answers 302 with its new address: re-POST there, remember it."""
        endpoint = rest_endpoint(target)
        if endpoint is None or not is_allowed(endpoint, self.settings.allowed):
            raise AuthRevoked("PORTAL_NOT_ALLOWED", "portal_not_allowed")
        host = urlsplit(endpoint).hostname or ""
        await put_portal(self.st, Portal(endpoint, host, portal.application_token,
                                         portal.installer_user_id))
        log.info("Bitrix24 portal moved", extra={"tenant": self.tenant})
        return endpoint + method
