"""Reconciliation with the users' Webex call histories, against a fake Webex API: calls whose
webhooks never arrived reach the CRM exactly once, a late delivery adds no second call, one
customer call in several users' histories is one call, rate limits, re-activated webhooks."""

from __future__ import annotations

import base64
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

import gateway
from gateway import CallState, Direction, Outcome, utcnow
from gateway.testing import ReconcileFailed, RecordingSink, ended, generate_master_key, metric
from gateway_webex import tasks
from webex_fixtures import (  # noqa: F401 (fixture fake_webex)
    CALLER, ENV, ORG, PERSON, RECORDING_ID, SESSION, SESSION_UUID, TOKEN_RESPONSE, Webex, call_data, fake_webex, login,
)

MOBILE = "+4917312345678"
OTHER = "+4930123456"
COLLEAGUE = "Y2lzY29zcGFyazovL3VzL1BFT1BMRS9iYjFhMmIzYy0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDI"



def iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_session() -> str:
    return base64.b64encode(str(uuid.uuid4()).encode()).decode().rstrip("=")


def answered_call(at: datetime, session: str = SESSION, number: str = CALLER) -> list[tuple[str, dict[str, Any]]]:
    """An inbound call answered 5 s after ``at``, 30 s long, as the user's webhooks report it."""
    created, answer, end = iso(at), iso(at + timedelta(seconds=5)), iso(at + timedelta(seconds=35))
    party = {"name": "Jane Doe", "number": number, "privacyEnabled": False, "callType": "external"}
    common = {"session": session, "created": created, "remoteParty": party}
    return [("created", call_data("received", "alerting", ts=created, **common)),
            ("updated", call_data("answered", "connected", ts=answer, answered=answer, **common)),
            ("deleted", call_data("disconnected", "disconnected", ts=end, answered=answer, disconnected=end, **common))]


def record(kind: str, at: datetime, number: str | None = CALLER) -> dict[str, Any]:
    """A call history record as ``GET /telephony/calls/history`` lists it."""
    out: dict[str, Any] = {"type": kind, "privacyEnabled": number is None, "time": iso(at)}
    if number is not None:
        out.update(number=number, name="Jane Doe")
    return out


async def logged_in(gateway_harness: Any, fake_webex: Any, recorder: RecordingSink | None = None,
                    key: str | None = None, connection_id: str | None = None) -> Webex:
    """A gateway (started again on the same store when ``connection_id`` is given) with
    tenant ``acme``, a Webex connection and one logged-in user, last reconciled an hour ago."""
    fake, api = fake_webex
    h = await gateway_harness(env={**ENV, "GATEWAY_WEBEX_API_URL": api, "GATEWAY_MASTER_KEY": key or
                                   generate_master_key()}, recorder=recorder or RecordingSink())
    if connection_id is not None:
        return Webex(h=h, fake=fake, api=api, connection_id=connection_id)
    await h.create_tenant("acme")
    conn = await h.connect("acme", "webex", {"org_id": ORG})
    assert (await login(h, conn["id"])).status == 200
    ms = int((utcnow() - timedelta(hours=1)).timestamp() * 1000)
    await h.context("webex").storage("acme").put("reconcile", conn["id"], {"origin": ms, "until": ms, "last_ok": ms})
    return Webex(h=h, fake=fake, api=api, connection_id=conn["id"])


async def run(w: Webex, **kw: Any) -> gateway.ReconcileResult:
    return await w.h.gw.reconciliation.run(await w.h.gw.tenancy.connection(w.connection_id), **kw)


