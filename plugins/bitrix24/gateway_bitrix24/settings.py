"""Operator settings (``GATEWAY_BITRIX24_*``) and per-tenant settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway import BadRequest, Gateway

from .hosts import DEFAULT_PATTERNS, HostPattern, parse_patterns

PLUGIN = "bitrix24"
DEFAULT_OAUTH_URL = "https://oauth.bitrix.info/oauth/token/"


@dataclass(frozen=True, slots=True)
class PluginSettings:
    client_id: str
    client_secret: str
    oauth_url: str
    allowed: tuple[HostPattern, ...]
    #: How long the event handler waits for a click-to-call before answering anyway.
    originate_wait: float

    def __repr__(self) -> str:
        return f"PluginSettings(client_id_set={bool(self.client_id)})"


_cache: dict[int, tuple[dict[str, str], PluginSettings]] = {}


def plugin_settings(gw: Gateway) -> PluginSettings:
    raw = gw.plugin_config(PLUGIN)
    cached = _cache.get(id(gw))
    if cached is not None and cached[0] == raw:
        return cached[1]
    try:
        allowed = parse_patterns(raw.get("allowed_portals") or DEFAULT_PATTERNS)
        wait = float(raw.get("originate_wait") or 5.0)
    except ValueError:
        raise BadRequest("GATEWAY_BITRIX24_ALLOWED_PORTALS or ORIGINATE_WAIT is malformed") from None
    settings = PluginSettings(client_id=raw.get("client_id", ""),
                              client_secret=raw.get("client_secret", ""),
                              oauth_url=raw.get("oauth_url") or DEFAULT_OAUTH_URL,
                              allowed=allowed, originate_wait=wait)
    _cache[id(gw)] = (raw, settings)
    return settings


@dataclass(frozen=True, slots=True)
class TenantSettings:
    """What a tenant's admin chooses: lead creation, the fallback user, whether cards pop up."""

    crm_create: bool = False
    default_user_id: int | None = None
    show_card: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"crm_create": self.crm_create, "default_user_id": self.default_user_id,
                "show_card": self.show_card}

    @classmethod
    def from_dict(cls, data: Any) -> TenantSettings:
        """Validate admin input (or stored values); unknown keys are refused."""
        if not isinstance(data, dict):
            raise BadRequest("settings must be a JSON object")
        unknown = set(data) - {"crm_create", "default_user_id", "show_card"}
        if unknown:
            raise BadRequest("unknown setting")
        crm, show = data.get("crm_create", False), data.get("show_card", True)
        user = data.get("default_user_id")
        if not isinstance(crm, bool) or not isinstance(show, bool):
            raise BadRequest("crm_create and show_card must be true or false")
        if user is not None and (not isinstance(user, int) or isinstance(user, bool) or user <= 0):
            raise BadRequest("default_user_id must be a positive integer or null")
        return cls(crm_create=crm, default_user_id=user, show_card=show)
