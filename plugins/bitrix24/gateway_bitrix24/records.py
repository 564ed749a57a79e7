"""What the plugin keeps per tenant, all in the core's encrypted PluginStorage.

Kinds: ``portal`` (REST endpoint, domain, application token), ``oauth`` (token pair, kept
apart so a refresh never races an update of the portal record), ``settings`` (tenant's
choices), ``usermap`` (admin overrides), ``usercache`` (matched users), and the call records
``call`` and ``c2c`` (stored with ``call_record=True``: purged by retention).
Recording links are never stored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gateway import PluginStorage

from .settings import TenantSettings

PORTAL = ("portal", "main")
OAUTH = ("oauth", "tokens")
SETTINGS = ("settings", "tenant")


@dataclass(frozen=True, slots=True)
class Portal:
    client_endpoint: str
    domain: str
    application_token: str
    installer_user_id: int = 0

    def __repr__(self) -> str:
        return "Portal()"

    def to_dict(self) -> dict[str, Any]:
        return {"client_endpoint": self.client_endpoint, "domain": self.domain,
                "application_token": self.application_token,
                "installer_user_id": self.installer_user_id}


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires: int
    #: when the pair was granted (epoch seconds; 0 for records of older versions)
    refreshed_at: int = 0

    def __repr__(self) -> str:
        return "Tokens()"

    def fresh(self, margin: int = 60) -> bool:
        return self.expires - margin > int(time.time())


async def get_portal(st: PluginStorage) -> Portal | None:
    raw = await st.get(*PORTAL)
    if not isinstance(raw, dict):
        return None
    return Portal(client_endpoint=raw.get("client_endpoint", ""), domain=raw.get("domain", ""),
                  application_token=raw.get("application_token", ""),
                  installer_user_id=int(raw.get("installer_user_id") or 0))


async def put_portal(st: PluginStorage, portal: Portal) -> None:
    await st.put(*PORTAL, portal.to_dict())


async def get_tokens(st: PluginStorage) -> Tokens | None:
    raw = await st.get(*OAUTH)
    if not isinstance(raw, dict):
        return None
    return Tokens(raw.get("access_token", ""), raw.get("refresh_token", ""), int(raw.get("expires") or 0),
                  int(raw.get("refreshed_at") or 0))


async def put_tokens(st: PluginStorage, tokens: Tokens) -> None:
    """Store a freshly granted pair (every caller has just got one): stamped with the time."""
    await st.put(*OAUTH, {"access_token": tokens.access_token, "refresh_token": tokens.refresh_token,
                          "expires": tokens.expires, "refreshed_at": tokens.refreshed_at or int(time.time())})


async def get_settings(st: PluginStorage, fallback: dict[str, Any] | None = None) -> TenantSettings:
    raw = await st.get(*SETTINGS)
    if isinstance(raw, dict):
        return TenantSettings.from_dict(raw)
    if fallback:
        try:
            return TenantSettings.from_dict(fallback)
        except Exception:
            return TenantSettings()
    return TenantSettings()


async def put_settings(st: PluginStorage, settings: TenantSettings) -> None:
    await st.put(*SETTINGS, settings.to_dict())
