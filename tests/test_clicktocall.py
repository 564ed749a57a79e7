"""Click-to-call in the core: a CRM starts a call, and recognises the call's events later."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import pytest

import demo_source
from gateway import (
    BadRequest,
    CallEvent,
    CallState,
    Connection,
    Direction,
    OriginateResult,
    PluginContext,
    Source,
    TelephonyUser,
)
from gateway import clicktocall as core_clicktocall
from gateway.testing import Harness, SourcePlugin

NUMBER = "+4922112345678"


class Dialer(Source):
    """A telephone system whose click-to-dial answers with no call id (as Placetel's)."""

    name = "dialer"

    async def originate(self, ctx: PluginContext, connection: Connection, user: TelephonyUser,
                        number: str) -> OriginateResult:
        return OriginateResult()


def event(conn: Connection, call_id: str, *, user: str = "u1", number: str = NUMBER,
          direction: Direction = Direction.OUTBOUND) -> CallEvent:
    return CallEvent(event_id=f"{call_id}-r", call_id=call_id, direction=direction, state=CallState.RINGING,
                     occurred_at=datetime.now(timezone.utc), remote_number=number, local_user=user,
                     source=conn.plugin, connection_id=conn.id, tenant=conn.tenant)


async def _with_user(h: Harness, plugin: str, settings: dict[str, Any]) -> Connection:
    conn = await h.gw.tenancy.connect("acme", plugin, settings)
    await h.gw.directory.put(conn, TelephonyUser("u1", "Ann", "ann@example.com", "23"))
    return conn


async def test_an_exact_call_id_links_the_events_to_the_crm_call(demo: Harness) -> None:
    demo_source.SOURCE.originated.clear()
    conn = await _with_user(demo, "demo", {"secret": "s3cret-s3cret"})
    ctx = demo.context("recorder")
    result = await ctx.clicktocall.start("acme", "CRM-1", number="0221 12345678", email="ann@example.com")
    assert result.call_id == "demo-call"
    assert demo_source.SOURCE.originated == [("u1", NUMBER, None)]
    assert await ctx.clicktocall.find(event(conn, "demo-call", direction=Direction.INBOUND)) == "CRM-1"
    assert await demo.context("demo").clicktocall.find(event(conn, "demo-call")) is None  # another CRM's
    assert await ctx.clicktocall.find(event(conn, "unrelated")) is None


async def test_without_a_call_id_the_first_outbound_call_to_the_number_is_taken(gateway_harness: Any) -> None:
    h = await gateway_harness(plugins=[("dialer", SourcePlugin(Dialer()))])
    await h.create_tenant("acme")
    conn = await _with_user(h, "dialer", {})
    ctx = h.context("recorder")
    await ctx.clicktocall.start("acme", "CRM-2", number=NUMBER, extension="23")
    assert await ctx.clicktocall.find(event(conn, "inbound", direction=Direction.INBOUND)) is None
    assert await ctx.clicktocall.find(event(conn, "other-number", number="+4930123456")) is None
    assert await ctx.clicktocall.find(event(conn, "other-user", user="u2")) is None
    assert await ctx.clicktocall.find(event(conn, "placed")) == "CRM-2"
    # later events of the same call are recognised exactly; a second call is not taken
    assert await ctx.clicktocall.find(event(conn, "placed")) == "CRM-2"
    assert await ctx.clicktocall.find(event(conn, "second")) is None


async def test_a_call_after_the_window_is_not_taken(gateway_harness: Any, monkeypatch: Any) -> None:
    h = await gateway_harness(plugins=[("dialer", SourcePlugin(Dialer()))])
    await h.create_tenant("acme")
    conn = await _with_user(h, "dialer", {})
    ctx = h.context("recorder")
    await ctx.clicktocall.start("acme", "CRM-3", number=NUMBER, email="ann@example.com")
    later = time.time() + core_clicktocall.ADOPT_WINDOW + 5
    monkeypatch.setattr(core_clicktocall.time, "time", lambda: later)
    assert await ctx.clicktocall.find(event(conn, "late")) is None


async def test_no_mapped_telephony_user_is_a_clear_refusal(demo: Harness) -> None:
    with pytest.raises(BadRequest, match="no telephony user is mapped"):
        await demo.context("recorder").clicktocall.start("acme", "CRM-4", number=NUMBER, email="x@example.com")


async def test_the_chosen_line_picks_the_telephony_user_that_owns_it(gateway_harness: Any) -> None:
    h = await gateway_harness(plugins=[("dialer", SourcePlugin(Dialer()))])
    await h.create_tenant("acme")
    conn = await h.gw.tenancy.connect("acme", "dialer", {})
    # one person, two phones with different caller ids (Placetel: two SIP users of one web user)
    await h.gw.directory.put(conn, TelephonyUser("sip-a", "Ann", "ann@example.com", "23", numbers=("+4930231250",)))
    await h.gw.directory.put(conn, TelephonyUser("sip-b", "Ann", "ann@example.com", "24", numbers=("+4940669690",)))
    ctx = h.context("recorder")
    await ctx.clicktocall.start("acme", "CRM-5", number=NUMBER, email="ann@example.com", line="040 669690")
    assert await ctx.clicktocall.find(event(conn, "via-b", user="sip-b")) == "CRM-5"
    await ctx.clicktocall.start("acme", "CRM-6", number=NUMBER, email="ann@example.com", line="+4930231250")
    assert await ctx.clicktocall.find(event(conn, "via-a", user="sip-a")) == "CRM-6"
    # an unknown line (or none) leaves the choice to the directory's order
    picked = core_clicktocall.pick_line(await h.gw.directory.active("acme", email="ann@example.com"), "+1555")
    assert picked[1].user_id in {"sip-a", "sip-b"}


async def test_the_tenants_numbers_come_from_every_connections_active_users(gateway_harness: Any) -> None:
    h = await gateway_harness(plugins=[("dialer", SourcePlugin(Dialer()))])
    await h.create_tenant("acme")
    await h.create_tenant("other")
    conn = await h.gw.tenancy.connect("acme", "dialer", {})
    await h.gw.directory.put(conn, TelephonyUser("a", numbers=("+4930231250", "23")))
    await h.gw.directory.put(conn, TelephonyUser("b", numbers=("+4930231250", "+4940669690")))
    await h.gw.directory.put(conn, TelephonyUser("c", numbers=("+4989999980",), status="logged_out"))
    elsewhere = await h.gw.tenancy.connect("other", "dialer", {})
    await h.gw.directory.put(elsewhere, TelephonyUser("d", numbers=("+4969900090",)))
    assert await h.context("recorder").tenants.numbers("acme") == ["+4930231250", "+4940669690"]
