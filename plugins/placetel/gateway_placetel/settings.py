"""The plugin's name, the operator's settings (``GATEWAY_PLACETEL_*``) and its storage kinds.

Settings are read on every use, so a change of the gateway's configuration takes effect
without a restart (and tests can change them on a running gateway).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from gateway import Gateway

from .api import DEFAULT_BASE_URL, RetryPolicy

NAME = "placetel"


def call_kind(connection_id: str) -> str:
    """PluginStorage kind of the per-call memory (a ``call_record``, purged with the calls)."""
    return f"call:{connection_id}"


def pending_kind(connection_id: str) -> str:
    """PluginStorage kind of the calls whose recording is still being looked for."""
    return f"recording-pending:{connection_id}"


#: PluginStorage kind of the last user directory refresh per connection (key: connection id).
USERS_REFRESHED = "users-refreshed"


def _float(config: Mapping[str, str], key: str, default: float) -> float:
    """A finite number from the settings, else ``default`` (a typo must not break the plugin)."""
    try:
        value = float(config.get(key, default))
    except ValueError:
        return default
    return value if math.isfinite(value) else default


@dataclass(frozen=True, slots=True)
class Settings:
    """The operator's settings; see the README for each."""

    api_url: str = DEFAULT_BASE_URL
    allow_unsigned: frozenset[str] = frozenset()
    retry: RetryPolicy = RetryPolicy()
    user_refresh: float = 3600.0
    recordings: bool = True
    recording_delay: float = 60.0
    recording_tries: int = 5

    @classmethod
    def of(cls, gateway: Gateway) -> Settings:
        """The current settings; unusable values fall back to the defaults."""
        c = gateway.plugin_config(NAME)
        return cls(
            api_url=c.get("api_url", DEFAULT_BASE_URL).strip().rstrip("/") or DEFAULT_BASE_URL,
            allow_unsigned=frozenset(x.strip() for x in c.get("allow_unsigned", "").split(",") if x.strip()),
            retry=RetryPolicy(attempts=max(1, int(_float(c, "retry_attempts", 3))),
                              base=max(0.0, _float(c, "retry_base", 0.5)),
                              max_wait=max(0.0, _float(c, "retry_max_wait", 5.0))),
            user_refresh=max(60.0, _float(c, "user_refresh", 3600.0)),
            recordings=c.get("recordings", "true").strip().lower() not in {"0", "false", "no", "off"},
            recording_delay=max(0.0, _float(c, "recording_delay", 60.0)),
            recording_tries=max(1, int(_float(c, "recording_tries", 5))),
        )
