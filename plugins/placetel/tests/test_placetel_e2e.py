"""End to end: real gateway HTTP endpoint (gateway_harness), fake Placetel API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from gateway import (
    BadRequest,
    CallState,
    ConnectionHealth,
    Direction,
    Outcome,
    RecordingRef,
    UpstreamError,
    utcnow,
)
from gateway_placetel import background, plugin
from gateway_placetel.plugin import SOURCE
from placetel_testdata import (  # noqa: F401 (fixtures fake_api, pt)
    API_KEY, CALL_IN, CALL_OUT, CALLER, CALLER_E164, EMAIL, MOBILE, MOBILE_E164, NAME, OURS,
    OURS_E164, PUBLIC, RECORDING_LINK, SCOPED, SECRET, SIP_USERS, SIPUID, VECTOR_1, VECTOR_2,
    VOICEMAIL_LINK, WEB_USERS, accepted, account, env, fake_api, headers, hungup, incoming,
    outgoing, post, post_all, pt,
)

# --- connecting ----------------------------------------------------------------------------

async def test_connect_checks_key_subscribes_and_reads_users(pt):
    assert pt.conn["webhook_url"] == f"{PUBLIC}/hooks/placetel/{pt.conn['id']}"
    (me,) = pt.api.requests("GET", "/me")
    assert me.headers["Authorization"] == f"Bearer {API_KEY}"
    (sub,) = pt.api.requests("PUT", "/subscriptions")
    assert sub.json["url"] == pt.conn["webhook_url"]
    stored = await pt.gw.tenancy.connection(pt.conn["id"])
    assert stored.settings["subscription_id"] == "sub-112ba1"
    assert stored.settings["secret"] == SECRET and stored.settings["region"] == "DE"
    users = (await pt.admin("GET", f"/tenants/acme/connections/{pt.conn['id']}/users", expect=200))["users"]
    anna = next(u for u in users if u["user_id"] == SIPUID)
    assert (anna["name"], anna["email"], anna["extension"]) == (NAME, EMAIL, "23")
    assert len(users) == 2
    # the core maps CRM users by e-mail or extension
    assert [u.user_id for _, u in await pt.gw.directory.find("acme", email=EMAIL)] == [SIPUID]
    assert [u.user_id for _, u in await pt.gw.directory.find("acme", extension="24")] == ["7777xyz@fpbx.de"]


async def test_secrets_are_not_stored_in_plain_text(pt, tmp_path: Path):
    await post_all(pt, incoming())
    await pt.recorder.wait_for(1)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("gateway.db*"))
    for value in (API_KEY, SECRET, EMAIL, CALLER, SIPUID):
        assert value.encode() not in raw


async def test_connect_refused_key_stores_nothing(gateway_harness, fake_api):  # noqa: F811
    fake_api.on("GET", "/me", status=401, json={"error": "unauthorized"})
    h = await gateway_harness(env=env(fake_api))
    await h.create_tenant("acme")
    body = await h.admin("POST", "/tenants/acme/connections",
                         {"plugin": "placetel", "settings": {"api_key": API_KEY, "secret": SECRET}}, expect=400)
    assert "rejected" in body["error"] and API_KEY not in body["error"]
    assert (await h.admin("GET", "/tenants/acme/connections", expect=200))["connections"] == []
    assert not fake_api.requests("PUT", "/subscriptions")


async def test_connect_when_placetel_is_down_is_502(gateway_harness, fake_api):  # noqa: F811
    fake_api.on("GET", "/me", status=503, body="")
    h = await gateway_harness(env=env(fake_api))
    await h.create_tenant("acme")
    body = await h.admin("POST", "/tenants/acme/connections",
                         {"plugin": "placetel", "settings": {"api_key": API_KEY}}, expect=502)
    assert "unavailable" in body["error"]
    assert (await h.admin("GET", "/tenants/acme/connections", expect=200))["connections"] == []


async def test_stored_settings_hold_only_what_is_needed(pt):
    stored = await pt.gw.tenancy.connection(pt.conn["id"])
    assert set(stored.settings) == {"api_key", "secret", "region", "subscribe", "subscription_id"}


@pytest.mark.parametrize("settings", [
    {}, {"api_key": ""}, {"api_key": 5}, {"api_key": API_KEY, "secret": ""},
    {"api_key": API_KEY, "region": "Germany"}, {"api_key": API_KEY, "subscribe": "yes"},
])
async def test_connect_bad_settings_is_400(gateway_harness, fake_api, settings):  # noqa: F811
    h = await gateway_harness(env=env(fake_api))
    await h.create_tenant("acme")
    await h.admin("POST", "/tenants/acme/connections", {"plugin": "placetel", "settings": settings}, expect=400)
    assert fake_api.seen == []


async def test_subscription_failure_does_not_block(gateway_harness, fake_api):  # noqa: F811
    account(fake_api)
    fake_api.on("PUT", "/subscriptions", status=500, body="", replace=True)
    h = await gateway_harness(env=env(fake_api))
    await h.create_tenant("acme")
    conn = await h.connect("acme", "placetel", {"api_key": API_KEY, "secret": SECRET})
    assert (await h.gw.tenancy.connection(conn["id"])).settings["subscription_id"] is None
    assert len(fake_api.requests("PUT", "/subscriptions")) == 3  # retried, then given up


async def test_disconnect_unsubscribes_and_forgets(pt):
    await post_all(pt, incoming())
    await pt.recorder.wait_for(1)
    conn = await pt.gw.tenancy.connection(pt.conn["id"])
    storage = pt.gw.contexts["placetel"].storage("acme")
    assert await pt.context("placetel").calls.get(conn, CALL_IN) is not None
    await pt.admin("DELETE", f"/tenants/acme/connections/{conn.id}", expect=200)
    assert len(pt.api.requests("DELETE", "/subscriptions/sub-112ba1")) == 1
    assert await pt.gw.directory.list(conn) == []
    assert await pt.context("placetel").calls.get(conn, CALL_IN) is None
    assert await storage.get("users-refreshed", conn.id) is None


# --- call flows ----------------------------------------------------------------------------

async def test_answered_inbound(pt):
    await post_all(pt, incoming(), accepted(), hungup("accepted", duration="42"))
    events = await pt.recorder.wait_for(3)
    assert [e.state for e in events] == [CallState.RINGING, CallState.ANSWERED, CallState.ENDED]
    assert {(e.direction, e.remote_number, e.local_number, e.call_id) for e in events} == {
        (Direction.INBOUND, CALLER_E164, OURS_E164, CALL_IN)}
    assert [e.local_user for e in events] == [None, SIPUID, SIPUID]
    assert events[2].outcome is Outcome.ANSWERED and events[2].duration == 42
    assert {e.tenant for e in events} == {"acme"} and {e.source for e in events} == {"placetel"}
    user = await pt.gw.directory.for_event(events[2])
    assert user is not None and user.email == EMAIL


async def test_redelivery_is_deduplicated(pt):
    await post_all(pt, incoming(), incoming(), hungup("missed"), hungup("missed"))
    events = await pt.recorder.wait_for(2)
    assert len(events) == 2 and events[1].outcome is Outcome.MISSED


async def test_missed_inbound(pt):
    await post_all(pt, incoming(), hungup("missed", duration="0"))
    events = await pt.recorder.wait_for(2)
    assert events[1].outcome is Outcome.MISSED and events[1].duration == 0 and events[1].local_user is None


async def test_voicemail_and_its_recording(pt):
    await post_all(pt, incoming(), hungup("voicemail", duration="0"))
    events = await pt.recorder.wait_for(2)
    assert events[1].outcome is Outcome.VOICEMAIL
    ended = events[1].ended_at
    pt.api.on("GET", "/calls", json=[{
        "id": 5, "type": "voicemail", "from_number": CALLER,
        "to_number": {"number": {"id": 12, "number": OURS, "name": "Zentrale"}},
        "file_url": VOICEMAIL_LINK, "duration": 10, "received_at": ended.isoformat()}])
    pt.api.on("GET", "/calls/5", json={"id": 5, "file_url": VOICEMAIL_LINK})
    conn = await pt.gw.tenancy.connection(pt.conn["id"])
    assert await background.poll_recordings(SOURCE, pt.gw.contexts["placetel"], conn) == 1
    events = await pt.recorder.wait_for(3)
    rec = events[2]
    assert rec.state is CallState.RECORDING and rec.recording == RecordingRef("placetel", "voicemail:5", "mp3")
    assert rec.outcome is Outcome.VOICEMAIL and rec.call_id == CALL_IN
    (listing,) = pt.api.requests("GET", "/calls")
    assert listing.query["filter[type]"] == "voicemail"
    assert await pt.gw.recording_link(rec) == VOICEMAIL_LINK  # fetched at delivery time only
    assert await background.poll_recordings(SOURCE, pt.gw.contexts["placetel"], conn) == 0  # nothing pending any more


async def test_recording_of_an_answered_call(pt):
    await post_all(pt, incoming(), accepted(), hungup("accepted", duration="42"))
    events = await pt.recorder.wait_for(3)
    conn = await pt.gw.tenancy.connection(pt.conn["id"])
    pt.api.on("GET", "/recordings", json=[])  # not there yet
    assert await background.poll_recordings(SOURCE, pt.gw.contexts["placetel"], conn) == 0
    pt.api.on("GET", "/recordings", json=[{"id": 77, "from": CALLER, "to": OURS, "direction": "in",
                                           "duration": 42, "time": events[2].ended_at.isoformat(),
                                           "file": RECORDING_LINK}], replace=True)
    pt.api.on("GET", "/recordings/77", json={"id": 77, "file": RECORDING_LINK})
    assert await background.poll_recordings(SOURCE, pt.gw.contexts["placetel"], conn) == 1
    rec = (await pt.recorder.wait_for(4))[3]
    assert rec.recording == RecordingRef("placetel", "recording:77", "mp3") and rec.local_user == SIPUID
    assert await pt.gw.recording_link(rec) == RECORDING_LINK


async def test_recording_lookup_gives_up(pt):
    await post_all(pt, incoming(), accepted(), hungup("accepted", duration="5"))
    await pt.recorder.wait_for(3)
    conn = await pt.gw.tenancy.connection(pt.conn["id"])
    pt.api.on("GET", "/recordings", json=[])
    for _ in range(6):
        await background.poll_recordings(SOURCE, pt.gw.contexts["placetel"], conn)
    assert len(pt.api.requests("GET", "/recordings")) == 5  # recording_tries, then forgotten


async def test_outbound_busy_and_cancelled(pt):
    await post_all(pt, outgoing(), hungup("busy", call_id=CALL_OUT, direction="out", caller=OURS, to=MOBILE))
    other = "1" * 64
    await post_all(pt, outgoing(call_id=other), hungup("canceled", call_id=other, direction="out",
                                                       caller=OURS, to=MOBILE))
    events = await pt.recorder.wait_for(4)
    by_call = {(e.call_id, e.state): e for e in events}
    assert by_call[(CALL_OUT, CallState.ENDED)].outcome is Outcome.BUSY
    assert by_call[(other, CallState.ENDED)].outcome is Outcome.CANCELLED
    for e in events:
        assert (e.direction, e.remote_number, e.local_number, e.local_user) == (
            Direction.OUTBOUND, MOBILE_E164, OURS_E164, SIPUID)


async def test_anonymous_caller(pt):
    await post_all(pt, incoming(caller="anonymous"), hungup("missed", caller="anonymous"))
    events = await pt.recorder.wait_for(2)
    assert {e.remote_number for e in events} == {"anonymous"}


async def test_missing_direction_and_duration(pt):
    old_hungup = f"event=HungUp&from={CALLER}&to={OURS}&call_id={CALL_IN}&type=accepted".encode()
    await post_all(pt, incoming(direction=False), accepted(), old_hungup)
    events = await pt.recorder.wait_for(3)
    assert {e.direction for e in events} == {Direction.INBOUND}
    assert events[2].outcome is Outcome.ANSWERED and events[2].duration is None


async def test_unknown_event_is_acknowledged_and_ignored(pt):
    resp = await post(pt, b"event=SomethingNew&call_id=abc&from=0221")
    assert resp.status == 200 and await pt.stored_events() == 0
    await post_all(pt, incoming())
    events = await pt.recorder.wait_for(1)
    assert len(events) == 1 and events[0].state is CallState.RINGING


@pytest.mark.parametrize("body", [
    b"from=0221&to=0301", b"event=HungUp&type=missed", b"\xff\xfe\x00",
    hungup("accepted", duration="99999999999"),  # would overflow the time arithmetic (was 503)
    hungup("accepted", duration=str(10**400)), hungup("accepted", duration="604801"),
    incoming(caller="%ff%fe0221"),  # percent-escapes that are not UTF-8
    incoming() + b"&direction", incoming() + b"&",  # a field that is not key=value
])
async def test_unparseable_is_400(pt, body):
    resp = await post(pt, body)
    assert resp.status == 400
    assert CALLER not in await resp.text()
    assert pt.recorder.deliveries == []


async def test_wrong_content_type_is_415(pt):
    body = incoming()
    resp = await post(pt, body, {**headers(body), "Content-Type": "application/json"})
    assert resp.status == 415


# --- signatures ----------------------------------------------------------------------------

@pytest.mark.parametrize("vector", [VECTOR_1, VECTOR_2], ids=["readme", "hungup"])
async def test_official_vectors_over_http(gateway_harness, fake_api, vector):  # noqa: F811
    account(fake_api)
    h = await gateway_harness(env=env(fake_api))
    await h.create_tenant("acme")
    secret, body, digest = vector
    conn = await h.connect("acme", "placetel", {"api_key": API_KEY, "secret": secret})
    resp = await h.post_hook("placetel", conn["id"], body, {
        "Content-Type": "application/x-www-form-urlencoded", "X-PLACETEL-SIGNATURE": digest})
    assert resp.status == 200
    # an answered HungUp without its CallAccepted waits end_grace for it, then ends the call
    connection = await h.gw.tenancy.connection(conn["id"])
    for _ in range(250):  # the held memory was written without events, so without waiting for its commit
        if await h.context("placetel").calls.find(connection, "held"):
            break
        await asyncio.sleep(0.02)
    await background.close_waiting_calls(SOURCE, h.context("placetel"), connection,
                                         now=utcnow() + timedelta(seconds=61))
    (event,) = await h.recorder.wait_for(1)
    assert event.state in (CallState.ANSWERED, CallState.ENDED)


async def test_upper_case_and_whitespace_signature(pt):
    body = incoming()
    sig = headers(body)["X-PLACETEL-SIGNATURE"]
    assert (await post(pt, body, {**headers(body), "X-PLACETEL-SIGNATURE": sig.upper()})).status == 200
    body2 = hungup("missed")
    sig2 = headers(body2)["X-PLACETEL-SIGNATURE"]
    assert (await post(pt, body2, {**headers(body2), "X-PLACETEL-SIGNATURE": f"  {sig2} "})).status == 200
    assert len(await pt.recorder.wait_for(2)) == 2


def _bad_signatures(body: bytes) -> list[dict[str, str]]:
    good = headers(body)
    ctype = {"Content-Type": "application/x-www-form-urlencoded"}
    return [
        ctype,                                                                 # missing
        {**ctype, "X-PLACETEL-SIGNATURE": ""},                                  # empty
        {**ctype, "X-PLACETEL-SIGNATURE": "0" * 64},                            # wrong
        {**ctype, "X-PLACETEL-SIGNATURE": good["X-PLACETEL-SIGNATURE"][:32]},   # truncated
        {**ctype, "X-PLACETEL-SIGNATURE": "sha256=" + good["X-PLACETEL-SIGNATURE"]},
        headers(body, secret="another-secret"),                                 # other key
        headers(body + b"&x=1"),                                                # other body
    ]


async def test_bad_signatures_are_401_and_store_nothing(pt):
    body = incoming()
    for hdrs in _bad_signatures(body):
        resp = await post(pt, body, hdrs)
        assert resp.status == 401, hdrs
    assert await pt.context("placetel").calls.get(await pt.gw.tenancy.connection(pt.conn["id"]), CALL_IN) is None
    await post_all(pt, hungup("missed"))  # the first event that gets through
    events = await pt.recorder.wait_for(1)
    assert len(events) == 1 and events[0].state is CallState.ENDED
    assert events[0].started_at is None  # the refused IncomingCall left no memory


async def test_recordings_cannot_be_injected_by_webhook(pt):
    """Recording events come only from the plugin's own lookups (``gateway.ingest``): a
    notification claiming one is an unknown event, whatever headers it carries."""
    body = f"event=RecordingFound&call_id={CALL_IN}&ref=recording:1".encode()
    resp = await post(pt, body, {**headers(body), "X-Callgate-Placetel-Internal": "0" * 64})
    assert resp.status == 200 and await pt.stored_events() == 0
    resp = await post(pt, body, {"Content-Type": "application/x-www-form-urlencoded",
                                 "X-Callgate-Placetel-Internal": "0" * 64})
    assert resp.status == 401  # and unsigned it is refused like any other notification


async def test_unsigned_refused_unless_operator_allows(gateway_harness, fake_api):  # noqa: F811
    account(fake_api)
    h = await gateway_harness(env=env(fake_api))
    await h.create_tenant("acme")
    conn = await h.connect("acme", "placetel", {"api_key": API_KEY})
    body = incoming()
    plain = {"Content-Type": "application/x-www-form-urlencoded"}
    assert (await h.post_hook("placetel", conn["id"], body, plain)).status == 401
    # the operator allows unsigned notifications for this one connection (ids exist only now)
    h.set_env(GATEWAY_PLACETEL_ALLOW_UNSIGNED=f"other, {conn['id']}")
    from gateway import metrics  # noqa: PLC0415  (test-only look at the counter)
    before = metrics.INSECURE.labels("placetel")._value.get()
    assert (await h.post_hook("placetel", conn["id"], body, plain)).status == 200
    assert metrics.INSECURE.labels("placetel")._value.get() == before + 1
    (event,) = await h.recorder.wait_for(1)
    assert event.remote_number == CALLER_E164


# --- users, click-to-call, API errors --------------------------------------------------------

async def test_refresh_users_route(pt):
    path = f"/plugins/placetel/connections/{pt.conn['id']}/refresh-users"
    pt.api.on("GET", "/sip_users", json=SIP_USERS[:1], replace=True)
    assert (await pt.admin("POST", path, expect=200))["users"] == 1
    conn = await pt.gw.tenancy.connection(pt.conn["id"])
    assert [u.user_id for u in await pt.gw.directory.list(conn)] == [SIPUID]
    resp = await pt.client.post(f"/admin/v1{path}", headers={"Authorization": f"Bearer {SCOPED.split(':')[1]}"})
    assert resp.status == 404
    resp = await pt.client.post(f"/admin/v1{path}")
    assert resp.status == 401
    assert (await pt.admin("POST", "/plugins/placetel/connections/nope/refresh-users"))["error"]


async def test_health_for_a_crms_status_page(gateway_harness, fake_api):  # noqa: F811
    account(fake_api)
    h = await gateway_harness(env=env(fake_api))
    await h.create_tenant("acme")
    signed = await h.connect("acme", "placetel", {"api_key": API_KEY, "secret": SECRET})
    unsigned = await h.connect("acme", "placetel", {"api_key": API_KEY})
    crm = h.context("recorder")
    assert await crm.connections.health(signed["id"]) == ConnectionHealth("ok")
    assert await crm.connections.health(unsigned["id"]) == ConnectionHealth("failing", "no_secret")
    fake_api.on("GET", "/sip_users", status=401, json={"error": "unauthorized"}, replace=True)
    with pytest.raises(UpstreamError):
        await SOURCE.sync_users(h.context("placetel"), await h.gw.tenancy.connection(signed["id"]))
    assert await crm.connections.health(signed["id"]) == ConnectionHealth("failing", "api_key_rejected")


async def test_refresh_with_rejected_key_marks_broken(pt):
    pt.api.on("GET", "/sip_users", status=401, body="", replace=True)
    path = f"/plugins/placetel/connections/{pt.conn['id']}/refresh-users"
    await pt.admin("POST", path, expect=502)
    conn = await pt.admin("GET", f"/tenants/acme/connections/{pt.conn['id']}", expect=200)
    assert (conn["status"], conn["status_reason"]) == ("broken", "api_key_rejected")
    pt.api.on("GET", "/sip_users", json=SIP_USERS, replace=True)
    await pt.admin("POST", path, expect=200)  # a working key again heals the connection
    conn = await pt.admin("GET", f"/tenants/acme/connections/{pt.conn['id']}", expect=200)
    assert conn["status"] == "active"


async def test_refresh_when_placetel_is_down_is_502(pt):
    pt.api.on("GET", "/sip_users", status=503, body="", replace=True)
    body = await pt.admin("POST", f"/plugins/placetel/connections/{pt.conn['id']}/refresh-users", expect=502)
    assert "unavailable" in body["error"]


async def test_click_to_call(pt):
    pt.api.on("POST", "/calls", body="")
    await pt.gw.clicktocall.start("recorder", "acme", "crm-9", number="+4922112345678", email=EMAIL)
    (call,) = pt.api.requests("POST", "/calls")
    assert call.json == {"sipuid": SIPUID, "target": "+4922112345678"}
    await pt.gw.clicktocall.start("recorder", "acme", "crm-10", number="+4922112345678", extension="24")
    assert pt.api.requests("POST", "/calls")[1].json["sipuid"] == "7777xyz@fpbx.de"


async def test_click_to_call_errors(pt):
    with pytest.raises(BadRequest):
        await pt.gw.clicktocall.start("recorder", "acme", "crm-11", number="+4922112345678", email="nobody@example.com")
    with pytest.raises(BadRequest) as info:
        await pt.gw.clicktocall.start("recorder", "acme", "crm-12", number="not a number", email=EMAIL)
    assert "not a number" not in str(info.value)
    pt.api.on("POST", "/calls", status=422, json={"error": "invalid target"})
    with pytest.raises(UpstreamError) as info:
        await pt.gw.clicktocall.start("recorder", "acme", "crm-13", number="+4922112345678", email=EMAIL)
    assert "422" in str(info.value) and "+49" not in str(info.value)
    pt.api.on("POST", "/calls", status=503, body="", replace=True)
    with pytest.raises(UpstreamError):
        await pt.gw.clicktocall.start("recorder", "acme", "crm-14", number="+4922112345678", email=EMAIL)
    pt.api.on("POST", "/calls", status=401, body="", replace=True)
    with pytest.raises(UpstreamError):
        await pt.gw.clicktocall.start("recorder", "acme", "crm-15", number="+4922112345678", email=EMAIL)
    conn = await pt.gw.tenancy.connection(pt.conn["id"])
    assert (conn.status, conn.status_reason) == ("broken", "api_key_rejected")


async def test_background_round(pt):
    await post_all(pt, incoming(), accepted(), hungup("accepted", duration="42"))
    events = await pt.recorder.wait_for(3)
    pt.api.on("GET", "/recordings", json=[{"id": 78, "from": CALLER, "to": OURS,
                                           "time": events[2].ended_at.isoformat()}])
    pt.api.on("GET", "/recordings/78", status=429, headers={"Retry-After": "300"}, body="")
    before = len(pt.api.requests("GET", "/sip_users"))
    await plugin.background_round(pt.gw.contexts["placetel"])  # recordings now; users are fresh enough
    rec = (await pt.recorder.wait_for(4))[3]
    assert rec.recording.ref == "recording:78"
    assert len(pt.api.requests("GET", "/sip_users")) == before
    from gateway import RetryableError
    with pytest.raises(RetryableError) as info:  # the sink's delivery is retried later
        await pt.gw.recording_link(rec)
    assert info.value.retry_after == 300


# --- privacy ---------------------------------------------------------------------------------

async def test_logs_carry_no_personal_data(gateway_harness, fake_api, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    account(fake_api)
    h = await gateway_harness(env=env(fake_api))
    await h.create_tenant("acme")
    conn = await h.connect("acme", "placetel", {"api_key": API_KEY, "secret": SECRET})
    h.conn = conn
    await post_all(h, incoming(), accepted(), hungup("accepted", duration="42"), outgoing(),
                   hungup("busy", call_id=CALL_OUT, direction="out", caller=OURS, to=MOBILE))
    await post(h, incoming(), {"Content-Type": "application/x-www-form-urlencoded",
                               "X-PLACETEL-SIGNATURE": "0" * 64})
    await post(h, b"event=HungUp&from=" + CALLER.encode())
    events = await h.recorder.wait_for(5)
    # two calls are delivered side by side: only the order within a call is fixed
    [ended] = [e for e in events if e.call_id == CALL_IN and e.state is CallState.ENDED]
    fake_api.on("GET", "/recordings", json=[{"id": 77, "from": CALLER, "to": OURS,
                                             "time": ended.ended_at.isoformat()}])
    fake_api.on("GET", "/recordings/77", json={"id": 77, "file": RECORDING_LINK})
    await background.poll_recordings(SOURCE, h.gw.contexts["placetel"], await h.gw.tenancy.connection(conn["id"]))
    rec = (await h.recorder.wait_for(6))[5]
    assert await h.gw.recording_link(rec) == RECORDING_LINK
    fake_api.on("POST", "/calls", status=422, json={"error": f"bad target {MOBILE}"})
    with pytest.raises(UpstreamError):
        await h.gw.clicktocall.start("recorder", "acme", "crm-16", number=MOBILE_E164, email=EMAIL)
    fake_api.on("GET", "/sip_users", status=401, body="", replace=True)
    await h.admin("POST", f"/plugins/placetel/connections/{conn['id']}/refresh-users", expect=502)
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "placetel" in text  # the flow did log
    for value in (CALLER, CALLER_E164, OURS, OURS_E164, MOBILE, MOBILE_E164, SIPUID, EMAIL, NAME,
                  "Anna", API_KEY, SECRET, RECORDING_LINK, "files.placetel.test"):
        assert value not in text, value


async def test_subject_export_and_erase_reach_the_call_memory(pt):
    """The per-call memory is found and erased by the core (numbers blind-indexed), not by
    code of the plugin's own."""
    await post_all(pt, incoming(), hungup("missed"), outgoing())
    await pt.recorder.wait_for(3)
    exported = await pt.admin("POST", "/tenants/acme/subjects/export", {"phone": CALLER}, expect=200)
    [memory] = [r["value"] for r in exported["plugins"]["placetel"]["records"] if r["kind"] == "call"]
    assert memory["remote"] == CALLER_E164
    nobody = await pt.admin("POST", "/tenants/acme/subjects/export", {"email": EMAIL}, expect=200)
    assert "placetel" not in nobody["plugins"]
    erased = await pt.admin("POST", "/tenants/acme/subjects/erase", {"phone": CALLER}, expect=200)
    assert erased["erased"]["plugins"]["placetel"] == 1
    conn = await pt.gw.tenancy.connection(pt.conn["id"])
    calls = pt.context("placetel").calls
    assert await calls.get(conn, CALL_IN) is None
    assert await calls.get(conn, CALL_OUT) is not None  # others stay
