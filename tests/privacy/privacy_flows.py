"""Shared steps of the privacy tests: calls through the demo source, the CLI as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from demo_secret import SECRET
from demo_source import sign
from gatewayproc import clean_env

from gateway.testing import Harness

CALLER = "+4922112345678"
OTHER = "+4930987654321"
NAME, EMAIL = "Anna Agentin", "anna.agentin@example.com"


async def call(h: Harness, event_id: str, call_id: str, state: str = "ringing",
               number: str = CALLER, user: str | None = None, connection: str | None = None) -> None:
    """Post one signed demo event and check it was accepted."""
    body = orjson.dumps({"id": event_id, "call": call_id, "state": state, "from": number, "user": user})
    resp = await h.post_hook("demo", connection or h.connection_id, body,  # type: ignore[attr-defined]
                             {"Content-Type": "application/json", "X-Demo-Signature": sign(SECRET, body)})
    assert resp.status == 200


def raw_files(h: Harness) -> bytes:
    return b"".join(Path(p).read_bytes() for p in h.gw.store.file_paths())


def needles(*values: str) -> list[bytes]:
    out = []
    for v in values:
        out += [v.encode(), v.encode("utf-16-le")]
        if v.startswith("+"):
            out.append(v[1:].encode())
    return out


def cli_env(h: Harness, **extra: str) -> dict[str, str]:
    return {"GATEWAY_DATABASE": h.gw.config.database, "GATEWAY_MASTER_KEY": h.gw.config.master_key or "",
            **extra}


def gateway_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                          env=clean_env(env), timeout=60)


def admin_headers(token: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}"}
