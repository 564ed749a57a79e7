"""What a telephony source is: the object a plugin registers through ``register_sources``."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .errors import BadRequest
from .events import CallEvent, RecordingRef
from .models import Connection

if TYPE_CHECKING:
    from .context import PluginContext
    from .models import TelephonyUser
    from .reconcile import ReconcileResult


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """What the core hands a source for one webhook: raw bytes and headers, nothing parsed.

    ``headers`` is case-insensitive. ``received_at`` is the arrival time (UTC), to be used
    as the event time where the provider sends none. ``checked``: the request passed the
    source's :meth:`Source.check` before it was journaled, so ``receive`` may skip what ``check``
    did (the signature was verified against the secret of that moment).
    """

    body: bytes
    headers: Mapping[str, str]
    content_type: str
    received_at: datetime
    query: Mapping[str, str]
    checked: bool = False


class Source:
    """A telephone system. Subclass it and register an instance in ``register_sources``.

    Every method gets the plugin's own :class:`~gateway.PluginContext` as ``ctx``.

    The core owns I/O policy: it checks the content type against :attr:`content_types`, the
    body size, looks up the connection, persists what :meth:`receive` returns durably and only
    then answers 2xx. The source owns vendor knowledge: signatures, payloads, API calls.
    """

    #: The plugin's name; also the path segment in ``/hooks/{name}/{connection_id}``.
    name: ClassVar[str] = ""
    #: Media types accepted on the webhook endpoint; anything else is a 415.
    content_types: ClassVar[frozenset[str]] = frozenset({"application/json"})
    #: ``True``: the core may acknowledge a webhook once :meth:`check` passed and the request is
    #: durable (journaled), and calls :meth:`receive` on it right after, in arrival order.
    deferred: ClassVar[bool] = False

    async def connect(self, ctx: PluginContext, connection: Connection) -> Mapping[str, Any]:
        """Check a new connection's settings and return the settings to store (encrypted).

        ``connection.settings`` holds what the tenant's admin sent; ``connection.id`` is already
        chosen, so ``gateway.webhook_url(connection)`` is known (e.g. to subscribe it). Raise
        :class:`~gateway.errors.BadRequest` for missing or malformed settings and
        :class:`~gateway.errors.UpstreamError` when the telephone system refuses them.
        """
        return dict(connection.settings)

    async def disconnect(self, ctx: PluginContext, connection: Connection) -> None:
        """Undo :meth:`connect` at the vendor (unsubscribe). Called before the core deletes
        the connection, its users and its stored records. Must not raise for a vendor that is
        unreachable: log (without personal data) and return."""

    async def receive(
        self, ctx: PluginContext, connection: Connection, request: WebhookRequest
    ) -> Sequence[CallEvent]:
        """Verify and parse one webhook into canonical events (possibly none).

        Verify first, in constant time, over ``request.body`` exactly as received: raise
        :class:`~gateway.errors.Unauthorized` on a missing or bad signature and
        :class:`~gateway.errors.BadRequest` on a body that cannot be parsed. Return an empty
        sequence for notifications that are valid but carry nothing to deliver (unknown event
        types, events of a logged-out user). Never raise anything else for bad input.
        """
        raise NotImplementedError

    async def check(self, ctx: PluginContext, connection: Connection, request: WebhookRequest) -> None:
        """For a :attr:`deferred` source: verify the signature (constant time, over the raw
        body) and that the body is well-formed, touching no state: raise
        :class:`~gateway.errors.Unauthorized` or :class:`~gateway.errors.BadRequest` exactly
        as :meth:`receive` would. Whatever passes is journaled and acknowledged; :meth:`receive`
        then gets the same request, and a failure there is counted as uninterpretable.
        """
        raise NotImplementedError

    def order_key(self, connection: Connection, request: WebhookRequest) -> str | None:
        """For a :attr:`deferred` source: the call a journaled request belongs to, read from
        the request alone (no state, no I/O; it has passed :meth:`check`). Requests with the
        same key are interpreted in arrival order; requests of one connection with different
        keys may be interpreted at the same time, so two requests whose :meth:`receive` touch
        the same state must share a key. ``None`` (the default): interpreted after every
        earlier request of its connection and before every later one.
        """
        return None

    async def resolve_recording(
        self, ctx: PluginContext, connection: Connection, ref: RecordingRef
    ) -> str | None:
        """Turn a recording reference into a link, at delivery time. ``None``: not available.

        The link is handed to the sink and must never be stored or logged.
        """
        return None

    async def originate(self, ctx: PluginContext, connection: Connection, user: TelephonyUser,
                        number: str) -> OriginateResult:
        """Click-to-call: make the telephone system ring ``user`` (a user of ``connection``'s
        directory), then dial ``number`` (E.164 where it parses).

        Return the provider's id of the call in :attr:`OriginateResult.call_id` when it is the
        ``call_id`` the call's events will carry: the core then links the events to the CRM's
        call exactly. Raise :class:`~gateway.errors.BadRequest` for an unusable user or number
        and :class:`~gateway.errors.UpstreamError` when the telephone system refuses. The
        default: this telephone system cannot place calls.
        """
        raise BadRequest("this telephone system cannot place calls")

    async def reconcile(self, ctx: PluginContext, connection: Connection, since: datetime, until: datetime,
                        progress: Callable[[str], None]) -> ReconcileResult:
        """Optional: compare the calls the telephone system lists for ``[since, until)`` with
        those the gateway received, and write the missing ones (``ctx.ingest``, events marked
        ``extra["reconciled"] = True``). The core decides when and which window (see
        :mod:`gateway.reconcile`); ``ctx.reconcile`` has the shared parts (the gate against
        webhooks, matching helpers). ``progress`` takes short data-free lines for the CLI.
        Raise on failure (a ``RetryableError`` with ``retry_after`` when the vendor asked to
        wait): the core retries with back-off. Not implemented: the source has no call list.
        """
        raise NotImplementedError

    async def health(self, ctx: PluginContext, connection: Connection) -> ConnectionHealth:
        """Whether the connection's events can arrive, for a CRM's status page: from what the
        source already knows (its own records, the connection's status), without a vendor
        call on each page view. ``reason`` is a short code free of personal data. The
        default: a ``broken`` connection is failing, anything else unknown."""
        if connection.status == "broken":
            reason = connection.status_reason or ""
            return ConnectionHealth("failing", reason if _REASON.match(reason) else "broken")
        return ConnectionHealth("unknown")


#: ``ok``: events arrive; ``failing``: a person must act; ``unknown``: cannot tell (yet).
HealthStatus = Literal["ok", "failing", "unknown"]
_REASON = re.compile(r"^[a-z0-9_]{1,40}$")


@dataclass(frozen=True, slots=True)
class ConnectionHealth:
    """A connection's health as its source reports it (:meth:`Source.health`).

    ``reason`` is a short lower-case code (``webhook_disabled``, ``api_key_rejected``), never
    a message: CRMs turn it into their own words and it may be logged.
    """

    status: HealthStatus
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.status not in ("ok", "failing", "unknown"):
            raise ValueError("health status is ok, failing or unknown")
        if self.reason is not None and not _REASON.match(self.reason):
            raise ValueError("a health reason is a short lower-case code")


@dataclass(frozen=True, slots=True)
class OriginateResult:
    """What a source reports after starting a click-to-call.

    ``call_id``: the ``call_id`` the call's events will carry, if the provider told it.
    """

    call_id: str | None = None


__all__ = ["ConnectionHealth", "HealthStatus", "OriginateResult", "Source", "WebhookRequest"]
