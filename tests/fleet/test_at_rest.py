"""A ``pg_dump`` of a PostgreSQL store that has seen calls, telephony users, tokens and
recordings holds none of them in plaintext: the same envelope encryption as SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from demo_source import sign
from pgdb import dump, postgres_dsn  # noqa: F401  (a fixture)

from gateway import (CallEvent, CallState, Connection, Delivery, Direction, PluginContext, RecordingRef, Sink,
                     Source, TelephonyUser, WebhookRequest)
from gateway.testing import SinkPlugin, SourcePlugin

pytestmark = pytest.mark.postgres

SECRET = "pg-dump-secret"
CALLER, USER_PHONE = "+4922112345678", "+4940111222333"
NAME, EMAIL, TOKEN = "Anna Agentin", "anna.agentin@example.com", "tok-7f3a9c1e5b2d4f6a8c0e"
LINK = "https://recordings.pbx.example/r/rec-42?signature=s1gn4ture-9f8e7d"


class Recordings(Source):
    """Ended calls with a recording, resolved to ``LINK`` only when delivered."""

    name = "recsrc"
    content_types = frozenset({"application/json"})

    async def connect(self, ctx: PluginContext, connection: Connection) -> dict[str, Any]:
        return {}

    async def receive(self, ctx: PluginContext, connection: Connection,
                      request: WebhookRequest) -> Sequence[CallEvent]:
        data = orjson.loads(request.body)
        return [CallEvent(event_id=data["id"], call_id=data["id"], direction=Direction.INBOUND,
                          state=CallState.ENDED, occurred_at=request.received_at, remote_number=CALLER,
                          recording=RecordingRef(self.name, "rec-42"))]

    async def resolve_recording(self, ctx: PluginContext, connection: Connection, ref: RecordingRef) -> str | None:
        return LINK


class LinkSink(Sink):
    name = "linksink"

    def __init__(self) -> None:
        self.links: list[str | None] = []

    async def deliver(self, ctx: PluginContext, delivery: Delivery) -> None:
        self.links.append(await ctx.recording_link(delivery.event))


async def test_pg_dump_holds_no_number_email_name_token_or_link(postgres_dsn: str, gateway_harness: Any) -> None:
    plugins = SinkPlugin(LinkSink())
    h = await gateway_harness(env={"GATEWAY_DATABASE": postgres_dsn},
                              plugins=[("recsrc", SourcePlugin(Recordings())), ("linksink", plugins)])
    await h.create_tenant("acme")
    await h.admin("PUT", "/tenants/acme/sinks/linksink", {"settings": {}}, expect=200)
    demo = await h.connect("acme", "demo", {"secret": SECRET})
    rec = await h.connect("acme", "recsrc")
    for n, state in enumerate(("ringing", "answered", "ended")):
        body = orjson.dumps({"id": f"e{n}", "call": "c1", "state": state, "from": CALLER, "user": "u1"})
        resp = await h.post_hook("demo", demo["id"], body, {"Content-Type": "application/json",
                                                           "X-Demo-Signature": sign(SECRET, body)})
        assert resp.status == 200
    resp = await h.post_hook("recsrc", rec["id"], b'{"id": "r1"}', {"Content-Type": "application/json"})
    assert resp.status == 200
    ctx = h.context("demo")
    connection = await ctx.connections.get(demo["id"])
    await ctx.users.put(connection, TelephonyUser("u1", NAME, EMAIL, "23", (USER_PHONE,)))
    await ctx.storage("acme").put("oauth", EMAIL, {"access_token": TOKEN}, index=EMAIL)
    await h.recorder.wait_for(3)
    for _ in range(200):
        if LINK in plugins.sink.links:
            break
        await asyncio.sleep(0.02)
    assert LINK in plugins.sink.links  # it reached the CRM
    assert (await ctx.users.find("acme", email=EMAIL))[0][1].name == NAME  # and all is readable

    data = await asyncio.to_thread(dump, postgres_dsn.rsplit("/", 1)[-1])
    assert b"COPY public.events" in data and len(data) > 10_000
    for value in (CALLER, CALLER[1:], USER_PHONE, USER_PHONE[1:], NAME, EMAIL, TOKEN, LINK,
                  "recordings.pbx.example", SECRET):
        assert value.encode() not in data, value
