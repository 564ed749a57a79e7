"""Sans-I/O: whole calls from the pseudonymised captures (``captures/``) and deliveries
constructed from them (``webex_captures``), through :mod:`gateway_webex.session`.

One customer call per call session, whatever the legs: queue calls answered by one agent,
abandoned queue calls, direct calls, transfers; deliveries out of order and repeated.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import ANONYMOUS, CallState, Outcome
from gateway_webex import session
from gateway_webex.parse import call_snapshot, parse_envelope
from webex_captures import (
    CAPTURED_CALLER,
    CAPTURED_QUEUE,
    DIRECT_ANSWERED,
    DIRECT_UNANSWERED,
    PERSON_B,
    PERSON_C,
    QUEUE_ABANDONED_A,
    QUEUE_ELSEWHERE_A,
    answered,
    ended,
    other_leg,
    with_remote,
)

A = "person-a"
T0 = datetime(2025, 8, 14, 18, 52, 45, tzinfo=timezone.utc)

# queue call of 2025-08-14: agent A's three captured deliveries; B (answers) and C constructed
A1, A2, A3 = QUEUE_ELSEWHERE_A
B1, B2 = (other_leg(d, leg=9827132371, person=PERSON_B) for d in (A1, A2))
B_ANSWER = answered(B2, "2025-08-14T18:52:43.300Z")
B_END = ended(B_ANSWER, "2025-08-14T18:55:13.300Z")
C1 = other_leg(A1, leg=9827132372, person=PERSON_C)
C_END = ended(C1, "2025-08-14T18:52:43.360Z", elsewhere=True)


def owner(delivery: dict[str, Any]) -> str:
    """The leg's user: B or C for constructed legs, else agent A (the captured one)."""
    return str(delivery["createdBy"]) if delivery["createdBy"] in (PERSON_B, PERSON_C) else A


def feed(deliveries: list[dict[str, Any]], state: dict | None = None, *, grace: float = 60,
         at: datetime = T0) -> tuple[dict, list]:
    events: list = []
    for i, delivery in enumerate(deliveries):
        snap = call_snapshot(parse_envelope(orjson.dumps(delivery)), "US")
        state, new = session.apply(state, snap, user=owner(delivery), local_number="+14085550100",
                                   received_at=at + timedelta(seconds=i), grace=grace)
        events.extend(new)
    assert state is not None
    return state, events


def test_queue_call_answered_by_b_while_a_and_c_rang_is_one_answered_call() -> None:
    state, events = feed([A1, B1, C1, A2, B2, A3, C_END, B_ANSWER, A2, B_END])
    assert [(e.state, e.ringing) for e in events] == [
        (CallState.RINGING, (A,)), (CallState.RINGING, tuple(sorted([A, PERSON_B]))),
        (CallState.RINGING, tuple(sorted([A, PERSON_B, PERSON_C]))),
        (CallState.RINGING, tuple(sorted([PERSON_B, PERSON_C]))),  # A's leg ended: hide A's card
        (CallState.RINGING, (PERSON_B,)), (CallState.ANSWERED, ()), (CallState.ENDED, ())]
    answer, end = events[-2:]
    assert answer.local_user == PERSON_B and end.local_user == PERSON_B
    assert end.outcome is Outcome.ANSWERED and end.duration == 150
    assert {e.call_id for e in events} == {A1["data"]["callSessionId"]}
    assert {e.remote_number for e in events} == {CAPTURED_CALLER}
    assert {e.local_number for e in events} == {CAPTURED_QUEUE}  # the queue's number: the line called
    assert not any(e.internal for e in events)
    assert session.expire(state, T0 + timedelta(hours=1))[1] == []


def test_answer_arriving_after_every_other_leg_ended_cancels_the_missed_decision() -> None:
    # A's and C's legs end (completedElsewhere) before B's webhook says anything
    state, events = feed([A1, A2, A3, C1, C_END])
    assert state["pending_end"] is not None and CallState.ENDED not in [e.state for e in events]
    state, more = feed([B1, B_ANSWER, B_END], state, at=T0 + timedelta(seconds=30))
    assert [e.state for e in more][-2:] == [CallState.ANSWERED, CallState.ENDED]
    assert more[-1].outcome is Outcome.ANSWERED and more[-1].local_user == PERSON_B
    assert session.expire(state, T0 + timedelta(hours=1))[1] == []


@settings(max_examples=150, deadline=None)
@given(st.permutations([A1, A2, A3, B1, B2, B_ANSWER, B_END, C1, C_END, A2, B_ANSWER]))
def test_any_delivery_order_gives_one_answered_call_for_b(order: list) -> None:
    state, events = feed([copy.deepcopy(d) for d in order])
    state, late = session.expire(state, T0 + timedelta(minutes=5))
    ends = [e for e in events + late if e.state is CallState.ENDED]
    assert len(ends) == 1 and ends[0].outcome is Outcome.ANSWERED and ends[0].local_user == PERSON_B
    assert [e.state for e in events + late][-1] is CallState.ENDED


