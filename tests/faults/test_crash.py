"""Fault test: SIGKILL the gateway repeatedly during a burst; nothing acknowledged is lost.

A real ``gateway serve`` process ingests signed webhooks from many concurrent calls while it
is killed with SIGKILL and restarted. The mock CRM (the example_crm sink's target) applies
each (call, state) once by its idempotency key, as a CRM keyed on EXTERNAL_CALL_ID does.
Afterwards every acknowledged event has reached it, and per call in order.
"""

from __future__ import annotations

import asyncio
import random

import aiohttp
import orjson
from aiohttp import web
from demo_source import sign
from gatewayproc import GatewayProcess

from gateway.store.crypto import generate_master_key

TOKEN = "operator-token-0123456789"
SECRET = "crash-test-secret"
CALLS = 40
STATES = ("ringing", "answered", "ended")


class MockCRM:
    def __init__(self) -> None:
        self.applied: list[str] = []
        self.seen: set[str] = set()
        self.arrivals = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.arrivals += 1
        if body["key"] not in self.seen:
            self.seen.add(body["key"])
            self.applied.append(body["key"])
        return web.json_response({"ok": True})


async def admin(session: aiohttp.ClientSession, url: str, method: str, path: str, body: dict) -> dict:
    async with session.request(method, url + "/admin/v1" + path, json=body,
                               headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status < 300, await resp.text()
        return await resp.json()


async def test_sigkill_during_burst_loses_nothing_acknowledged(tmp_path, aiohttp_server):
    crm = MockCRM()
    crm_app = web.Application()
    crm_app.router.add_post("/calls", crm.handle)
    server = await aiohttp_server(crm_app)
    proc = GatewayProcess(tmp_path, {"GATEWAY_MASTER_KEY": generate_master_key(), "GATEWAY_ADMIN_TOKEN": TOKEN,
                                     "GATEWAY_RETRY_BASE": "0.05", "GATEWAY_RETRY_CAP": "0.5",
                                     "GATEWAY_LOG_LEVEL": "WARNING"})
    await asyncio.to_thread(proc.start)
    acked: list[str] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            await admin(session, proc.url, "POST", "/tenants", {"id": "acme"})
            await admin(session, proc.url, "PUT", "/tenants/acme/sinks/example_crm",
                        {"settings": {"url": str(server.make_url("/calls"))}})
            cid = (await admin(session, proc.url, "POST", "/tenants/acme/connections",
                               {"plugin": "demo", "settings": {"secret": SECRET}}))["id"]

            async def call(n: int) -> None:
                for state in STATES:
                    body = orjson.dumps({"id": f"{n}-{state}", "call": f"call{n}", "state": state,
                                         "from": "+4922112345678"})
                    headers = {"Content-Type": "application/json", "X-Demo-Signature": sign(SECRET, body)}
                    while True:  # like a provider: retry until acknowledged
                        try:
                            async with session.post(f"{proc.url}/hooks/demo/{cid}", data=body,
                                                    headers=headers) as resp:
                                if resp.status == 200:
                                    acked.append(f"call{n}:{state}")
                                    break
                                assert resp.status >= 500, resp.status
                        except (aiohttp.ClientError, asyncio.TimeoutError):
                            pass
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(random.uniform(0, 0.05))

            senders = asyncio.gather(*(call(n) for n in range(CALLS)))
            for _ in range(3):
                await asyncio.sleep(random.uniform(0.2, 0.5))
                await asyncio.to_thread(proc.kill)
                await asyncio.to_thread(proc.start)
            await asyncio.wait_for(senders, 60)

        for _ in range(600):
            if set(acked) <= crm.seen:
                break
            await asyncio.sleep(0.05)
    finally:
        proc.stop()

    assert len(acked) == CALLS * len(STATES)
    missing = set(acked) - crm.seen
    assert not missing, f"{len(missing)} acknowledged events never reached the CRM"
    for n in range(CALLS):
        order = [key.split(":")[1] for key in crm.applied if key.startswith(f"call{n}:")]
        assert order == list(STATES), (n, order)
