"""Whole Placetel calls into Bitrix24 through the real endpoints, on a fresh install.

Notify bodies are posted to ``/hooks/placetel/{connection}`` signed as Placetel signs them; the
Placetel Web API is a fake on 127.0.0.1 and Bitrix24 is mocked at the HTTP boundary
(:class:`bitrix24_fakes.FakePortal`). The bodies are Placetel's own examples
(``plugins/placetel/tests/captures``, pseudonymised) where one exists; the others are
constructed in the same shape (field set and order of the current README) and say so. Nobody
set anything: no tenant settings, no user map; the app was installed by user 1.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from bitrix24_fakes import (  # noqa: F401  (fixture mock)
    ENV,
    FORM,
    INSTALLER,
    MEMBER,
    OAUTH_RE,
    FakePortal,
    b24_user,
    mock,
    click_body,
    found,
    install,
    oauth_answer,
    wait_until,
)
from gateway_bitrix24 import keepalive, lines
from gateway_bitrix24.records import get_tokens
from gateway_placetel import background
from gateway_placetel.plugin import SOURCE
from gateway_placetel.settings import HELD, OPEN
from placetel_testdata import API_KEY, SECRET, WEB_USERS, env, fake_api, headers  # noqa: F401  (fixture)

from gateway import utcnow

CAPTURES = Path(__file__).parents[2] / "placetel" / "tests" / "captures"
INCOMING, ACCEPTED, HUNGUP = ((CAPTURES / f"{n}.txt").read_bytes() for n in (
    "examples_readme_01_incoming_call", "examples_readme_02_call_accepted", "examples_readme_03_hungup_accepted"))
CALL = "f4591ba315d81671d7a06c2a3b4f963dafd119de39cb26edd8a6476676b2f447"
CALLER = "+493023125017"       # pseudonymised caller of the captures
COMPANY = "02214710999"        # the company number the captures call
COMPANY_E164 = "+492214710999"
SECOND_LINE = "+493023125999"
PEER = "7777abcdefg@fpbx.example.test"
COLLEAGUE = "7777xyz@fpbx.example.test"
AGENT, COLLEAGUE_B24 = 21, 22
SIP_USERS = [
    {"id": 4711, "sipuid": PEER, "name": "Anna", "did": 23, "callerid": COMPANY, "webuser_id": 815},
    {"id": 4712, "sipuid": COLLEAGUE, "name": "Ben", "did": 24, "callerid": COMPANY, "webuser_id": None},
    # Anna's second phone, dialling out with another caller id (a second line of the company)
    {"id": 4713, "sipuid": "7777second@fpbx.example.test", "name": "Anna 2", "did": 25, "callerid": SECOND_LINE,
     "webuser_id": 815},
]
USERS = [b24_user(AGENT, "23", "anna.agent@example.com"), b24_user(COLLEAGUE_B24, "24", "ben@example.com")]


def constructed(event: str, **fields: str) -> bytes:
    """A Notify body in the current README's shape (``direction`` last, no trailing newline)."""
    body = {"event": event, "from": "03023125017", "to": COMPANY, "call_id": CALL, **fields}
    return "&".join(f"{k}={v}" for k, v in body.items()).replace("@", "%40").encode()


@pytest.fixture
async def office(gateway_harness: Any, fake_api: Any, mock: Any) -> tuple[Any, FakePortal]:  # noqa: F811
    fake_api.on("GET", "/me", json={"id": 1, "name": "Example GmbH"})
    fake_api.on("PUT", "/subscriptions", json={"id": "sub-1"})
    fake_api.on("GET", "/sip_users", json=SIP_USERS)
    fake_api.on("GET", "/users", json=WEB_USERS)
    fake_api.on("POST", "/calls", body="")
    h = await gateway_harness(env={**ENV, **env(fake_api)})
    portal = await install(h, mock, USERS)
    h.conn = await h.connect(MEMBER, "placetel", {"api_key": API_KEY, "secret": SECRET})
    h.api = fake_api
    return h, portal


async def notify(h: Any, *bodies: bytes) -> None:
    for body in bodies:
        resp = await h.post_hook("placetel", h.conn["id"], body, headers(body))
        assert resp.status == 200, await resp.text()
    await wait_until(lambda: h.gw.dispatcher.depth == 0)


async def round_later(h: Any, seconds: float) -> None:
    """The background round as it runs ``seconds`` from now (held ends, ring time-outs), once
    the call's memory (written without events, so without waiting for its commit) is found."""
    conn = await h.gw.tenancy.connection(h.conn["id"])
    await found(lambda: h.context("placetel").calls.find(conn, HELD), lambda: h.context("placetel").calls.find(conn, OPEN))
    await background.close_waiting_calls(SOURCE, h.context("placetel"), conn, now=utcnow() + timedelta(seconds=seconds))
    await wait_until(lambda: h.gw.dispatcher.depth == 0)


