"""Graceful shutdown: SIGTERM stops accepting, parks in-flight work; a restart delivers it."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
from aiohttp import web
from demo_source import sign
from gatewayproc import GatewayProcess

from gateway.store.crypto import generate_master_key

TOKEN = "operator-token-0123456789"
SECRET = "shutdown-test-secret"


async def test_sigterm_parks_in_flight_deliveries_and_restart_resumes_them(tmp_path, aiohttp_server):
    applied: set[str] = set()
    slow = asyncio.Event()

    async def crm(request: web.Request) -> web.Response:
        body = await request.json()
        if not slow.is_set():
            await asyncio.sleep(30)  # hangs: the gateway must not wait for it on shutdown
        applied.add(body["key"])
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/calls", crm)
    server = await aiohttp_server(app)
    proc = GatewayProcess(tmp_path, {"GATEWAY_MASTER_KEY": generate_master_key(), "GATEWAY_ADMIN_TOKEN": TOKEN,
                                     "GATEWAY_RETRY_BASE": "0.05", "GATEWAY_RETRY_CAP": "0.2"})
    await asyncio.to_thread(proc.start)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as s:
        await s.post(proc.url + "/admin/v1/tenants", json={"id": "acme"}, headers=auth)
        await s.put(proc.url + "/admin/v1/tenants/acme/sinks/example_crm",
                    json={"settings": {"url": str(server.make_url("/calls"))}}, headers=auth)
        async with s.post(proc.url + "/admin/v1/tenants/acme/connections",
                          json={"plugin": "demo", "settings": {"secret": SECRET}}, headers=auth) as r:
            cid = (await r.json())["id"]
        for n in range(5):
            body = orjson.dumps({"id": f"e{n}", "call": f"c{n}", "state": "ringing"})
            async with s.post(f"{proc.url}/hooks/demo/{cid}", data=body, headers={
                    "Content-Type": "application/json", "X-Demo-Signature": sign(SECRET, body)}) as r:
                assert r.status == 200
    await asyncio.sleep(0.3)  # deliveries are now hanging in the CRM
    code = await asyncio.to_thread(proc.stop)
    assert code == 0
    assert applied == set()

    slow.set()
    await asyncio.to_thread(proc.start)
    try:
        for _ in range(200):
            if len(applied) == 5:
                break
            await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(proc.stop)
    assert applied == {f"c{n}:ringing" for n in range(5)}
