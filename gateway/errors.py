"""Errors the core and plugins raise, each mapped to one HTTP status or one delivery decision.

Messages are shown to callers and written to logs: they must never contain personal data,
tokens, secrets or recording links. Say *what* is wrong, never echo the offending value.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    status = 500


class ConfigError(GatewayError):
    """Configuration is missing or invalid; start-up stops with this one line."""


class PluginError(GatewayError):
    """A plugin failed to load or broke the contract; the message names the plugin."""


class StoreError(GatewayError):
    """The store cannot be used as it is (schema too new, wrong master key, ...)."""


# --- Webhook and admin input: each one a 4xx -----------------------------------------------


class BadRequest(GatewayError):
    """The request is well-authenticated but unparseable or invalid (400)."""

    status = 400


class Unauthorized(GatewayError):
    """Missing or bad signature or token (401)."""

    status = 401


class Forbidden(GatewayError):
    """Authenticated, but not allowed to touch this resource (403)."""

    status = 403


class NotFound(GatewayError):
    """Unknown connection, tenant or resource (404)."""

    status = 404


class Conflict(GatewayError):
    """The resource exists already or is in a state that forbids the change (409)."""

    status = 409


class UpstreamError(GatewayError):
    """A vendor API refused or failed while serving an admin or CRM request (502).

    Use for click-to-call or connect attempts that the telephone system or CRM refused.
    """

    status = 502


# --- Delivery outcomes raised by sinks ------------------------------------------------------


class DeliveryError(GatewayError):
    """Base of the errors a sink raises from ``deliver``.

    ``code`` is an optional short vendor error code (``QUERY_LIMIT_EXCEEDED``); it is the only
    part of the error that reaches dead letters and metrics, next to the class name.
    """

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class RetryableError(DeliveryError):
    """Worth another try later (timeouts, 5xx, rate limits, expired tokens).

    ``retry_after`` (seconds) is honoured as the minimum wait, e.g. from ``Retry-After``.
    """

    def __init__(self, message: str = "", *, retry_after: float | None = None,
                 code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class TenantPaused(RetryableError):
    """The destination cannot take anything until a person acts (revoked grant, reinstall).

    The delivery is kept, not dead-lettered, and tried again after ``retry_after`` (default
    ten minutes) without counting towards the retry horizon.
    """


class PermanentError(DeliveryError):
    """Will never succeed (the CRM rejected the data): dead-letter at once."""
