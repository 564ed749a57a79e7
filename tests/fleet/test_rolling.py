"""Rolling update without loss: three real ``gateway serve`` replicas on one PostgreSQL
database behind a round-robin load balancer, under a steady stream of signed webhooks, are
SIGKILLed and restarted one after another.

Every acknowledged event reaches the mock CRM, per call in order; a repeated arrival happens
only for a delivery that was in flight when its replica died (the CRM applies it once by its
idempotency key, as Bitrix24 does by EXTERNAL_CALL_ID); and while at least one replica is up
no sender sees a 5xx. The load balancer is what a real one with health checks does: it sends
each request to the next replica and, when that one refuses or drops the connection, to
another.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from demo_source import sign
from gatewayproc import GatewayProcess
from pgdb import postgres_dsn  # noqa: F401  (a fixture)

from gateway.store.crypto import generate_master_key

pytestmark = pytest.mark.postgres

TOKEN = "operator-token-0123456789"
SECRET = "rolling-test-secret"
STATES = ("ringing", "answered", "ended")
REPLICAS = 3


class MockCRM:
    """Applies each (call, state) once by its key; notes every arrival and when."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[str, float]] = []
        self.applied: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        key = (await request.json())["key"]
        self.arrivals.append((key, time.monotonic()))
        if key not in self.applied:
            self.applied.append(key)
        return web.json_response({"ok": True})


class RoundRobin:
    """A tiny reverse proxy: the next replica for each request; on a refused or dropped
    connection, the one after it (a webhook is idempotent: the gateway deduplicates it)."""

    def __init__(self, upstreams: list[str]) -> None:
        self.upstreams = upstreams
        self._next = itertools.count()
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.Response:
        assert self.session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "x-demo-signature",
                                                                            "authorization")}
        start = next(self._next)
        for i in range(len(self.upstreams)):
            upstream = self.upstreams[(start + i) % len(self.upstreams)]
            try:
                async with self.session.request(request.method, upstream + request.path_qs, data=body,
                                                headers=headers) as resp:
                    return web.Response(status=resp.status, body=await resp.read(),
                                        content_type=resp.content_type)
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError):
                continue
        return web.Response(status=502, text="no replica answered")


async def test_replicas_killed_one_after_another_lose_nothing(postgres_dsn: str, tmp_path: Path,
                                                              aiohttp_server: object) -> None:
    crm = MockCRM()
    crm_app = web.Application()
    crm_app.router.add_post("/calls", crm.handle)
    crm_server = await aiohttp_server(crm_app)  # type: ignore[operator]
    env = {"GATEWAY_DATABASE": postgres_dsn, "GATEWAY_MASTER_KEY": generate_master_key(),
           "GATEWAY_ADMIN_TOKEN": TOKEN, "GATEWAY_RETRY_BASE": "0.05", "GATEWAY_RETRY_CAP": "0.5",
           "GATEWAY_LOG_LEVEL": "WARNING"}
    replicas = []
    for n in range(REPLICAS):
        (tmp_path / f"r{n}").mkdir()
        replicas.append(GatewayProcess(tmp_path / f"r{n}", env))
    await asyncio.gather(*(asyncio.to_thread(r.start, 60.0) for r in replicas))
    balancer = RoundRobin([r.url for r in replicas])
    lb_app = web.Application()
    lb_app.router.add_route("*", "/{tail:.*}", balancer.handle)
    lb = await aiohttp_server(lb_app)  # type: ignore[operator]
    url = str(lb.make_url("")).rstrip("/")
    acked: list[str] = []
    failures: list[int] = []
    kills: list[float] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            balancer.session = session
            headers = {"Authorization": f"Bearer {TOKEN}"}
            for method, path, body in (("POST", "/tenants", {"id": "acme"}),
                                       ("PUT", "/tenants/acme/sinks/example_crm",
                                        {"settings": {"url": str(crm_server.make_url("/calls"))}}),  # type: ignore[attr-defined]
                                       ("POST", "/tenants/acme/connections",
                                        {"plugin": "demo", "settings": {"secret": SECRET}})):
                async with session.request(method, url + "/admin/v1" + path, json=body, headers=headers) as resp:
                    assert resp.status < 300, await resp.text()
                    cid = (await resp.json()).get("id")

            async def call(n: int) -> None:
                for state in STATES:
                    body = orjson.dumps({"id": f"{n}-{state}", "call": f"call{n}", "state": state,
                                         "from": "+4922112345678"})
                    hook = {"Content-Type": "application/json", "X-Demo-Signature": sign(SECRET, body)}
                    async with session.post(f"{url}/hooks/demo/{cid}", data=body, headers=hook) as resp:
                        if resp.status != 200:
                            failures.append(resp.status)
                            return
                    acked.append(f"call{n}:{state}")
                    await asyncio.sleep(0.1)

            rolling = True

            async def stream() -> None:  # a new call every 50 ms while the update rolls
                calls = []
                for n in itertools.count():
                    if not rolling:
                        break
                    calls.append(asyncio.create_task(call(n)))
                    await asyncio.sleep(0.05)
                await asyncio.gather(*calls)

            sender = asyncio.create_task(stream())
            for replica in replicas:
                await asyncio.sleep(1.0)
                kills.append(time.monotonic())
                await asyncio.to_thread(replica.kill)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(replica.start, 60.0)
            await asyncio.sleep(1.0)
            rolling = False
            await asyncio.wait_for(sender, 60)

            deadline = time.monotonic() + 90  # a killed replica's lanes wait for their leases to expire
            while not set(acked) <= set(crm.applied) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
    finally:
        for replica in replicas:
            replica.stop()

    assert not failures, f"senders saw {failures}"
    assert len(acked) > 100
    missing = set(acked) - set(crm.applied)
    assert not missing, f"{len(missing)} acknowledged events never reached the CRM"
    calls = {key.split(":")[0] for key in acked}
    for c in calls:
        assert [k.split(":")[1] for k in crm.applied if k.split(":")[0] == c] == list(STATES), c
    first: dict[str, float] = {}
    for key, at in crm.arrivals:
        if key in first:  # a second arrival: its first was in flight when a replica died
            assert any(k - 5.0 <= first[key] <= k + 1.0 for k in kills), key
        else:
            first[key] = at