async def test_ring_group_call_answered_is_registered_at_once_and_finished_for_the_agent(office: Any) -> None:
    h, portal = office
    await notify(h, INCOMING)
    (reg,) = portal.called("telephony.externalCall.register")
    # nobody is known to ring (Placetel names no phone): the installer, without a card
    assert reg["USER_ID"] == INSTALLER and reg["SHOW"] == 0 and reg["TYPE"] == 2
    assert reg["PHONE_NUMBER"] == CALLER and reg["LINE_NUMBER"] == COMPANY_E164 and reg["CRM_CREATE"] == 0
    await notify(h, ACCEPTED, ACCEPTED, HUNGUP)
    assert [p["USER_ID"] for p in portal.called("telephony.externalCall.show")] == [[AGENT]]
    (fin,) = portal.called("telephony.externalCall.finish")
    assert str(fin["USER_ID"]) == str(AGENT) and str(fin["STATUS_CODE"]) == "200"
    assert portal.called("telephony.externalCall.hide") == []  # finish closes the agent's own card


async def test_hang_up_arriving_before_the_answer_still_names_the_agent(office: Any) -> None:
    h, portal = office
    await notify(h, INCOMING, HUNGUP)
    assert portal.called("telephony.externalCall.finish") == []  # waits for the CallAccepted
    await notify(h, ACCEPTED)
    (fin,) = portal.called("telephony.externalCall.finish")
    assert str(fin["USER_ID"]) == str(AGENT) and str(fin["STATUS_CODE"]) == "200"
    await round_later(h, 120)
    assert len(portal.called("telephony.externalCall.finish")) == 1


async def test_answered_hang_up_whose_answer_never_comes_is_written_for_the_installer(office: Any) -> None:
    h, portal = office
    await notify(h, HUNGUP)
    await round_later(h, 30)
    assert portal.called("telephony.externalCall.finish") == []
    await round_later(h, 61)
    (fin,) = portal.called("telephony.externalCall.finish")
    assert str(fin["USER_ID"]) == str(INSTALLER) and str(fin["STATUS_CODE"]) == "200"


async def test_missed_ring_group_call_is_one_missed_call_for_the_installer(office: Any) -> None:
    h, portal = office
    await notify(h, INCOMING, constructed("HungUp", type="missed", duration="0", direction="in"))
    (fin,) = portal.called("telephony.externalCall.finish")
    assert str(fin["USER_ID"]) == str(INSTALLER) and str(fin["STATUS_CODE"]) == "304"


async def test_contact_center_call_that_only_rang_is_closed_as_missed(office: Any) -> None:
    h, portal = office
    await notify(h, INCOMING)
    await round_later(h, 3601)
    (fin,) = portal.called("telephony.externalCall.finish")
    assert str(fin["STATUS_CODE"]) == "304" and str(fin["USER_ID"]) == str(INSTALLER)


async def test_transfer_ends_with_the_colleague_for_the_customer(office: Any) -> None:
    h, portal = office
    to_colleague = constructed("CallAccepted", peer=COLLEAGUE, direction="in")  # constructed
    await notify(h, INCOMING, ACCEPTED, to_colleague, constructed("HungUp", type="accepted", duration="95",
                                                                  direction="in"))
    assert [p["USER_ID"] for p in portal.called("telephony.externalCall.show")] == [[AGENT], [COLLEAGUE_B24]]
    assert [p["USER_ID"] for p in portal.called("telephony.externalCall.hide")] == [[AGENT]]
    (reg,) = portal.called("telephony.externalCall.register")
    assert reg["PHONE_NUMBER"] == CALLER  # the customer's number, never the colleague's extension
    (fin,) = portal.called("telephony.externalCall.finish")
    assert str(fin["USER_ID"]) == str(COLLEAGUE_B24) and str(fin["DURATION"]) == "95"


async def test_call_to_a_colleagues_extension_is_not_written_unless_the_tenant_asks(office: Any) -> None:
    h, portal = office
    consult = constructed("OutgoingCall", **{"from": COMPANY, "to": "24", "peer": PEER, "direction": "out"})
    await notify(h, consult, constructed("HungUp", **{"from": COMPANY, "to": "24", "type": "accepted",
                                                      "duration": "20", "direction": "out"}))
    assert portal.methods() == []
    await h.admin("PUT", f"/plugins/bitrix24/tenants/{MEMBER}/settings",
                  {"log_internal": True, "crm_create": True}, expect=200)
    second = consult.replace(CALL.encode(), b"a" * 64)
    await notify(h, second)
    (reg,) = portal.called("telephony.externalCall.register")
    assert reg["CRM_CREATE"] == 0 and reg["TYPE"] == 1 and reg["USER_ID"] == AGENT


