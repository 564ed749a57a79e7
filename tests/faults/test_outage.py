"""Fault test: the CRM is down for a while (connection refused, then HTML 503 pages, then a
JSON rate-limit error), then recovers. Nothing is lost, per-call order holds, delivery
resumes by itself and nothing is dead-lettered."""

from __future__ import annotations

import asyncio
import socket

import orjson
from aiohttp import web
from demo_secret import SECRET
from demo_source import sign

CALLS = 8
STATES = ("ringing", "answered", "ended")


class FlakyCRM:
    """A CRM whose mood the test sets: 'html503', 'limit', or 'ok'."""

    def __init__(self) -> None:
        self.mood = "html503"
        self.applied: list[tuple[str, str]] = []
        self.refused = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.mood == "html503":
            self.refused += 1
            return web.Response(status=503, text="<html><body>Service Unavailable</body></html>",
                                content_type="text/html")
        if self.mood == "limit":
            self.refused += 1
            return web.json_response({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"},
                                     status=503, headers={"Retry-After": "0.05"})
        if (body["call"], body["state"]) not in self.applied:
            self.applied.append((body["call"], body["state"]))
        return web.json_response({"ok": True})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_crm_outage_loses_nothing_and_resumes_in_order(gateway_harness):
    crm = FlakyCRM()
    port = free_port()
    url = f"http://127.0.0.1:{port}/calls"
    h = await gateway_harness(env={"GATEWAY_RETRY_BASE": "0.02", "GATEWAY_RETRY_CAP": "0.1"})
    await h.create_tenant("acme", record=False)
    await h.admin("PUT", "/tenants/acme/sinks/example_crm", {"settings": {"url": url}}, expect=200)
    cid = (await h.connect("acme", "demo", {"secret": SECRET}))["id"]

    # phase 1: nobody listens on the CRM's port: connection refused
    for n in range(CALLS):
        for state in STATES:
            body = orjson.dumps({"id": f"{n}-{state}", "call": f"call{n}", "state": state, "from": "+4922112345678"})
            resp = await h.post_hook("demo", cid, body, {"Content-Type": "application/json",
                                                         "X-Demo-Signature": sign(SECRET, body)})
            assert resp.status == 200
    await asyncio.sleep(0.3)
    assert await h.gw.store.events.count("done") == 0

    # phase 2 and 3: the CRM answers, but with HTML 503 pages, then with rate-limit errors
    app = web.Application()
    app.router.add_post("/calls", crm.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.sleep(0.3)
        crm.mood = "limit"
        await asyncio.sleep(0.3)
        assert crm.refused > 0 and crm.applied == []
        crm.mood = "ok"
        for _ in range(300):
            if len(crm.applied) == CALLS * len(STATES):
                break
            await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()

    assert len(crm.applied) == CALLS * len(STATES)
    for n in range(CALLS):
        assert [s for c, s in crm.applied if c == f"call{n}"] == list(STATES)
    assert await h.gw.store.events.dead_letters() == []
    letters = await h.admin("GET", "/deadletters")
    assert letters == {"dead_letters": []}
