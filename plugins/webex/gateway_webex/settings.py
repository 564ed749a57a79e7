"""Operator settings of the Webex integration (``GATEWAY_WEBEX_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway import BadRequest

DEFAULT_API_URL = "https://webexapis.com/v1"
#: Scopes asked for at login: call events and click-to-call, the user's profile, recordings.
DEFAULT_SCOPES = ("spark:calls_read", "spark:calls_write", "spark:people_read", "spark:recordings_read",
                  "spark:kms")
RECORDINGS_SCOPE = "spark:recordings_read"


def _seconds(value: str | None, default: int) -> int:
    try:
        return max(60, int(value)) if value else default
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class WebexSettings:
    """The integration's client credentials and endpoints."""

    client_id: str
    client_secret: str
    api_url: str
    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    state_ttl: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, str]) -> WebexSettings:
        api = (cfg.get("api_url") or DEFAULT_API_URL).rstrip("/")
        scopes = tuple((cfg.get("scopes") or " ".join(DEFAULT_SCOPES)).replace(",", " ").split())
        return cls(client_id=cfg.get("client_id", ""), client_secret=cfg.get("client_secret", ""),
                   api_url=api, authorize_url=cfg.get("authorize_url") or f"{api}/authorize",
                   token_url=cfg.get("token_url") or f"{api}/access_token", scopes=scopes,
                   state_ttl=_seconds(cfg.get("state_ttl"), 600))

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret)

    def require(self) -> WebexSettings:
        """Self, or a 400 saying the operator has not configured the integration."""
        if not self.configured:
            raise BadRequest("the Webex integration is not configured "
                             "(GATEWAY_WEBEX_CLIENT_ID, GATEWAY_WEBEX_CLIENT_SECRET)")
        return self
