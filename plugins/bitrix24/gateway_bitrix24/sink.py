"""The Bitrix24 sink: canonical call events → ``telephony.externalCall.*``.

Per provider call one ``call`` record (call_record=True) remembers the CRM ``CALL_ID``, the
CRM user and whether ``finish`` went through, so a retried or duplicated delivery never
registers or finishes twice. Decisions (README): *answered* needs no request (the card is
already up; a call first seen when answered is registered then); an ended call never seen
before is registered (without a card) and finished; a recording is attached only after
``finish``; a call without a CRM user (no match, no default user) is not written.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from gateway import (
    ANONYMOUS,
    CallEvent,
    CallState,
    Delivery,
    Direction,
    Gateway,
    PermanentError,
    RateLimit,
    RetryableError,
    Sink,
    TenantPaused,
)

from .api import Bitrix24Client
from .mapping import finish_params, is_call_unknown, register_params
from .records import get_settings
from .responses import AuthRevoked, Bitrix24Error
from .settings import PLUGIN
from .users import crm_user_for

log = logging.getLogger("gateway_bitrix24.sink")

CALL = "call"
PENDING = "pending"
C2C = "c2c"
#: How long a click-to-call waits to be adopted by the telephone system's first event.
ADOPT_WINDOW = 300
_CRM_CALL_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def call_key(event: CallEvent) -> str:
    return f"{event.connection_id}|{event.call_id}"


def pending_key(connection_id: str, telephony_user: str, number: str) -> str:
    return f"{connection_id}|{telephony_user}|{number}"


class Bitrix24Sink(Sink):
    name = PLUGIN
    #: Bitrix24 drains 2 requests/s per portal and blocks above 50 queued; a delivery makes one
    #: or two requests, and click-to-call shares the bucket, so bursts stay well under 50.
    rate_limit = RateLimit(rate=2, burst=20)

    async def deliver(self, gateway: Gateway, delivery: Delivery) -> None:
        try:
            await CallWriter(gateway, delivery).run()
        except AuthRevoked as exc:
            raise TenantPaused("the Bitrix24 app must be reinstalled or re-authorised", code=exc.code) from None
        except Bitrix24Error as exc:
            raise PermanentError("Bitrix24 refused the call", code=exc.code) from None


class CallWriter:
    """One delivery: load the call record, make the needed requests, save the record."""

    def __init__(self, gw: Gateway, delivery: Delivery) -> None:
        self.gw = gw
        self.event = delivery.event
        self.binding = delivery.binding
        self.tenant = delivery.binding.tenant
        self.client = Bitrix24Client(gw, self.tenant)
        self.st = self.client.st
        self.key = call_key(self.event)

    async def _save(self, record: dict[str, Any]) -> None:
        await self.st.put(CALL, self.key, record, call_record=True)

    async def run(self) -> None:
        ev = self.event
        record = await self.st.get(CALL, self.key) or {}
        if record.get("skipped"):
            return
        if ev.state in (CallState.RINGING, CallState.ANSWERED):
            if not record.get("crm_call_id"):
                settings = await get_settings(self.st, self.binding.settings)
                await self.register(show=settings.show_card)
            return
        if ev.state is CallState.ENDED:
            if not record.get("crm_call_id"):
                record = await self.register(show=False)
                if record.get("skipped"):
                    return
            if not record.get("finished"):
                record = await self.finish(record)
            if ev.recording is not None:
                await self.attach(record)
            return
        if ev.state is CallState.RECORDING:
            if not record.get("finished"):
                log.info("recording for a call that was not finished in Bitrix24; dropped",
                         extra={"tenant": self.tenant, "event": ev.event_id})
                self.gw.count("recording_unfinished_call", plugin=PLUGIN)
                return
            await self.attach(record)

    async def _adopt(self) -> dict[str, Any] | None:
        """A click-to-call: Bitrix24 registered the call already; use its CALL_ID."""
        ev = self.event
        if ev.crm_call_id and _CRM_CALL_ID.match(ev.crm_call_id):
            started = await self.st.get(C2C, ev.crm_call_id)
            if isinstance(started, dict) and started.get("user_id"):
                return {"crm_call_id": ev.crm_call_id, "user_id": int(started["user_id"]), "adopted": True}
        if ev.direction is not Direction.OUTBOUND or not ev.local_user or not ev.remote_number:
            return None
        pkey = pending_key(ev.connection_id, ev.local_user, ev.remote_number)
        pending = await self.st.get(PENDING, pkey)
        if not isinstance(pending, dict) or time.time() - float(pending.get("at", 0)) > ADOPT_WINDOW:
            return None
        record = {"crm_call_id": pending["crm_call_id"], "user_id": int(pending["user_id"]), "adopted": True}
        await self._save(record)
        await self.st.delete(PENDING, pkey)
        return record

    async def register(self, *, show: bool) -> dict[str, Any]:
        ev = self.event
        adopted = await self._adopt()
        if adopted is not None:
            await self._save(adopted)
            log.info("click-to-call adopted", extra={"tenant": self.tenant, "event": ev.event_id})
            return adopted
        if not ev.remote_number or ev.remote_number == ANONYMOUS:
            return await self._skip("anonymous")
        settings = await get_settings(self.st, self.binding.settings)
        user_id = await crm_user_for(self.gw, self.client, ev, settings.default_user_id)
        if user_id is None:
            return await self._skip("no_user")
        params = register_params(ev, user_id=user_id, crm_create=settings.crm_create, show=show)
        result = await self.client.call("telephony.externalCall.register", params)
        crm_call_id = result.get("CALL_ID") if isinstance(result, dict) else None
        if not isinstance(crm_call_id, str) or not _CRM_CALL_ID.match(crm_call_id):
            raise RetryableError("register answered without a CALL_ID", code="NO_CALL_ID")
        if isinstance(result, dict) and result.get("LEAD_CREATION_ERROR"):
            log.warning("Bitrix24 registered the call but refused to create a lead",
                        extra={"tenant": self.tenant, "event": ev.event_id, "code": "LEAD_CREATION_ERROR"})
            self.gw.count("lead_creation_error", plugin=PLUGIN)
        record = {"crm_call_id": crm_call_id, "user_id": user_id}
        await self._save(record)
        return record

    async def _skip(self, why: str) -> dict[str, Any]:
        log.info("call not written to Bitrix24", extra={"tenant": self.tenant, "reason": why,
                                                         "event": self.event.event_id})
        self.gw.count(f"call_skipped_{why}", plugin=PLUGIN)
        record = {"skipped": why}
        await self._save(record)
        return record

    async def finish(self, record: dict[str, Any]) -> dict[str, Any]:
        params = finish_params(self.event, crm_call_id=record["crm_call_id"], user_id=int(record["user_id"]))
        try:
            await self.client.call("telephony.externalCall.finish", params)
        except Bitrix24Error as exc:
            if not is_call_unknown(exc.description):
                raise
            # Finished already, or expired at Bitrix24: nothing left to close. Re-registering
            # could duplicate an activity, so the call is treated as done.
            log.info("Bitrix24 no longer knows the call at finish", extra={
                "tenant": self.tenant, "event": self.event.event_id, "code": exc.code})
            self.gw.count("finish_call_unknown", plugin=PLUGIN)
        record = {**record, "finished": True}
        await self._save(record)
        return record

    async def attach(self, record: dict[str, Any]) -> None:
        link = await self.gw.recording_link(self.event)  # never stored, never logged
        if not link:
            log.info("recording not available", extra={"tenant": self.tenant, "event": self.event.event_id})
            return
        await self.client.call("telephony.externalCall.attachRecord",
                               {"CALL_ID": record["crm_call_id"], "RECORD_URL": link})
        await self._save({**record, "recording": True})
