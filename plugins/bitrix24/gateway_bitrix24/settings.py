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
    """What a tenant's admin chooses. ``responsible_user_id``: who gets calls no agent can be
    named for (``None``: the user who installed the app); ``crm_create``: new leads for unknown
    numbers; ``show_card``: pop up call cards; ``log_internal``: write calls between colleagues
    (never with CRM entities)."""

    crm_create: bool = False
    responsible_user_id: int | None = None
    show_card: bool = True
    log_internal: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"crm_create": self.crm_create, "responsible_user_id": self.responsible_user_id,
                "show_card": self.show_card, "log_internal": self.log_internal}

    @classmethod
    def from_dict(cls, data: Any) -> TenantSettings:
        """Validate admin input (or stored values); unknown keys are refused. The name the
        first release stored, ``default_user_id``, is read as ``responsible_user_id``."""
        if not isinstance(data, dict):
            raise BadRequest("settings must be a JSON object")
        data = dict(data)
        if "default_user_id" in data and "responsible_user_id" not in data:
            data["responsible_user_id"] = data.pop("default_user_id")
        unknown = set(data) - {"crm_create", "responsible_user_id", "show_card", "log_internal"}
        if unknown:
            raise BadRequest("unknown setting")
        flags = {name: data.get(name, default) for name, default in
                 (("crm_create", False), ("show_card", True), ("log_internal", False))}
        if not all(isinstance(v, bool) for v in flags.values()):
            raise BadRequest("crm_create, show_card and log_internal must be true or false")
        user = data.get("responsible_user_id")
        if user is not None and (not isinstance(user, int) or isinstance(user, bool) or user <= 0):
            raise BadRequest("responsible_user_id must be a positive integer or null")
        return cls(responsible_user_id=user, **flags)
