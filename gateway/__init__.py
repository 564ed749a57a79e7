"""callgate: the plugin-facing API. Plugins import from here and nowhere else in the core.

Everything listed in ``__all__`` is public and kept stable; hooks are specified in
:mod:`gateway.hookspecs` and described in ``docs/plugins.md``.
"""

from __future__ import annotations

import pluggy

from .admin import ADMIN_SCOPE
from .appkeys import GATEWAY
from .errors import (
    BadRequest,
    Conflict,
    DeliveryError,
    Forbidden,
    GatewayError,
    NotFound,
    PermanentError,
    RetryableError,
    TenantPaused,
    Unauthorized,
    UpstreamError,
)
from .events import (
    ANONYMOUS,
    CallEvent,
    CallState,
    Direction,
    Outcome,
    RecordingRef,
    normalize_number,
    utcnow,
)
from .http import json_response, read_json
from .models import Connection, SinkBinding, TelephonyUser, Tenant
from .privacy import Subject
from .runtime import Gateway
from .sinks import Delivery, RateLimit, Sink
from .sources import OriginateResult, Source, WebhookRequest
from .store import PluginStorage

__version__ = "0.1.0"

#: Marks a plugin's hook implementations: ``@hookimpl def register_sources(register): ...``
hookimpl = pluggy.HookimplMarker("gateway")

__all__ = [
    "ADMIN_SCOPE", "ANONYMOUS", "GATEWAY", "BadRequest", "CallEvent", "CallState", "Conflict", "Connection",
    "Delivery", "DeliveryError", "Direction", "Forbidden", "Gateway", "GatewayError", "NotFound",
    "OriginateResult", "Outcome", "PermanentError", "PluginStorage", "RateLimit", "RecordingRef",
    "RetryableError", "Sink", "SinkBinding", "Source", "Subject", "TelephonyUser", "Tenant",
    "TenantPaused", "Unauthorized", "UpstreamError", "WebhookRequest", "hookimpl", "json_response",
    "normalize_number", "read_json", "utcnow",
]
