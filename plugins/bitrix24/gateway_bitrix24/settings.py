"""Operator settings (``GATEWAY_BITRIX24_*``) and per-tenant settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway import BadRequest, setting

from .hosts import DEFAULT_PATTERNS, HostPattern, parse_patterns

PLUGIN = "bitrix24"
DEFAULT_OAUTH_URL = "https://oauth.bitrix.info/oauth/token/"


@dataclass(frozen=True)
class PluginSettings:
    """The operator's settings, declared to the core (``GATEWAY_BITRIX24_*``)."""

    client_id: str = setting("", help="the Bitrix24 app's client id (local.* or app.*)")
    client_secret: str = setting("", secret=True, help="the Bitrix24 app's client secret")
    oauth_url: str = setting(DEFAULT_OAUTH_URL, help="the OAuth server's token URL")
    allowed_portals: str = setting(DEFAULT_PATTERNS, help="comma-separated portal patterns, e.g. https://*.bitrix24.de")
    originate_wait: float = setting(5.0, help="seconds the event handler waits for a click-to-call")
    allowed: tuple[HostPattern, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        if not self.oauth_url.startswith(("https://", "http://")):
            raise ValueError("setting oauth_url must be an http(s) URL")
        try:
            object.__setattr__(self, "allowed", parse_patterns(self.allowed_portals))
        except ValueError:
            raise ValueError("setting allowed_portals is malformed") from None
        if not 0 <= self.originate_wait <= 30:
            raise ValueError("setting originate_wait must be between 0 and 30 seconds")

    def __repr__(self) -> str:
        return f"PluginSettings(client_id_set={bool(self.client_id)})"


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
