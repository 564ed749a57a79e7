"""Replicas: the same ingest and end-to-end measurements on SQLite, on PostgreSQL with one
``gateway serve`` replica, and on PostgreSQL with two, in one run on one machine.

- **ingest**: wrk sends distinct signed demo-source webhooks (nothing bound: pure durable
  ingest) at saturation, then paced at half the rate reached. With two replicas, two wrk
  processes run at once, one per replica, half the connections each (a load balancer would
  add its own hop; the sum is what the replicas accepted).
- **end to end**: a paced client sends one call (ringing, then ended 0.5 s later) per
  ``1/rate`` seconds, round-robin over the tenants and, with two replicas, over the replicas;
  the ``example_crm`` sink posts each event to a local receiver. Figure: receiver's arrival
  time of the ringing event minus the time it was sent (one machine, one clock).
- **RSS** of each replica after both.

Each PostgreSQL configuration gets a database of its own (``callgate_bench_<random>``), dropped
afterwards, on ``CALLGATE_BENCH_POSTGRES`` (default: the test server, 127.0.0.1:5432).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import orjson
from aiohttp import web

from . import shapes, wrk
from .e2e import percentile
from .ingest import SECRET, GatewayProcess, admin, free_port, gateway_env, lines, rss_kb

ADMIN_DSN = os.environ.get("CALLGATE_BENCH_POSTGRES",
                           os.environ.get("CALLGATE_TEST_POSTGRES", "postgresql://127.0.0.1:5432/postgres"))
CONFIGS = tuple((kind, int(n)) for kind, n in (c.split(":") for c in os.environ.get(
    "CALLGATE_BENCH_FLEET", "sqlite:1,postgresql:1,postgresql:2").split(",")))
HANGUP_AFTER = 0.5


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    """``GATEWAY_DATABASE`` for a fresh store of ``kind``, removed afterwards."""
    if kind == "sqlite":
        yield str(tmp / "gateway.db")
        return
    name = "callgate_bench_" + secrets.token_hex(6)

    async def admin_sql(sql: str) -> None:
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    parts = urlsplit(ADMIN_DSN)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class Receiver:
    """The CRM: notes when each ringing event arrived (in its own thread and loop)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.arrived: dict[str, float] = {}
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            body = await request.json()
            if body["state"] == "ringing":
                self.arrived.setdefault(body["call"], time.time())
            return web.json_response({"ok": True})
        app = web.Application()
        app.router.add_post("/calls", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> Receiver:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/calls"


async def setup(url: str, prefix: str, tenants: int, crm: str | None) -> list[str]:
    """Tenants ``prefix0...`` with a demo connection each, bound to the receiver when ``crm``."""
    conns = []
    async with aiohttp.ClientSession() as s:
        for t in range(tenants):
            await admin(s, url, "POST", "/tenants", {"id": f"{prefix}{t}"})
            if crm is not None:
                await admin(s, url, "PUT", f"/tenants/{prefix}{t}/sinks/example_crm", {"settings": {"url": crm}})
            conn = await admin(s, url, "POST", f"/tenants/{prefix}{t}/connections",
                               {"plugin": "demo", "settings": {"secret": SECRET}})
            conns.append(str(conn["id"]))
    return conns


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    """User + system CPU ticks so far of these processes, and of every PostgreSQL server process."""
    wanted = set(pids)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    wanted.add(int(entry.name))
            except OSError:
                continue
    out = {}
    for pid in wanted:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = int(fields[11]) + int(fields[12])
    return out


def cpu_per_request(before: dict[int, int], after: dict[int, int], gateways: list[int],
                    requests: float) -> dict[str, float]:
    """CPU milliseconds per request spent in the replicas and in PostgreSQL."""
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    used = {pid: after[pid] - before.get(pid, 0) for pid in after}
    gw = sum(used.get(pid, 0) for pid in gateways) * tick_ms
    pg = sum(v for pid, v in used.items() if pid not in gateways) * tick_ms
    return {"gateway_cpu_ms": round(gw / max(1.0, requests), 3), "postgres_cpu_ms": round(pg / max(1.0, requests), 3)}


def ingest(urls: list[str], conn: str, *, seconds: int, connections: int,
           pids: list[int] | None = None) -> dict[str, Any]:
    """wrk at saturation and at half that rate, one wrk per replica at once; the sum, and
    (``pids``) the CPU the replicas and PostgreSQL spent per request at saturation."""
    reqs = lines(shapes.demo_requests(conn, SECRET, max(20000, seconds * 6000)))
    header = shapes.SHAPES["demo"].header

    def together(rate: float | None) -> dict[str, float]:
        results: list[dict[str, float]] = []
        share = len(reqs) // len(urls)
        threads = [threading.Thread(target=lambda i=i, u=u: results.append(wrk.run(
            u, reqs[i * share:(i + 1) * share], header, seconds=seconds,
            connections=max(1, connections // len(urls)), rate=rate / len(urls) if rate else None)))
            for i, u in enumerate(urls)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {"rps": sum(r["rps"] for r in results), "p50_ms": max(r["p50_ms"] for r in results),
                "p99_ms": max(r["p99_ms"] for r in results),
                "errors": sum(r["non2xx"] + r["socket_errors"] for r in results)}
    before = cpu_ticks(pids or [])
    full = together(None)
    cpu = cpu_per_request(before, cpu_ticks(pids or []), pids or [], full["rps"] * seconds)
    half = together(max(10.0, full["rps"] / 2))
    return {**full, **cpu, "at_half_rate": half}


async def drive(urls: list[str], conns: list[str], *, rate: float, seconds: float) -> tuple[dict[str, float], int]:
    """Calls at ``rate`` (ringing now, ended later), round-robin over tenants and replicas."""
    total = int(rate * seconds)
    schedule = []
    for k in range(total):
        for at, state in ((k / rate, "ringing"), (k / rate + HANGUP_AFTER, "ended")):
            body = orjson.dumps({"id": f"{k}-{state}", "call": f"call{k}", "state": state, "from": "+4922112345678"})
            schedule.append((at, k, urls[k % len(urls)], conns[k % len(conns)], body))
    schedule.sort(key=lambda item: item[0])
    sent: dict[str, float] = {}
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as s:
        async def post(k: int, url: str, conn: str, body: bytes) -> None:
            nonlocal errors
            if b'"ringing"' in body:
                sent[f"call{k}"] = time.time()
            headers = {"Content-Type": "application/json", "X-Demo-Signature": shapes.sign(SECRET, body, "sha256")}
            try:
                async with s.post(f"{url}/hooks/demo/{conn}", data=body, headers=headers) as r:
                    await r.read()
                    errors += r.status != 200
            except aiohttp.ClientError:
                errors += 1
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.2
        tasks = []
        for at, k, url, conn, body in schedule:
            delay = t0 + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(k, url, conn, body)))
        await asyncio.gather(*tasks)
    return sent, errors


def one_config(tmp: Path, kind: str, replicas: int, *, seconds: int, connections: int, rate: float,
               tenants: int) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": kind, "replicas": replicas}
    with database(kind, tmp) as db, Receiver(free_port()) as crm:
        env = gateway_env(None, GATEWAY_DATABASE=db)
        procs = []
        for n in range(replicas):
            (tmp / f"{kind}-{n}").mkdir(exist_ok=True)
            procs.append(GatewayProcess(tmp / f"{kind}-{n}", env))
        try:
            for p in procs:
                p.start(60)
            urls = [p.url for p in procs]
            # end to end first, on a young store: the saturation runs leave work behind (vacuum)
            conns = asyncio.run(setup(urls[0], "e2e", tenants, crm.url))
            sent, errors = asyncio.run(drive(urls, conns, rate=rate, seconds=seconds))
            deadline = time.monotonic() + 30
            while len(crm.arrived) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.2)
            latency = [(crm.arrived[c] - t) * 1000 for c, t in sent.items() if c in crm.arrived]
            out["e2e"] = {"p50_ms": round(percentile(latency, 50), 2), "p99_ms": round(percentile(latency, 99), 2),
                          "n": len(latency), "missing": len(sent) - len(latency), "errors": errors}
            (plain,) = asyncio.run(setup(urls[0], "ingest", 1, None))
            out["ingest"] = ingest(urls, plain, seconds=seconds, connections=connections,
                                   pids=[p.proc.pid for p in procs if p.proc is not None])
            out["rss_kb"] = [rss_kb(p.proc.pid) for p in procs if p.proc is not None]
        finally:
            for p in procs:
                p.stop()
    return out


def run(tmp: Path, *, seconds: int, connections: int, rate: float, tenants: int) -> dict[str, Any]:
    if not wrk.available():
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    out: dict[str, Any] = {"rate": rate, "tenants": tenants, "seconds": seconds, "configs": []}
    for kind, replicas in CONFIGS:
        out["configs"].append(one_config(tmp, kind, replicas, seconds=seconds, connections=connections,
                                         rate=rate, tenants=tenants))
    return out


def table(r: dict[str, Any]) -> str:
    if "skipped" in r:
        return f"fleet: skipped ({r['skipped']})"
    rows = [f"### Replicas (demo shape; end to end at {r['rate']:.0f} calls/s over {r['tenants']} tenants)", "",
            "| store | replicas | ingest req/s | ÷ first row, same run | p50 / p99 ms at half rate | CPU ms per request: gateway + PostgreSQL "
            "| e2e p50 ms | e2e p99 ms | ingest errors; e2e errors, missing | RSS per replica MB |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    base = r["configs"][0]["ingest"]["rps"] if r["configs"] else 0.0
    for c in r["configs"]:
        i, h, e = c["ingest"], c["ingest"]["at_half_rate"], c["e2e"]
        rss = ", ".join(f"{x['VmRSS'] / 1024:.0f}" for x in c["rss_kb"])
        cpu = f"{i['gateway_cpu_ms']:.2f} + {i['postgres_cpu_ms']:.2f}" if c["backend"] != "sqlite" \
            else f"{i['gateway_cpu_ms']:.2f}"
        rows.append(f"| {c['backend']} | {c['replicas']} | {i['rps']:.0f} | {i['rps'] / base if base else 0:.2f} | {h['p50_ms']:.2f} / {h['p99_ms']:.2f} "
                    f"| {cpu} | {e['p50_ms']:.2f} | {e['p99_ms']:.2f} "
                    f"| {i['errors']}; {e['errors']}, {e['missing']} | {rss} |")
    return "\n".join(rows)