async def test_short_external_numbers_are_customers(office: Any) -> None:
    h, portal = office
    await h.admin("PUT", f"/plugins/bitrix24/tenants/{MEMBER}/settings", {"crm_create": True}, expect=200)
    await notify(h, constructed("OutgoingCall", **{"from": COMPANY, "to": "116117", "peer": PEER, "direction": "out"}))
    (reg,) = portal.called("telephony.externalCall.register")
    assert reg["PHONE_NUMBER"] == "116117" and reg["CRM_CREATE"] == 1


async def test_anonymous_caller_is_written_with_the_placeholder(office: Any) -> None:
    h, portal = office
    await h.admin("PUT", f"/plugins/bitrix24/tenants/{MEMBER}/settings", {"crm_create": True}, expect=200)
    await notify(h, constructed("IncomingCall", **{"from": "anonymous", "direction": "in"}),
                 constructed("HungUp", **{"from": "anonymous", "type": "missed", "duration": "0", "direction": "in"}))
    (reg,) = portal.called("telephony.externalCall.register")
    assert reg["PHONE_NUMBER"] == "0000000000" and reg["CRM_CREATE"] == 0
    (fin,) = portal.called("telephony.externalCall.finish")
    assert str(fin["STATUS_CODE"]) == "304"


async def test_outbound_call_stays_outbound_when_a_call_accepted_without_direction_follows(office: Any) -> None:
    h, portal = office
    no_direction = (CAPTURES / "coldfusion_comment_call_accepted.txt").read_bytes()
    await notify(h, constructed("OutgoingCall", **{"from": COMPANY, "to": "03023125017", "peer": PEER,
                                                   "direction": "out"}), no_direction,
                 constructed("HungUp", **{"from": COMPANY, "to": "03023125017", "type": "accepted",
                                          "duration": "33", "direction": "out"}))
    (reg,) = portal.called("telephony.externalCall.register")
    assert reg["TYPE"] == 1 and reg["USER_ID"] == AGENT and reg["SHOW"] == 1
    (fin,) = portal.called("telephony.externalCall.finish")
    assert str(fin["USER_ID"]) == str(AGENT) and str(fin["STATUS_CODE"]) == "200"


async def test_lines_are_the_tenants_numbers_and_click_to_call_dials_on_the_chosen_one(office: Any) -> None:
    h, portal = office
    assert await lines.sync_lines(h.context("bitrix24")) == 2
    assert sorted(p["NUMBER"] for p in portal.called("telephony.externalLine.add")) == [COMPANY_E164, SECOND_LINE]
    assert await lines.sync_lines(h.context("bitrix24")) == 0  # known lines are not added again
    # Anna clicks a number in the CRM and chooses the second line (Bitrix24 names it by its id)
    second_id = str(next(i for i, p in enumerate(portal.called("telephony.externalLine.add"), start=101)
                         if p["NUMBER"] == SECOND_LINE))
    body = click_body("externalCall.c2c.1", number="+4930231250", user_id=str(AGENT)).replace(
        b"data%5BLINE_NUMBER%5D=7", b"data%5BLINE_NUMBER%5D=" + second_id.encode())
    resp = await h.client.post("/hooks/bitrix24/events", data=body, headers=FORM)
    assert resp.status == 200, await resp.text()
    await wait_until(lambda: len(h.api.requests("POST", "/calls")) == 1)
    (dial,) = h.api.requests("POST", "/calls")
    assert dial.json == {"sipuid": "7777second@fpbx.example.test", "target": "+4930231250"}


async def test_quiet_portal_tokens_are_refreshed_weekly_and_a_refusal_pauses_it(office: Any, mock: Any) -> None:
    h, portal = office
    ctx = h.context("bitrix24")
    before = await get_tokens(ctx.storage(MEMBER))
    assert before is not None and before.refreshed_at > 0
    assert await keepalive.refresh_idle_tokens(ctx) == 0  # fresh from the install
    mock.get(OAUTH_RE, payload=oauth_answer(access="a" * 32, refresh="r" * 32))
    assert await keepalive.refresh_idle_tokens(ctx, now=before.refreshed_at + keepalive.MAX_AGE + 1) == 1
    after = await get_tokens(ctx.storage(MEMBER))
    assert after is not None and after.refresh_token == "r" * 32 and after.refreshed_at >= before.refreshed_at
    assert await keepalive.refresh_idle_tokens(ctx, now=after.refreshed_at + keepalive.MAX_AGE - 60) == 0
    mock.get(OAUTH_RE, status=400, payload={"error": "invalid_grant", "error_description": "expired"})
    assert await keepalive.refresh_idle_tokens(ctx, now=after.refreshed_at + keepalive.MAX_AGE + 1) == 0
    tenant = await h.admin("GET", f"/tenants/{MEMBER}", expect=200)
    assert tenant["status"] == "paused"
