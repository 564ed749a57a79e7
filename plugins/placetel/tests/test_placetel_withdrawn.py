"""Issue 17, item 1, as the audit saw it: the CRM is down, three signed Placetel events of one
caller wait in the queue, then the person is erased (or restricted, the tenant uninstalled, the
events purged). When the CRM comes back it must receive nothing about that person.

The deliveries of one call form a lane; while the first one fails, the other two wait in memory
with their decrypted events. Only the dispatcher's last look at the queue row before calling the
sink (``queue.is_pending``) keeps them from going out, so each test here fails without it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import CallState, RateLimit
from placetel_testdata import (  # noqa: F401 (fixtures fake_api, pt)
    CALLER_E164, MOBILE, MOBILE_E164, accepted, account, env, fake_api, hungup, incoming, post_all, pt,
)

CRM_DOWN = 10**6  # the recording CRM refuses this many deliveries: down until told otherwise
OTHER_CALL = "0" * 63 + "1"


async def until(predicate: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def queue_three_events_while_the_crm_is_down(h: Any) -> None:
    """The audit's set-up: three signed events of one call, every attempt failing."""
    h.recorder.fail_times = CRM_DOWN
    await post_all(h, incoming(), accepted(), hungup("accepted", duration="42"))
    await until(lambda: h.recorder.fail_times < CRM_DOWN)  # the CRM refused the first one
    assert h.gw.dispatcher.depth == 3


async def crm_comes_back(h: Any, *, control_tenant: bool = True) -> None:
    """The CRM answers again; wait until the queue has nothing left in memory. With
    ``control_tenant``, another caller's call is delivered meanwhile: the CRM really works."""
    h.recorder.fail_times = 0
    if control_tenant:
        await post_all(h, incoming(call_id=OTHER_CALL, caller=MOBILE))
        await h.recorder.wait_for(1)
    await until(lambda: h.gw.dispatcher.depth == 0)
    await asyncio.sleep(0.3)  # longer than the retry cap: a leaked attempt would have happened


def numbers_the_crm_saw(h: Any) -> set[str | None]:
    return {e.remote_number for e in h.recorder.events}


async def test_erasure_stops_deliveries_already_queued(pt: Any) -> None:
    await queue_three_events_while_the_crm_is_down(pt)
    done = await pt.admin("POST", "/tenants/acme/subjects/erase", {"phone": CALLER_E164}, expect=200)
    assert (done["erased"]["events"], done["erased"]["deliveries"]) == (3, 3)
    await crm_comes_back(pt)
    assert numbers_the_crm_saw(pt) == {MOBILE_E164}


@pytest.mark.parametrize("kind", ["restrict", "object"])
async def test_restriction_stops_deliveries_already_queued(pt: Any, kind: str) -> None:
    await queue_three_events_while_the_crm_is_down(pt)
    await pt.admin("POST", f"/tenants/acme/subjects/{kind}", {"phone": CALLER_E164}, expect=200)
    await crm_comes_back(pt)
    assert numbers_the_crm_saw(pt) == {MOBILE_E164}
    # lifting the restriction does not bring the withheld events back either
    await pt.admin("POST", "/tenants/acme/subjects/unrestrict", {"phone": CALLER_E164}, expect=200)
    await asyncio.sleep(0.3)
    assert numbers_the_crm_saw(pt) == {MOBILE_E164}


async def test_purge_stops_deliveries_already_queued(gateway_harness: Any, fake_api: Any) -> None:  # noqa: F811
    account(fake_api)
    h = await gateway_harness(env={**env(fake_api), "GATEWAY_RETENTION_DAYS": str(1 / 86400)})  # one second
    await h.create_tenant("acme")
    h.conn = await h.connect("acme", "placetel", {"api_key": "pt-api-key-0123456789abcdef",
                                                  "secret": "n0tify-s3cret-xyz"})
    await queue_three_events_while_the_crm_is_down(h)
    await asyncio.sleep(1.1)
    purged = await h.admin("POST", "/retention/purge", expect=200)
    assert purged["deleted"]["events"] == 3 and purged["deleted"]["deliveries"] == 3
    await crm_comes_back(h)
    assert numbers_the_crm_saw(h) == {MOBILE_E164}


async def test_uninstall_stops_a_delivery_waiting_for_the_crms_rate_limit(pt: Any) -> None:
    # The CRM is down and allows one request per two seconds: after its first refusal the
    # retry has read its binding and event and waits for a token when the tenant goes.
    pt.recorder.rate_limit = RateLimit(rate=0.5, burst=1)
    await queue_three_events_while_the_crm_is_down(pt)
    await asyncio.sleep(0.5)  # past the retry delay (at most 0.2 s): waiting for the token now
    await pt.admin("DELETE", "/tenants/acme", expect=200)
    await crm_comes_back(pt, control_tenant=False)
    await asyncio.sleep(2.0)  # the token is there: an attempt that ignored the uninstall would go out now
    assert pt.recorder.events == []
    assert pt.gw.dispatcher.depth == 0


async def test_the_crm_gets_the_calls_when_nothing_is_withdrawn(pt: Any) -> None:
    """The control: the same set-up without an erasure delivers all three, in order."""
    await queue_three_events_while_the_crm_is_down(pt)
    await crm_comes_back(pt, control_tenant=False)
    assert [e.state for e in pt.recorder.events] == [CallState.RINGING, CallState.ANSWERED, CallState.ENDED]
    assert numbers_the_crm_saw(pt) == {CALLER_E164}
