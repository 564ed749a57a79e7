"""Ingest: distinct signed webhooks, durable acknowledgement, against a bare HMAC receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from . import wrk

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from gatewayproc import GatewayProcess, free_port  # noqa: E402

TOKEN = "bench-operator-token-0123456789"
SECRET = "bench-secret-value"


def demo_requests(connection: str, n: int) -> list[tuple[str, str, str, bytes]]:
    """(path, signature, content type, body) for n distinct demo-source events."""
    out = []
    for i in range(n):
        body = orjson.dumps({"id": f"ev{i}", "call": f"call{i // 3}",
                             "state": ("ringing", "answered", "ended")[i % 3],
                             "from": f"+49221{1000000 + i // 3}"})
        sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        out.append((f"/hooks/demo/{connection}", sig, "application/json", body))
    return out


def _admin(url: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url + "/admin/v1" + path, method=method, data=orjson.dumps(body),
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        return orjson.loads(resp.read())


def _wait_ready(url: str) -> None:
    for _ in range(200):
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(url)


async def _measure(base: str, reqs: list[tuple[str, str, str, bytes]], *, seconds: int,
                   connections: int) -> dict[str, Any]:
    lines = [f"{p}\t{s}\t{c}\t{b.decode()}" for p, s, c, b in reqs]
    result = await asyncio.to_thread(wrk.run, base, lines, "X-Demo-Signature", seconds=seconds,
                                     connections=connections)
    half = max(10.0, result["rps"] / 2)
    paced = await asyncio.to_thread(wrk.run, base, lines[::-1], "X-Demo-Signature", seconds=seconds,
                                    connections=connections, rate=half)
    result["at_half_rate"] = {"rate": paced["rps"], "p50_ms": paced["p50_ms"], "p99_ms": paced["p99_ms"]}
    return result


async def run(tmp: Path, *, seconds: int, connections: int) -> dict[str, Any]:
    if not wrk.available():
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    from gateway.store.crypto import generate_master_key

    n = max(20000, seconds * 6000)
    # baseline first, then the gateway, each alone on the machine
    port = free_port()
    base = subprocess.Popen([sys.executable, str(Path(__file__).parent / "baseline.py"), str(port),
                             SECRET, "X-Demo-Signature", "sha256"])
    try:
        _wait_ready(f"http://127.0.0.1:{port}/")
        baseline = await _measure(f"http://127.0.0.1:{port}", demo_requests("conn", n),
                                  seconds=seconds, connections=connections)
    finally:
        base.terminate()
        base.wait()

    proc = GatewayProcess(tmp, {"GATEWAY_MASTER_KEY": generate_master_key(), "GATEWAY_ADMIN_TOKEN": TOKEN,
                                "GATEWAY_LOG_LEVEL": "WARNING"})
    proc.start()
    try:
        _admin(proc.url, "POST", "/tenants", {"id": "bench"})
        cid = _admin(proc.url, "POST", "/tenants/bench/connections",
                     {"plugin": "demo", "settings": {"secret": SECRET}})["id"]
        gateway = await _measure(proc.url, demo_requests(cid, n), seconds=seconds, connections=connections)
    finally:
        proc.stop()
    db = tmp / "gateway.db"
    return {"baseline": baseline, "gateway": gateway, "ratio": gateway["rps"] / baseline["rps"],
            "durable": "SQLite WAL, synchronous=FULL, group commit",
            "database_mb": round(sum(os.path.getsize(p) for p in tmp.glob("gateway.db*")) / 1e6, 1)
            if db.exists() else None}


def table(r: dict[str, Any]) -> str:
    if "skipped" in r:
        return f"ingest: skipped ({r['skipped']})"
    rows = ["| ingest (demo shape) | req/s | p50 ms | p99 ms | non-2xx | p50 / p99 ms at half rate |",
            "|---|---|---|---|---|---|"]
    for name in ("baseline", "gateway"):
        x = r[name]
        h = x["at_half_rate"]
        rows.append(f"| {name} | {x['rps']:.0f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['non2xx']} "
                    f"| {h['p50_ms']:.2f} / {h['p99_ms']:.2f} at {h['rate']:.0f}/s |")
    rows.append(f"\nratio gateway/baseline: {r['ratio']:.2f} (target >= 0.8)")
    return "\n".join(rows)
