"""Whole Webex calls into Bitrix24 through the real endpoints, on a fresh install.

Webex deliveries go to ``/hooks/webex/{connection}`` signed as Webex signs them (the fake
Webex on 127.0.0.1 holds the users' webhooks); Bitrix24 is mocked at the HTTP boundary
(:class:`bitrix24_fakes.FakePortal`). The deliveries are the pseudonymised captures
(``plugins/webex/tests/captures``) where one exists, and deliveries constructed from them
(``webex_captures``, labelled there) for the other agents' legs, answers and ends. Nobody set
anything: no tenant settings, no user map; the app was installed by user 1.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from bitrix24_fakes import (  # noqa: F401  (fixture mock)
    ENV,
    INSTALLER,
    MEMBER,
    FakePortal,
    b24_user,
    mock,
    found,
    install,
    wait_until,
)
from gateway_webex.source import PENDING_END, close_missed_calls
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
from webex_fixtures import ENV as WEBEX_ENV
from webex_fixtures import ORG, PERSON, RECORDING_ID, Webex, fake_webex, login  # noqa: F401  (fixture)

from gateway import utcnow

A, B, C = 11, 12, 13  # the agents' Bitrix24 users, matched by extension
USERS = [b24_user(A, "7209", "agent@example.com"), b24_user(B, "102", "b@example.com"),
         b24_user(C, "103", "c@example.com")]


@pytest.fixture
async def team(gateway_harness: Any, fake_webex: Any, mock: Any) -> tuple[Webex, FakePortal]:  # noqa: F811
    """The app installed, a Webex connection, agents A (the fixtures' person), B and C logged in."""
    fake, api = fake_webex
    h = await gateway_harness(env={**ENV, **WEBEX_ENV, "GATEWAY_WEBEX_API_URL": api})
    portal = await install(h, mock, USERS)
    conn = await h.connect(MEMBER, "webex", {"org_id": ORG})
    assert (await login(h, conn["id"])).status == 200
    w = Webex(h=h, fake=fake, api=api, connection_id=conn["id"])
    await w.login_as(PERSON_B, email="b@example.com", name="Agent B", number="+14085550102", extension="102")
    await w.login_as(PERSON_C, email="c@example.com", name="Agent C", number="+14085550103", extension="103")
    return w, portal


async def replay(w: Webex, steps: list[tuple[dict[str, Any], str]]) -> None:
    for delivery, person in steps:
        resp = await w.replay(delivery, person)
        assert resp.status == 200, await resp.text()
    await settle(w)


async def settle(w: Webex) -> None:
    await wait_until(lambda: w.h.gw.dispatcher.depth == 0)


async def after_grace(w: Webex) -> None:
    """The periodic task 61 s from now, once the waiting call's state (written without events,
    so without waiting for its commit) is found."""
    ctx = w.h.context("webex")
    conn = await w.h.gw.tenancy.connection(w.connection_id)
    await found(lambda: ctx.calls.find(conn, PENDING_END), timeout=1.0)
    await close_missed_calls(ctx, now=utcnow() + timedelta(seconds=61))
    await settle(w)


# the queue call of the captures: A's legs captured, B's (answers) and C's constructed
A1, A2, A3 = QUEUE_ELSEWHERE_A
B1 = other_leg(A1, leg=9827132371, person=PERSON_B)
B_ANSWER = answered(B1, "2025-08-14T18:52:43.300Z")
B_END = ended(B_ANSWER, "2025-08-14T18:55:13.300Z")
C1 = other_leg(A1, leg=9827132372, person=PERSON_C)
C_END = ended(C1, "2025-08-14T18:52:43.360Z", elsewhere=True)


async def test_queue_call_answered_by_one_agent_is_one_call_finished_for_that_agent(team: Any) -> None:
    w, portal = team
    # as webhooks of three users deliver it: interleaved, A's end before B's answer, repeats
    await replay(w, [(A1, PERSON), (B1, PERSON_B), (C1, PERSON_C), (A2, PERSON), (A3, PERSON),
                     (C_END, PERSON_C), (A3, PERSON), (B_ANSWER, PERSON_B), (B_END, PERSON_B)])
    (reg,) = portal.called("telephony.externalCall.register")
    assert reg["USER_ID"] == A and reg["SHOW"] == 1  # A's phone rang first
    assert reg["PHONE_NUMBER"] == CAPTURED_CALLER and reg["TYPE"] == 2 and reg["CRM_CREATE"] == 0
    assert reg["LINE_NUMBER"] == CAPTURED_QUEUE
    assert portal.called("telephony.externalLine.add")[0]["NUMBER"] == CAPTURED_QUEUE
    assert portal.methods().index("telephony.externalLine.add") < portal.methods().index(
        "telephony.externalCall.register")
    shows = [p["USER_ID"] for p in portal.called("telephony.externalCall.show")]
    hides = [p["USER_ID"] for p in portal.called("telephony.externalCall.hide")]
    assert shows == [[B], [C]]  # a card for every phone that rang
    assert hides == [[A], [C]]  # hidden as each leg stopped ringing, before the answer
    (fin,) = portal.called("telephony.externalCall.finish")
    assert str(fin["USER_ID"]) == str(B) and str(fin["STATUS_CODE"]) == "200" and str(fin["DURATION"]) == "150"
    assert portal.methods()[-1] == "telephony.externalCall.finish"
    await after_grace(w)
    assert len(portal.called("telephony.externalCall.finish")) == 1  # no missed call for A or C


async def test_abandoned_queue_call_is_exactly_one_missed_call(team: Any) -> None:
    w, portal = team
    a1, a2, a3 = QUEUE_ABANDONED_A
    b1 = other_leg(a1, leg=9606882217, person=PERSON_B)
    c1 = other_leg(a1, leg=9606882218, person=PERSON_C)
    await replay(w, [(a1, PERSON), (b1, PERSON_B), (a2, PERSON), (c1, PERSON_C), (a3, PERSON),
                     (ended(b1, "2025-08-05T17:44:54.530Z", elsewhere=True), PERSON_B),
                     (ended(c1, "2025-08-05T17:44:54.540Z", elsewhere=True), PERSON_C), (a3, PERSON)])
    assert portal.called("telephony.externalCall.finish") == []  # a colleague's answer may still come
    await after_grace(w)
    (fin,) = portal.called("telephony.externalCall.finish")
    # it rang for three agents: the missed call goes to the responsible user (the installer)
    assert str(fin["USER_ID"]) == str(INSTALLER) and str(fin["STATUS_CODE"]) == "304"
    assert sorted(u for p in portal.called("telephony.externalCall.hide") for u in map(int, p["USER_ID"])) == [A, B, C]
    assert len(portal.called("telephony.externalCall.register")) == 1
    await after_grace(w)
    assert len(portal.called("telephony.externalCall.finish")) == 1


async def test_direct_call_missed_is_finished_for_the_user_it_rang(team: Any) -> None:
    w, portal = team
    call = [*DIRECT_UNANSWERED, ended(DIRECT_UNANSWERED[1], "2025-08-05T17:47:52.678Z")]
    await replay(w, [(d, PERSON) for d in (call[0], call[1], call[0], call[2])])
    (reg,) = portal.called("telephony.externalCall.register")
    assert reg["USER_ID"] == A and reg["SHOW"] == 1 and reg["LINE_NUMBER"] == "+14085267209"  # A's own number
    await after_grace(w)
    hides = portal.called("telephony.externalCall.hide")
    assert [p["USER_ID"] for p in hides] == [[A]]  # the card went when the phone stopped ringing
    (fin,) = portal.called("telephony.externalCall.finish")
    assert str(fin["USER_ID"]) == str(A) and str(fin["STATUS_CODE"]) == "304"


async def test_direct_call_answered_out_of_order(team: Any) -> None:
    w, portal = team
    a1, a2, a3 = DIRECT_ANSWERED
    await replay(w, [(a3, PERSON), (a1, PERSON), (a2, PERSON), (ended(a3, "2025-08-05T16:49:21.154Z"), PERSON)])
    (reg,) = portal.called("telephony.externalCall.register")
    assert reg["USER_ID"] == A
    (fin,) = portal.called("telephony.externalCall.finish")
    assert str(fin["USER_ID"]) == str(A) and str(fin["STATUS_CODE"]) == "200" and str(fin["DURATION"]) == "60"


async def test_calls_between_colleagues_are_not_written_unless_the_tenant_asks(team: Any) -> None:
    w, portal = team
    colleague = {"name": "Agent B", "number": "102", "privacyEnabled": False, "callType": "location"}
    call = [with_remote(d, **colleague) for d in DIRECT_ANSWERED]
    await replay(w, [(d, PERSON) for d in (*call, ended(call[2], "2025-08-05T16:49:21.154Z"))])
    assert portal.methods() == []
    await w.h.admin("PUT", f"/plugins/bitrix24/tenants/{MEMBER}/settings",
                    {"log_internal": True, "crm_create": True}, expect=200)
    second = [other_leg(d, leg=1111111111, person=PERSON) for d in call]
    for d in second:
        d["data"]["callSessionId"] = "c2Vjb25kLWludGVybmFsLWNhbGw"
    await replay(w, [(d, PERSON) for d in (*second, ended(second[2], "2025-08-05T16:49:21.154Z"))])
    (reg,) = portal.called("telephony.externalCall.register")
    assert reg["CRM_CREATE"] == 0 and reg["PHONE_NUMBER"] == "102"  # never a lead for a colleague


async def test_anonymous_caller_is_written_with_the_placeholder_and_no_crm_entities(team: Any) -> None:
    w, portal = team
    await w.h.admin("PUT", f"/plugins/bitrix24/tenants/{MEMBER}/settings", {"crm_create": True}, expect=200)
    hidden = {"privacyEnabled": True, "callType": "external"}
    call = [with_remote(d, **hidden) for d in DIRECT_UNANSWERED]
    await replay(w, [(d, PERSON) for d in (*call, ended(call[1], "2025-08-05T17:47:52.678Z"))])
    await after_grace(w)
    (reg,) = portal.called("telephony.externalCall.register")
    assert reg["PHONE_NUMBER"] == "0000000000" and reg["CRM_CREATE"] == 0
    (fin,) = portal.called("telephony.externalCall.finish")
    assert str(fin["STATUS_CODE"]) == "304"


async def test_blind_transfer_ends_for_the_customer_with_the_last_agent(team: Any) -> None:
    w, portal = team
    a1, a2, a3 = DIRECT_ANSWERED
    b1 = other_leg(a1, leg=9605420295, person=PERSON_B)
    b_answer = answered(b1, "2025-08-05T16:48:40.000Z")
    await replay(w, [(a1, PERSON), (a2, PERSON), (a3, PERSON), (b1, PERSON_B),
                     (ended(a3, "2025-08-05T16:48:35.000Z"), PERSON), (b_answer, PERSON_B),
                     (ended(b_answer, "2025-08-05T16:50:21.154Z"), PERSON_B)])
    (reg,) = portal.called("telephony.externalCall.register")
    assert reg["PHONE_NUMBER"] == CAPTURED_CALLER and reg["USER_ID"] == A
    assert [p["USER_ID"] for p in portal.called("telephony.externalCall.show")] == [[B]]
    assert [p["USER_ID"] for p in portal.called("telephony.externalCall.hide")] == [[A]]  # B took over
    (fin,) = portal.called("telephony.externalCall.finish")
    assert str(fin["USER_ID"]) == str(B) and str(fin["STATUS_CODE"]) == "200" and str(fin["DURATION"]) == "120"


async def test_recording_is_attached_with_a_file_name_from_its_id(team: Any) -> None:
    w, portal = team
    a1, a2, a3 = DIRECT_ANSWERED
    await replay(w, [(d, PERSON) for d in (a1, a2, a3, ended(a3, "2025-08-05T16:49:21.154Z"))])
    session = a1["data"]["callSessionId"]
    from gateway_webex.ids import session_key
    resp = await w.deliver("created", {"id": RECORDING_ID, "status": "available", "format": "MP3",
                                       "serviceData": {"callSessionId": session_key(session)}},
                           resource="convergedRecordings")
    assert resp.status == 200
    await settle(w)
    (att,) = portal.called("telephony.externalCall.attachRecord")
    assert att["FILENAME"] == f"webex-{RECORDING_ID}.mp3"
    assert CAPTURED_CALLER not in att["FILENAME"] and "Jane" not in att["FILENAME"]


async def test_logs_of_whole_calls_carry_no_personal_data(team: Any, caplog: Any) -> None:
    import logging
    caplog.set_level(logging.DEBUG)
    w, portal = team
    await replay(w, [(A1, PERSON), (B1, PERSON_B), (A3, PERSON), (B_ANSWER, PERSON_B), (B_END, PERSON_B)])
    hidden = {"privacyEnabled": True, "callType": "external"}
    await replay(w, [(with_remote(d, **hidden), PERSON) for d in DIRECT_UNANSWERED])
    await after_grace(w)
    assert portal.called("telephony.externalCall.finish")
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for value in (CAPTURED_CALLER, CAPTURED_CALLER[1:], "CALLER EXAMPLE", "agent@example.com", "b@example.com",
                  "Agent B", PERSON, PERSON_B):
        assert value not in text
