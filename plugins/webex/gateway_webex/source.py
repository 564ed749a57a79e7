"""The Webex source: verifies deliveries, threads per-call state, resolves recordings.

Per-call state lives in PluginStorage as call records (purged by the core with the call data):
``call`` ``<connection>|<person>|<callId>`` (index ``<connection>|<person>|<session uuid>``
for the recording join), ``dial`` (a click-to-call's CRM id by session) and ``recording``
(which user owns a recording, so its link can be fetched with their token at delivery).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from gateway import (
    BadRequest,
    CallEvent,
    ANONYMOUS,
    BadRequest,
    Connection,
    ConnectionHealth,
    NotFound,
    OriginateResult,
    PluginContext,
    PluginStorage,
    RecordingRef,
    RetryableError,
    Source,
    TelephonyUser,
    Unauthorized,
    UpstreamError,
    WebhookRequest,
)

from . import accounts, signature, tasks
from .accounts import PLUGIN, NeedsLogin
from .ids import session_key
from .parse import (
    CALL_EVENTS,
    Envelope,
    MalformedNotification,
    advance,
    call_snapshot,
    parse_envelope,
    recording_event,
    recording_notice,
)

log = logging.getLogger("gateway_webex")

_REGION = re.compile(r"^[A-Z]{2}$")


def session_index(connection: Connection, person: str, session: str) -> str:
    """The lookup value of a call state by call session (joins a recording to its call)."""
    return f"{connection.id}|{person}|{session}"
_CONNECTION_SETTINGS = frozenset({"region", "org_id"})


class WebexSource(Source):
    """Webex Calling: one connection per organisation, one login per telephony user."""

    name = PLUGIN
    content_types = frozenset({"application/json"})

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

    async def receive(self, ctx: PluginContext, connection: Connection,
                      request: WebhookRequest) -> Sequence[CallEvent]:
        try:
            envelope = parse_envelope(request.body)
        except MalformedNotification:
            raise BadRequest("unparseable notification") from None
        st = ctx.storage(connection.tenant)
        hook = await st.get("webhook", envelope.webhook_id)
        if not isinstance(hook, dict) or hook.get("connection") != connection.id:
            raise Unauthorized("unknown webhook")
        if not signature.verify(str(hook.get("secret", "")), request.body, request.headers):
            raise Unauthorized("missing or bad signature")
        if hook.get("dropped"):
            return []  # the user logged out: acknowledge and drop
        person = str(hook["person"])
        user = await ctx.users.get(connection, person)
        if user is None or user.status == "logged_out":
            return []
        try:
            if envelope.resource == "telephony_calls" and envelope.event in CALL_EVENTS:
                return await self._call(ctx, connection, envelope, person, request)
            if envelope.resource == "convergedRecordings" and envelope.event in ("created", "updated"):
                return await self._recording(ctx, connection, st, envelope, person, request)
        except MalformedNotification:
            raise BadRequest("unparseable notification") from None
        ctx.count("ignored_notification")
        return []

    async def _call(self, ctx: PluginContext, connection: Connection, envelope: Envelope,
                    person: str, request: WebhookRequest) -> list[CallEvent]:
        snap = call_snapshot(envelope, connection.settings.get("region") or "DE")
        # one delivery of a call leg at a time; the state write commits with the events
        async with ctx.calls.state(connection, f"{person}|{snap.call_leg}") as call:
            state, events = advance(call.value, snap, local_user=person, received_at=request.received_at)
            call.value = state
            call.index = session_index(connection, person, state["session"])
            call.phones = [state["remote"]] if state.get("remote") not in (None, ANONYMOUS) else []
        return events

    async def _recording(self, ctx: PluginContext, connection: Connection, st: PluginStorage,
                         envelope: Envelope, person: str, request: WebhookRequest) -> list[CallEvent]:
        notice = recording_notice(envelope)
        if notice.status not in (None, "available"):
            return []
        session = notice.session or await self._recording_session(ctx, connection, person, notice.recording_id)
        if session is None:
            ctx.count("recording_unmatched")
            return []
        calls = await ctx.calls.find(connection, session_index(connection, person, session))
        if not calls:
            ctx.count("recording_unmatched")
            return []
        _, state = calls[-1]
        await st.put("recording", f"{connection.id}|{notice.recording_id}", {"person": person}, call_record=True)
        return [recording_event(state, notice.recording_id, local_user=person, received_at=request.received_at)]

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

    async def health(self, ctx: PluginContext, connection: Connection) -> ConnectionHealth:
        """Webhook health as the periodic check last saw it (:func:`.tasks.webhook_health`)."""
        return await tasks.webhook_health(ctx, connection)

    async def originate(self, ctx: PluginContext, connection: Connection, user: TelephonyUser,
                        number: str) -> OriginateResult:
        """Click-to-dial as the user (their token): Webex rings their devices, then dials.
        Returns the ``call_id`` the call's events will carry (session and leg)."""
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
        leg = data.get("callId") if isinstance(data, dict) else None
        session = data.get("callSessionId") if isinstance(data, dict) else None
        if not isinstance(leg, str) or not leg or not isinstance(session, str) or not session:
            return OriginateResult()
        return OriginateResult(call_id=f"{session}:{leg}")
