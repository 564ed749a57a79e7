"""``python -m bench``: the gateway against baselines measured in the same run.

Prints a table and writes ``bench/results/latest.json``. Ratios, not absolute numbers, are
the result: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

from . import ingest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--only", choices=["ingest"], help="run one scenario")
    args = p.parse_args(argv)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["ingest"] = asyncio.run(ingest.run(Path(tmp), seconds=args.seconds,
                                                   connections=args.connections))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    print(ingest.table(results["ingest"]))  # type: ignore[arg-type]
    print(f"\nwritten to {out / 'latest.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
