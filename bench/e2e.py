"""End to end: a Placetel ringing webhook in → ``telephony.externalCall.register`` at Bitrix24.

Tenants are Bitrix24 portals installed the way Bitrix24 does it (``ONAPPINSTALL`` at
``/hooks/bitrix24/events``, verified against the mock OAuth server), each with a default CRM
user and a Placetel connection (against the fake Placetel API). A paced Python client sends
one call per ``1/rate`` seconds, round-robin over the tenants: ``IncomingCall`` now and
``HungUp`` (missed) a second later, so each portal gets register *and* finish requests.

Latency = when the mock Bitrix24 received the call's ``register`` minus when the bench sent
its ringing webhook (one machine, one clock). The mock keeps Bitrix24's per-portal leaky
bucket and reports the highest rate per portal it saw. Baseline: the bare HMAC receiver's
response latency at the same rate, i.e. the loopback floor.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from . import shapes
from .fakes import FakesProcess
from .ingest import SECRET, Baseline, GatewayProcess, admin, connect_placetel, free_port, gateway_env

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
HANGUP_AFTER = 1.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def install_body(member: str, fakes: FakesProcess) -> bytes:
    """``ONAPPINSTALL`` as Bitrix24 posts it; the mock OAuth server maps ``rt-<member>`` back."""
    auth = {"domain": f"127.0.0.1:{fakes.port}", "client_endpoint": f"{fakes.url}/rest/",
            "server_endpoint": "https://oauth.bitrix.info/rest/", "member_id": member,
            "application_token": secrets.token_hex(16), "access_token": secrets.token_hex(16),
            "expires": str(int(time.time()) + 3600), "expires_in": "3600", "scope": "telephony,crm,user",
            "status": "L", "user_id": "1", "refresh_token": f"rt-{member}"}
    fields = {"event": "ONAPPINSTALL", "ts": str(int(time.time())), "data[VERSION]": "1", "data[ACTIVE]": "Y",
              "data[INSTALLED]": "Y", "data[LANGUAGE_ID]": "de", **{f"auth[{k}]": v for k, v in auth.items()}}
    return urlencode(fields).encode()


async def _gather_limited(jobs: list[Any], limit: int) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(job: Any) -> Any:
        async with sem:
            return await job

    return await asyncio.gather(*(one(j) for j in jobs))


async def setup_tenants(url: str, fakes: FakesProcess, count: int) -> list[str]:
    """Install ``count`` portals, give each a default CRM user and a Placetel connection."""
    members = [f"bench-portal-{i:05d}" for i in range(count)]
    async with aiohttp.ClientSession() as s:
        async def install(member: str) -> str:
            async with s.post(f"{url}/hooks/bitrix24/events", data=install_body(member, fakes), headers=FORM) as r:
                if r.status != 200:
                    raise RuntimeError(f"install: {r.status} {(await r.text())[:200]}")
            await admin(s, url, "PUT", f"/plugins/bitrix24/tenants/{member}/settings",
                        {"responsible_user_id": 1, "crm_create": False, "show_card": True})
            return await connect_placetel(s, url, member, subscribe=False)

        return list(await _gather_limited([install(m) for m in members], 16))


async def drive(url: str, connections: list[str], *, rate: float, seconds: float,
                hangups: bool) -> tuple[dict[str, float], list[float], int]:
    """Send calls at ``rate``; return (caller → send time, response latencies in ms, errors)."""
    total = int(rate * seconds)
    schedule: list[tuple[float, int, bytes, str]] = []
    for k in range(total):
        conn = connections[k % len(connections)]
        call_id, number = shapes.placetel_call_id(f"e2e-{url}", k), shapes.national(k)
        schedule.append((k / rate, k, shapes.placetel_body("IncomingCall", call_id, number), conn))
        if hangups:
            schedule.append((k / rate + HANGUP_AFTER, -1, shapes.placetel_body("HungUp", call_id, number), conn))
    schedule.sort(key=lambda item: item[0])
    sent: dict[str, float] = {}
    latencies: list[float] = []
    errors = 0
    tasks = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as s:
        async def post(k: int, body: bytes, conn: str) -> None:
            nonlocal errors
            path, sig, ctype, _ = shapes.placetel_request(conn, SECRET, body)
            start = time.time()
            if k >= 0:
                sent[shapes.caller(k)] = start
            try:
                async with s.post(url + path, data=body, headers={"Content-Type": ctype,
                                                                  shapes.PLACETEL_HEADER: sig}) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            if k >= 0:
                latencies.append((time.time() - start) * 1000)

        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.2
        for at, k, body, conn in schedule:
            delay = t0 + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(k, body, conn)))
        await asyncio.gather(*tasks)
    return sent, latencies, errors


def _stats(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(values, 50), 2), "p99_ms": round(percentile(values, 99), 2),
            "max_ms": round(max(values, default=float("nan")), 2), "n": len(values)}


def run(tmp: Path, *, seconds: float, rate: float, tenants: int) -> dict[str, Any]:
    out: dict[str, Any] = {"rate": rate, "seconds": seconds, "tenants": tenants,
                           "calls": int(rate * seconds), "per_portal_calls_per_s": round(rate / tenants, 3)}
    # the loopback floor: the bare receiver at the same rate, alone on the machine
    base = Baseline(shapes.SHAPES["placetel"])
    try:
        _, lat, errors = asyncio.run(drive(base.url, ["baseline"] * tenants, rate=rate, seconds=seconds,
                                           hangups=True))
        out["baseline_response"] = {**_stats(lat), "errors": errors}
    finally:
        base.stop()
    fakes = FakesProcess(free_port())
    fakes.start()
    proc = GatewayProcess(tmp, gateway_env(fakes))
    try:
        proc.start()
        started = time.monotonic()
        conns = asyncio.run(setup_tenants(proc.url, fakes, tenants))
        out["setup_seconds"] = round(time.monotonic() - started, 1)
        fakes.reset()
        sent, lat, errors = asyncio.run(drive(proc.url, conns, rate=rate, seconds=seconds, hangups=True))
        out["gateway_response"] = {**_stats(lat), "errors": errors}
        deadline = time.monotonic() + 30 + seconds
        state = fakes.state()
        while len(state["registers"]) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.5)
            state = fakes.state()
        time.sleep(HANGUP_AFTER + 1)  # let the last finishes arrive before reading the rates
        state = fakes.state()
    finally:
        proc.stop()
        fakes.stop()
    arrived = state["registers"]
    e2e = [(arrived[c] - t) * 1000 for c, t in sent.items() if c in arrived]
    out["webhook_to_register"] = {**_stats(e2e), "missing": len(sent) - len(e2e)}
    out["bitrix24"] = state["bitrix24"]
    return out


def table(r: dict[str, Any]) -> str:
    b24 = r["bitrix24"]
    e, g, b = r["webhook_to_register"], r["gateway_response"], r["baseline_response"]
    return "\n".join([
        f"### End to end ({r['calls']} calls at {r['rate']:.0f}/s over {r['tenants']} portals, "
        f"{r['per_portal_calls_per_s']} calls/s per portal; ringing + hang-up each)", "",
        "| measure | p50 ms | p99 ms | max ms | n | missing/errors |", "|---|---|---|---|---|---|",
        f"| baseline: webhook answered | {b['p50_ms']:.2f} | {b['p99_ms']:.2f} | {b['max_ms']:.2f} | {b['n']} "
        f"| {b['errors']} |",
        f"| gateway: webhook answered (durable) | {g['p50_ms']:.2f} | {g['p99_ms']:.2f} | {g['max_ms']:.2f} "
        f"| {g['n']} | {g['errors']} |",
        f"| gateway: webhook sent → register at Bitrix24 | {e['p50_ms']:.2f} | {e['p99_ms']:.2f} "
        f"| {e['max_ms']:.2f} | {e['n']} | {e['missing']} |",
        "",
        f"Bitrix24 mock: {b24['portals']} portals; most requests to one portal in any 1 s: "
        f"{b24['max_requests_in_1s']}; highest mean rate of one portal: {b24['max_mean_rate']}/s; "
        f"highest leaky-bucket level: {b24['max_bucket_level']} of {b24['bucket']['size']} "
        f"(drain {b24['bucket']['drain_per_s']}/s); QUERY_LIMIT_EXCEEDED answers: {b24['refused_query_limit']}; "
        f"requests: {b24['methods']}",
    ])
