"""Plain records the core hands to plugins: tenants, connections, telephony users."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Tenant:
    """One customer. ``id`` is chosen by whoever creates it (operator or CRM plugin)."""

    id: str
    created_at: datetime
    #: ``active``, or ``paused`` while a person has to act (e.g. reinstall the CRM app).
    status: str = "active"
    status_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Connection:
    """A tenant's account at a telephone system, served by the source plugin ``plugin``.

    ``settings`` are decrypted for the owning plugin only; they include its secrets.
    """

    id: str
    tenant: str
    plugin: str
    settings: dict[str, Any] = field(default_factory=dict)
    #: ``active``, or ``broken`` when the account refused our credentials.
    status: str = "active"
    status_reason: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SinkBinding:
    """A tenant's CRM, served by the sink plugin ``plugin``, with its decrypted settings."""

    tenant: str
    plugin: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TelephonyUser:
    """A person at the telephone system, as the source's user directory knows them.

    ``user_id`` is the source's own key (Placetel ``sipuid``, Webex person id). Personal fields
    are stored encrypted and deleted on logout (name, e-mail) or disconnect (all).
    """

    user_id: str
    name: str | None = None
    email: str | None = None
    extension: str | None = None
    numbers: tuple[str, ...] = ()
    #: ``active``, ``needs_login`` (token refresh failed) or ``logged_out``.
    status: str = "active"
