from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from gateway import ANONYMOUS, CallState, Direction, Outcome
from gateway_placetel.parse import (
    OUTCOMES, ParseError, event_id, parse_notification, recording_event, to_events,
)
from placetel_testdata import (
    CALL_IN, CALL_OUT, CALLER, CALLER_E164, MOBILE_E164, OURS, OURS_E164, SIPUID, accepted, hungup,
    incoming, outgoing,
)

T0 = datetime(2024, 5, 6, 10, 0, 0, tzinfo=timezone.utc)


def run(*bodies: bytes, memory=None):
    """Feed bodies in order, carrying the per-call memory like the source does."""
    out = []
    for i, body in enumerate(bodies):
        events, memory = to_events(parse_notification(body), memory, T0 + timedelta(seconds=10 * i))
        out.extend(events)
    return out, memory


def test_answered_inbound_sequence():
    events, memory = run(incoming(), accepted(), hungup("accepted", duration="42"))
    assert [e.state for e in events] == [CallState.RINGING, CallState.ANSWERED, CallState.ENDED]
    assert {e.direction for e in events} == {Direction.INBOUND}
    assert {e.call_id for e in events} == {CALL_IN}
    assert all(e.remote_number == CALLER_E164 and e.local_number == OURS_E164 for e in events)
    assert events[0].local_user is None
    assert events[1].local_user == SIPUID and events[2].local_user == SIPUID  # HungUp has no peer
    end = events[2]
    assert end.outcome is Outcome.ANSWERED and end.duration == 42
    assert end.started_at == T0 and end.answered_at == T0 + timedelta(seconds=10)
    assert end.ended_at == T0 + timedelta(seconds=20) == end.occurred_at
    assert memory["outcome"] == "answered" and memory["duration"] == 42


def test_missed_inbound():
    events, _ = run(incoming(), hungup("missed", duration="0"))
    end = events[-1]
    assert end.outcome is Outcome.MISSED and end.duration == 0
    assert end.local_user is None and end.answered_at is None


@pytest.mark.parametrize("type_, outcome", [
    ("accepted", Outcome.ANSWERED), ("missed", Outcome.MISSED), ("voicemail", Outcome.VOICEMAIL),
    ("blocked", Outcome.BLOCKED), ("busy", Outcome.BUSY), ("canceled", Outcome.CANCELLED),
    ("unavailable", Outcome.UNAVAILABLE), ("congestion", Outcome.FAILED),
])
def test_every_documented_hangup_type(type_, outcome):
    events, _ = run(hungup(type_))
    assert events[0].outcome is outcome
    assert OUTCOMES[type_] is outcome


def test_unknown_hangup_type_gives_no_outcome():
    events, _ = run(hungup("exploded"))
    assert events[0].state is CallState.ENDED and events[0].outcome is None
    assert events[0].extra["unknown_hangup_type"] is True


def test_outbound_busy_and_cancelled():
    events, _ = run(outgoing(), hungup("busy", call_id=CALL_OUT, direction="out",
                                       caller="022199998560", to="017312345678"))
    assert [e.direction for e in events] == [Direction.OUTBOUND] * 2
    assert all(e.remote_number == MOBILE_E164 and e.local_number == OURS_E164 for e in events)
    assert events[0].local_user == SIPUID and events[1].local_user == SIPUID
    assert events[1].outcome is Outcome.BUSY
    events, _ = run(outgoing(), hungup("canceled", call_id=CALL_OUT, direction="out"))
    assert events[1].outcome is Outcome.CANCELLED


def test_anonymous_caller():
    events, _ = run(incoming(caller="anonymous"), hungup("missed", caller="anonymous"))
    assert {e.remote_number for e in events} == {ANONYMOUS}


def test_missing_direction_and_duration_use_the_call_memory():
    # the older field set: no direction, no duration
    body = f"event=HungUp&from=017312345678&to=022129191999&call_id={CALL_IN}&type=accepted".encode()
    events, _ = run(outgoing(call_id=CALL_IN), body)
    assert events[1].direction is Direction.OUTBOUND
    assert events[1].extra["direction_from"] == "call"
    assert events[1].duration is None  # unknown, not 0
    events, _ = run(incoming(direction=False), hungup("missed", direction=None, duration=None))
    assert [e.direction for e in events] == [Direction.INBOUND] * 2
    assert [e.extra["direction_from"] for e in events] == ["event", "call"]


def test_direction_without_any_hint():
    events, _ = run(hungup("busy", direction=None))
    assert events[0].direction is Direction.OUTBOUND and events[0].extra["direction_from"] == "guess"
    events, _ = run(hungup("missed", direction=None))
    assert events[0].direction is Direction.INBOUND
    events, _ = run(hungup("missed", direction="out"))
    assert events[0].direction is Direction.OUTBOUND and events[0].extra["direction_from"] == "field"


