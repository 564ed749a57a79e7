"""Recording links pass through to the CRM and are found nowhere else: not in the store files,
the logs, the dead letters or the metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from gateway import (
    CallEvent,
    CallState,
    Connection,
    Delivery,
    Direction,
    PluginContext,
    PermanentError,
    RecordingRef,
    Sink,
    Source,
    WebhookRequest,
)
from gateway.testing import SinkPlugin, SourcePlugin
from gateway.logs import JsonFormatter

LINK = "https://recordings.pbx.example/r/rec-42?signature=s1gn4ture-9f8e7d"
REF = "rec-42"


class RecordingSource(Source):
    """Emits a recording event for any posted body; resolves the reference to LINK."""

    name = "recsrc"
    content_types = frozenset({"application/json"})

    async def connect(self, ctx: PluginContext, connection: Connection) -> Mapping[str, Any]:
        return {}

    async def receive(self, ctx: PluginContext, connection: Connection,
                      request: WebhookRequest) -> Sequence[CallEvent]:
        data = orjson.loads(request.body)
        return [CallEvent(event_id=data["id"], call_id="call-1", direction=Direction.INBOUND,
                          state=CallState(data["state"]), occurred_at=request.received_at,
                          remote_number="+4922199988877",
                          recording=RecordingRef(self.name, REF) if data["state"] == "recording" else None)]

    async def resolve_recording(self, ctx: PluginContext, connection: Connection, ref: RecordingRef) -> str | None:
        return LINK if ref.ref == REF else None


class LinkSink(Sink):
    """A careless CRM: resolves the link, logs it, and fails with it in the message."""

    name = "linksink"

    def __init__(self) -> None:
        self.links: list[str | None] = []

    async def deliver(self, ctx: PluginContext, delivery: Delivery) -> None:
        link = await ctx.recording_link(delivery.event)
        self.links.append(link)
        if link:
            logging.getLogger("linksink").warning("CRM refused recording %s", link)
            raise PermanentError(f"CRM refused {link}", code="REFUSED")


async def test_a_recording_link_reaches_the_sink_and_nothing_else(gateway_harness, caplog):
    caplog.handler.setFormatter(JsonFormatter())
    caplog.set_level(logging.DEBUG)
    plugin = SinkPlugin(LinkSink())
    h = await gateway_harness(plugins=[("recsrc", SourcePlugin(RecordingSource())), ("linksink", plugin)])
    await h.create_tenant("acme", record=False)
    await h.admin("PUT", "/tenants/acme/sinks/linksink", {"settings": {}}, expect=200)
    conn = await h.connect("acme", "recsrc")
    for body in ({"id": "e1", "state": "ended"}, {"id": "e2", "state": "recording"}):
        resp = await h.post_hook("recsrc", conn["id"], orjson.dumps(body), {"Content-Type": "application/json"})
        assert resp.status == 200
    for _ in range(200):
        letters = (await h.admin("GET", "/deadletters", expect=200))["dead_letters"]
        if letters:
            break
        await asyncio.sleep(0.02)
    assert plugin.sink.links == [None, LINK]  # passed through to the CRM at delivery time
    assert letters[0]["reason"] == "PermanentError:REFUSED"

    await h.gw.store.audit.flush()
    metrics = await (await h.client.get("/metrics")).text()
    files = b"".join(open(p, "rb").read() for p in h.gw.store.file_paths())
    export = await h.admin("POST", "/tenants/acme/subjects/export", {"phone": "+4922199988877"}, expect=200)
    assert export["gateway"]["call_events"][1]["recording"] == {"source": "recsrc", "ref": REF, "format": None}
    for part in (LINK, "recordings.pbx.example", "s1gn4ture"):
        assert part not in caplog.text
        assert part not in orjson.dumps(letters).decode()
        assert part not in metrics
        assert part.encode() not in files
        assert part not in orjson.dumps(export).decode()
    assert "[url]" in caplog.text  # the careless log line was written, redacted
