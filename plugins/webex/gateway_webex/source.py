"""The Webex source: verifies deliveries, threads call-session state, resolves recordings.

State lives in PluginStorage as call records (purged by the core with the call data):
``call`` ``<connection>|<session uuid>`` (one per customer call, all users' legs of it; see
:mod:`.session`; index :data:`PENDING_END` while an unanswered call waits for its grace time),
and ``recording`` (which user owns a recording, so its link is fetched with their token at
delivery). All users of one Webex organisation post to the same connection, so the legs of a
queue call meet in one state, and ``ctx.calls.state`` serialises them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from gateway import (
    BadRequest,
    CallEvent,
    Connection,
    ConnectionHealth,
    NotFound,
    OriginateResult,
    PluginContext,
    PluginStorage,
    ReconcileResult,
    RecordingRef,
    RetryableError,
    Source,
    TelephonyUser,
    Unauthorized,
    UpstreamError,
    WebhookRequest,
    time_index,
    utcnow,
)

from . import accounts, reconcile, session, signature
from .accounts import PLUGIN, NeedsLogin
from .ids import session_key
from .session import PENDING_END
from .parse import (
    CALL_EVENTS,
    Envelope,
    MalformedNotification,
    call_snapshot,
    parse_envelope,
    recording_notice,
)

log = logging.getLogger("gateway_webex")

_REGION = re.compile(r"^[A-Z]{2}$")
_CONNECTION_SETTINGS = frozenset({"region", "org_id"})
def _remember(call: Any, state: dict[str, Any]) -> None:
    """Store the session state with what a data-subject request needs to find it, indexed
    :data:`PENDING_END` while it waits for its grace time (:func:`close_missed_calls`), else by
    the hour it began (reconciliation finds it so; not a stand-in for a reconciled call)."""
    call.value = state
    started = state.get("started_at")
    call.index = PENDING_END if state.get("pending_end") else (
        time_index(datetime.fromisoformat(started)) if isinstance(started, str) and not state.get("reconciled_as")
        else None)
    call.phones = [n for n in (state.get("remote"), state.get("internal_remote"))
                   if isinstance(n, str) and n.startswith("+")]


async def close_missed_calls(ctx: PluginContext, now: datetime | None = None) -> int:
    """End every unanswered session whose grace time is over (periodic task): its ``ended``
    event is stored like a webhook's, before the state says so, so a crash in between repeats
    it (same event id, deduplicated) instead of losing it. Returns how many calls ended."""
    closed = 0
    when = now or utcnow()
    for connection in await ctx.connections.list():
        for key, value in await ctx.calls.find(connection, PENDING_END):
            if not isinstance(value, dict) or not session.due(value, when):
                continue
            async with ctx.calls.state(connection, key) as call:
                if not isinstance(call.value, dict):
                    continue
                state, events = session.expire(call.value, when)
                if events:
                    await ctx.ingest(connection, events)
                    closed += 1
                _remember(call, state)
    return closed


class WebexSource(Source):
    """Webex Calling: one connection per organisation, one login per telephony user."""

    name = PLUGIN
    content_types = frozenset({"application/json"})
    deferred = True  # answered once signed and well-formed; interpreted right after

    async def connect(self, ctx: PluginContext, connection: Connection) -> Mapping[str, Any]:
        ctx.settings.require()
        given = dict(connection.settings)
        unknown = set(given) - _CONNECTION_SETTINGS
        if unknown:
            raise BadRequest("unknown settings for webex (allowed: region, org_id)")
        region = given.get("region", "DE")
        if not isinstance(region, str) or not _REGION.match(region):
            raise BadRequest("settings.region must be a two-letter country code")
        out: dict[str, Any] = {"region": region}
        if given.get("org_id") is not None:
            if not isinstance(given["org_id"], str) or not given["org_id"]:
                raise BadRequest("settings.org_id must be a Webex organisation id")
            out["org_id"] = given["org_id"]
        return out

    async def disconnect(self, ctx: PluginContext, connection: Connection) -> None:
        """Log every user out (webhooks deleted at Webex, best effort); forget call state."""
        for person in await accounts.logged_in(ctx, connection):
            try:
                await accounts.logout(ctx, connection, person)
            except Exception as exc:  # never block the disconnect on Webex
                log.warning("could not log a webex user out", extra={
                    "connection": connection.id, "error": type(exc).__name__})
        await ctx.calls.forget(connection)
        st = ctx.storage(connection.tenant)
        prefix = f"{connection.id}|"
        for key, _ in await st.all("recording"):
            if key.startswith(prefix):
                await st.delete("recording", key)

    async def check(self, ctx: PluginContext, connection: Connection, request: WebhookRequest) -> None:
        """Before the answer: a known webhook of this connection, its signature, and a call or
        recording delivery that reads (no state)."""
        envelope, hook = await self._verified(ctx, connection, request)
        if hook.dropped:
            return
        try:
            if envelope.resource == "telephony_calls" and envelope.event in CALL_EVENTS:
                call_snapshot(envelope, connection.settings.get("region") or "DE")
            elif envelope.resource == "convergedRecordings" and envelope.event in ("created", "updated"):
                recording_notice(envelope)
        except MalformedNotification:
            raise BadRequest("unparseable notification") from None

    async def _verified(self, ctx: PluginContext, connection: Connection, request: WebhookRequest,
                        ) -> tuple[Envelope, accounts.Hook]:
        try:
            envelope = parse_envelope(request.body)
        except MalformedNotification:
            raise BadRequest("unparseable notification") from None
        hook = await accounts.webhook(ctx, connection.tenant, envelope.webhook_id)
        if hook is None or hook.connection != connection.id:
            raise Unauthorized("unknown webhook")
        if not request.checked and not signature.verify(hook.secret, request.body, request.headers):
            raise Unauthorized("missing or bad signature")
        return envelope, hook

    def order_key(self, connection: Connection, request: WebhookRequest) -> str | None:
        """Deliveries of one call session (every user's legs and its recordings) are
        interpreted in order, of different sessions at once. A recording that names no session
        is found through the API: in order with everything of the connection."""
        envelope = parse_envelope(request.body)
        if envelope.resource == "telephony_calls" and envelope.event in CALL_EVENTS:
            session = envelope.data.get("callSessionId")
            return session_key(session) if isinstance(session, str) and session else None
        if envelope.resource == "convergedRecordings" and envelope.event in ("created", "updated"):
            return recording_notice(envelope).session
        return None

    async def receive(self, ctx: PluginContext, connection: Connection,
                      request: WebhookRequest) -> Sequence[CallEvent]:
        envelope, hook = await self._verified(ctx, connection, request)
        if hook.dropped or hook.person is None:
            return []  # the user logged out: acknowledge and drop
        person = hook.person
        user = await ctx.users.get(connection, person)
        if user is None or user.status == "logged_out":
            return []
        try:
            if envelope.resource == "telephony_calls" and envelope.event in CALL_EVENTS:
                return await self._call(ctx, connection, envelope, person, user, request)
            if envelope.resource == "convergedRecordings" and envelope.event in ("created", "updated"):
                return await self._recording(ctx, connection, ctx.storage(connection.tenant), envelope,
                                             person, request)
        except MalformedNotification:
            raise BadRequest("unparseable notification") from None
        ctx.count("ignored_notification")
        return []

    async def _call(self, ctx: PluginContext, connection: Connection, envelope: Envelope,
                    person: str, user: TelephonyUser, request: WebhookRequest) -> list[CallEvent]:
        snap = call_snapshot(envelope, connection.settings.get("region") or "DE")
        own_number = user.numbers[0] if user.numbers else None
        # one delivery of a call session at a time (all users' legs); the state commits with the events
        async with ctx.reconcile.webhook(connection), ctx.calls.state(connection, session_key(snap.session_id)) as call:
            if call.value is None:  # reconciliation may have written the call meanwhile
                stand_in = await reconcile.claim(ctx, connection, snap, request.received_at)
                if stand_in is not None:
                    _remember(call, stand_in)
                    return []
            if isinstance(call.value, dict) and call.value.get("ended"):
                ctx.count("late_call_leg")
                return []
            state, events = session.apply(call.value if isinstance(call.value, dict) else None, snap,
                                          user=person, local_number=own_number,
                                          received_at=request.received_at, grace=ctx.settings.missed_grace)
            _remember(call, state)
        return events

    async def _recording(self, ctx: PluginContext, connection: Connection, st: PluginStorage,
                         envelope: Envelope, person: str, request: WebhookRequest) -> list[CallEvent]:
        notice = recording_notice(envelope)
        if notice.status not in (None, "available"):
            return []
        key = notice.session or await self._recording_session(ctx, connection, person, notice.recording_id)
        state = await ctx.calls.get(connection, key) if key else None
        if not isinstance(state, dict) or "legs" not in state:
            ctx.count("recording_unmatched")
            return []
        await st.put("recording", f"{connection.id}|{notice.recording_id}", {"person": person}, call_record=True)
        return [session.recording_event(state, notice.recording_id, owner=person,
                                        received_at=request.received_at, file_format=notice.format)]

    async def _recording_session(self, ctx: PluginContext, connection: Connection, person: str,
                                 recording_id: str) -> str | None:
        """The recording's call session from its metadata (the event's data may not carry it)."""
        try:
            meta = await accounts.call_as(ctx, connection, person, "GET",
                                          f"/convergedRecordings/{quote(recording_id, safe='')}/metadata")
        except (NeedsLogin, NotFound):
            return None
        except RetryableError:
            raise UpstreamError("Webex is unavailable") from None
        if not isinstance(meta, dict):
            return None
        service = meta.get("serviceData")
        session = (service if isinstance(service, dict) else meta).get("callSessionId")
        return session_key(session) if isinstance(session, str) and session else None

    async def resolve_recording(self, ctx: PluginContext, connection: Connection, ref: RecordingRef) -> str | None:
        """The recording's temporary audio link, fetched now with its owner's token; never kept."""
        st = ctx.storage(connection.tenant)
        owner = await st.get("recording", f"{connection.id}|{ref.ref}")
        if not isinstance(owner, dict) or not isinstance(owner.get("person"), str):
            return None
        try:
            details = await accounts.call_as(ctx, connection, owner["person"], "GET",
                                             f"/convergedRecordings/{quote(ref.ref, safe='')}")
        except (NeedsLogin, NotFound):
            return None
        links = details.get("temporaryDirectDownloadLinks") if isinstance(details, dict) else None
        link = links.get("audioDownloadLink") if isinstance(links, dict) else None
        return link if isinstance(link, str) and link else None

    async def reconcile(self, ctx: PluginContext, connection: Connection, since: datetime, until: datetime,
                        progress: Callable[[str], None]) -> ReconcileResult:
        """Write the calls the users' histories list and no webhook brought (:mod:`.reconcile`)."""
        return await reconcile.reconcile(ctx, connection, since, until, progress)

    async def health(self, ctx: PluginContext, connection: Connection) -> ConnectionHealth:
        """Webhook health as the periodic check last saw it (:func:`.accounts.webhook_health`)."""
        return await accounts.webhook_health(ctx, connection)

    async def originate(self, ctx: PluginContext, connection: Connection, user: TelephonyUser,
                        number: str) -> OriginateResult:
        """Click-to-dial as the user (their token): Webex rings their devices, then dials.
        Returns the ``call_id`` the call's events will carry (the call session)."""
        if user.status != "active":
            raise BadRequest("the Webex user has to log in first")
        if not number or len(number) > 128:
            raise BadRequest("a destination number is required")
        try:
            data = await accounts.call_as(ctx, connection, user.user_id, "POST", "/telephony/calls/dial",
                                          json={"destination": number})
        except NeedsLogin:
            raise BadRequest("the Webex user has to log in again") from None
        except NotFound:
            raise UpstreamError("Webex refused the call") from None
        call_session = data.get("callSessionId") if isinstance(data, dict) else None
        if not isinstance(call_session, str) or not call_session:
            return OriginateResult()
        return OriginateResult(call_id=call_session)
