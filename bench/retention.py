"""Retention: purging expired call records while webhooks keep arriving.

A store holds ``records`` call records received eight to nine days ago (expired under the
7-day retention), generated like in :mod:`bench.scale`. On it the gateway first runs at
saturation (Placetel shape) to find its rate, then wrk paces ingest at half that rate twice:
once without a purge, once while the serving gateway purges (``POST
/admin/v1/retention/purge``: the same path as its hourly job, sharing the writer with
ingestion; ``in_process=False`` runs ``gateway purge`` as a second process instead). The
second wrk run starts with the purge and is stopped (SIGINT: wrk still reports) when the
purge ends. Target: ingest p99 during the purge at most twice the p99 without.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from . import shapes, wrk
from .fakes import FakesProcess
from .ingest import SECRET, GatewayProcess, admin, connect_placetel, free_port, gateway_env, lines, measure
from .scale import generate

DAY = 86400.0



ADMIN_PURGE = """
import json, os, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/admin/v1/retention/purge", method="POST", data=b"",
                             headers={"Authorization": "Bearer " + os.environ["GATEWAY_ADMIN_TOKEN"]})
with urllib.request.urlopen(req, timeout=3600) as resp:
    print(resp.read().decode())
"""


def purge_command(url: str, in_process: bool) -> tuple[list[str], str]:
    """The serving gateway's own purge (admin API), or the CLI's in a second process."""
    if in_process:
        return [sys.executable, "-c", ADMIN_PURGE, url], "POST /admin/v1/retention/purge (in the serving process)"
    return [sys.executable, "-m", "gateway", "purge"], "python -m gateway purge (a second process)"


def wrk_until(url: str, data: list[str], header: str, *, connections: int, rate: float,
              proc: subprocess.Popen[str], min_seconds: float = 1.0) -> dict[str, Any]:
    """wrk paced at ``rate`` for as long as ``proc`` runs (at least ``min_seconds``)."""
    interval_ms = connections / rate * 1000
    with tempfile.TemporaryDirectory() as tmp:
        script, reqs = Path(tmp) / "bench.lua", Path(tmp) / "requests.tsv"
        script.write_text(wrk.LUA)
        reqs.write_text("\n".join(data) + "\n")
        w = subprocess.Popen(["wrk", "-t", "1", "-c", str(connections), "-d", "3600s", "--latency", "-s",
                              str(script), url, "--", str(reqs), header, f"{interval_ms:.3f}"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = time.monotonic()
        while proc.poll() is None or time.monotonic() - started < min_seconds:
            time.sleep(0.05)
        w.send_signal(signal.SIGINT)
        stdout, stderr = w.communicate(timeout=60)
    for line in stdout.splitlines():
        if line.startswith("JSON"):
            result: dict[str, Any] = json.loads(line[4:])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk printed no figures: {stdout[-500:]} {stderr[-500:]}")


async def _tenant(url: str) -> str:
    async with aiohttp.ClientSession() as s:
        await admin(s, url, "POST", "/tenants", {"id": "bench"})
        return await connect_placetel(s, url, "bench")


def _count_events(proc: GatewayProcess) -> int:
    import sqlite3

    with sqlite3.connect(proc.env["GATEWAY_DATABASE"]) as db:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def run(tmp: Path, *, seconds: int, connections: int, records: int, in_process: bool = True) -> dict[str, Any]:
    if not wrk.available():
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    n = max(20000, seconds * 6000)
    out: dict[str, Any] = {"records": records}
    fakes = FakesProcess(free_port())
    fakes.start()
    env = gateway_env(fakes)
    proc = GatewayProcess(tmp, env)
    try:
        proc.start()
        try:
            conn = asyncio.run(_tenant(proc.url))
        finally:
            proc.stop()
        out["generate"] = generate(tmp / "gateway.db", env["GATEWAY_MASTER_KEY"], [conn], records,
                                   oldest_s=9 * DAY, newest_s=8 * DAY)
        out["events_before"] = _count_events(proc)
        proc.start(timeout=120)
        try:
            reqs = shapes.placetel_requests(conn, SECRET, n, tag="retention")
            data = lines(reqs)
            sat = asyncio.run(measure(proc.url, reqs, shapes.PLACETEL_HEADER, seconds=seconds,
                                      connections=connections, half=False))
            rate = max(10.0, sat["rps"] / 2)
            out["saturation_rps"] = sat["rps"]
            out["without_purge"] = wrk.run(proc.url, data[::-1], shapes.PLACETEL_HEADER, seconds=seconds,
                                           connections=connections, rate=rate)
            cmd, how = purge_command(proc.url, in_process)
            out["purge_by"] = how
            started = time.monotonic()
            purge = subprocess.Popen(cmd, env=proc.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            shifted = data[len(data) // 2:] + data[:len(data) // 2]  # not yet sent in this order
            out["during_purge"] = wrk_until(proc.url, shifted, shapes.PLACETEL_HEADER, connections=connections,
                                            rate=rate, proc=purge)  # type: ignore[arg-type]
            stdout, stderr = purge.communicate()
            out["purge_seconds"] = round(time.monotonic() - started, 2)
            if purge.returncode != 0:
                raise RuntimeError(f"purge failed: {stderr[-1000:]}")
            out["purge_output"] = stdout.strip()[-500:]
        finally:
            proc.stop()
        out["events_after"] = _count_events(proc)
    finally:
        fakes.stop()
    out["p99_factor"] = out["during_purge"]["p99_ms"] / out["without_purge"]["p99_ms"]
    return out


def table(r: dict[str, Any]) -> str:
    if "skipped" in r:
        return f"retention: skipped ({r['skipped']})"
    w, d = r["without_purge"], r["during_purge"]
    return "\n".join([
        f"### Retention (purge {r['records']} expired call records while ingesting at half rate; "
        "target p99 at most x2)", "",
        "| ingest at half rate | req/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|",
        f"| without purge | {w['rps']:.0f} | {w['p50_ms']:.2f} | {w['p99_ms']:.2f} | "
        f"{w['non2xx'] + w['socket_errors']} |",
        f"| during purge | {d['rps']:.0f} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} | "
        f"{d['non2xx'] + d['socket_errors']} |",
        "",
        f"purge: {r['purge_seconds']} s for {r['events_before']} stored events ({r['events_after']} left, "
        f"incl. those ingested meanwhile) by {r['purge_by']}; p99 during/without: {r['p99_factor']:.2f}",
    ])
