"""Reconciliation with Placetel's call list (``GET /v2/calls``), against a fake Placetel API:
calls whose notifications never arrived reach the CRM exactly once, whichever path saw a call
first; paging, rate limits, ambiguity, erased and restricted people, the CLI."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from multidict import CIMultiDict, MultiDict

import gateway
from gateway import CallState, Direction, Outcome, RecordingRef, WebhookRequest, utcnow
from gateway.testing import ReconcileFailed, RecordingSink, ended, generate_master_key, metric
from gateway_placetel import plugin
from placetel_testdata import (  # noqa: F401 (fixture fake_api)
    API_KEY, CALL_IN, CALLER, CALLER_E164, MOBILE, MOBILE_E164, OURS, OURS_E164, SECRET, account, accepted,
    env, fake_api, headers, hungup, incoming, post_all,
)

OTHER = "030123456"
OTHER_E164 = "+4930123456"
FOURTH = "0891234567"
FOURTH_E164 = "+49891234567"



def item(ident: int, at: datetime, kind: str = "missed", caller: str = CALLER, duration: int = 0) -> dict[str, Any]:
    """A call of Placetel's list, as ``GET /v2/calls`` gives it."""
    return {"id": ident, "type": kind, "from_number": caller,
            "to_number": {"number": {"id": 12, "prefix": "0221", "number": OURS, "name": "Zentrale"}},
            "file_url": f"https://files.placetel.test/voicemail/{ident}.mp3?signature=x" if kind == "voicemail"
            else None, "duration": duration, "contact": {"first_name": "Not", "last_name": "Kept"},
            "received_at": at.isoformat()}


async def started(gateway_harness: Any, fake: Any, recorder: RecordingSink, key: str) -> Any:
    return await gateway_harness(env={**env(fake), "GATEWAY_MASTER_KEY": key}, recorder=recorder)


async def connected(gateway_harness: Any, fake: Any, recorder: RecordingSink | None = None,
                    key: str | None = None) -> Any:
    """A gateway with tenant ``acme`` connected to Placetel, last reconciled an hour ago."""
    account(fake)
    h = await started(gateway_harness, fake, recorder or RecordingSink(), key or generate_master_key())
    await h.create_tenant("acme")
    h.conn = await h.connect("acme", "placetel", {"api_key": API_KEY, "secret": SECRET})
    await rewind(h, h.conn["id"], timedelta(hours=1))
    return h


async def rewind(h: Any, connection_id: str, ago: timedelta) -> None:
    """As if the connection's reconciliations began, and last succeeded, ``ago``."""
    ms = int((utcnow() - ago).timestamp() * 1000)
    await h.context("placetel").storage("acme").put(
        "reconcile", connection_id, {"origin": ms, "until": ms, "last_ok": ms, "failures": 0})


async def first_round(h: Any) -> None:
    """The reconciliation task's first round in this process (after start-up): every connection."""
    tasks: list[dict[str, Any]] = []
    plugin.register_tasks(register=lambda **kw: tasks.append(kw))
    (task,) = [t for t in tasks if t["name"] == "placetel-reconcile"]
    await task["func"](h.context("placetel"))


async def reconcile(h: Any, **kw: Any) -> gateway.ReconcileResult:
    """One run of the connection's reconciliation, as the CLI starts it."""
    return await h.gw.reconciliation.run(await h.gw.tenancy.connection(h.conn["id"]), **kw)


