"""Who is looking at the app, and which portal may frame it.

Opening the app: Bitrix24 POSTs ``AUTH_ID`` (the user's access token), ``member_id`` and more
into the frame, with ``DOMAIN`` and ``LANG`` in the query. Nothing of it is believed: the
tenant is found by ``member_id`` among the portals that installed the app, ``DOMAIN`` must name
that tenant's *stored* portal, and ``AUTH_ID`` is sent only there (never to an address from the
request), to ``profile``, whose answer says who the user is and whether they administer the
portal. From then on the frame token (:mod:`.token`) carries that identity.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from gateway import PluginContext, RetryableError

from .. import lifecycle
from ..api import Bitrix24Client
from ..hosts import rest_endpoint
from ..records import Portal
from ..responses import AuthRevoked, Bitrix24Error
from . import token
from .csp import pattern_source, portal_origin
from .texts import choose_language
from .views import ErrorReason

log = logging.getLogger("gateway_bitrix24.app")

_AUTH_ID = re.compile(r"^[A-Za-z0-9._-]{1,256}$")
_MEMBER_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # also a frame-token tenant


class AppRefused(Exception):
    """The app cannot be shown: ``reason`` picks the error page's text, ``status`` its code."""

    def __init__(self, reason: ErrorReason, status: int, lang: str = "en") -> None:
        super().__init__(reason)
        self.reason: ErrorReason = reason
        self.status = status
        self.lang = lang


@lru_cache(maxsize=4)
def _derived(secret: str) -> bytes:
    return token.derive_key(secret)


def token_key(ctx: PluginContext, lang: str = "en") -> bytes:
    """The frame-token key, derived from the operator's Bitrix24 client secret; without app
    credentials the app cannot check anybody, and says so."""
    settings = ctx.settings
    if not settings.client_id or not settings.client_secret:
        raise AppRefused("not_configured", 503, lang)
    try:
        return _derived(settings.client_secret)
    except ValueError:  # a secret too short to derive a key from
        raise AppRefused("not_configured", 503, lang) from None


async def installed_portal(ctx: PluginContext, tenant: str, lang: str = "en") -> Portal:
    """The tenant's stored portal, if the app is installed there and bound as its CRM."""
    portal = await lifecycle.stored_portal(ctx, tenant) if _MEMBER_ID.match(tenant) else None
    if portal is None or not portal.client_endpoint or await ctx.tenants.binding(tenant) is None:
        raise AppRefused("not_installed", 404, lang)
    return portal


def _same_portal(portal: Portal, domain: str) -> bool:
    scheme = urlsplit(portal.client_endpoint).scheme or "https"
    return rest_endpoint(f"{scheme}://{domain.strip()}") == portal.client_endpoint


def _user_id(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**53:
        return value
    if isinstance(value, str) and value.isdigit() and 0 < len(value) <= 15:
        return int(value)
    return None


async def whoami(ctx: PluginContext, tenant: str, auth_id: str, lang: str) -> token.Identity:
    """Ask the tenant's stored portal whose access token ``auth_id`` is (``profile``)."""
    try:
        profile = await Bitrix24Client(ctx, tenant).call_with_token("profile", {}, auth_id)
    except (AuthRevoked, Bitrix24Error):
        ctx.count("app_open_refused", "invalid")
        raise AppRefused("invalid", 401, lang) from None
    except RetryableError:
        raise AppRefused("unavailable", 503, lang) from None
    user_id = _user_id(profile.get("ID")) if isinstance(profile, dict) else None
    if user_id is None:
        raise AppRefused("invalid", 401, lang)
    admin = isinstance(profile, dict) and profile.get("ADMIN") in (True, "Y", "1", 1)
    return token.Identity(tenant, user_id, admin, lang)


async def open_app(ctx: PluginContext, form: Mapping[str, str], query: Mapping[str, str]) -> token.Identity:
    """The identity of whoever opens the app, checked with the tenant's portal."""
    lang = choose_language(query.get("LANG"))
    token_key(ctx, lang)
    auth_id, member = form.get("AUTH_ID", ""), form.get("member_id", "")
    if not _AUTH_ID.match(auth_id) or not _MEMBER_ID.match(member):
        raise AppRefused("invalid", 401, lang)
    portal = await installed_portal(ctx, member, lang)
    domain = query.get("DOMAIN", "")
    if domain and not _same_portal(portal, domain):
        ctx.count("app_open_refused", "foreign")
        raise AppRefused("foreign", 403, lang)
    identity = await whoami(ctx, member, auth_id, lang)
    ctx.count("app_opened", "admin" if identity.is_admin else "user")
    return identity


def frame_ancestors(ctx: PluginContext, portal: Portal | None) -> str | Sequence[str]:
    """Who may frame a page: the tenant's own portal, or (a page that belongs to no known
    tenant, which shows no data) any portal the operator allows."""
    if portal is not None:
        parts = urlsplit(portal.client_endpoint)
        return portal_origin(f"{parts.scheme}://{parts.netloc}")
    return [pattern_source(p.scheme, p.host, p.port) for p in ctx.settings.allowed]