async def test_calls_while_the_gateway_was_stopped_reach_the_crm_once(gateway_harness, fake_webex, no_settle):
    recorder, key = RecordingSink(), generate_master_key()
    w = await logged_in(gateway_harness, fake_webex, recorder, key)
    at = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)
    assert await w.sequence(answered_call(at)) == [200, 200, 200]
    await recorder.wait_for(3)
    await w.h.client.close()  # the gateway stops; Webex's deliveries meanwhile go nowhere
    w.fake.history["*"] = [record("received", at + timedelta(seconds=5)),
                           record("missed", at + timedelta(minutes=3), MOBILE),
                           record("placed", at + timedelta(minutes=6), OTHER),
                           record("missed", at + timedelta(minutes=8), None)]

    w = await logged_in(gateway_harness, fake_webex, recorder, key, w.connection_id)
    await tasks.reconcile_due(w.h.context("webex"))  # the first round after start-up
    events = await w.h.delivered()

    assert Counter(e.remote_number for e in ended(events)) == {CALLER: 1, MOBILE: 1, OTHER: 1, "anonymous": 1}
    written = {e.remote_number: e for e in ended(events) if e.extra.get("reconciled")}
    assert set(written) == {MOBILE, OTHER, "anonymous"}
    missed, placed = written[MOBILE], written[OTHER]
    assert (missed.direction, missed.outcome, missed.duration, missed.local_user) == (
        Direction.INBOUND, Outcome.MISSED, 0, PERSON)
    assert missed.ended_at == at + timedelta(minutes=3)
    # a placed call's outcome and length are not in the history: written as unknown
    assert (placed.direction, placed.outcome, placed.duration, placed.local_user) == (
        Direction.OUTBOUND, None, None, PERSON)
    assert placed.started_at == at + timedelta(minutes=6) and placed.local_number == "+14085267209"
    assert [r.path for r in w.fake.seen if r.path.startswith("/telephony")] == ["/telephony/calls/history"]
    # again, from earlier: nothing new
    await run(w, since=at - timedelta(minutes=1))
    assert len(await w.h.delivered()) == len(events)


async def test_a_late_delivery_of_a_reconciled_call_adds_no_second_call(gateway_harness, fake_webex, no_settle):
    w = await logged_in(gateway_harness, fake_webex)
    at = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)
    w.fake.history["*"] = [record("received", at + timedelta(seconds=5))]
    assert (await run(w)).created == 1
    [written] = await w.h.recorder.wait_for(1)
    assert written.outcome is Outcome.ANSWERED and written.answered_at == at + timedelta(seconds=5)
    assert written.duration is None  # the history has no duration

    late = metric("gateway_plugin_events_total", plugin="webex", what="reconcile_late_webhook")
    assert await w.sequence(answered_call(at)) == [200, 200, 200]  # the call's webhooks, late
    assert await w.h.delivered() == [written]
    assert metric("gateway_plugin_events_total", plugin="webex", what="reconcile_late_webhook") == late + 1
    # its recording goes to the call reconciliation wrote
    body = {"id": RECORDING_ID, "status": "available", "format": "MP3",
            "serviceData": {"callSessionId": SESSION_UUID}}
    assert (await w.deliver("created", body, resource="convergedRecordings")).status == 200
    events = await w.h.recorder.wait_for(2)
    assert events[1].state is CallState.RECORDING and events[1].call_id == written.call_id
    # a new call from the same number a while later is a call of its own
    assert await w.sequence(answered_call(utcnow(), session=new_session())) == [200, 200, 200]
    assert len(ended(await w.h.recorder.wait_for(5))) == 2


async def test_the_agent_calling_back_soon_after_a_reconciled_missed_call_makes_a_call_of_its_own(
        gateway_harness, fake_webex, no_settle):
    w = await logged_in(gateway_harness, fake_webex)
    at = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)
    w.fake.history["*"] = [record("missed", at)]
    assert (await run(w)).created == 1
    [missed] = await w.h.recorder.wait_for(1)
    assert missed.direction is Direction.INBOUND
    callback = [(event, {**data, "personality": "originator"})
                for event, data in answered_call(at + timedelta(seconds=150), session=new_session())]
    assert await w.sequence(callback) == [200, 200, 200]  # within the 3 minutes' slack of the missed call
    calls = ended(await w.h.recorder.wait_for(4))
    assert [e.direction for e in calls] == [Direction.INBOUND, Direction.OUTBOUND]


async def test_a_call_received_by_webhook_is_not_written_again(gateway_harness, fake_webex, no_settle):
    w = await logged_in(gateway_harness, fake_webex)
    at = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)
    await w.sequence(answered_call(at))
    w.fake.history["*"] = [record("received", at + timedelta(seconds=5))]
    result = await run(w)
    assert (result.listed, result.received, result.created) == (1, 1, 0)
    assert len(ended(await w.h.delivered())) == 1


async def test_one_customer_call_in_two_users_histories_is_one_call(gateway_harness, fake_webex, no_settle):
    """A queue call rang two agents: one missed it, the other answered. Each history has a
    record; the CRM gets one call, answered by the second agent."""
    w = await logged_in(gateway_harness, fake_webex)
    w.fake.token_response = {**TOKEN_RESPONSE, "access_token": "access-token-colleague"}
    await w.login_as(COLLEAGUE, email="bea@example.com", name="Bea", number="+4922100007", extension="7")
    at = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)
    w.fake.history[TOKEN_RESPONSE["access_token"]] = [record("missed", at + timedelta(seconds=20), MOBILE)]
    w.fake.history["access-token-colleague"] = [record("received", at + timedelta(seconds=19), MOBILE),
                                                record("placed", at, "7")]  # a colleague: not reconciled
    result = await run(w)
    assert (result.listed, result.created, result.skipped) == (1, 1, 1)
    [call] = ended(await w.h.delivered())
    assert call.outcome is Outcome.ANSWERED and call.local_user == COLLEAGUE and call.remote_number == MOBILE
    assert call.extra["history"] == ["missed", "received"]


