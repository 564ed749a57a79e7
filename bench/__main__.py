"""``python -m bench``: the gateway against baselines measured in the same run.

Prints one markdown table per scenario and writes ``bench/results/latest.json``. Ratios, not
absolute numbers, are the result: the machines are shared and noisy. ``--quick`` is a smoke
run (small N, 2 s per wrk run); ``--only`` runs one scenario.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import backlog, cpu, e2e, fleet, ingest, retention, scale

SCENARIOS = ("ingest", "cpu", "e2e", "scale", "retention", "backlog", "fleet")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--seconds", type=int, help="length of each wrk run (default 10, 2 with --quick)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--only", choices=SCENARIOS, help="run one scenario")
    p.add_argument("--quick", action="store_true", help="short smoke run with small N")
    p.add_argument("--tenants", type=int, help="scale: tenants (default 10000, 200 with --quick)")
    p.add_argument("--rate", type=float, help="e2e: calls per second (default 200, 40 with --quick); "
                   "cpu: webhooks per second (default 1000)")
    p.add_argument("--records", type=int, help="scale and retention: call records (default 1000000)")
    args = p.parse_args(argv)
    seconds = args.seconds or (2 if args.quick else 10)
    records = args.records or (20000 if args.quick else 1_000_000)
    runs: dict[str, Callable[[Path], dict[str, Any]]] = {
        "ingest": lambda tmp: ingest.run(tmp, seconds=seconds, connections=args.connections),
        "cpu": lambda tmp: cpu.run(tmp, seconds=seconds, rate=args.rate or (500 if args.quick else 1000)),
        "e2e": lambda tmp: e2e.run(tmp, seconds=4 if args.quick else 30, rate=args.rate or (40 if args.quick else 200),
                                   tenants=60 if args.quick else 300),
        "scale": lambda tmp: scale.run(tmp, seconds=seconds, connections=args.connections,
                                       tenants=args.tenants or (200 if args.quick else 10000), records=records),
        "retention": lambda tmp: retention.run(tmp, seconds=seconds, connections=args.connections,
                                               records=records),
        "backlog": lambda tmp: backlog.run(tmp, tenants=20 if args.quick else 100,
                                           calls=50 if args.quick else 200),
        "fleet": lambda tmp: fleet.run(tmp, seconds=seconds, connections=args.connections,
                                       rate=args.rate or (40 if args.quick else 100), tenants=20 if args.quick else 100),
    }
    results: dict[str, Any] = {"meta": {"quick": args.quick, "seconds": seconds, "connections": args.connections,
                                        "cpus": os.cpu_count(), "python": platform.python_version(),
                                        "started": time.strftime("%Y-%m-%dT%H:%M:%S")}}
    for name in ([args.only] if args.only else SCENARIOS):
        started = time.monotonic()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                results[name] = runs[name](Path(tmp))
            except Exception as exc:  # one broken scenario must not hide the others' figures
                results[name] = {"failed": f"{type(exc).__name__}: {exc}"[:2000]}
        results[name]["wall_seconds"] = round(time.monotonic() - started, 1)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    latest = out / "latest.json"
    if args.only and latest.exists():  # keep the other scenarios' last figures
        kept = json.loads(latest.read_text())
        results["meta"]["merged_into_earlier_run"] = kept.get("meta")
        results = {**kept, **results}
    latest.write_text(json.dumps(results, indent=2))
    print(table({k: v for k, v in results.items() if not args.only or k in ("meta", args.only)}))
    print(f"\nwritten to {latest}", file=sys.stderr)
    return 1 if any("failed" in v for k, v in results.items() if k != "meta") else 0


def table(results: dict[str, Any]) -> str:
    parts = []
    printers = {"ingest": ingest.table, "cpu": cpu.table, "e2e": e2e.table, "scale": scale.table, "retention": retention.table,
                "backlog": backlog.table, "fleet": fleet.table}
    for name in SCENARIOS:
        r = results.get(name)
        if r is None:
            continue
        if "failed" in r:
            parts.append(f"### {name}: FAILED\n\n{r['failed']}")
        else:
            parts.append(printers[name](r))
    return "\n\n".join(parts)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