def test_queue_call_abandoned_is_one_missed_call_after_the_grace_time() -> None:
    a1, a2, a3 = QUEUE_ABANDONED_A
    b1 = other_leg(a1, leg=9606882217, person=PERSON_B)
    c1 = other_leg(a1, leg=9606882218, person=PERSON_C)
    b_end = ended(b1, "2025-08-05T17:44:54.530Z", elsewhere=True)
    c_end = ended(c1, "2025-08-05T17:44:54.540Z", elsewhere=True)
    state, events = feed([a1, b1, a2, c1, a3, b_end, c_end, a3])
    assert CallState.ENDED not in [e.state for e in events]
    assert events[-1].state is CallState.RINGING and events[-1].ringing == ()  # every card can go
    assert session.expire(state, T0 + timedelta(seconds=30))[1] == []
    state, (end,) = session.expire(state, T0 + timedelta(seconds=70))
    assert end.state is CallState.ENDED and end.outcome is Outcome.MISSED and end.local_user is None
    assert end.remote_number == CAPTURED_CALLER and end.local_number == CAPTURED_QUEUE
    assert end.extra["completed_elsewhere"] is True and end.extra["redirections"] == ["callQueue"]
    _, again = feed([a3, b_end], state)
    assert again == []  # late and repeated deliveries after the end change nothing


def test_captured_abandoned_leg_alone_is_a_missed_call_for_its_agent() -> None:
    state, _ = feed(QUEUE_ABANDONED_A)
    _, (end,) = session.expire(state, T0 + timedelta(minutes=2))
    assert end.outcome is Outcome.MISSED and end.local_user == A  # the only agent it rang for


def test_direct_answered_capture_with_its_end() -> None:
    call = [*DIRECT_ANSWERED, ended(DIRECT_ANSWERED[2], "2025-08-05T16:49:21.154Z")]
    _, events = feed([call[1], call[0], call[1], call[2], call[3], call[2]])
    assert [e.state for e in events] == [CallState.RINGING, CallState.ANSWERED, CallState.ENDED]
    assert events[0].local_user == A and events[0].ringing == (A,)
    assert events[-1].outcome is Outcome.ANSWERED and events[-1].duration == 60
    assert events[-1].local_number == "+14085550100"  # the user's own number: no queue involved


def test_direct_unanswered_capture_with_its_end() -> None:
    call = [*DIRECT_UNANSWERED, ended(DIRECT_UNANSWERED[1], "2025-08-05T17:47:52.678Z")]
    state, events = feed(call)
    assert [e.state for e in events] == [CallState.RINGING, CallState.RINGING]
    _, (end,) = session.expire(state, T0 + timedelta(minutes=2))
    assert end.outcome is Outcome.MISSED and end.local_user == A


def test_call_between_colleagues_is_internal() -> None:
    colleague = {"name": "Colleague", "number": "2345", "privacyEnabled": False, "callType": "location"}
    call = [with_remote(d, **colleague) for d in DIRECT_ANSWERED]
    call.append(ended(call[2], "2025-08-05T16:49:21.154Z"))
    _, events = feed(call)
    assert all(e.internal for e in events) and {e.remote_number for e in events} == {"2345"}


def test_hidden_caller_is_anonymous() -> None:
    hidden = {"privacyEnabled": True, "callType": "external"}
    _, events = feed([with_remote(d, **hidden) for d in DIRECT_ANSWERED])
    assert {e.remote_number for e in events} == {ANONYMOUS} and not any(e.internal for e in events)


def test_blind_transfer_ends_with_the_agent_who_had_the_customer_last() -> None:
    # constructed: A answers the captured direct call, then B's leg of the same session rings
    # (the customer is B's remote party), A's leg ends, B answers and ends the call
    a1, a2, a3 = DIRECT_ANSWERED
    b1 = other_leg(a1, leg=9605420295, person=PERSON_B)
    b_answer = answered(b1, "2025-08-05T16:48:40.000Z")
    _, events = feed([a1, a2, a3, b1, ended(a3, "2025-08-05T16:48:35.000Z"), b_answer,
                      ended(b_answer, "2025-08-05T16:50:21.154Z")])
    assert [(e.state, e.local_user) for e in events] == [
        (CallState.RINGING, A), (CallState.ANSWERED, A), (CallState.RINGING, A),
        (CallState.ANSWERED, PERSON_B), (CallState.ENDED, PERSON_B)]
    assert events[2].ringing == (PERSON_B,)  # the transfer target's card
    end = events[-1]
    assert end.outcome is Outcome.ANSWERED and end.remote_number == CAPTURED_CALLER
    assert end.duration == 120  # from the first answer (A, 16:48:21) to the end of B's leg
