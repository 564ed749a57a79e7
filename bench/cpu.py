"""CPU per request: the server's own CPU time (all its threads) per webhook, at a fixed rate.

Throughput at saturation moves with whatever else the shared machine runs; the CPU a process
spends per request at a rate it can sustain moves much less. For each shape the same paced
wrk run goes to the bare receiver and to a real ``gateway serve``; the figure is CPU µs per
request of each, and their ratio (bare ÷ gateway), which is what the throughput ratio at
saturation tends to when the server, not the client, is the bottleneck.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from . import ingest, shapes, wrk
from .fakes import FakesProcess
from .ingest import Baseline, GatewayProcess, free_port, gateway_env, requests_for

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def paced(pid: int, url: str, reqs: list[shapes.Request], header: str, *, rate: float,
          seconds: int) -> dict[str, Any]:
    """One paced wrk run; the server's CPU µs per answered request during it."""
    before = cpu_seconds(pid)
    result = wrk.run(url, ingest.lines(reqs), header, seconds=seconds, connections=32, rate=rate)
    used = cpu_seconds(pid) - before
    return {"rps": result["rps"], "cpu_us_per_request": used / max(1, result["requests"]) * 1e6,
            "p99_ms": result["p99_ms"], "errors": result["non2xx"] + result.get("socket_errors", 0)}


def run(tmp: Path, *, seconds: int, rate: float,
        shape_names: tuple[str, ...] = ("placetel", "webex", "demo")) -> dict[str, Any]:
    if not wrk.available():
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    n = max(20000, int(rate * seconds * 1.2))
    fakes = FakesProcess(free_port())
    fakes.start()
    proc = GatewayProcess(tmp, gateway_env(fakes))
    out: dict[str, Any] = {"rate": rate, "seconds": seconds}
    try:
        proc.start()
        ids = asyncio.run(ingest._setup(proc.url, fakes))
        reqs = {name: requests_for(name, ids, n) for name in shape_names}
        proc.stop()
        for name in shape_names:
            shape = shapes.SHAPES[name]
            base = Baseline(shape)
            try:
                out[name] = {"baseline": paced(base.proc.pid, base.url,
                                               shapes.resign(reqs[name], ingest.SECRET, shape.algo),
                                               shape.header, rate=rate, seconds=seconds)}
            finally:
                base.stop()
        proc.start()
        assert proc.proc is not None
        for name in shape_names:
            r = out[name]
            r["gateway"] = paced(proc.proc.pid, proc.url, reqs[name], shapes.SHAPES[name].header,
                                 rate=rate, seconds=seconds)
            r["ratio"] = r["baseline"]["cpu_us_per_request"] / r["gateway"]["cpu_us_per_request"]
    finally:
        proc.stop()
        fakes.stop()
    return out


def table(r: dict[str, Any]) -> str:
    if "skipped" in r:
        return f"cpu: skipped ({r['skipped']})"
    rows = [f"### CPU per request at {r['rate']:.0f} requests/s (server process, all threads)", "",
            "| shape | bare µs/req | gateway µs/req | bare ÷ gateway | gateway p99 ms | errors |",
            "|---|---|---|---|---|---|"]
    for name in ("placetel", "webex", "demo"):
        if name in r:
            b, g = r[name]["baseline"], r[name]["gateway"]
            rows.append(f"| {name} | {b['cpu_us_per_request']:.0f} | {g['cpu_us_per_request']:.0f} | "
                        f"{r[name]['ratio']:.2f} | {g['p99_ms']:.1f} | {b['errors'] + g['errors']} |")
    return "\n".join(rows)
