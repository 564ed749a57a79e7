"""The periodic round works from the store, not from what the process has seen since start."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway import CallState, RecordingRef
from gateway_placetel import plugin
from placetel_testdata import (  # noqa: F401 (fixtures fake_api, pt)
    CALL_IN, CALLER, OURS, SIP_USERS, SIPUID, accepted, fake_api, hungup, incoming, post_all, pt,
)

BETA_KEY = "pt-api-key-beta-fedcba9876543210"


def registered_task(name: str = "placetel-sync") -> Any:
    """The function the plugin registers as the periodic task ``name``, as the core would get it."""
    tasks: list[dict[str, Any]] = []
    plugin.register_tasks(register=lambda **kw: tasks.append(kw))
    (task,) = [t for t in tasks if t["name"] == name]
    assert task["interval"] > 0
    return task["func"]


async def connect_beta(pt, sip_status: int = 503) -> dict[str, Any]:
    """Tenant ``beta``, connected while Placetel's user list failed: no users, no refresh yet."""
    pt.api.on("GET", "/sip_users", status=sip_status, body="", replace=True)
    await pt.create_tenant("beta")
    conn = await pt.connect("beta", "placetel", {"api_key": BETA_KEY, "secret": "beta-secret"})
    assert await pt.gw.directory.list(await pt.gw.tenancy.connection(conn["id"])) == []
    return conn


async def wait_until_delivered(pt) -> None:
    """Until the delivery queue is empty (what was stored has reached the sink)."""
    for _ in range(250):
        if pt.gw.dispatcher.depth == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("deliveries still pending")


def sip_user_reads(pt, key: str) -> int:
    return sum(1 for s in pt.api.requests("GET", "/sip_users")
               if s.headers["Authorization"] == f"Bearer {key}")


async def test_round_covers_every_connection_of_every_tenant(pt):
    beta = await connect_beta(pt)
    beta_reads = sip_user_reads(pt, BETA_KEY)
    pt.api.on("GET", "/sip_users", json=SIP_USERS, replace=True)
    # acme has a finished call whose recording is now available
    await post_all(pt, incoming(), accepted(), hungup("accepted", duration="42"))
    events = await pt.recorder.wait_for(3)
    pt.api.on("GET", "/recordings", json=[{"id": 90, "from": CALLER, "to": OURS,
                                           "time": events[2].ended_at.isoformat()}])
    acme_reads = len(pt.api.requests("GET", "/sip_users"))

    await registered_task()(pt.gw.contexts["placetel"])

    # beta: never notified, never refreshed by this process; its users are read now
    assert sip_user_reads(pt, BETA_KEY) == beta_reads + 1
    users = await pt.gw.directory.list(await pt.gw.tenancy.connection(beta["id"]))
    assert {u.user_id for u in users} == {SIPUID, "7777xyz@fpbx.de"}
    # acme: its directory is fresh (read at connect), its recording is found and ingested
    assert len(pt.api.requests("GET", "/sip_users")) == acme_reads + 1  # beta's read only
    rec = (await pt.recorder.wait_for(4))[3]
    assert rec.state is CallState.RECORDING and rec.call_id == CALL_IN and rec.tenant == "acme"
    assert rec.recording == RecordingRef("placetel", "recording:90", "mp3")


async def test_recording_found_twice_is_one_event(pt):
    """A lookup repeated after its event was ingested (say the process died before it could
    forget the pending call) gives the same event id, so the CRM hears of it once."""
    await post_all(pt, incoming(), accepted(), hungup("accepted", duration="42"))
    events = await pt.recorder.wait_for(3)
    listing = [{"id": 91, "from": CALLER, "to": OURS, "time": events[2].ended_at.isoformat()}]
    pt.api.on("GET", "/recordings", json=listing)
    await registered_task()(pt.gw.contexts["placetel"])
    await pt.recorder.wait_for(4)
    pending = f"recording-pending:{pt.conn['id']}"
    storage = pt.gw.contexts["placetel"].storage("acme")
    assert await storage.all(pending) == []
    await storage.put(pending, CALL_IN, {"tries": 0}, call_record=True)  # as if never forgotten
    await registered_task()(pt.gw.contexts["placetel"])
    assert len(pt.api.requests("GET", "/recordings")) == 2  # looked up and found again
    # a later notification of the ended call is acknowledged and changes nothing
    await post_all(pt, hungup("accepted", duration="43"))
    await pt.recorder.wait_for(4)
    await wait_until_delivered(pt)
    assert [e.state for e in pt.recorder.events].count(CallState.RECORDING) == 1
    assert [e.state for e in pt.recorder.events].count(CallState.ENDED) == 1


async def test_redelivered_hangup_does_not_queue_another_lookup(pt):
    await post_all(pt, incoming(), accepted(), hungup("accepted", duration="42"))
    events = await pt.recorder.wait_for(3)
    pt.api.on("GET", "/recordings", json=[{"id": 92, "from": CALLER, "to": OURS,
                                           "time": events[2].ended_at.isoformat()}])
    await registered_task()(pt.gw.contexts["placetel"])
    await post_all(pt, hungup("accepted", duration="42"))  # Placetel sends it again
    await registered_task()(pt.gw.contexts["placetel"])
    assert len(pt.api.requests("GET", "/recordings")) == 1
    memory = await pt.context("placetel").calls.get(await pt.gw.tenancy.connection(pt.conn["id"]), CALL_IN)
    assert memory["ended_at"] == events[2].ended_at.isoformat()  # the first end is kept


async def test_failed_refresh_is_not_retried_every_round(pt):
    beta = await connect_beta(pt)
    before = sip_user_reads(pt, BETA_KEY)
    await registered_task()(pt.gw.contexts["placetel"])
    assert sip_user_reads(pt, BETA_KEY) == before + 3  # in-line retries, then given up
    await registered_task()(pt.gw.contexts["placetel"])
    assert sip_user_reads(pt, BETA_KEY) == before + 3  # not again within the retry pause
    conn = await pt.gw.tenancy.connection(beta["id"])
    assert conn.status == "active"  # unavailable is not broken


async def test_rejected_key_in_the_round_marks_broken(pt):
    beta = await connect_beta(pt)
    pt.api.on("GET", "/sip_users", status=401, body="", replace=True)
    await registered_task()(pt.gw.contexts["placetel"])
    conn = await pt.admin("GET", f"/tenants/beta/connections/{beta['id']}", expect=200)
    assert (conn["status"], conn["status_reason"]) == ("broken", "api_key_rejected")
    acme = await pt.admin("GET", f"/tenants/acme/connections/{pt.conn['id']}", expect=200)
    assert acme["status"] == "active"  # the other connection goes on


async def test_concurrent_notifications_of_one_call_keep_the_memory_whole(pt):
    """CallAccepted and HungUp racing each other: neither update of the call memory is lost."""
    pt.gw.contexts["placetel"].storage("acme")
    calls = [f"{i:064x}" for i in range(1, 6)]
    await post_all(pt, *(incoming(call_id=c) for c in calls))
    await asyncio.gather(*(post_all(pt, body) for c in calls
                           for body in (accepted(call_id=c), hungup("accepted", call_id=c, duration="9"))))
    for c in calls:
        memory = await pt.context("placetel").calls.get(await pt.gw.tenancy.connection(pt.conn["id"]), c)
        assert memory["peer"] == SIPUID and memory["ended_at"] is not None, c
