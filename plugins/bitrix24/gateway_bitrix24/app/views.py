"""Plain data for each page of the app: the wiring fills these, :mod:`.render` turns them into HTML.

Nothing here does I/O or knows the store; every value is already what the page shows. Times
are aware ``datetime`` values (shown in UTC); "never" is ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from . import token as tokens
from .token import Identity

#: Where Bitrix24's own JavaScript library lives (the one script not served by the gateway).
BX24_SRC = "https://api.bitrix24.com/api/v1/"

#: The app's form actions, by frame-token purpose, below :attr:`Links.base`.
ACTION_PATHS: Mapping[str, str] = {
    tokens.PLACETEL_CONNECT: "/placetel/connect",
    tokens.PLACETEL_DISCONNECT: "/placetel/disconnect",
    tokens.SETTINGS: "/settings",
    tokens.MAPPING: "/mapping",
    tokens.RETRY: "/retry",
    tokens.ERASE_ME: "/me/erase",
}

Health = Literal["ok", "failing", "unknown"]
#: Health reasons the pages explain (``ConnectionHealth.reason`` of the Placetel and Webex
#: plugins and of the core); another code is shown as the badge alone.
HEALTH_REASONS = ("api_key_rejected", "broken", "check_failed", "connection_broken", "login_needed", "no_secret",
                  "no_users", "no_webhooks", "plugin_not_loaded", "webhook_disabled")
MatchedBy = Literal["manual", "email", "extension"]
ErrorReason = Literal["invalid", "expired", "forbidden", "foreign", "not_installed", "unavailable",
                      "not_found", "bad_request", "not_configured"]


@dataclass(frozen=True, slots=True)
class Links:
    """The app's URLs. Pages: ``/`` (home: the admin page, or the user page for others),
    ``/me``, ``/privacy``; static files under ``/static/``; forms at :data:`ACTION_PATHS`."""

    base: str = "/apps/bitrix24"

    @property
    def home(self) -> str:
        return f"{self.base}/"

    @property
    def me(self) -> str:
        return f"{self.base}/me"

    @property
    def privacy(self) -> str:
        return f"{self.base}/privacy"

    def static(self, name: str) -> str:
        return f"{self.base}/static/{name}"

    def action(self, purpose: str) -> str:
        return f"{self.base}{ACTION_PATHS[purpose]}"


@dataclass(frozen=True, slots=True)
class Frame:
    """What every page needs: language, the frame tokens (purpose → token), the links.

    ``notice`` and ``problem`` are text keys (e.g. ``"notice.saved"``) shown above the page
    after a form was handled. ``bx24`` loads Bitrix24's library to fit the frame to the page.
    """

    lang: str = "en"
    tokens: Mapping[str, str] = field(default_factory=dict)
    is_admin: bool = False
    links: Links = field(default_factory=Links)
    notice: str | None = None
    problem: str | None = None
    bx24: bool = True
    bx24_src: str = BX24_SRC

    @classmethod
    def signed(cls, key: bytes, identity: Identity, *, now: float | None = None,
               **kwargs: object) -> Frame:
        """A frame for ``identity`` with every token it may hold (no admin tokens for users)."""
        return cls(lang=identity.lang, tokens=tokens.issue_all(key, identity, now=now),
                   is_admin=identity.is_admin, **kwargs)  # type: ignore[arg-type]


# --- administrator's page -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortalUser:
    """A Bitrix24 user offered in a select."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class PlacetelSection:
    """Placetel: connected or not; once connected, what to paste into Placetel's settings."""

    connected: bool
    notify_url: str | None = None
    secret: str | None = None


@dataclass(frozen=True, slots=True)
class WebexUser:
    """A telephone user logged in to Webex through the app."""

    name: str
    email: str | None = None
    extension: str | None = None


@dataclass(frozen=True, slots=True)
class SettingsSection:
    """The tenant's choices and the portal users to choose the responsible user from."""

    responsible_user_id: int | None
    crm_create: bool
    show_card: bool
    log_internal: bool
    portal_users: Sequence[PortalUser] = ()


@dataclass(frozen=True, slots=True)
class MappingRow:
    """A telephone user beside the portal user their calls go to.

    ``key`` names the row in the form (``map.<key>``; letters, digits, ``.:_-``). ``matched_by``
    says how the current portal user was found: set by hand, or automatically by e-mail or
    extension; ``None`` with no portal user means "not matched".
    """

    key: str
    system: str
    name: str
    email: str | None
    extension: str | None
    portal_user_id: int | None
    matched_by: MatchedBy | None = None


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """One telephone connection: when it last sent a webhook, its health as its telephone
    system's plugin reports it (``reason``: a short code such as ``webhook_disabled``), and
    when calls whose webhooks never came were last looked for in its call list."""

    system: str
    label: str
    last_webhook: datetime | None
    webhook_health: Health | None = None
    reason: str | None = None
    since: datetime | None = None  #: when it was connected
    #: when it was last compared with its telephone system's call list (reconciliation)
    reconciled: datetime | None = None
    reconcile_failing: bool = False


@dataclass(frozen=True, slots=True)
class CallCounts:
    written: int
    failed: int


@dataclass(frozen=True, slots=True)
class Bucket:
    """Calls of one period (a day or an hour) starting at ``start``."""

    start: datetime
    written: int
    failed: int


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    """A call event the CRM did not take, kept for a retry; ``error`` is a code, not a message."""

    id: str
    at: datetime
    state: str
    error: str


@dataclass(frozen=True, slots=True)
class StatusSection:
    now: datetime
    connections: Sequence[ConnectionStatus] = ()
    last_24h: CallCounts = CallCounts(0, 0)
    last_7d: CallCounts = CallCounts(0, 0)
    daily: Sequence[Bucket] = ()  #: the last 7 days, oldest first
    hourly: Sequence[Bucket] = ()  #: the last 24 hours, oldest first
    failed: Sequence[FailedDelivery] = ()


@dataclass(frozen=True, slots=True)
class AdminPage:
    placetel: PlacetelSection
    webex_users: Sequence[WebexUser]
    settings: SettingsSection
    mapping: Sequence[MappingRow]
    status: StatusSection


# --- every user's page ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TelephonyAccount:
    """What the gateway keeps about the user as a telephone user of one system."""

    system: str
    name: str | None
    email: str | None
    extension: str | None


@dataclass(frozen=True, slots=True)
class UserPage:
    """The user's own page: Webex login state and what the app keeps about them.

    ``webex_login_url`` and ``webex_logout_url`` are the Webex plugin's own flows (opened in a
    new tab: Webex does not allow being framed, and Webex proves who logs in or out); ``None``
    when Webex is not offered to the portal.
    """

    name: str
    webex_logged_in: bool
    webex_login_url: str | None
    webex_logout_url: str | None = None
    accounts: Sequence[TelephonyAccount] = ()
    mapped: bool = False  #: an administrator mapped a telephone user to this portal user
    call_records: int = 0
    retention_days: int = 7


@dataclass(frozen=True, slots=True)
class PrivacyPage:
    retention_days: int = 7


@dataclass(frozen=True, slots=True)
class ErrorPage:
    """Why the app cannot be shown. Never carries data of the request."""

    reason: ErrorReason = "invalid"
