"""The Placetel source: the I/O around :mod:`.parse`, :mod:`.signature` and :mod:`.api`.

Connect checks the Web API key (``GET /v2/me``), subscribes the webhook URL where the API
allows it and reads the user directory. Receive verifies ``X-PLACETEL-SIGNATURE``, parses,
and keeps a small per-call memory (encrypted, purged with the call records). Recordings are
looked up after the call by the background round (:mod:`.background`) and arrive as
``RECORDING`` events holding only a reference; the link is fetched when a sink delivers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import phonenumbers

from gateway import (
    BadRequest,
    CallEvent,
    CallState,
    Connection,
    ConnectionHealth,
    GatewayError,
    OriginateResult,
    Outcome,
    PluginContext,
    ReconcileResult,
    RecordingRef,
    RetryableError,
    Source,
    TelephonyUser,
    Unauthorized,
    UpstreamError,
    WebhookRequest,
    utcnow,
)

from . import parse, reconcile, signature
from .api import ApiRefused, KeyRejected, PlacetelClient
from .memory import remember
from .recordings import parse_ref
from .settings import NAME, USERS_REFRESHED, Settings, pending_kind
from .users import build_directory

log = logging.getLogger("gateway.placetel")

#: Seconds a connection's extensions are believed from memory (users change rarely; another
#: gateway process's user refresh is seen within this time).
EXTENSIONS_TTL = 60.0

FORM = "application/x-www-form-urlencoded"
_MAX_SECRET = 512


class PlacetelSource(Source):
    """Placetel Notify in, canonical call events out; Web API v2 for everything else.

    Stateless: everything it remembers lives in the core's store (per-call state, plugin
    records), so a restart or a second gateway process sharing the store changes nothing.
    """

    name = NAME
    content_types = frozenset({FORM})
    deferred = True  # answered once signed and well-formed; interpreted right after

    def __init__(self) -> None:
        #: connection id -> (when read, its extensions): see :meth:`extensions`
        self._extensions: dict[str, tuple[float, frozenset[str]]] = {}

    # --- helpers ---------------------------------------------------------------------------

    def client(self, ctx: PluginContext, connection: Connection) -> PlacetelClient:
        """An API client with the connection's key and the operator's URL and retry policy."""
        s: Settings = ctx.settings
        return PlacetelClient(ctx.http, str(connection.settings.get("api_key", "")),
                              base_url=s.api_url, retry=s.retry)

    async def mark_broken(self, ctx: PluginContext, connection: Connection) -> None:
        """The API key was refused: make it visible through the admin API."""
        log.warning("placetel api key rejected", extra={"connection": connection.id})
        try:
            await ctx.connections.update(connection.id, status="broken", reason="api_key_rejected")
        except GatewayError:  # the connection is being removed meanwhile
            pass

    @staticmethod
    def region(connection: Connection) -> str:
        """The country for numbers without a prefix (``DE`` unless the connection says)."""
        region = connection.settings.get("region")
        return region if isinstance(region, str) and region else "DE"

    # --- connect / disconnect --------------------------------------------------------------

    async def connect(self, ctx: PluginContext, connection: Connection) -> Mapping[str, Any]:
        """Validate the settings, check the key, subscribe, read users; the settings to store.

        Bad settings and a key Placetel refuses are 400 (the admin must fix them); Placetel
        being unreachable is 502. A failed subscription or user read does not block.
        """
        given = connection.settings
        api_key = given.get("api_key")
        if not isinstance(api_key, str) or not api_key.strip() or len(api_key) > _MAX_SECRET:
            raise BadRequest("settings.api_key (the Placetel Web API v2 key) is required")
        secret = given.get("secret")
        if secret is not None and (not isinstance(secret, str) or not secret.strip()
                                   or len(secret) > _MAX_SECRET):
            raise BadRequest("settings.secret (the Notify shared secret) must be a non-empty string")
        region = given.get("region", "DE")
        if not isinstance(region, str) or region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise BadRequest("settings.region must be a two-letter country code such as DE")
        subscribe = given.get("subscribe", True)
        if not isinstance(subscribe, bool):
            raise BadRequest("settings.subscribe must be true or false")
        stored: dict[str, Any] = {
            "api_key": api_key.strip(), "secret": secret.strip() if secret else None,
            "region": region.upper(), "subscribe": subscribe,
            "subscription_id": None,
        }
        draft = Connection(connection.id, connection.tenant, connection.plugin, stored)
        client = self.client(ctx, draft)
        try:
            await client.me()
        except KeyRejected:
            raise BadRequest("Placetel rejected the API key") from None
        except ApiRefused as exc:
            raise BadRequest(f"Placetel refused the API key check ({exc.status})") from None
        except (RetryableError, UpstreamError):
            raise UpstreamError("the Placetel API is unavailable; try again later") from None
        if subscribe:
            try:
                stored["subscription_id"] = await client.subscribe(ctx.webhook_url(draft))
            except (RetryableError, UpstreamError) as exc:
                # Not fatal: the tenant can enter the URL in Placetel's settings by hand.
                log.warning("placetel subscription failed", extra={
                    "connection": connection.id, "error": type(exc).__name__})
                ctx.count("subscription_failed")
        try:
            await self.sync_users(ctx, draft)
        except (RetryableError, UpstreamError) as exc:
            log.warning("placetel user sync failed", extra={"connection": connection.id,
                                                            "error": type(exc).__name__})
        return stored

    async def disconnect(self, ctx: PluginContext, connection: Connection) -> None:
        """Delete the subscription (best effort), the users and everything kept per call."""
        sub_id = connection.settings.get("subscription_id")
        if isinstance(sub_id, str) and sub_id:
            try:
                await self.client(ctx, connection).unsubscribe(sub_id)
            except (RetryableError, UpstreamError) as exc:
                log.warning("placetel unsubscribe failed", extra={
                    "connection": connection.id, "error": type(exc).__name__})
        await ctx.users.remove(connection)
        await ctx.calls.forget(connection)
        storage = ctx.storage(connection.tenant)
        await storage.delete(pending_kind(connection.id))
        await storage.delete(USERS_REFRESHED, connection.id)

    # --- users -----------------------------------------------------------------------------

    async def sync_users(self, ctx: PluginContext, connection: Connection) -> int:
        """Read SIP users and web users into the directory; drop those that are gone."""
        client = self.client(ctx, connection)
        try:
            sip_users = await client.sip_users()
            try:
                web_users = await client.users()
            except ApiRefused:  # a key without the right to list web users: SIP users suffice
                web_users = []
        except KeyRejected:
            await self.mark_broken(ctx, connection)
            raise
        directory = build_directory(sip_users, web_users, self.region(connection))
        before = {u.user_id for u in await ctx.users.list(connection)}
        for user in directory:
            await ctx.users.put(connection, user)
        for gone in before - {u.user_id for u in directory}:
            await ctx.users.remove(connection, gone)
        self._extensions.pop(connection.id, None)
        await ctx.storage(connection.tenant).put(
            USERS_REFRESHED, connection.id, {"at": utcnow().timestamp(), "ok": True})
        if connection.status == "broken":
            await ctx.connections.update(connection.id, status="active")
        log.info("placetel users synced", extra={"connection": connection.id, "users": len(directory)})
        return len(directory)

    async def health(self, ctx: PluginContext, connection: Connection) -> ConnectionHealth:
        """Failing while Placetel refuses the API key or notifications cannot be verified (no
        shared secret, and the operator does not allow this connection unsigned); else ok."""
        if connection.status == "broken":
            return ConnectionHealth("failing", "api_key_rejected")
        if not connection.settings.get("secret") and connection.id not in ctx.settings.allow_unsigned:
            return ConnectionHealth("failing", "no_secret")
        return ConnectionHealth("ok")

    # --- webhooks --------------------------------------------------------------------------

    @staticmethod
    def _parse(request: WebhookRequest) -> parse.Notification:
        try:
            return parse.parse_notification(request.body)
        except parse.ParseError as exc:
            raise BadRequest(str(exc)) from None

    def _verify(self, ctx: PluginContext, connection: Connection, request: WebhookRequest) -> None:
        """Raise :class:`Unauthorized` unless the notification is signed with the connection's
        secret, or the operator allows this connection's notifications unsigned."""
        secret = connection.settings.get("secret")
        if isinstance(secret, str) and secret:
            if not signature.verify(secret, request.body, request.headers.get(signature.HEADER)):
                raise Unauthorized("missing or bad X-PLACETEL-SIGNATURE")
            return
        if connection.id in ctx.settings.allow_unsigned:
            ctx.count("insecure_webhook")
            log.warning("insecure placetel notification accepted without signature",
                        extra={"connection": connection.id})
            return
        raise Unauthorized("this connection has no Notify secret; unsigned notifications are refused")

    async def check(self, ctx: PluginContext, connection: Connection, request: WebhookRequest) -> None:
        """Before the answer: the signature, and a notification that parses (no state)."""
        self._verify(ctx, connection, request)
        self._parse(request)

    def order_key(self, connection: Connection, request: WebhookRequest) -> str | None:
        """Notifications of one call are interpreted in order; of different calls, at once
        (their state, reconciliation's claim and the recording search are all per call)."""
        return self._parse(request).call_id

    async def receive(self, ctx: PluginContext, connection: Connection,
                      request: WebhookRequest) -> Sequence[CallEvent]:
        """One Notify request -> its events (none for unknown events); 401/400 for bad ones."""
        if not request.checked:
            self._verify(ctx, connection, request)
        note = self._parse(request)
        if not note.known or note.call_id is None:
            ctx.count("unknown_event")  # the core counts it as ignored too
            return []
        # One notification of a call at a time; the state commits with (or before) the events.
        async with ctx.reconcile.webhook(connection), ctx.calls.state(connection, note.call_id) as call:
            known = call.value if isinstance(call.value, dict) else None
            if known is None:  # reconciliation may have written the call meanwhile
                known = await reconcile.claim(ctx, connection, note, request.received_at, self.region(connection))
                if known is not None:
                    remember(call, known)
            events, updated = parse.to_events(note, known, request.received_at, self.region(connection),
                                              await self.extensions(ctx, connection), ctx.settings.end_grace)
            if updated is not None:
                remember(call, updated)
        await self.after_end(ctx, connection, note.call_id, events)
        return events

    async def extensions(self, ctx: PluginContext, connection: Connection) -> frozenset[str]:
        """The connection's own extensions (its SIP users' ``did``): calls to them are internal.

        Every notification needs them, and reading them means reading and decrypting every user
        of the connection: they are kept in memory for :data:`EXTENSIONS_TTL` seconds, and
        forgotten at once when this process synchronises the connection's users.
        """
        now = time.monotonic()
        cached = self._extensions.get(connection.id)
        if cached is not None and now - cached[0] < EXTENSIONS_TTL:
            return cached[1]
        found = frozenset(u.extension for u in await ctx.users.list(connection) if u.extension)
        if len(self._extensions) >= 10_000:
            self._extensions.clear()
        self._extensions[connection.id] = (now, found)
        return found

    async def after_end(self, ctx: PluginContext, connection: Connection, call_id: str,
                        events: Sequence[CallEvent]) -> None:
        """A call answered or sent to voicemail ended: look for its recording later."""
        ended = [e for e in events if e.state is CallState.ENDED]
        if ended and ended[0].outcome in (Outcome.ANSWERED, Outcome.VOICEMAIL) \
                and ctx.settings.recordings and ended[0].remote_number:
            await ctx.storage(connection.tenant).put(pending_kind(connection.id), call_id, {"tries": 0},
                                                     call_record=True, wait=False)

    # --- reconciliation (the call list against what arrived) ------------------------------

    async def reconcile(self, ctx: PluginContext, connection: Connection, since: datetime, until: datetime,
                        progress: Callable[[str], None]) -> ReconcileResult:
        """Write the listed calls whose notifications never arrived (:mod:`.reconcile`)."""
        return await reconcile.reconcile(self, ctx, connection, since, until, progress)

    # --- recordings (found by :mod:`.background`) ------------------------------------------

    async def resolve_recording(self, ctx: PluginContext, connection: Connection,
                                ref: RecordingRef) -> str | None:
        """Fetch the recording's (or voicemail's) link now; it is never stored or logged.

        ``None`` when the reference is not ours, the item is gone or the key is refused;
        Placetel being busy raises :class:`RetryableError` so the sink retries later.
        """
        parsed = parse_ref(ref.ref) if ref.source == NAME else None
        if parsed is None:
            return None
        kind, item_id = parsed
        client = self.client(ctx, connection)
        try:
            if kind == "recording":
                link = (await client.recording(item_id)).get("file")
            else:
                link = (await client.call(item_id)).get("file_url")
        except KeyRejected:
            await self.mark_broken(ctx, connection)
            return None
        except ApiRefused:  # deleted meanwhile
            return None
        return link if isinstance(link, str) and link.startswith("https://") else None

    # --- click-to-call ---------------------------------------------------------------------

    async def originate(self, ctx: PluginContext, connection: Connection, user: TelephonyUser,
                        number: str) -> OriginateResult:
        """Click-to-dial: Placetel rings the user's SIP phone, then ``number``. Never retried.
        Placetel answers with no id, so the core recognises the call by user and number."""
        known = await ctx.users.get(connection, user.user_id)
        if known is None or known.status != "active" or "@" not in known.user_id:
            raise BadRequest("this user has no Placetel SIP user in the connection")
        target = number.strip()
        digits = target[1:] if target.startswith("+") else target
        if not digits or len(digits) > 32 or not all(ch.isdigit() or ch in "*#" for ch in digits):
            raise BadRequest("the number to dial is not usable")
        try:
            await self.client(ctx, connection).originate(known.user_id, target)
        except KeyRejected:
            await self.mark_broken(ctx, connection)
            raise UpstreamError("Placetel rejected the API key") from None
        except ApiRefused as exc:
            raise UpstreamError(f"Placetel refused the call ({exc.status})") from None
        except RetryableError:
            raise UpstreamError("Placetel is unavailable; the call was not started") from None
        ctx.count("originate")
        return OriginateResult()
