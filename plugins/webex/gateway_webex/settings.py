"""Operator settings of the Webex integration (``GATEWAY_WEBEX_*``), declared to the core."""

from __future__ import annotations

from dataclasses import dataclass

from gateway import BadRequest, setting

DEFAULT_API_URL = "https://webexapis.com/v1"
#: Scopes asked for at login: call events and click-to-call, the user's profile, recordings.
DEFAULT_SCOPES = ("spark:calls_read", "spark:calls_write", "spark:people_read", "spark:recordings_read",
                  "spark:kms")
RECORDINGS_SCOPE = "spark:recordings_read"


@dataclass(frozen=True)
class WebexSettings:
    """The integration's client credentials and endpoints. Without a client id and secret the
    gateway still starts (Placetel-only operators need no Webex integration); connecting
    Webex is then refused with a clear message."""

    client_id: str = setting("", help="the Webex integration's client id")
    client_secret: str = setting("", secret=True, help="the Webex integration's client secret")
    api_url: str = setting(DEFAULT_API_URL, help="Webex REST API base URL")
    authorize_url: str = setting("", help="OAuth authorize URL (default: API_URL/authorize)")
    token_url: str = setting("", help="OAuth token URL (default: API_URL/access_token)")
    scopes: tuple[str, ...] = setting(DEFAULT_SCOPES, help="OAuth scopes asked for at login")
    state_ttl: int = setting(600, help="seconds a login link stays valid (at least 60)")
    missed_grace: float = setting(60.0, help="seconds an unanswered call waits, after its last leg "
                                             "ended, for a colleague's answer before it is written "
                                             "as missed (0 to 3600)")
    reconcile_interval: float = setting(900.0, help="seconds between comparisons with the users' call "
                                                    "histories (at least 60): calls whose webhooks never arrived")

    def __post_init__(self) -> None:
        api = self.api_url.rstrip("/")
        if not api.startswith(("https://", "http://")):
            raise ValueError("setting api_url must be an http(s) URL")
        object.__setattr__(self, "api_url", api)
        object.__setattr__(self, "authorize_url", self.authorize_url or f"{api}/authorize")
        object.__setattr__(self, "token_url", self.token_url or f"{api}/access_token")
        # one space-separated value (as OAuth writes scopes) or a comma-separated list
        object.__setattr__(self, "scopes", tuple(part for item in self.scopes for part in item.split()))
        if not self.scopes:
            raise ValueError("setting scopes must name at least one scope")
        if self.state_ttl < 60:
            raise ValueError("setting state_ttl must be at least 60 seconds")
        if not 0 <= self.missed_grace <= 3600:
            raise ValueError("setting missed_grace must be between 0 and 3600 seconds")
        if self.reconcile_interval < 60:
            raise ValueError("setting reconcile_interval must be at least 60 seconds")

    def __repr__(self) -> str:
        return f"WebexSettings(configured={self.configured})"

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret)

    def require(self) -> WebexSettings:
        """Self, or a 400 saying the operator has not configured the integration."""
        if not self.configured:
            raise BadRequest("the Webex integration is not configured "
                             "(GATEWAY_WEBEX_CLIENT_ID, GATEWAY_WEBEX_CLIENT_SECRET)")
        return self
