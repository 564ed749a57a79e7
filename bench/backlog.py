"""Backlog: a CRM down while calls keep coming; memory, then the drain once it is back.

A real ``gateway serve`` process with ``tenants`` tenants, each bound to the third-party
``example_crm`` sink (the test-only plugin: it posts each event as JSON to the tenant's CRM
URL) and connected to the demo source. The CRM's port refuses connections while the bench
posts ``calls`` calls of three events each (ringing, answered, ended), so every delivery
queues and retries. Figure: the server's RSS growth per pending delivery, against its own RSS
before the outage (the baseline of this scenario). Then a mock CRM starts on that port: the
time until every event arrived, and whether each arrived exactly once and in per-call order.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from . import shapes
from .ingest import SECRET, GatewayProcess, admin, free_port, gateway_env, rss_kb

STATES = ("ringing", "answered", "ended")


class MockCRM:
    """Records, per tenant (its URL path), the (call, state) keys in arrival order."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: dict[str, list[tuple[str, str]]] = {}
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def event(request: web.Request) -> web.Response:
            body = await request.json()
            self.seen.setdefault(request.match_info["tenant"], []).append((body["call"], body["state"]))
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/crm/{tenant}", event)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def received(self) -> int:
        return sum(len(v) for v in self.seen.values())

    def check(self, expected: int) -> dict[str, int]:
        """Duplicates, calls whose events arrived out of order, and events that never did."""
        duplicates = out_of_order = unique = 0
        for keys in self.seen.values():
            unique += len(set(keys))
            duplicates += len(keys) - len(set(keys))
            order: dict[str, list[str]] = {}
            for call, state in keys:
                order.setdefault(call, []).append(state)
            out_of_order += sum(1 for states in order.values() if states != list(STATES)[:len(states)])
        return {"duplicates": duplicates, "calls_out_of_order": out_of_order, "missing": expected - unique}


def pending(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM deliveries WHERE state='pending'").fetchone()[0])


async def _post_all(url: str, reqs: list[shapes.Request], concurrency: int = 32) -> int:
    failures = 0
    queue = list(reversed(reqs))

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while queue:
            path, sig, ctype, body = queue.pop()
            async with session.post(url + path, data=body, headers={
                    "Content-Type": ctype, shapes.DEMO_HEADER: sig}) as resp:
                await resp.read()
                failures += resp.status != 200

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return failures


async def _scenario(proc: GatewayProcess, db: Path, *, tenants: int, calls: int) -> dict[str, Any]:
    crm = MockCRM(free_port())
    reqs: list[shapes.Request] = []
    async with aiohttp.ClientSession() as s:
        for t in range(tenants):
            tenant = f"t{t}"
            await admin(s, proc.url, "POST", "/tenants", {"id": tenant})
            await admin(s, proc.url, "PUT", f"/tenants/{tenant}/sinks/example_crm",
                        {"settings": {"url": f"http://127.0.0.1:{crm.port}/crm/{tenant}"}})
            conn = await admin(s, proc.url, "POST", f"/tenants/{tenant}/connections",
                               {"plugin": "demo", "settings": {"secret": SECRET}})
            reqs.extend(shapes.demo_requests(str(conn["id"]), SECRET, 3 * calls))
    # calls interleaved across tenants, each call's events in order
    reqs.sort(key=lambda r: r[3].split(b'"call":"')[1].split(b'"')[0])
    assert proc.proc is not None
    await asyncio.sleep(1.0)
    before = rss_kb(proc.proc.pid)["VmRSS"]
    half = len(reqs) // 2
    failures = await _post_all(proc.url, reqs[:half])
    await asyncio.sleep(3.0)  # every delivery has been tried and refused at least once
    queued_half, rss_half = pending(db), rss_kb(proc.proc.pid)["VmRSS"]
    failures += await _post_all(proc.url, reqs[half:])
    await asyncio.sleep(3.0)
    queued = pending(db)
    during = rss_kb(proc.proc.pid)
    started = time.monotonic()
    await crm.start()
    try:
        deadline = started + 600
        while crm.received < len(reqs) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        drained = time.monotonic() - started
        await asyncio.sleep(1.0)  # anything sent twice would arrive now
        check = crm.check(len(reqs))
    finally:
        await crm.stop()
    return {"tenants": tenants, "calls": tenants * calls, "webhooks": len(reqs), "webhook_failures": failures,
            "pending_half": queued_half, "pending_during_outage": queued, "rss_before_kb": before,
            "rss_half_kb": rss_half, "rss_outage_kb": during["VmRSS"], "rss_peak_kb": during["VmHWM"],
            "bytes_per_pending": round((during["VmRSS"] - before) * 1024 / max(1, queued)),
            "bytes_per_pending_second_half": round((during["VmRSS"] - rss_half) * 1024 / max(1, queued - queued_half)),
            "drain_seconds": round(drained, 1), "received": crm.received, **check}


def run(tmp: Path, *, tenants: int, calls: int) -> dict[str, Any]:
    proc = GatewayProcess(tmp, gateway_env(None, GATEWAY_RETRY_CAP="2"))
    proc.start()
    try:
        return asyncio.run(_scenario(proc, tmp / "gateway.db", tenants=tenants, calls=calls))
    finally:
        proc.stop()


def table(r: dict[str, Any]) -> str:
    return "\n".join([
        f"### Backlog ({r['calls']} calls, {r['webhooks']} webhooks over {r['tenants']} tenants while their "
        "CRM refuses connections)", "",
        "| measure | value |", "|---|---|",
        f"| pending deliveries: half-way / at the end of the outage | {r['pending_half']} / "
        f"{r['pending_during_outage']} |",
        f"| gateway RSS: before (the baseline) / half-way / end | {r['rss_before_kb'] / 1024:.0f} / "
        f"{r['rss_half_kb'] / 1024:.0f} / {r['rss_outage_kb'] / 1024:.0f} MB |",
        f"| RSS per pending delivery: overall / second half | {r['bytes_per_pending']} / "
        f"{r['bytes_per_pending_second_half']} bytes |",
        f"| CRM back: all delivered after | {r['drain_seconds']} s (example_crm's limit: 20/s per tenant) |",
        f"| received / duplicates / calls out of order / missing | {r['received']} / {r['duplicates']} / "
        f"{r['calls_out_of_order']} / {r['missing']} |",
        f"| webhooks not answered 200 | {r['webhook_failures']} |",
    ])
