"""Whole calls from Placetel's own example bodies (``captures/``, pseudonymised) and bodies
constructed like them, in the orders Placetel may deliver them: one customer call per
``call_id``, events in the canonical order, the agent who answered last named at the end."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from gateway import CallState, Direction, Outcome
from gateway_placetel.parse import parse_notification, release_held, ring_timeout, to_events
from placetel_testdata import CALL_OUT, OURS, accepted, hungup, incoming, outgoing

CAPTURES = Path(__file__).with_name("captures")
T0 = datetime(2024, 5, 6, 10, 0, 0, tzinfo=timezone.utc)
INCOMING_01, ACCEPTED_02, HUNGUP_03 = ((CAPTURES / f"{n}.txt").read_bytes() for n in (
    "examples_readme_01_incoming_call", "examples_readme_02_call_accepted", "examples_readme_03_hungup_accepted"))
ACCEPTED_NO_PEER = (CAPTURES / "coldfusion_comment_call_accepted.txt").read_bytes()
CAPTURED_CALL = "f4591ba315d81671d7a06c2a3b4f963dafd119de39cb26edd8a6476676b2f447"
CAPTURED_PEER = "7777abcdefg@fpbx.example.test"


def run(*bodies: bytes, memory=None, hold_for: float = 60, extensions=frozenset()):
    out = []
    for i, body in enumerate(bodies):
        events, memory = to_events(parse_notification(body), memory, T0 + timedelta(seconds=10 * i),
                                   extensions=frozenset(extensions), hold_for=hold_for)
        out.extend(events)
    return out, memory


def test_captured_answered_call_old_field_set():
    events, _ = run(INCOMING_01, ACCEPTED_02, HUNGUP_03)
    assert [(e.state, e.local_user) for e in events] == [
        (CallState.RINGING, None), (CallState.ANSWERED, CAPTURED_PEER), (CallState.ENDED, CAPTURED_PEER)]
    assert {e.call_id for e in events} == {CAPTURED_CALL}
    assert {e.remote_number for e in events} == {"+493023125017"}  # pseudonymised caller
    assert {e.local_number for e in events} == {"+492214710999"}  # the company number: the line
    assert events[-1].outcome is Outcome.ANSWERED and events[-1].duration is None  # old set: unknown
    assert not any(e.internal for e in events)


def test_captured_call_accepted_without_direction_keeps_an_outbound_call_outbound():
    # the research reproduced it: OutgoingCall, then a CallAccepted without ``direction``
    out = f"event=OutgoingCall&from={OURS}&to=03023125017&peer=7777abcdefg%40fpbx.example.test" \
          f"&call_id={CAPTURED_CALL}&direction=out".encode()
    events, memory = run(out, ACCEPTED_NO_PEER)
    assert [e.direction for e in events] == [Direction.OUTBOUND, Direction.OUTBOUND]
    assert events[1].extra["direction_from"] == "call" and memory["direction"] == "out"


def test_captured_accept_without_peer_names_nobody():
    events, _ = run(INCOMING_01, ACCEPTED_NO_PEER, HUNGUP_03)
    assert [(e.state, e.local_user) for e in events] == [
        (CallState.RINGING, None), (CallState.ANSWERED, None), (CallState.ENDED, None)]


def test_hang_up_before_its_answer_waits_for_it_and_names_the_agent():
    events, memory = run(INCOMING_01, HUNGUP_03)
    assert [e.state for e in events] == [CallState.RINGING] and memory["held"]
    more, memory = run(ACCEPTED_02, memory=memory)
    assert [(e.state, e.local_user) for e in more] == [
        (CallState.ANSWERED, CAPTURED_PEER), (CallState.ENDED, CAPTURED_PEER)]
    assert more[1].outcome is Outcome.ANSWERED
    late, _ = run(INCOMING_01, HUNGUP_03, ACCEPTED_02, memory=memory)
    assert late == []  # nothing after the end, whatever comes


def test_hang_up_whose_answer_never_comes_ends_after_the_grace_time():
    _, memory = run(HUNGUP_03)
    assert release_held(memory, CAPTURED_CALL, T0 + timedelta(seconds=30))[0] == []
    (end,), memory = release_held(memory, CAPTURED_CALL, T0 + timedelta(seconds=61))
    assert end.state is CallState.ENDED and end.outcome is Outcome.ANSWERED and end.local_user is None
    assert end.call_id == CAPTURED_CALL and not memory.get("held")
    assert release_held(memory, CAPTURED_CALL, T0 + timedelta(hours=1))[0] == []


def test_repeated_and_reordered_notifications_give_each_state_once():
    events, _ = run(incoming(), incoming(), accepted(), incoming(), accepted(), hungup("accepted", duration="30"),
                    hungup("accepted", duration="30"), accepted())
    assert [e.state for e in events] == [CallState.RINGING, CallState.ANSWERED, CallState.ENDED]


def test_answer_before_ring_never_rings_afterwards():
    events, _ = run(accepted(), incoming(), hungup("accepted", duration="30"))
    assert [e.state for e in events] == [CallState.ANSWERED, CallState.ENDED]


def test_transfer_ends_with_the_agent_who_had_the_caller_last():
    # constructed: a second CallAccepted names the colleague the call was transferred to
    colleague = accepted().replace(b"7777abcdefg%40fpbx.de", b"7777xyz%40fpbx.de")
    events, _ = run(incoming(), accepted(), colleague, hungup("accepted", duration="90"))
    assert [(e.state, e.local_user) for e in events] == [
        (CallState.RINGING, None), (CallState.ANSWERED, "7777abcdefg@fpbx.de"),
        (CallState.ANSWERED, "7777xyz@fpbx.de"), (CallState.ENDED, "7777xyz@fpbx.de")]
    assert {e.remote_number for e in events} == {"+4922129191999"}  # the customer throughout


def test_consult_call_to_a_colleague_is_internal():
    # constructed: the agent dials a colleague's extension before transferring
    consult = outgoing(call_id=CALL_OUT, to="24")
    events, _ = run(consult, hungup("accepted", call_id=CALL_OUT, direction="out", to="24", caller=OURS,
                                    duration="20"), extensions={"23", "24"})
    assert all(e.internal for e in events) and {e.remote_number for e in events} == {"24"}


def test_ring_group_call_nobody_answers_is_missed_for_nobody_in_particular():
    events, _ = run(incoming(), hungup("missed"))
    assert [(e.state, e.local_user, e.outcome) for e in events] == [
        (CallState.RINGING, None, None), (CallState.ENDED, None, Outcome.MISSED)]


def test_contact_center_call_that_only_rang_is_closed_after_the_ring_timeout():
    _, memory = run(incoming())
    assert ring_timeout(memory, "c1", T0 + timedelta(minutes=59), 3600)[0] == []
    (end,), memory = ring_timeout(memory, "c1", T0 + timedelta(minutes=61), 3600)
    assert end.outcome is Outcome.MISSED and end.extra["closed_by"] == "timeout" and end.call_id == "c1"
    assert ring_timeout(memory, "c1", T0 + timedelta(hours=5), 3600)[0] == []
    _, answered = run(incoming(), accepted())
    assert ring_timeout(answered, "c1", T0 + timedelta(hours=5), 3600)[0] == []


def test_an_answered_outgoing_call_ends_at_once_for_its_caller():
    # outgoing calls have no CallAccepted: their answered HungUp has nothing to wait for
    events, memory = run(outgoing(), hungup("accepted", CALL_OUT, "95", "out", caller=OURS, to="017612345678"))
    assert [(e.state, e.local_user) for e in events] == [
        (CallState.RINGING, "7777abcdefg@fpbx.de"), (CallState.ENDED, "7777abcdefg@fpbx.de")]
    assert events[-1].outcome is Outcome.ANSWERED and events[-1].duration == 95
    assert "held" not in memory
