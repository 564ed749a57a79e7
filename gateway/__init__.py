"""callgate: the plugin-facing API. Plugins import from here and nowhere else in the core.

Everything listed in ``__all__`` is public and kept stable; hooks are specified in
:mod:`gateway.hookspecs` and described in ``docs/plugins.md``.
"""

from __future__ import annotations

import pluggy

from .admin import ADMIN_SCOPE, require_scope
from .appkeys import CONTEXT
from .context import CallMemory, DeliveryCount, FailedDelivery, PluginContext
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
from .reconcile import CallSpan, ReconcileResult, ReconcileStatus, match_calls, time_index
from .settings import setting
from .sinks import Delivery, RateLimit, Sink
from .sources import ConnectionHealth, OriginateResult, Source, WebhookRequest
from .store import PluginStorage
from .vendor import SingleFlight, error_for_status, retry_after

__version__ = "0.1.0"

#: Marks a plugin's hook implementations: ``@hookimpl def register_sources(register): ...``
hookimpl = pluggy.HookimplMarker("gateway")

__all__ = [
    "ADMIN_SCOPE", "ANONYMOUS", "CONTEXT", "BadRequest", "CallEvent", "CallMemory", "CallSpan", "CallState",
    "Conflict",
    "Connection", "ConnectionHealth", "Delivery", "DeliveryCount", "DeliveryError", "Direction",
    "FailedDelivery", "Forbidden", "GatewayError", "NotFound",
    "OriginateResult", "Outcome", "PermanentError", "PluginContext", "PluginStorage", "RateLimit",
    "ReconcileResult", "ReconcileStatus", "RecordingRef", "RetryableError", "SingleFlight", "Sink", "SinkBinding", "Source", "Subject",
    "TelephonyUser", "Tenant", "TenantPaused", "Unauthorized", "UpstreamError", "WebhookRequest",
    "error_for_status", "hookimpl", "json_response", "match_calls", "normalize_number", "read_json", "require_scope",
    "retry_after", "setting", "time_index", "utcnow",
]