async def test_calls_while_the_gateway_was_stopped_reach_the_crm_once(gateway_harness, fake_api, no_settle):
    recorder, key = RecordingSink(), generate_master_key()
    h = await connected(gateway_harness, fake_api, recorder, key)
    received_at = utcnow()
    await post_all(h, incoming(), accepted(), hungup("accepted", duration="42"))
    await recorder.wait_for(3)
    conn = h.conn
    await h.client.close()  # the gateway stops; Placetel's notifications meanwhile go nowhere
    down = utcnow()
    fake_api.call_list = [item(7001, received_at, "accepted", CALLER, 42),
                          item(7002, down + timedelta(milliseconds=10), "missed", MOBILE),
                          item(7003, down + timedelta(milliseconds=20), "accepted", OTHER, 65),
                          item(7004, down + timedelta(milliseconds=30), "voicemail", FOURTH, 12)]
    before = metric("gateway_reconciled_calls_total", plugin="placetel")
    await asyncio.sleep(0.1)

    h = await started(gateway_harness, fake_api, recorder, key)  # started again on the same store
    h.conn = conn
    await first_round(h)
    events = await h.delivered()

    # every listed call is in the CRM exactly once: the one that arrived by webhook, and the
    # three that did not, written as ordinary ended calls with the list's facts
    assert Counter(e.remote_number for e in ended(events)) == {
        CALLER_E164: 1, MOBILE_E164: 1, OTHER_E164: 1, FOURTH_E164: 1}
    written = {e.remote_number: e for e in ended(events) if e.extra.get("reconciled")}
    assert set(written) == {MOBILE_E164, OTHER_E164, FOURTH_E164}
    missed, talked, voicemail = written[MOBILE_E164], written[OTHER_E164], written[FOURTH_E164]
    assert missed.outcome is Outcome.MISSED and missed.duration == 0 and missed.direction is Direction.INBOUND
    assert talked.outcome is Outcome.ANSWERED and talked.duration == 65
    assert talked.started_at == down + timedelta(milliseconds=20)
    assert talked.ended_at == talked.started_at + timedelta(seconds=65)
    assert voicemail.outcome is Outcome.VOICEMAIL and voicemail.local_number == OURS_E164
    assert all(e.local_user is None and not e.internal for e in written.values())  # the list names no agent
    [recording] = [e for e in events if e.state is CallState.RECORDING]
    assert recording.call_id == voicemail.call_id and recording.recording == RecordingRef(
        "placetel", "voicemail:7004", "mp3")
    assert [e.state for e in events if e.call_id == voicemail.call_id] == [CallState.ENDED, CallState.RECORDING]
    assert metric("gateway_reconciled_calls_total", plugin="placetel") == before + 3
    query = fake_api.requests("GET", "/calls")[0].query
    assert query["order"] == "desc" and query["page"] == "1" and query["per_page"] == "100"
    assert "filter[date]" in query

    # again: nothing new (the window moved on, and a repeat would find the calls written)
    await reconcile(h, since=received_at - timedelta(minutes=5))
    assert len(await h.delivered()) == len(events)
    # nothing from the list beyond what a notification gives is kept (the contact's name)
    kept = str(await h.context("placetel").storage("acme").all("call"))
    assert "Kept" not in kept and "Not" not in kept


async def test_a_listed_call_received_by_webhook_is_not_written_again(gateway_harness, fake_api, no_settle):
    h = await connected(gateway_harness, fake_api)
    at = utcnow()
    await post_all(h, incoming(), hungup("missed"))
    fake_api.call_list = [item(8001, at, "missed")]
    result = await reconcile(h)
    assert (result.listed, result.received, result.created) == (1, 1, 0)
    assert len(ended(await h.delivered())) == 1


async def test_a_call_whose_hang_up_never_came_is_ended_as_listed(gateway_harness, fake_api, no_settle):
    h = await connected(gateway_harness, fake_api)
    at = utcnow()
    await post_all(h, incoming(), accepted())  # the HungUp is lost
    fake_api.call_list = [item(8101, at, "accepted", duration=30)]
    result = await reconcile(h)
    assert (result.received, result.completed, result.created) == (1, 1, 0)
    events = await h.delivered()
    assert [e.state for e in events] == [CallState.RINGING, CallState.ANSWERED, CallState.ENDED]
    end = events[-1]
    assert end.call_id == CALL_IN and end.outcome is Outcome.ANSWERED and end.duration == 30
    assert end.extra["reconciled"] is True and end.local_user == "7777abcdefg@fpbx.de"
    # the HungUp that comes after all changes nothing
    await post_all(h, hungup("accepted", duration="30"))
    assert len(await h.delivered()) == 3


async def journaled(h: Any, body: bytes, at: datetime) -> None:
    """A notification acknowledged (journaled) at ``at`` and not yet interpreted."""
    conn = await h.gw.tenancy.connection(h.conn["id"])
    await h.gw.interpreter.journal(conn, WebhookRequest(
        body=body, headers=CIMultiDict(headers(body)), content_type="application/x-www-form-urlencoded",
        received_at=at, query=MultiDict()))


async def test_notifications_interpreted_after_reconciliation_add_no_second_call(gateway_harness, fake_api,
                                                                               no_settle):
    """Reconciliation first, webhook later: notifications acknowledged before a reconciliation
    ran (elsewhere: ``gateway reconcile`` while the serving gateway was down) but interpreted
    after it, are recognised as the call it wrote and dropped."""
    h = await connected(gateway_harness, fake_api)
    await h.gw.interpreter.stop()  # the serving gateway went down with these in its journal
    at = utcnow()
    for body in (incoming(), accepted(), hungup("accepted", duration="20")):
        await journaled(h, body, at)
    fake_api.call_list = [item(8201, at, "accepted", duration=20)]
    result = await reconcile(h)
    assert result.created == 1
    [written] = await h.recorder.wait_for(1)
    late_before = metric("gateway_plugin_events_total", plugin="placetel", what="reconcile_late_webhook")

    await h.gw.interpreter.start()  # back up: the journal is interpreted
    await h.settled()
    events = await h.delivered()
    assert events == [written] and written.extra["reconciled"] is True
    assert metric("gateway_plugin_events_total", plugin="placetel", what="reconcile_late_webhook") == late_before + 1
    # a new call from the same number, after the reconciliation, is a call of its own
    await post_all(h, incoming(call_id="ab" * 32))
    events = await h.recorder.wait_for(2)
    assert events[1].state is CallState.RINGING and events[1].call_id == "ab" * 32


