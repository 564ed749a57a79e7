"""End to end through the real gateway: login, signed deliveries, canonical events at the sink."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import orjson
from yarl import URL

from gateway import ANONYMOUS, CallState, Direction, Outcome, utcnow
from gateway_webex import oauth
from gateway_webex.signature import sign
from gateway_webex.source import close_missed_calls
from webex_fixtures import (
    ACCESS_TOKEN,
    CALLER,
    CLICK_TO_DIAL,
    CLIENT_ID,
    CLIENT_SECRET,
    INBOUND_ANSWERED,
    INBOUND_MISSED,
    OUTBOUND,
    PERSON,
    PRIVATE_CALLER,
    QUEUE_ABANDONED,
    RECORDING,
    RECORDING_ID,
    SESSION,
    Webex,
    call_data,
    form_of,
    fake_webex,  # noqa: F401  (fixture)
    webex,  # noqa: F401  (fixture)
)


async def test_login_stores_user_and_creates_signed_webhooks(webex: Webex) -> None:
    users = await webex.users()
    assert users == [{"user_id": PERSON, "name": "Agent Smith", "email": "agent@example.com",
                      "extension": "7209", "status": "active"}]
    created = webex.fake.requests("POST", "/webhooks")
    bodies = [c.json for c in created]
    assert sorted((b["resource"], b["event"]) for b in bodies) == [
        ("convergedRecordings", "created"), ("convergedRecordings", "updated"),
        ("telephony_calls", "created"), ("telephony_calls", "deleted"), ("telephony_calls", "updated")]
    assert len({b["secret"] for b in bodies}) == 5 and all(len(b["secret"]) >= 32 for b in bodies)
    assert {b["targetUrl"] for b in bodies} == {webex.h.gw.webhook_url(
        await webex.h.gw.tenancy.connection(webex.connection_id))}
    assert all(c.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}" for c in created)
    token_call = webex.fake.requests("POST", "/access_token")[0]
    assert token_call.form is not None and token_call.form["grant_type"] == "authorization_code"
    assert token_call.form["redirect_uri"].endswith("/apps/webex/callback")
    assert webex.fake.requests("GET", "/people/me")[0].query == {"callingData": "true"}
    # tokens, secrets, names and e-mails are stored encrypted, never in plaintext
    raw = b"".join(p.read_bytes() for p in Path(webex.h.gw.config.database).parent.glob("gateway.db*"))
    assert raw, "database files not found"
    for value in (ACCESS_TOKEN, "refresh-token-BBBB", bodies[0]["secret"], "agent@example.com", "Agent Smith"):
        assert value.encode() not in raw


async def test_login_redirect_carries_scopes_and_signed_state(webex: Webex) -> None:
    page = await webex.h.client.get(f"/apps/webex/login?connection={webex.connection_id}")
    nonce = page.cookies["callgate_webex"].value
    resp = await webex.h.client.post("/apps/webex/login", data=form_of(await page.text()), allow_redirects=False)
    location = URL(resp.headers["Location"])
    assert str(location).startswith(f"{webex.api}/authorize?")
    assert location.query["client_id"] == CLIENT_ID and location.query["response_type"] == "code"
    assert set(location.query["scope"].split()) >= {"spark:calls_read", "spark:calls_write", "spark:people_read"}
    state = oauth.check_state(CLIENT_SECRET, location.query["state"], browser=nonce)
    assert (state.connection_id, state.purpose, state.pin) == (webex.connection_id, "login", None)
    assert location.query["redirect_uri"] == webex.h.gw.contexts["webex"].app_url("/callback")


async def test_inbound_answered_reaches_sink(webex: Webex) -> None:
    assert await webex.sequence(INBOUND_ANSWERED) == [200] * 4
    events = await webex.h.recorder.wait_for(3)
    assert [e.state for e in events] == [CallState.RINGING, CallState.ANSWERED, CallState.ENDED]
    assert {e.call_id for e in events} == {SESSION}
    assert all(e.direction is Direction.INBOUND and e.remote_number == CALLER and e.local_user == PERSON
               and e.tenant == "acme" and e.source == "webex" for e in events)
    assert events[-1].outcome is Outcome.ANSWERED and events[-1].duration == 93


async def test_inbound_missed_reaches_sink_after_the_grace_time(webex: Webex) -> None:
    await webex.sequence(INBOUND_MISSED)
    events = await webex.h.recorder.wait_for(2)
    assert [(e.state, e.ringing) for e in events] == [(CallState.RINGING, (PERSON,)), (CallState.RINGING, ())]
    ctx = webex.h.context("webex")
    assert await close_missed_calls(ctx) == 0  # a colleague's answer may still come
    assert await close_missed_calls(ctx, now=utcnow() + timedelta(seconds=61)) == 1
    events = await webex.h.recorder.wait_for(3)
    assert (events[-1].state, events[-1].outcome, events[-1].local_user) == (CallState.ENDED, Outcome.MISSED, PERSON)
    assert await close_missed_calls(ctx, now=utcnow() + timedelta(seconds=120)) == 0


async def test_abandoned_queue_call(webex: Webex) -> None:
    await webex.sequence(QUEUE_ABANDONED)
    await webex.h.recorder.wait_for(2)
    await close_missed_calls(webex.h.context("webex"), now=utcnow() + timedelta(seconds=61))
    events = await webex.h.recorder.wait_for(3)
    assert events[-1].outcome is Outcome.MISSED
    assert events[-1].extra["completed_elsewhere"] is True and events[-1].extra["redirections"] == ["callQueue"]


async def test_outbound_call(webex: Webex) -> None:
    await webex.sequence(OUTBOUND)
    events = await webex.h.recorder.wait_for(3)
    assert all(e.direction is Direction.OUTBOUND for e in events)
    assert events[-1].outcome is Outcome.ANSWERED


async def test_click_to_call_then_its_events_are_recognised_as_the_crm_call(webex: Webex) -> None:
    crm = webex.h.context("recorder").clicktocall
    result = await crm.start("acme", "CRM-42", number="+4922112345678", email="agent@example.com")
    assert result.call_id == SESSION
    dial = webex.fake.requests("POST", "/telephony/calls/dial")[0]
    assert dial.json == {"destination": "+4922112345678"}
    assert dial.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    await webex.sequence(CLICK_TO_DIAL)
    events = await webex.h.recorder.wait_for(3)
    assert [e.state for e in events] == [CallState.RINGING, CallState.ANSWERED, CallState.ENDED]
    assert all(e.direction is Direction.OUTBOUND for e in events)
    assert [await crm.find(e) for e in events] == ["CRM-42"] * 3
    assert events[0].call_id == result.call_id


async def test_privacy_enabled_caller(webex: Webex) -> None:
    await webex.sequence(PRIVATE_CALLER)
    events = await webex.h.recorder.wait_for(3)
    assert {e.remote_number for e in events} == {ANONYMOUS}


async def test_repeated_and_out_of_order_deliveries(webex: Webex) -> None:
    steps = [INBOUND_ANSWERED[0], INBOUND_ANSWERED[0], INBOUND_ANSWERED[3], INBOUND_ANSWERED[2],
             INBOUND_ANSWERED[1], INBOUND_ANSWERED[3]]
    assert await webex.sequence(steps) == [200] * 6
    events = await webex.h.recorder.wait_for(3)
    # the answer is learned from the end delivery (its ``answered``), and reported once
    assert [e.state for e in events] == [CallState.RINGING, CallState.ANSWERED, CallState.ENDED]
    assert events[-1].outcome is Outcome.ANSWERED
    # and a brand-new call still works afterwards
    other = [(ev, {**data, "callId": "OTHER-LEG", "callSessionId": "OTHER-SESSION"}) for ev, data in INBOUND_MISSED]
    await webex.sequence(other)
    events = await webex.h.recorder.wait_for(5)
    assert [e.state for e in events[3:]] == [CallState.RINGING, CallState.RINGING]


async def test_recording_joins_call_and_link_is_fetched_at_delivery(webex: Webex) -> None:
    await webex.sequence(INBOUND_ANSWERED)
    await webex.h.recorder.wait_for(3)
    data = {"id": RECORDING_ID, "serviceType": "calling", "status": "available", "ownerType": "user"}
    resp = await webex.deliver("created", data, resource="convergedRecordings")
    assert resp.status == 200
    events = await webex.h.recorder.wait_for(4)
    rec = events[3]
    assert rec.state is CallState.RECORDING and rec.call_id == SESSION
    assert webex.fake.requests("GET", f"/convergedRecordings/{RECORDING_ID}/metadata")
    assert rec.recording is not None and (rec.recording.source, rec.recording.ref) == ("webex", RECORDING_ID)
    assert rec.recording.format == "mp3"
    link = await webex.h.gw.recording_link(rec)
    assert link == RECORDING["temporaryDirectDownloadLinks"]["audioDownloadLink"]  # type: ignore[index]
    fetched = webex.fake.requests("GET", f"/convergedRecordings/{RECORDING_ID}")
    assert fetched and fetched[0].headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    # the link is nowhere in the plugin's records or the stored event
    st = webex.h.context("webex").storage("acme")
    for kind in ("call", "recording", "webhook", "token"):
        assert "audio.mp3" not in orjson.dumps(await st.all(kind)).decode()
    assert "audio.mp3" not in orjson.dumps(rec.to_dict()).decode()


async def test_recording_without_known_call_is_dropped(webex: Webex) -> None:
    data = {"id": RECORDING_ID, "serviceData": {"callSessionId": "00000000-0000-0000-0000-000000000000"}}
    resp = await webex.deliver("created", data, resource="convergedRecordings")
    assert resp.status == 200 and await webex.h.stored_events() == 0


async def test_unrelated_updates_are_acknowledged_without_events(webex: Webex) -> None:
    await webex.sequence(INBOUND_ANSWERED[:1])
    resp = await webex.deliver("updated", call_data("held", "held"))
    assert resp.status == 200
    resp = await webex.deliver("updated", call_data("resumed", "connected"))
    events = await webex.h.recorder.wait_for(2)
    assert [e.state for e in events] == [CallState.RINGING, CallState.ANSWERED]
    assert resp.status == 200 and await webex.h.stored_events() == 2  # answered came with "held"


async def test_login_is_audited_without_personal_data(webex: Webex) -> None:
    listing = await webex.h.admin("GET", "/audit", expect=200)
    logins = [e for e in listing["entries"] if e["action"] == "user.login"]
    assert logins and logins[-1]["details"]["plugin"] == "webex"
    text = str(listing)
    for value in ("agent@example.com", "Agent Smith", ACCESS_TOKEN):
        assert value not in text


async def test_timestamps_no_call_can_have_are_400_not_5xx(webex: Webex) -> None:
    for stamp in ("0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00"):
        for field in ("eventTimestamp", "created", "answered", "disconnected"):
            data = call_data("disconnected", "disconnected", **{field: stamp})
            resp = await webex.deliver("deleted", data)
            assert resp.status == 400, (field, stamp)
    assert webex.h.recorder.deliveries == []


async def test_nested_fields_of_the_wrong_type_are_400(webex: Webex) -> None:
    wrong = [{"personality": None}, {"remoteParty": "+19055550100"}, {"remoteParty": None},
             {"remoteParty": {"number": 19055550100}}, {"remoteParty": {"privacyEnabled": "yes"}},
             {"state": ["alerting"]}, {"eventType": 1}, {"callId": None}, {"created": 1754415892},
             {"created": "yesterday"}, {"created": "2025-08-05T17:44:52"}, {"completedElsewhere": "false"},
             {"redirections": "callQueue"}, {"redirections": ["callQueue"]},
             {"redirections": [{"reason": None}]}]
    for change in wrong:
        resp = await webex.deliver("created", {**call_data("received", "alerting"), **change})
        assert resp.status == 400, change
    hook_id, secret = webex.hook("telephony_calls", "created")
    for envelope_change in ({"event": None}, {"resource": 5}, {"createdBy": []}, {"data": "x"}):
        body = orjson.dumps({"id": hook_id, "resource": "telephony_calls", "event": "created",
                             "data": call_data("received", "alerting"), **envelope_change})
        resp = await webex.h.post_hook("webex", webex.connection_id, body, {
            "Content-Type": "application/json", "X-Spark-Signature": sign(secret, body)})
        assert resp.status == 400, envelope_change
    assert webex.h.recorder.deliveries == []
    # fields Webex sends only sometimes may be null: still accepted
    resp = await webex.deliver("created", {**call_data("received", "alerting"), "answered": None})
    assert resp.status == 200
