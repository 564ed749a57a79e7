"""Without a PostgreSQL server the PostgreSQL tests fail (an error in their database fixture),
each with one line saying so: CI must never pass by skipping them silently."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_postgres_tests_fail_in_one_line_when_the_server_is_unreachable(tmp_path: Path) -> None:
    env = {**os.environ, "CALLGATE_TEST_POSTGRES": "postgresql://127.0.0.1:1/postgres"}
    # -rN: no short summary, whose lines repeat the reason only where the terminal (COLUMNS) is wide
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rN", "-p", "no:cacheprovider", "-m", "postgres",
                          "tests/store/contract/test_leases.py", "tests/fleet/test_at_rest.py"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout[-2000:]
    # each test stops in its database fixture, before anything else runs: an error, not a skip
    summary = out.stdout.splitlines()[-1]
    errors = re.search(r"(\d+) errors?", summary)
    assert errors and "skipped" not in summary and "passed" not in summary, summary
    reasons = [line for line in out.stdout.splitlines() if "PostgreSQL is not reachable" in line]
    assert len(reasons) == int(errors[1]) >= 3 and all("at 127.0.0.1:1 " in line for line in reasons), reasons
    assert "Traceback" not in out.stdout