async def test_both_orders_of_webhook_and_reconciliation_give_one_call_each(gateway_harness, fake_api,
                                                                          no_settle):
    h = await connected(gateway_harness, fake_api)
    first = utcnow()
    await post_all(h, incoming(), hungup("missed"))  # webhook first
    await h.gw.interpreter.stop()
    second = first - timedelta(minutes=10)  # the other call: reconciliation first
    other = "cd" * 32
    await journaled(h, incoming(call_id=other, caller=MOBILE), second)
    await journaled(h, hungup("missed", call_id=other, caller=MOBILE), second)
    fake_api.call_list = [item(8301, first), item(8302, second, caller=MOBILE)]
    await reconcile(h)
    await h.gw.interpreter.start()
    await h.settled()
    assert Counter(e.remote_number for e in ended(await h.delivered())) == {CALLER_E164: 1, MOBILE_E164: 1}


async def test_two_calls_a_minute_apart_one_received_writes_neither(gateway_harness, fake_api, no_settle):
    """The list cannot tell which of two calls from one number a minute apart is the one that
    arrived: the other is not written (counted), rather than risk a duplicate."""
    h = await connected(gateway_harness, fake_api)
    at = utcnow()
    await post_all(h, incoming(), hungup("missed"))
    fake_api.call_list = [item(8401, at - timedelta(seconds=60)), item(8402, at)]
    before = metric("gateway_plugin_events_total", plugin="placetel", what="reconcile_ambiguous")
    result = await reconcile(h)
    assert (result.listed, result.received, result.ambiguous, result.created) == (2, 1, 1, 0)
    assert metric("gateway_plugin_events_total", plugin="placetel", what="reconcile_ambiguous") == before + 1
    assert len(ended(await h.delivered())) == 1


async def test_the_list_is_read_page_by_page(gateway_harness, fake_api, no_settle):
    h = await connected(gateway_harness, fake_api)
    at = utcnow() - timedelta(minutes=30)
    fake_api.call_list = [item(9000 + n, at + timedelta(seconds=n), caller=f"0221555{n:04d}") for n in range(105)]
    fake_api.call_list += [item(9500 + n, at - timedelta(hours=5, seconds=n), caller=f"0221666{n:04d}")
                           for n in range(150)]  # before the window: never written
    lines: list[str] = []
    result = await reconcile(h, progress=lines.append)
    assert (result.listed, result.created) == (105, 105)
    pages = [(s.query["filter[date]"], s.query["page"]) for s in fake_api.requests("GET", "/calls")]
    assert all(s.query["per_page"] == "100" for s in fake_api.requests("GET", "/calls"))
    assert "2" in {p for _d, p in pages} and "3" not in {p for _d, p in pages}  # stops before the window
    assert any("page 2" in line for line in lines)
    assert len(ended(await h.delivered())) == 105


async def test_a_rate_limit_is_waited_out_and_a_long_one_backs_off(gateway_harness, fake_api, no_settle):
    h = await connected(gateway_harness, fake_api)
    fake_api.call_list = [item(9601, utcnow())]
    fake_api.once("GET", "/calls", status=429, json={"error": "slow down"}, headers={"Retry-After": "1"})
    began = time.monotonic()
    assert (await reconcile(h)).created == 1
    assert time.monotonic() - began >= 1.0  # Retry-After honoured in-line (within RETRY_MAX_WAIT)

    fake_api.call_list.append(item(9602, utcnow(), caller=MOBILE))
    fake_api.once("GET", "/calls", status=429, json={"error": "slow down"}, headers={"Retry-After": "120"})
    failed = metric("gateway_reconciliations_total", plugin="placetel", outcome="failed")
    with pytest.raises(ReconcileFailed):
        await reconcile(h)
    conn = await h.gw.tenancy.connection(h.conn["id"])
    state = await h.gw.reconciliation.state(conn)
    assert state["failures"] == 1 and state["next_try"] >= (time.time() + 110) * 1000
    assert metric("gateway_reconciliations_total", plugin="placetel", outcome="failed") == failed + 1
    assert not h.gw.reconciliation.due(state, utcnow(), 60)  # not before Retry-After
    status = (await h.context("placetel").connections.reconciliations("acme"))[conn.id]
    assert status.failing and status.failures == 1
    await first_round(h)  # start-up's round: runs it, Placetel answers now
    state = await h.gw.reconciliation.state(conn)
    assert state["failures"] == 0
    assert metric("gateway_reconcile_failing_connections", plugin="placetel") == 0
    assert metric("gateway_reconcile_oldest_success_timestamp_seconds", plugin="placetel") >= time.time() - 5
    assert {e.remote_number for e in ended(await h.delivered())} == {CALLER_E164, MOBILE_E164}