async def test_rate_limits_are_waited_out_or_back_off(gateway_harness, fake_webex, no_settle):
    w = await logged_in(gateway_harness, fake_webex)
    w.fake.history["*"] = [record("missed", utcnow() - timedelta(minutes=5))]
    w.fake.script("GET", "/telephony/calls/history", 429, {"message": "slow down"}, {"Retry-After": "1"})
    began = time.monotonic()
    assert (await run(w)).created == 1
    assert time.monotonic() - began >= 1.0
    assert len(w.fake.requests("GET", "/telephony/calls/history")) == 2

    w.fake.script("GET", "/telephony/calls/history", 423, {"message": "locked"}, {"Retry-After": "300"})
    with pytest.raises(ReconcileFailed):
        await run(w)
    conn = await w.h.gw.tenancy.connection(w.connection_id)
    state = await w.h.gw.reconciliation.state(conn)
    assert state["failures"] == 1 and state["next_try"] >= (time.time() + 290) * 1000
    assert state["error"] == "RetryableError"
    assert not w.h.gw.reconciliation.due(state, utcnow(), 60)


async def test_a_reactivated_webhook_asks_for_a_reconciliation(gateway_harness, fake_webex, no_settle):
    w = await logged_in(gateway_harness, fake_webex)
    ctx = w.h.context("webex")
    assert await tasks.reconcile_due(ctx) == 1  # start-up's round
    assert await tasks.reconcile_due(ctx) == 0  # not due again for 15 minutes
    hook_id, _ = w.hook("telephony_calls", "updated")
    w.fake.webhooks[hook_id]["status"] = "inactive"  # Webex disabled it after failed deliveries
    w.fake.history["*"] = [record("missed", utcnow(), MOBILE)]  # while it was off
    assert await tasks.check_webhooks(ctx) == 1
    assert await tasks.reconcile_due(ctx) == 1  # asked for: runs at once
    assert [e.remote_number for e in await w.h.delivered()] == [MOBILE]
    status = (await ctx.connections.reconciliations("acme"))[w.connection_id]
    assert not status.failing and status.last_success is not None


async def test_an_erased_callers_history_is_not_written_again(gateway_harness, fake_webex, no_settle):
    w = await logged_in(gateway_harness, fake_webex)
    at = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)
    await w.sequence(answered_call(at))
    await w.h.delivered()
    await w.h.admin("POST", "/tenants/acme/subjects/erase", {"phone": CALLER}, expect=200)
    w.fake.history["*"] = [record("received", at + timedelta(seconds=5)), record("missed", at + timedelta(minutes=2))]
    await run(w, since=at - timedelta(minutes=5))
    assert len(ended(await w.h.delivered())) == 1  # the webhook's, from before the erasure


async def test_a_full_history_says_the_list_may_be_incomplete(gateway_harness, fake_webex, no_settle):
    w = await logged_in(gateway_harness, fake_webex)
    at = utcnow() - timedelta(minutes=40)
    w.fake.history["*"] = [record("missed", at + timedelta(minutes=n), f"+49301234{n:04d}") for n in range(25)]
    before = metric("gateway_plugin_events_total", plugin="webex", what="reconcile_truncated")
    result = await run(w)
    assert result.truncated and result.created == 20  # Webex lists the last 20 per type
    assert metric("gateway_plugin_events_total", plugin="webex", what="reconcile_truncated") == before + 1
    assert "may be incomplete" in result.line()


def test_history_items_are_read_strictly():
    from gateway_webex.reconcile import read_records

    items = {"items": [record("missed", utcnow()), {"type": "missed", "time": "yesterday"},
                       {"type": "forwarded", "time": iso(utcnow())}, "junk",
                       record("received", utcnow(), "7209"), {**record("placed", utcnow()), "number": 5}]}
    found, left = read_records(PERSON, orjson.loads(orjson.dumps(items)), "DE", frozenset({"7209"}))
    assert [(r.kind, r.remote) for r in found] == [("missed", CALLER)]
    assert left == 5
