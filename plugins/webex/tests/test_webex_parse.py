"""Sans-I/O tests: signature, envelope, call state machine, recordings, ids, OAuth state."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import ANONYMOUS, CallState, Direction, Outcome
from gateway_webex import oauth, session, signature
from gateway_webex.ids import session_key, webex_id_to_uuid
from gateway_webex.parse import (
    MalformedNotification,
    call_snapshot,
    parse_envelope,
    recording_notice,
)
from gateway_webex.profile import user_from_profile
from webex_fixtures import (
    ANSWERED_AT,
    CALLER,
    CLICK_TO_DIAL,
    INBOUND_ANSWERED,
    INBOUND_MISSED,
    OUTBOUND,
    PERSON,
    PRIVATE_CALLER,
    PROFILE,
    QUEUE_ABANDONED,
    SESSION,
    SESSION_UUID,
    envelope,
)

NOW = datetime(2025, 8, 5, 18, 0, tzinfo=timezone.utc)
LINE = "+14085267209"


# --- signature ------------------------------------------------------------------------------

def test_documented_signature_vector() -> None:
    body = b'{"id":"wh1","resource":"telephony_calls","event":"created","data":{"callId":"c1"}}'
    assert signature.sign("somesupersecretphrase", body) == "818bb34d7ec60bc33668135f648af29017b183e4"
    assert signature.verify("somesupersecretphrase", body,
                            {"X-Spark-Signature": "818bb34d7ec60bc33668135f648af29017b183e4"})
    assert signature.verify("somesupersecretphrase", body,
                            {"X-Spark-Signature": "818BB34D7EC60BC33668135F648AF29017B183E4"})


@pytest.mark.parametrize("header", [None, "", "818bb34d", "not-hex-at-all", "ä" * 40,
                                    "818bb34d7ec60bc33668135f648af29017b183e5"])
def test_signature_refuses_missing_or_wrong(header: str | None) -> None:
    body = b'{"id":"wh1","resource":"telephony_calls","event":"created","data":{"callId":"c1"}}'
    headers = {} if header is None else {"X-Spark-Signature": header}
    assert not signature.verify("somesupersecretphrase", body, headers)


def test_signature_covers_exact_bytes() -> None:
    body = b'{"id":"wh1","resource":"telephony_calls","event":"created","data":{"callId":"c1"}}'
    digest = signature.sign("somesupersecretphrase", body)
    assert not signature.verify("somesupersecretphrase", body + b"\n", {"X-Spark-Signature": digest})
    assert not signature.verify("another-secret", body, {"X-Spark-Signature": digest})


# --- envelope ---------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'"x"', b'{"data": {}}', b'{"id": 5}',
                                  b'{"id": "wh", "data": []}'])
def test_envelope_refuses_malformed(body: bytes) -> None:
    with pytest.raises(MalformedNotification):
        parse_envelope(body)


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_envelope_never_raises_anything_else(body: bytes) -> None:
    try:
        parse_envelope(body)
    except MalformedNotification:
        pass


def test_snapshot_requires_call_ids() -> None:
    env = parse_envelope(orjson.dumps(envelope("wh", "telephony_calls", "created", {"eventType": "received"})))
    with pytest.raises(MalformedNotification):
        call_snapshot(env)


# --- call sessions (the legs of one session -> one customer call) ----------------------------------

def run(steps: list[tuple[str, dict]], state: dict | None = None, *, grace: float = 0,
        person: str = PERSON, at: datetime = NOW) -> tuple[dict | None, list]:
    events = []
    for event, data in steps:
        env = parse_envelope(orjson.dumps(envelope("wh", "telephony_calls", event, copy.deepcopy(data))))
        state, new = session.apply(state, call_snapshot(env), user=person, local_number=LINE,
                                   received_at=at, grace=grace)
        events.extend(new)
    return state, events


def test_inbound_answered() -> None:
    state, events = run(INBOUND_ANSWERED)
    assert [e.state for e in events] == [CallState.RINGING, CallState.ANSWERED, CallState.ENDED]
    ringing, answered, ended = events
    assert all(e.direction is Direction.INBOUND and e.remote_number == CALLER for e in events)
    assert all(e.call_id == SESSION and e.local_user == PERSON and e.local_number == LINE for e in events)
    assert ringing.ringing == (PERSON,) and answered.ringing == () and not ringing.internal
    assert ringing.occurred_at == datetime(2025, 8, 5, 17, 44, 52, 284000, tzinfo=timezone.utc)
    assert answered.answered_at == datetime.fromisoformat(ANSWERED_AT)
    assert ended.outcome is Outcome.ANSWERED and ended.duration == 93
    assert ended.ended_at == datetime(2025, 8, 5, 17, 46, 31, 524000, tzinfo=timezone.utc)
    assert len({e.event_id for e in events}) == 3
    assert state is not None and state["session"] == SESSION_UUID


def test_inbound_missed_waits_for_the_grace_time() -> None:
    state, events = run(INBOUND_MISSED, grace=60)
    # the phone stopped ringing (its card can go) but nobody is known to have answered elsewhere yet
    assert [(e.state, e.ringing) for e in events] == [(CallState.RINGING, (PERSON,)), (CallState.RINGING, ())]
    assert state is not None and not session.due(state, NOW + timedelta(seconds=59))
    assert session.expire(state, NOW + timedelta(seconds=59))[1] == []
    state, (ended,) = session.expire(state, NOW + timedelta(seconds=60))
    assert ended.state is CallState.ENDED and ended.outcome is Outcome.MISSED and ended.duration == 0
    assert ended.answered_at is None and ended.local_user == PERSON  # the only user it rang for
    assert session.expire(state, NOW + timedelta(seconds=600))[1] == []  # once


def test_inbound_missed_without_grace_ends_at_once() -> None:
    _, events = run(INBOUND_MISSED, grace=0)
    assert [(e.state, e.outcome) for e in events] == [(CallState.RINGING, None), (CallState.ENDED, Outcome.MISSED)]


def test_queue_call_abandoned_completed_elsewhere() -> None:
    _, events = run(QUEUE_ABANDONED)
    ended = events[-1]
    assert [e.state for e in events] == [CallState.RINGING, CallState.ENDED]
    assert ended.outcome is Outcome.MISSED
    assert ended.extra["completed_elsewhere"] is True
    assert ended.extra["redirections"] == ["callQueue"]
    assert ended.local_number == "+4922100000"  # the queue's number is the line that was called
    assert "Sales Queue" not in orjson.dumps(ended.to_dict()).decode()


def test_outbound() -> None:
    _, events = run(OUTBOUND)
    assert [e.state for e in events] == [CallState.RINGING, CallState.ANSWERED, CallState.ENDED]
    assert all(e.direction is Direction.OUTBOUND and e.local_user == PERSON for e in events)
    assert events[0].ringing == ()  # an outbound call rings no phone of ours
    assert events[-1].outcome is Outcome.ANSWERED


def test_outbound_not_answered_is_cancelled() -> None:
    _, events = run([OUTBOUND[0], ("deleted", {**OUTBOUND[3][1], "answered": None})])
    assert [e.state for e in events] == [CallState.RINGING, CallState.ENDED]
    assert events[-1].outcome is Outcome.CANCELLED and events[-1].local_user == PERSON


def test_click_to_dial_is_outbound_and_device_pickup_is_not_an_answer() -> None:
    state, events = run(CLICK_TO_DIAL[:2])
    assert [e.state for e in events] == [CallState.RINGING]
    assert events[0].direction is Direction.OUTBOUND
    _, more = run(CLICK_TO_DIAL[2:], state)
    assert [e.state for e in more] == [CallState.ANSWERED, CallState.ENDED]
    assert all(e.direction is Direction.OUTBOUND for e in more)


def test_privacy_enabled_caller_is_anonymous() -> None:
    _, events = run(PRIVATE_CALLER)
    assert [e.remote_number for e in events] == [ANONYMOUS] * 3


def test_update_after_delete_does_not_resurrect() -> None:
    steps = [INBOUND_MISSED[0], INBOUND_MISSED[2], INBOUND_ANSWERED[2], INBOUND_MISSED[1]]
    _, events = run(steps)
    assert [e.state for e in events] == [CallState.RINGING, CallState.ENDED]
    assert events[-1].outcome is Outcome.MISSED


def test_answer_before_created_emits_ringing_and_answer_once() -> None:
    _, events = run([INBOUND_ANSWERED[2], INBOUND_ANSWERED[0], INBOUND_ANSWERED[1], INBOUND_ANSWERED[3]])
    assert [e.state for e in events] == [CallState.RINGING, CallState.ANSWERED, CallState.ENDED]
    assert events[0].local_user == PERSON


def test_delete_first_emits_only_ended() -> None:
    _, events = run([INBOUND_ANSWERED[3], INBOUND_ANSWERED[0]])
    assert [e.state for e in events] == [CallState.ENDED]
    assert events[0].outcome is Outcome.ANSWERED and events[0].local_user == PERSON


def test_event_ids_are_stable_across_redelivery() -> None:
    _, first = run(INBOUND_ANSWERED)
    _, second = run(INBOUND_ANSWERED)
    assert [e.event_id for e in first] == [e.event_id for e in second]


@settings(max_examples=200)
@given(st.permutations(INBOUND_ANSWERED + INBOUND_ANSWERED[:2]))
def test_any_order_gives_each_state_at_most_once(steps: list) -> None:
    _, events = run(list(steps))
    kinds = [e.state for e in events]
    assert kinds.count(CallState.ANSWERED) <= 1 and kinds.count(CallState.ENDED) == 1
    assert kinds[-1] is CallState.ENDED and kinds[0] in (CallState.RINGING, CallState.ENDED)
    assert events[-1].outcome is Outcome.ANSWERED and events[-1].local_user == PERSON


# --- recordings, ids, profile, OAuth state -------------------------------------------------------

def test_recording_notice_and_event() -> None:
    env = parse_envelope(orjson.dumps(envelope("wh", "convergedRecordings", "created", {
        "id": "rec-1", "serviceData": {"callSessionId": SESSION_UUID}, "status": "available"})))
    notice = recording_notice(env)
    assert notice.session == SESSION_UUID and notice.recording_id == "rec-1"
    state, _ = run(INBOUND_ANSWERED)
    assert state is not None
    event = session.recording_event(state, "rec-1", owner=PERSON, received_at=NOW)
    assert event.state is CallState.RECORDING and event.recording is not None
    assert (event.recording.source, event.recording.ref, event.recording.format) == ("webex", "rec-1", "mp3")
    assert event.call_id == SESSION and event.local_user == PERSON


def test_ids() -> None:
    assert session_key(SESSION) == SESSION_UUID
    assert session_key(SESSION_UUID.upper()) == SESSION_UUID
    assert session_key("not-base64!") == "not-base64!"
    assert webex_id_to_uuid(PERSON) == "89f08e2b-1a5c-4b5e-9b4e-3c2f1d0a7e11"


def test_profile_mapping() -> None:
    user = user_from_profile(PROFILE)
    assert user.user_id == PERSON and user.email == "agent@example.com" and user.extension == "7209"
    assert user.numbers == ("+14085267209",) and user.name == "Agent Smith"


def test_state_round_trip_and_tampering() -> None:
    state = oauth.make_state("client-secret", "conn1", "login", 600, browser="nonce-1", now=1000.0)
    checked = oauth.check_state("client-secret", state, browser="nonce-1", now=1500.0)
    assert (checked.connection_id, checked.purpose, checked.expires_at, checked.pin) == ("conn1", "login", 1600, None)
    with pytest.raises(oauth.BadState):
        oauth.check_state("client-secret", state, browser="nonce-1", now=1601.0)  # expired
    with pytest.raises(oauth.BadState):
        oauth.check_state("other-secret", state, browser="nonce-1", now=1500.0)
    for browser in (None, "", "nonce-2"):  # no cookie, or another browser's
        with pytest.raises(oauth.BadState):
            oauth.check_state("client-secret", state, browser=browser, now=1500.0)
    payload, mac = state.split(".")
    forged = oauth._b64(orjson.dumps({"c": "conn2", "p": "login", "n": "x", "e": 9999}))
    with pytest.raises(oauth.BadState):
        oauth.check_state("client-secret", f"{forged}.{mac}", browser="nonce-1", now=1500.0)
    for junk in ["", "abc", "a.b.c", "%%%.%%%", "." * 2000]:
        with pytest.raises(oauth.BadState):
            oauth.check_state("client-secret", junk, browser="nonce-1", now=1500.0)
    # a pin link is no state, a state no pin link
    pin = oauth.make_pin("client-secret", "conn1", 600, now=1000.0)
    with pytest.raises(oauth.BadState):
        oauth.check_state("client-secret", pin, browser="nonce-1", now=1500.0)
    with pytest.raises(oauth.BadState):
        oauth.check_pin("client-secret", state, now=1500.0)
    assert oauth.check_pin("client-secret", pin, now=1500.0).connection_id == "conn1"
    with pytest.raises(oauth.BadState):
        oauth.check_pin("client-secret", pin, now=1601.0)
    # the form token is this browser's, for this request
    token = oauth.form_token("client-secret", "nonce-1", "conn1", "login")
    oauth.check_form_token("client-secret", token, "nonce-1", "conn1", "login")
    for args in (("nonce-2", "conn1", "login"), ("", "conn1", "login"), ("nonce-1", "conn2", "login"),
                 ("nonce-1", "conn1", "logout")):
        with pytest.raises(oauth.BadState):
            oauth.check_form_token("client-secret", token, *args)


def test_token_set_from_response_keeps_refresh_token() -> None:
    first = oauth.TokenSet.from_response({"access_token": "a", "expires_in": 100, "refresh_token": "r",
                                          "refresh_token_expires_in": 1000, "scope": "x y"}, now=10.0)
    assert first.expires_at == 110.0 and first.refresh_expires_at == 1010.0 and first.scopes == ("x", "y")
    second = oauth.TokenSet.from_response({"access_token": "b", "expires_in": 50}, now=20.0, previous=first)
    assert second.refresh_token == "r" and second.scopes == ("x", "y") and second.expires_at == 70.0
    assert oauth.TokenSet.from_record(second.to_record()) == second


def test_the_order_key_is_the_call_session_for_every_leg_and_its_recording() -> None:
    """Deliveries of one session (legs of several users, the recording) are interpreted in
    order: they share the key that their state is kept under."""
    from gateway import Connection, WebhookRequest
    from gateway_webex.source import WebexSource
    from webex_fixtures import call_data

    source, conn = WebexSource(), Connection(id="c1", tenant="t", plugin="webex")

    def key(doc: dict) -> str | None:
        return source.order_key(conn, WebhookRequest(body=orjson.dumps(doc), headers={},
                                                     content_type="application/json", received_at=NOW, query={}))

    leg = key(envelope("wh", "telephony_calls", "updated", call_data("received", "alerting")))
    other_user = key(envelope("wh2", "telephony_calls", "updated",
                              call_data("answered", "connected", leg="another-leg")))
    recording = key(envelope("wh", "convergedRecordings", "created",
                             {"id": "rec-1", "serviceData": {"callSessionId": SESSION_UUID}}))
    assert leg == other_user == recording == session_key(SESSION) == SESSION_UUID
    assert key(envelope("wh", "telephony_calls", "updated",
                        call_data("received", "alerting", session="another-session"))) == "another-session"
    # a recording that names no session is looked up through the API: in order with everything
    assert key(envelope("wh", "convergedRecordings", "created", {"id": "rec-2"})) is None