async def test_an_erased_callers_calls_are_not_written_again(gateway_harness, fake_api, no_settle):
    h = await connected(gateway_harness, fake_api)
    at = utcnow()
    await post_all(h, incoming(), hungup("missed"))  # received, not reconciled yet
    await h.delivered()
    await h.admin("POST", "/tenants/acme/subjects/erase", {"phone": CALLER_E164}, expect=200)
    after = utcnow() + timedelta(milliseconds=20)
    fake_api.call_list = [item(9701, at), item(9702, at + timedelta(seconds=1)), item(9703, after, caller=MOBILE)]
    await asyncio.sleep(0.05)
    # its calls are gone from the gateway, so they look missing; they are never written again,
    # not even when asked to read from before the erasure
    await reconcile(h)
    await reconcile(h, since=at - timedelta(minutes=30))
    events = await h.delivered()
    assert {e.remote_number for e in ended(events)} == {CALLER_E164, MOBILE_E164}
    assert [e.remote_number for e in ended(events)].count(CALLER_E164) == 1  # the webhook's, before
    exported = await h.admin("POST", "/tenants/acme/subjects/export", {"phone": CALLER_E164}, expect=200)
    assert exported["gateway"]["call_events"] == []
    assert not any(found.get("records") for found in exported["plugins"].values())


async def test_a_restricted_callers_missing_call_is_not_forwarded(gateway_harness, fake_api, no_settle):
    h = await connected(gateway_harness, fake_api)
    await h.admin("POST", "/tenants/acme/subjects/restrict", {"phone": CALLER_E164}, expect=200)
    at = utcnow()
    fake_api.call_list = [item(9801, at), item(9802, at, caller=MOBILE)]
    assert (await reconcile(h)).created == 2
    assert {e.remote_number for e in await h.delivered()} == {MOBILE_E164}


async def test_first_reconciliation_reads_nothing_from_before(gateway_harness, fake_api, no_settle):
    """A connection that was never reconciled (made before reconciliation existed) starts now:
    its earlier calls were not indexed for it and could not be told apart."""
    h = await connected(gateway_harness, fake_api)
    conn = await h.gw.tenancy.connection(h.conn["id"])
    await h.context("placetel").storage("acme").delete("reconcile", conn.id)
    fake_api.call_list = [item(9901, utcnow() - timedelta(minutes=5))]
    assert (await reconcile(h, since=utcnow() - timedelta(hours=2))).listed == 0
    assert fake_api.requests("GET", "/calls") == []
    assert (await h.gw.reconciliation.state(conn))["origin"] > 0


def _env(fake: Any, db: str, key: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return {**out, **env(fake), "GATEWAY_DATABASE": db, "GATEWAY_MASTER_KEY": key}


async def cli(*args: str, environ: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", *args, env=environ,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def test_gateway_reconcile_runs_by_hand_with_progress(gateway_harness, fake_api):
    key = generate_master_key()
    h = await connected(gateway_harness, fake_api, key=key)
    conn_id = h.conn["id"]
    now = utcnow()
    fake_api.call_list = [item(1101, now - timedelta(minutes=10)), item(1102, now - timedelta(minutes=5), caller=MOBILE)]
    environ = _env(fake_api, h.gw.config.database, key)

    code, out, err = await cli("reconcile", "--connection", conn_id, environ=environ)
    assert code == 0, err
    assert f"reconciling placetel connection {conn_id}" in err and "page 1" in err
    assert f"{conn_id}: listed 2, already received 0, written 2" in out
    assert "serving gateway delivers" in out
    for secret in (CALLER, CALLER_E164, MOBILE_E164, API_KEY):
        assert secret not in out + err
    # the command's process does not deliver: the serving gateway's rescan does
    await h.gw.dispatcher.rescan()
    assert {e.remote_number for e in ended(await h.delivered())} == {CALLER_E164, MOBILE_E164}

    # every connection, again: nothing new
    code, out, _ = await cli("reconcile", environ=environ)
    assert code == 0 and "written 0" in out

    for bad in (("--connection", "nope"), ("--since", "yesterday")):
        code, out, err = await cli("reconcile", *bad, environ=environ)
        assert code == 1 and err.count("\n") == 1 and err.startswith("gateway: ") and "Traceback" not in err
