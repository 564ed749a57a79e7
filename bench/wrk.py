"""Drive wrk over pre-generated, distinct requests and read its figures as JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

LUA = r"""
local requests = {}
local i = 0
init = function(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    local path, sig, ctype, body = line:match("^(%S+)\t(%S+)\t(%S+)\t(.*)$")
    requests[#requests + 1] = wrk.format("POST", path,
      {["Content-Type"] = ctype, [args[2]] = sig}, body)
  end
  f:close()
  i = math.random(#requests)
  interval = tonumber(args[3] or "0")
end
delay = function()
  if interval > 0 then return interval * (0.5 + math.random()) end
  return 0
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
done = function(summary, latency, requests)
  local codes = 0
  if summary.errors then codes = summary.errors.status end
  io.write(string.format('JSON{"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\n',
    summary.requests, summary.duration, codes,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, lines: list[str], header: str, *, seconds: int, connections: int,
        threads: int = 1, rate: float | None = None) -> dict[str, float]:
    """``lines``: ``path \\t signature \\t content-type \\t body`` (bodies without tabs/newlines).

    With ``rate`` (requests/s over all connections) each connection paces itself with a
    jittered delay, so latency is measured at that rate instead of at saturation.
    """
    interval_ms = connections / rate * 1000 if rate else 0.0
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench.lua"
        data = Path(tmp) / "requests.tsv"
        script.write_text(LUA)
        data.write_text("\n".join(lines) + "\n")
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
                              "--latency", "-s", str(script), url, "--", str(data), header, f"{interval_ms:.3f}"],
                             capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("JSON"):
            result = json.loads(line[4:])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk printed no figures: {out.stdout[-500:]} {out.stderr[-500:]}")
