"""Ingest: distinct signed webhooks, durable acknowledgement, against a bare HMAC receiver.

For each shape (the core's demo source, Placetel, Webex) wrk sends distinct, correctly signed
requests over loopback, first to the baseline (``baseline.py``: checks the same HMAC and
answers 200), then to a real ``gateway serve`` process, at saturation and at half that rate.
Placetel accounts are connected against the fake Placetel API, Webex users log in through the
real OAuth routes against the fake Webex, whose recorded webhook secrets sign the deliveries.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from yarl import URL

from . import shapes, wrk
from .fakes import FakesProcess

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from gatewayproc import GatewayProcess, free_port  # noqa: E402

TOKEN = "bench-operator-token-0123456789"
SECRET = "bench-secret-value"
WEBEX_CLIENT = ("bench-webex-client", "bench-webex-client-secret-0123456789")
BITRIX24_CLIENT = ("app.bench.test", "bench-bitrix24-client-secret")


def gateway_env(fakes: FakesProcess | None, **extra: str) -> dict[str, str]:
    """The gateway's environment: a fresh master key, the fakes as every vendor."""
    from gateway.store.crypto import generate_master_key

    env = {"GATEWAY_MASTER_KEY": generate_master_key(), "GATEWAY_ADMIN_TOKEN": TOKEN,
           "GATEWAY_LOG_LEVEL": "WARNING"}
    if fakes is not None:
        env.update({
            "GATEWAY_PLACETEL_API_URL": f"{fakes.url}/placetel/v2",
            "GATEWAY_PLACETEL_RECORDINGS": "false",
            "GATEWAY_WEBEX_API_URL": f"{fakes.url}/webex/v1",
            "GATEWAY_WEBEX_CLIENT_ID": WEBEX_CLIENT[0], "GATEWAY_WEBEX_CLIENT_SECRET": WEBEX_CLIENT[1],
            "GATEWAY_BITRIX24_CLIENT_ID": BITRIX24_CLIENT[0],
            "GATEWAY_BITRIX24_CLIENT_SECRET": BITRIX24_CLIENT[1],
            "GATEWAY_BITRIX24_OAUTH_URL": f"{fakes.url}/oauth/token/",
            "GATEWAY_BITRIX24_ALLOWED_PORTALS": "http://127.0.0.1:*",
        })
    env.update(extra)
    return env


async def admin(session: aiohttp.ClientSession, base: str, method: str, path: str,
                body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One admin API call; raise with the status and the (vendor-free) error text if it fails."""
    async with session.request(method, base + "/admin/v1" + path, data=orjson.dumps(body or {}),
                               headers={"Authorization": f"Bearer {TOKEN}",
                                        "Content-Type": "application/json"}) as resp:
        text = await resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {text[:200]!r}")
        result: dict[str, Any] = orjson.loads(text)
        return result


async def connect_placetel(session: aiohttp.ClientSession, base: str, tenant: str,
                           *, subscribe: bool = True) -> str:
    conn = await admin(session, base, "POST", f"/tenants/{tenant}/connections",
                       {"plugin": "placetel", "settings": {"api_key": "bench-api-key", "secret": SECRET,
                                                           "subscribe": subscribe}})
    return str(conn["id"])


async def webex_login(session: aiohttp.ClientSession, base: str, tenant: str, fakes: FakesProcess,
                      code: str) -> tuple[str, list[shapes.WebexHook]]:
    """A Webex connection (tied to the fake's organisation) with one user logged in through
    the real login page, its button (the session keeps the page's cookie) and the callback."""
    conn = await admin(session, base, "POST", f"/tenants/{tenant}/connections",
                       {"plugin": "webex", "settings": {"org_id": "bench-org"}})
    async with session.get(f"{base}/apps/webex/login", params={"connection": conn["id"]}) as resp:
        fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', await resp.text()))
    async with session.post(f"{base}/apps/webex/login", data=fields, allow_redirects=False) as resp:
        if resp.status != 303:
            raise RuntimeError(f"webex login: {resp.status}")
        state = URL(resp.headers["Location"]).query["state"]
    async with session.get(f"{base}/apps/webex/callback", params={"code": code, "state": state}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"webex callback: {resp.status} {(await resp.text())[:200]}")
    hooks = [shapes.WebexHook(h["id"], h["secret"], h["resource"], h["event"])
             for h in fakes.state()["webex_hooks"]]
    return str(conn["id"]), hooks


def wait_ready(url: str) -> None:
    for _ in range(200):
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(url)


class Baseline:
    """``baseline.py`` as a child process, for one shape's header and digest; with
    ``database``, the durable floor (journals every body there before answering)."""

    def __init__(self, shape: shapes.Shape, database: Path | None = None) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "baseline.py"), str(self.port),
                                      SECRET, shape.header, shape.algo, *([str(database)] if database else [])])
        wait_ready(self.url + "/")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def lines(reqs: list[shapes.Request]) -> list[str]:
    return [f"{p}\t{s}\t{c}\t{b.decode()}" for p, s, c, b in reqs]


