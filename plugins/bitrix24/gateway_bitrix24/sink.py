"""The Bitrix24 sink: canonical call events → ``telephony.externalCall.*``.

One Bitrix24 call per canonical call: the sources merge a call's legs (queues, hunt groups,
transfers) into one ``call_id``, so the sink stays CRM-only. Per call one ``call`` record
(call_record=True) remembers the CRM ``CALL_ID``, the user it was registered for, whose cards
are up (``shown``), the agent who answered and whether ``finish`` went through, so a retried
or duplicated delivery never registers, shows or finishes twice.

- **ringing**: registered at once, for the user the event names, else the first ringing user,
  else the tenant's responsible user (``SHOW=0``: nobody is known to ring there); then a card
  (``externalCall.show``) for every ringing user, hidden again for those who stop ringing;
- **answered**: the agent's card shown, every other card hidden (``hide``);
- **ended**: every card but the finishing user's hidden *before* ``finish`` (``finish`` hides
  only its own user's card and ``hide`` no longer works after it), then ``finish`` for the user
  the event names (who answered last, or the only one it rang for), else the agent, else the
  responsible user; a call first seen at its end is registered without a card and finished;
- **recording**: attached after ``finish`` with a ``FILENAME`` (``.mp3``/``.wav``);
- calls between colleagues (``internal``) are not written unless the tenant's ``log_internal``
  says so, and then never with CRM entities; anonymous callers are written as
  ``ANONYMOUS_NUMBER`` without CRM entities.
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
    PermanentError,
    PluginContext,
    PluginStorage,
    RateLimit,
    RetryableError,
    Sink,
    TenantPaused,
)

from .api import Bitrix24Client
from .batch import BatchAnswer, Ref, batch_params, parse_batch
from .lines import ensure_line
from .mapping import finish_params, is_call_unknown, line_number, recording_filename, register_params
from .records import get_settings
from .responses import AuthRevoked, Bitrix24Error, ExpiredToken, raise_error
from .settings import PLUGIN, TenantSettings
from .users import crm_user_for, responsible_user

log = logging.getLogger("gateway_bitrix24.sink")

CALL = "call"
C2C = "c2c"
_CRM_CALL_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def call_key(event: CallEvent) -> str:
    return f"{event.connection_id}|{event.call_id}"


def phones_of(number: str | None) -> tuple[str, ...]:
    """The numbers a call record is about (blind-indexed by the core, so a data subject's
    records are found and erased by number); none for an anonymous caller."""
    return (number,) if number and number != ANONYMOUS else ()


async def mark_adopted(st: PluginStorage, crm_call_id: str, number: str | None) -> None:
    """A click-to-call produced events: its ``c2c`` record is no longer open (the sweep leaves
    it alone)."""
    started = await st.get(C2C, crm_call_id)
    if isinstance(started, dict) and started.get("state") != "adopted":
        await st.put(C2C, crm_call_id, {**started, "state": "adopted", "at": time.time()},
                     phones=phones_of(number), call_record=True)


class Bitrix24Sink(Sink):
    name = PLUGIN
    #: Bitrix24 drains 2 requests/s per portal and blocks above 50 queued; a delivery makes one
    #: or two requests, and click-to-call shares the bucket, so bursts stay well under 50.
    rate_limit = RateLimit(rate=2, burst=20)

    async def deliver(self, ctx: PluginContext, delivery: Delivery) -> None:
        try:
            await CallWriter(ctx, delivery).run()
        except AuthRevoked as exc:
            raise TenantPaused("the Bitrix24 app must be reinstalled or re-authorised", code=exc.code) from None
        except Bitrix24Error as exc:
            raise PermanentError("Bitrix24 refused the call", code=exc.code) from None


class CallWriter:
    """One delivery: load the call record, make the needed requests, save the record."""

    def __init__(self, ctx: PluginContext, delivery: Delivery) -> None:
        self.ctx = ctx
        self.event = delivery.event
        self.binding = delivery.binding
        self.tenant = delivery.binding.tenant
        self.client = Bitrix24Client(ctx, self.tenant)
        self.st = self.client.st
        self.key = call_key(self.event)
        self.settings = TenantSettings()
        self._users: dict[str, int | None] = {}

    async def _save(self, record: dict[str, Any]) -> None:
        await self.st.put(CALL, self.key, record, phones=phones_of(self.event.remote_number),
                          call_record=True)

    async def run(self) -> None:
        ev = self.event
        record = await self.st.get(CALL, self.key) or {}
        if record.get("skipped"):
            return
        self.settings = await get_settings(self.st, self.binding.settings)
        if not record.get("crm_call_id") and ev.internal and not self.settings.log_internal:
            await self._skip("internal")
            return
        if ev.state is CallState.RINGING and not record.get("finished"):
            await self.ringing(record)
        elif ev.state is CallState.ANSWERED and not record.get("finished"):
            await self.answered(record)
        elif ev.state is CallState.ENDED:
            await self.end(record)
        elif ev.state is CallState.RECORDING:
            if not record.get("finished"):
                log.info("recording for a call that was not finished in Bitrix24; dropped",
                         extra={"tenant": self.tenant, "event": ev.event_id})
                self.ctx.count("recording_unfinished_call")
                return
            await self.attach(record)

    # --- users --------------------------------------------------------------------------

    async def crm_user(self, telephony_user: str | None) -> int | None:
        """The Bitrix24 user of a telephony user of the event's connection, if one matches."""
        if not telephony_user:
            return None
        if telephony_user not in self._users:
            self._users[telephony_user] = await crm_user_for(
                self.ctx, self.client, self.event.replace(local_user=telephony_user))
        return self._users[telephony_user]

    async def ringing_users(self) -> list[int]:
        found: list[int] = []
        for user in self.event.ringing:
            uid = await self.crm_user(user)
            if uid is not None and uid not in found:
                found.append(uid)
        return found

    async def responsible(self) -> int | None:
        return await responsible_user(self.client, self.settings)

    # --- states -------------------------------------------------------------------------

    async def ringing(self, record: dict[str, Any]) -> None:
        owner = await self.crm_user(self.event.local_user)
        ringing = await self.ringing_users()
        if not record.get("crm_call_id"):
            user = owner or (ringing[0] if ringing else None) or await self.responsible()
            record = await self.register(user, show=user is not None and (user == owner or user in ringing))
            if record.get("skipped"):
                return
        keep = {uid for uid in (record.get("agent"), owner) if uid}
        await self.cards(record, set(ringing) | keep)

    async def answered(self, record: dict[str, Any]) -> None:
        agent = await self.crm_user(self.event.local_user)
        if not record.get("crm_call_id"):
            record = await self.register(agent or await self.responsible(), show=agent is not None)
            if record.get("skipped"):
                return
        if agent is not None:
            record = {**record, "agent": agent}
            await self.cards(record, {agent})

    async def cards(self, record: dict[str, Any], wanted: set[int]) -> None:
        """Show the call's card to ``wanted`` users and hide it for everyone else shown."""
        shown = set(record.get("shown") or [])
        if not self.settings.show_card:
            wanted = set()
        hide, show = sorted(shown - wanted), sorted(wanted - shown)
        call_id = record["crm_call_id"]
        if hide:
            await self.client.call("telephony.externalCall.hide", {"CALL_ID": call_id, "USER_ID": hide})
        if show:
            await self.client.call("telephony.externalCall.show", {"CALL_ID": call_id, "USER_ID": show})
        await self._save({**record, "shown": sorted(wanted)})

    # --- register -----------------------------------------------------------------------

    async def _adopt(self) -> dict[str, Any] | None:
        """A click-to-call: Bitrix24 registered the call already (card up for the user who
        clicked); use its CALL_ID."""
        ev = self.event
        crm_call_id = await self.ctx.clicktocall.find(ev)
        if crm_call_id is None or not _CRM_CALL_ID.match(crm_call_id):
            return None
        started = await self.st.get(C2C, crm_call_id)
        if not isinstance(started, dict) or not started.get("user_id"):
            return None
        user_id = int(started["user_id"])
        record: dict[str, Any] = {"crm_call_id": crm_call_id, "user_id": user_id, "adopted": True,
                                  "shown": [user_id]}
        await self._save(record)
        await mark_adopted(self.st, crm_call_id, ev.remote_number)
        return record

    async def _prepare_register(self, user_id: int | None, *,
                                show: bool) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """``(record, None)`` when no register is needed (adopted click-to-call, skipped call),
        else ``(None, register params)``; the call's line exists in Bitrix24 by then."""
        adopted = await self._adopt()
        if adopted is not None:
            log.info("click-to-call adopted", extra={"tenant": self.tenant, "event": self.event.event_id})
            return adopted, None
        if user_id is None:
            return await self._skip("no_user"), None
        line = line_number(self.event)
        if line:
            await ensure_line(self.client, line)
        return None, register_params(self.event, user_id=user_id, crm_create=self.settings.crm_create,
                                     show=show and self.settings.show_card)

    async def register(self, user_id: int | None, *, show: bool) -> dict[str, Any]:
        record, params = await self._prepare_register(user_id, show=show)
        if record is not None:
            return record
        assert params is not None
        result = await self.client.call("telephony.externalCall.register", params)
        return await self._registered(result, params)

    async def _registered(self, result: Any, params: dict[str, Any]) -> dict[str, Any]:
        """Store the ``CALL_ID`` of a register answer (and whose card it shows); log a refused lead."""
        crm_call_id = result.get("CALL_ID") if isinstance(result, dict) else None
        if not isinstance(crm_call_id, str) or not _CRM_CALL_ID.match(crm_call_id):
            raise RetryableError("register answered without a CALL_ID", code="NO_CALL_ID")
        if isinstance(result, dict) and result.get("LEAD_CREATION_ERROR"):
            log.warning("Bitrix24 registered the call but refused to create a lead", extra={
                "tenant": self.tenant, "event": self.event.event_id, "code": "LEAD_CREATION_ERROR"})
            self.ctx.count("lead_creation_error")
        user_id = int(params["USER_ID"])
        record = {"crm_call_id": crm_call_id, "user_id": user_id, "shown": [user_id] if params["SHOW"] else []}
        await self._save(record)
        return record

    async def _skip(self, why: str) -> dict[str, Any]:
        log.info("call not written to Bitrix24", extra={"tenant": self.tenant, "reason": why,
                                                         "event": self.event.event_id})
        self.ctx.count(f"call_skipped_{why}")
        record = {"skipped": why}
        await self._save(record)
        return record

    # --- end ----------------------------------------------------------------------------

    async def _link(self) -> tuple[str | None, bool]:
        """The recording link (never stored, never logged) and whether resolving it failed."""
        if self.event.recording is None:
            return None, False
        try:
            return await self.ctx.recording_link(self.event), False
        except Exception as exc:
            log.info("recording link not resolved yet", extra={"tenant": self.tenant, "event": self.event.event_id,
                                                              "error": type(exc).__name__})
            return None, True

    async def end(self, record: dict[str, Any]) -> None:
        """An ended call: register (if first seen now), hide the others' cards, finish, attach
        the recording, in that order. Two or more of them go in one ``batch`` (halt on error):
        one request instead of several, which matters under the 2 requests/s portal limit."""
        ev = self.event
        user_id = await self.crm_user(ev.local_user) or record.get("agent") or await self.responsible()
        params: dict[str, Any] | None = None
        if not record.get("crm_call_id"):
            prepared, params = await self._prepare_register(user_id, show=False)
            if prepared is not None:
                record = prepared
                if record.get("skipped"):
                    return
        if user_id is None:
            user_id = int(record["user_id"])
        link, link_failed = await self._link()
        call_id: str | Ref = Ref("register", "CALL_ID") if params is not None else record["crm_call_id"]
        commands: dict[str, tuple[str, dict[str, Any]]] = {}
        if params is not None:
            commands["register"] = ("telephony.externalCall.register", params)
        hide = sorted(set(record.get("shown") or []) - {user_id})
        if hide and not record.get("finished"):
            commands["hide"] = ("telephony.externalCall.hide", {"CALL_ID": call_id, "USER_ID": hide})
        if not record.get("finished"):
            fin = finish_params(ev, crm_call_id="", user_id=user_id)
            commands["finish"] = ("telephony.externalCall.finish", {**fin, "CALL_ID": call_id})
        name = recording_filename(ev, link) if link else None
        if link and name:
            commands["attach"] = ("telephony.externalCall.attachRecord",
                                  {"CALL_ID": call_id, "RECORD_URL": link, "FILENAME": name})
        answer: BatchAnswer | None = None
        if len(commands) > 1:
            answer = parse_batch(await self.client.call("batch", batch_params(commands)))
            self.ctx.count("batch")
        if params is not None:
            result = await self._outcome(answer, "register") if answer else \
                await self.client.call("telephony.externalCall.register", params)
            record = await self._registered(result, params)
        if "hide" in commands:
            if answer is None:
                await self.client.call(*commands["hide"])
            else:
                await self._outcome(answer, "hide")
        if "finish" in commands:
            record = await self.finish(record, user_id, answer)
        if link and name:
            # after an unknown-call finish the batch halted before attachRecord: send it alone
            in_batch = answer is not None and ("finish" not in commands or answer.ran("finish"))
            await self.attach(record, link, answer if in_batch else None)
        elif link:
            self._unnamed()
        elif link_failed:
            await self.attach(record)  # raises what resolving raises: the delivery is retried

    async def finish(self, record: dict[str, Any], user_id: int,
                     answer: BatchAnswer | None = None) -> dict[str, Any]:
        params = finish_params(self.event, crm_call_id=record["crm_call_id"], user_id=user_id)
        try:
            if answer is None:
                await self.client.call("telephony.externalCall.finish", params)
            else:
                await self._outcome(answer, "finish")
        except Bitrix24Error as exc:
            if not is_call_unknown(exc.description):
                raise
            # Finished already, or expired at Bitrix24: nothing left to close. Re-registering
            # could duplicate an activity, so the call is treated as done.
            log.info("Bitrix24 no longer knows the call at finish", extra={
                "tenant": self.tenant, "event": self.event.event_id, "code": exc.code})
            self.ctx.count("finish_call_unknown")
        record = {**record, "finished": True, "shown": []}
        await self._save(record)
        return record

    def _unnamed(self) -> None:
        log.info("recording in a format Bitrix24 does not take; not attached",
                 extra={"tenant": self.tenant, "event": self.event.event_id})
        self.ctx.count("recording_format_unknown")

    async def attach(self, record: dict[str, Any], link: str | None = None,
                     answer: BatchAnswer | None = None) -> None:
        if link is None:
            link = await self.ctx.recording_link(self.event)  # never stored, never logged
        if not link:
            log.info("recording not available", extra={"tenant": self.tenant, "event": self.event.event_id})
            return
        name = recording_filename(self.event, link)
        if name is None:
            self._unnamed()
            return
        if answer is None:
            await self.client.call("telephony.externalCall.attachRecord",
                                   {"CALL_ID": record["crm_call_id"], "RECORD_URL": link, "FILENAME": name})
        else:
            await self._outcome(answer, "attach")
        await self._save({**record, "recording": True})

    async def _outcome(self, answer: BatchAnswer, key: str) -> Any:
        """One command's answer from a batch, or the exception its error means (an auth
        error pauses the tenant, as it does for a single call)."""
        if answer.ran(key):
            return answer.results[key]
        err = answer.errors.get(key)
        if err is None:
            raise RetryableError("batch stopped before a command", code="BATCH_HALTED")
        try:
            raise_error(err)
        except ExpiredToken:
            raise RetryableError("token expired inside a batch", code="expired_token") from None
        except AuthRevoked as exc:
            await self.client.pause(exc.reason)
            raise