def test_zammad_fixture_without_numbers():
    events, _ = run(b"event=HungUp&call_id=1234567890-1&type=missed")
    assert events[0].outcome is Outcome.MISSED and events[0].remote_number is None


def test_internal_parties_are_kept_raw_and_marked():
    body = (f"event=OutgoingCall&from=7777abcdefg%40fpbx.de&to=23&call_id={CALL_OUT}").encode()
    events, _ = to_events(parse_notification(body), None, T0, extensions=frozenset({"23", "24"}))
    assert events[0].remote_number == "23" and events[0].local_number == SIPUID
    assert events[0].local_user == SIPUID
    assert events[0].internal is True


@pytest.mark.parametrize("to", ["110", "112", "116117", "23"])
def test_short_numbers_are_internal_only_when_they_are_the_tenants_extensions(to):
    body = f"event=OutgoingCall&from={OURS}&to={to}&peer=7777abcdefg%40fpbx.de&call_id={CALL_OUT}".encode()
    events, _ = to_events(parse_notification(body), None, T0, extensions=frozenset({"24", "25"}))
    assert events[0].internal is False and events[0].remote_number == to


def test_a_sip_id_as_the_remote_party_is_internal():
    body = f"event=IncomingCall&from=7777xyz%40fpbx.de&to={OURS}&call_id={CALL_IN}".encode()
    events, _ = run(body)
    assert events[0].internal is True


def test_unknown_event_is_ignored():
    note = parse_notification(b"event=Ringing&call_id=abc&from=0221")
    assert not note.known
    assert to_events(note, {"direction": "in"}, T0) == ([], {"direction": "in"})
    # the receiver typo of one PHP example is not a Placetel event
    assert to_events(parse_notification(b"event=AcceptedCall&call_id=abc"), None, T0) == ([], None)


def test_extra_fields_are_ignored():
    body = accepted() + b"&user=voicemail"
    events, _ = run(body)
    assert events[0].state is CallState.ANSWERED


def test_event_id_is_stable_and_distinct():
    a = parse_notification(hungup("missed"))
    b = parse_notification(b"direction=in&" + hungup("missed", direction=None))  # other field order
    assert event_id(a) == event_id(b)
    assert event_id(a) != event_id(parse_notification(hungup("voicemail")))
    assert event_id(a) != event_id(parse_notification(incoming()))
    assert event_id(a).startswith(CALL_IN + ":HungUp:")


@pytest.mark.parametrize("body", [
    b"", b"from=0221", b"event=&call_id=abc", b"event=HungUp&type=missed",
    b"event=HungUp&call_id=has%20space", b"event=HungUp&call_id=" + b"a" * 200, b"\xff\xfe",
    b"event=IncomingCall&call_id=abc&from=" + b"1" * 600,
    b"event=IncomingCall&call_id=abc&from=0221&from=0301", b"event=HungUp&event=HungUp&call_id=abc",
])
def test_unusable_bodies_raise(body):
    with pytest.raises(ParseError) as info:
        parse_notification(body)
    assert CALLER not in str(info.value)


def test_recording_event_carries_only_a_reference():
    _, memory = run(incoming(), accepted(), hungup("accepted", duration="42"))
    ev = recording_event(CALL_IN, "recording:77", memory, T0 + timedelta(minutes=3))
    assert ev.state is CallState.RECORDING and ev.recording.ref == "recording:77"
    assert ev.recording.source == "placetel"
    assert ev.outcome is Outcome.ANSWERED and ev.local_user == SIPUID and ev.duration == 42
    assert ev.event_id == recording_event(CALL_IN, "recording:77", memory, T0).event_id


@given(st.binary(max_size=300))
def test_parser_never_fails_otherwise(body):
    try:
        note = parse_notification(body)
    except ParseError:
        return
    events, _ = to_events(note, None, T0)
    assert len(events) <= 1


def test_the_order_key_is_the_call():
    """Notifications of one call are interpreted in order, of different calls at once."""
    from gateway import Connection, WebhookRequest
    from gateway_placetel.source import PlacetelSource

    source, conn = PlacetelSource(), Connection(id="c1", tenant="t", plugin="placetel")

    def key(body: bytes):
        return source.order_key(conn, WebhookRequest(body=body, headers={}, content_type=
                                                     "application/x-www-form-urlencoded", received_at=T0, query={}))

    assert key(incoming()) == key(accepted()) == key(hungup("accepted")) == CALL_IN
    assert key(outgoing()) == CALL_OUT != CALL_IN