async def journal_backlog(base: str) -> float:
    """Acknowledged webhooks the gateway has not interpreted yet (its ``/metrics``)."""
    async with aiohttp.ClientSession() as s, s.get(base + "/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith("gateway_journal_backlog "):
                return float(line.split()[1])
    return 0.0


async def drained(base: str, timeout: float = 600.0) -> float:
    """Wait until every acknowledged webhook was interpreted; the seconds it took."""
    started = time.monotonic()
    while await journal_backlog(base) > 0:
        if time.monotonic() - started > timeout:
            raise TimeoutError("the journal did not drain")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def measure(base: str, reqs: list[shapes.Request], header: str, *, seconds: int,
                  connections: int, half: bool = True, journaled: bool = False) -> dict[str, Any]:
    """wrk at saturation, then (``half``) paced at half the rate it reached. For a gateway
    that journals (``journaled``), each run is followed by the time until every acknowledged
    webhook was interpreted: the next run starts from an empty journal, and the *sustained*
    rate (requests ÷ (run + drain)) is what the gateway keeps up with indefinitely."""
    data = lines(reqs)
    result = await asyncio.to_thread(wrk.run, base, data, header, seconds=seconds, connections=connections)
    if journaled:
        result["drain_seconds"] = await drained(base)
        run = result["duration_us"] / 1e6
        result["sustained_rps"] = result["requests"] / (run + result["drain_seconds"])
    if half:
        rate = max(10.0, result["rps"] / 2)
        paced = await asyncio.to_thread(wrk.run, base, data[::-1], header, seconds=seconds,
                                        connections=connections, rate=rate)
        result["at_half_rate"] = {"rate": paced["rps"], "p50_ms": paced["p50_ms"], "p99_ms": paced["p99_ms"]}
        if journaled:
            result["at_half_rate"]["drain_seconds"] = await drained(base)
            # half of what it keeps up with indefinitely: the load at which "half load" holds
            rate = max(10.0, result["sustained_rps"] / 2)
            paced = await asyncio.to_thread(wrk.run, base, data[::2], header, seconds=seconds,
                                            connections=connections, rate=rate)
            result["at_half_sustained"] = {"rate": paced["rps"], "p50_ms": paced["p50_ms"],
                                           "p99_ms": paced["p99_ms"], "backlog_after": await journal_backlog(base),
                                           "drain_seconds": await drained(base)}
    return result


def baseline_measure(shape: shapes.Shape, reqs: list[shapes.Request], *, seconds: int,
                     connections: int, half: bool = True, database: Path | None = None) -> dict[str, Any]:
    base = Baseline(shape, database)
    try:
        return asyncio.run(measure(base.url, shapes.resign(reqs, SECRET, shape.algo), shape.header,
                                   seconds=seconds, connections=connections, half=half))
    finally:
        base.stop()


def rss_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


async def _setup(url: str, fakes: FakesProcess) -> dict[str, str]:
    # the login page's cookie must come back from 127.0.0.1, which aiohttp refuses by default
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        await admin(s, url, "POST", "/tenants", {"id": "bench"})
        demo = await admin(s, url, "POST", "/tenants/bench/connections",
                           {"plugin": "demo", "settings": {"secret": SECRET}})
        placetel = await connect_placetel(s, url, "bench")
        webex, hooks = await webex_login(s, url, "bench", fakes, "bench-code-1")
    return {"demo": str(demo["id"]), "placetel": placetel, "webex": webex, "hooks": orjson.dumps(
        [h.__dict__ for h in hooks]).decode()}


def requests_for(shape: str, ids: dict[str, str], n: int) -> list[shapes.Request]:
    if shape == "demo":
        return shapes.demo_requests(ids["demo"], SECRET, n)
    if shape == "placetel":
        return shapes.placetel_requests(ids["placetel"], SECRET, n)
    hooks = [shapes.WebexHook(**h) for h in orjson.loads(ids["hooks"])]
    return shapes.webex_requests(ids["webex"], hooks, n)


def run(tmp: Path, *, seconds: int, connections: int, shape_names: tuple[str, ...] = ("placetel", "webex", "demo"),
        ) -> dict[str, Any]:
    if not wrk.available():
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    n = max(20000, seconds * 6000)
    fakes = FakesProcess(free_port())
    fakes.start()
    proc = GatewayProcess(tmp, gateway_env(fakes))
    out: dict[str, Any] = {"durable": "SQLite WAL, synchronous=FULL, group commit", "requests_per_shape": n}
    try:
        proc.start()
        ids = asyncio.run(_setup(proc.url, fakes))
        all_reqs = {name: requests_for(name, ids, n) for name in shape_names}
        proc.stop()  # the baselines run alone on the machine
        for name in shape_names:
            out[name] = {"baseline": baseline_measure(shapes.SHAPES[name], all_reqs[name], seconds=seconds,
                                                      connections=connections),
                         "floor": baseline_measure(shapes.SHAPES[name], all_reqs[name], seconds=seconds,
                                                   connections=connections, database=tmp / f"floor-{name}.db")}
        proc.start()
        for name in shape_names:
            r = out[name]
            r["gateway"] = asyncio.run(measure(proc.url, all_reqs[name], shapes.SHAPES[name].header,
                                               seconds=seconds, connections=connections, journaled=True))
            r["ratio"] = r["gateway"]["rps"] / r["baseline"]["rps"]
            r["sustained_ratio"] = r["gateway"]["sustained_rps"] / r["baseline"]["rps"]
            r["floor_ratio"] = r["floor"]["rps"] / r["baseline"]["rps"]
        assert proc.proc is not None
        out["gateway_rss_kb"] = rss_kb(proc.proc.pid)
    finally:
        proc.stop()
        fakes.stop()
    out["database_mb"] = round(sum(os.path.getsize(p) for p in tmp.glob("gateway.db*")) / 1e6, 1)
    for floor_db in tmp.glob("floor-*"):
        floor_db.unlink()
    return out


def row(label: str, x: dict[str, Any]) -> str:
    h = x.get("at_half_rate")
    half = f"{h['p50_ms']:.2f} / {h['p99_ms']:.2f} at {h['rate']:.0f}/s" if h else "-"
    return (f"| {label} | {x['rps']:.0f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | "
            f"{x['non2xx'] + x.get('socket_errors', 0)} | {half} |")


HEADER = ["| run | req/s | p50 ms | p99 ms | errors | p50 / p99 ms at half rate |", "|---|---|---|---|---|---|"]


def table(r: dict[str, Any]) -> str:
    if "skipped" in r:
        return f"ingest: skipped ({r['skipped']})"
    rows = ["### Ingest (durable acknowledgement; target ratio >= 0.5)", "", *HEADER]
    ratios, floors, sustained, held = [], [], [], []
    for name in ("placetel", "webex", "demo"):
        if name not in r:
            continue
        rows.append(row(f"{name}: baseline", r[name]["baseline"]))
        rows.append(row(f"{name}: durable floor", r[name]["floor"]))
        rows.append(row(f"{name}: gateway", r[name]["gateway"]))
        ratios.append(f"{name} {r[name]['ratio']:.2f}")
        floors.append(f"{name} {r[name]['floor_ratio']:.2f}")
        g = r[name]["gateway"]
        if "sustained_rps" in g:
            sustained.append(f"{name} {g['sustained_rps']:.0f}/s = {r[name]['sustained_ratio']:.2f} "
                             f"(journal drained in {g['drain_seconds']:.1f} s)")
        if "at_half_sustained" in g:
            h = g["at_half_sustained"]
            held.append(f"{name} p50 {h['p50_ms']:.2f} / p99 {h['p99_ms']:.2f} ms at {h['rate']:.0f}/s "
                        f"(backlog after {h['backlog_after']:.0f})")
    rows.append("")
    rows.append("ratio gateway/baseline (req/s): " + ", ".join(ratios))
    rows.append("ratio durable floor/baseline (req/s; HMAC + AES-GCM + fsync'd group commit, nothing else): "
                + ", ".join(floors))
    if sustained:
        rows.append("sustained (acknowledged and interpreted, ÷ baseline): " + "; ".join(sustained))
    if held:
        rows.append("at half the sustained rate (acknowledged and interpreted as they come): " + "; ".join(held))
    return "\n".join(rows)
