"""The plugin's name, the operator's settings (``GATEWAY_PLACETEL_*``) and its storage kinds.

The settings are declared to the core (``declare_settings``), which reads and checks them at
start-up: a bad value stops the gateway with one line naming the setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway import setting

from .api import DEFAULT_BASE_URL, RetryPolicy

NAME = "placetel"


def pending_kind(connection_id: str) -> str:
    """PluginStorage kind of the calls whose recording is still being looked for."""
    return f"recording-pending:{connection_id}"


#: PluginStorage kind of the last user directory refresh per connection (key: connection id).
USERS_REFRESHED = "users-refreshed"
#: Call memory indexes: calls not ended yet, and calls whose hang-up waits for its answer.
OPEN = "open"
HELD = "held"


@dataclass(frozen=True)
class Settings:
    """The operator's settings; the README explains each."""

    api_url: str = setting(DEFAULT_BASE_URL, help="Placetel Web API v2 base URL")
    allow_unsigned: frozenset[str] = setting(
        frozenset(), help="connection ids whose notifications may come without a signature (insecure)")
    retry_attempts: int = setting(3, help="tries of an idempotent API request")
    retry_base: float = setting(0.5, help="first wait between tries, doubling (s)")
    retry_max_wait: float = setting(5.0, help="longest Retry-After slept on in-line (s)")
    user_refresh: float = setting(3600.0, help="seconds between user directory refreshes (at least 60)")
    recordings: bool = setting(True, help="look up recordings and voicemails of ended calls")
    recording_delay: float = setting(60.0, help="seconds after a call ends before the first lookup")
    recording_tries: int = setting(5, help="lookups per call before giving up")
    end_grace: float = setting(60.0, help="seconds an answered HungUp that came before its CallAccepted "
                                          "waits for it (names the agent); 0 never waits")
    ring_timeout: float = setting(3600.0, help="seconds after which a call that only rang (no answer, "
                                               "no HungUp: Contact Center queues) is written as missed")
    reconcile_interval: float = setting(900.0, help="seconds between comparisons with Placetel's call list "
                                                    "(at least 60): calls whose notifications never arrived")

    def __post_init__(self) -> None:
        if not self.api_url.startswith(("https://", "http://")):
            raise ValueError("setting api_url must be an http(s) URL")
        object.__setattr__(self, "api_url", self.api_url.rstrip("/"))
        if self.retry_attempts < 1 or self.recording_tries < 1:
            raise ValueError("settings retry_attempts and recording_tries must be at least 1")
        if min(self.retry_base, self.retry_max_wait, self.recording_delay) < 0:
            raise ValueError("settings retry_base, retry_max_wait and recording_delay cannot be negative")
        if self.user_refresh < 60:
            raise ValueError("setting user_refresh must be at least 60 seconds")
        if not 0 <= self.end_grace <= 3600:
            raise ValueError("setting end_grace must be between 0 and 3600 seconds")
        if self.ring_timeout < 60:
            raise ValueError("setting ring_timeout must be at least 60 seconds")
        if self.reconcile_interval < 60:
            raise ValueError("setting reconcile_interval must be at least 60 seconds")

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(attempts=self.retry_attempts, base=self.retry_base, max_wait=self.retry_max_wait)
