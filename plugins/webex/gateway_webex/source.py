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
    Connection,
    Gateway,
    NotFound,
    PluginStorage,
    RecordingRef,
    RetryableError,
    Source,
    Unauthorized,
    UpstreamError,
    WebhookRequest,
)

from . import accounts, signature
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
_CONNECTION_SETTINGS = frozenset({"region", "org_id"})


class WebexSource(Source):
    """Webex Calling: one connection per organisation, one login per telephony user."""

    name = PLUGIN
    content_types = frozenset({"application/json"})

    async def connect(self, gateway: Gateway, connection: Connection) -> Mapping[str, Any]:
        accounts.settings(gateway).require()
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

    async def disconnect(self, gateway: Gateway, connection: Connection) -> None:
        """Log every user out (webhooks deleted at Webex, best effort); forget call state."""
        for person in await accounts.logged_in(gateway, connection):
            try:
                await accounts.logout(gateway, connection, person)
            except Exception as exc:  # never block the disconnect on Webex
                log.warning("could not log a webex user out", extra={
                    "connection": connection.id, "error": type(exc).__name__})
        st = accounts.storage(gateway, connection.tenant)
        prefix = f"{connection.id}|"
        for kind in ("call", "dial", "recording"):
            for key, _ in await st.all(kind):
                if key.startswith(prefix):
                    await st.delete(kind, key)

    async def receive(self, gateway: Gateway, connection: Connection,
                      request: WebhookRequest) -> Sequence[CallEvent]:
        try:
            envelope = parse_envelope(request.body)
        except MalformedNotification:
            raise BadRequest("unparseable notification") from None
        st = accounts.storage(gateway, connection.tenant)
        hook = await st.get("webhook", envelope.webhook_id)
        if not isinstance(hook, dict) or hook.get("connection") != connection.id:
            raise Unauthorized("unknown webhook")
        if not signature.verify(str(hook.get("secret", "")), request.body, request.headers):
            raise Unauthorized("missing or bad signature")
        if hook.get("dropped"):
            return []  # the user logged out: acknowledge and drop
        person = str(hook["person"])
        user = await gateway.get_user(connection, person)
        if user is None or user.status == "logged_out":
            return []
        try:
            if envelope.resource == "telephony_calls" and envelope.event in CALL_EVENTS:
                return await self._call(gateway, connection, st, envelope, person, request)
            if envelope.resource == "convergedRecordings" and envelope.event in ("created", "updated"):
                return await self._recording(gateway, connection, st, envelope, person, request)
        except MalformedNotification:
            raise BadRequest("unparseable notification") from None
        gateway.count("ignored_notification", plugin=PLUGIN)
        return []

    async def _call(self, gateway: Gateway, connection: Connection, st: PluginStorage, envelope: Envelope,
                    person: str, request: WebhookRequest) -> list[CallEvent]:
        snap = call_snapshot(envelope, connection.settings.get("region") or "DE")
        key = f"{connection.id}|{person}|{snap.call_leg}"
        # one delivery of a call leg at a time; the state write commits with the events
        async with gateway.lock(f"{PLUGIN}:call:{key}"):
            previous = await st.get("call", key)
            crm_call_id = None
            if previous is None:
                dial = await st.get("dial", f"{connection.id}|{person}|{session_key(snap.session_id)}")
                crm_call_id = dial.get("crm_call_id") if isinstance(dial, dict) else None
            state, events = advance(previous, snap, local_user=person, received_at=request.received_at,
                                    crm_call_id=crm_call_id)
            if state != previous:
                await st.put("call", key, state, index=f"{connection.id}|{person}|{state['session']}",
                             call_record=True, wait=False)
        return events

    async def _recording(self, gateway: Gateway, connection: Connection, st: PluginStorage,
                         envelope: Envelope, person: str, request: WebhookRequest) -> list[CallEvent]:
        notice = recording_notice(envelope)
        if notice.status not in (None, "available"):
            return []
        session = notice.session or await self._recording_session(gateway, connection, person, notice.recording_id)
        if session is None:
            gateway.count("recording_unmatched", plugin=PLUGIN)
            return []
        calls = await st.find("call", f"{connection.id}|{person}|{session}")
        if not calls:
            gateway.count("recording_unmatched", plugin=PLUGIN)
            return []
        _, state = calls[-1]
        await st.put("recording", f"{connection.id}|{notice.recording_id}", {"person": person}, call_record=True)
        return [recording_event(state, notice.recording_id, local_user=person, received_at=request.received_at)]

    async def _recording_session(self, gateway: Gateway, connection: Connection, person: str,
                                 recording_id: str) -> str | None:
        """The recording's call session from its metadata (the event's data may not carry it)."""
        try:
            meta = await accounts.call_as(gateway, connection, person, "GET",
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

    async def resolve_recording(self, gateway: Gateway, connection: Connection, ref: RecordingRef) -> str | None:
        """The recording's temporary audio link, fetched now with its owner's token; never kept."""
        st = accounts.storage(gateway, connection.tenant)
        owner = await st.get("recording", f"{connection.id}|{ref.ref}")
        if not isinstance(owner, dict) or not isinstance(owner.get("person"), str):
            return None
        try:
            details = await accounts.call_as(gateway, connection, owner["person"], "GET",
                                             f"/convergedRecordings/{quote(ref.ref, safe='')}")
        except (NeedsLogin, NotFound):
            return None
        links = details.get("temporaryDirectDownloadLinks") if isinstance(details, dict) else None
        link = links.get("audioDownloadLink") if isinstance(links, dict) else None
        return link if isinstance(link, str) and link else None
