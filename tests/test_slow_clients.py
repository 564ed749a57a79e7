"""A real ``gateway serve`` against clients that hold connections open: silent, trickling the
request head, trickling the body. Each is closed within its limit; the Server header names
no versions."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

from gatewayproc import GatewayProcess

from gateway.store.crypto import generate_master_key

IDLE, BODY = 1.0, 1.0


def closed_after(sock: socket.socket, trickle: bytes, limit: float) -> tuple[float, bytes]:
    """Send ``trickle`` one byte every 0.1 s (then nothing); seconds until the server closed,
    and what it answered."""
    start = time.monotonic()
    sock.settimeout(0.1)
    sent = 0
    while time.monotonic() - start < limit:
        if sent < len(trickle):
            try:
                sock.send(trickle[sent:sent + 1])
            except OSError:  # reset by the server: closed
                return time.monotonic() - start, b""
            sent += 1
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start, b""
        answer = b""
        while data:  # an answer (408): read it to the end of the connection
            answer += data
            try:
                data = sock.recv(4096)
            except TimeoutError:
                if time.monotonic() - start > limit:
                    break
        return time.monotonic() - start, answer
    return float("inf"), b""  # still open


def test_slow_and_silent_connections_are_closed_and_no_versions_are_shown(tmp_path: Path) -> None:
    proc = GatewayProcess(tmp_path, {"GATEWAY_MASTER_KEY": generate_master_key(),
                                     "GATEWAY_IDLE_TIMEOUT": str(IDLE), "GATEWAY_BODY_TIMEOUT": str(BODY)})
    proc.start()
    try:
        with urllib.request.urlopen(proc.url + "/healthz", timeout=5) as resp:
            assert resp.headers["Server"] == "callgate"
        with socket.create_connection(("127.0.0.1", proc.port)) as sock:  # aiohttp answers this itself
            sock.sendall(b"GARBAGE / HTTP/1.1\r\nHost: x\r\n\r\n")
            _took, answer = closed_after(sock, b"", limit=5)
            assert answer.startswith(b"HTTP/1.") and b"\r\nServer: callgate\r\n" in answer
            assert b"aiohttp" not in answer and b"Python" not in answer
        head = b"POST /hooks/demo/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        cases = {  # (sent at once, then trickled one byte every 0.1 s)
            "silent": (b"", b""),
            "trickling head": (head, b"X-Pad: " + b"a" * 200),
            "trickling body": (head + b"Content-Length: 1000\r\n\r\n", b"{" * 200),
        }
        took = {}
        for name, (at_once, trickle) in cases.items():
            with socket.create_connection(("127.0.0.1", proc.port)) as sock:
                sock.sendall(at_once)
                took[name] = closed_after(sock, trickle, limit=max(IDLE, BODY) + 5)
        assert all(IDLE * 0.5 <= t <= max(IDLE, BODY) + 2 for t, _ in took.values()), took
        assert took["silent"][1] == b"" and took["trickling body"][1].startswith(b"HTTP/1.1 408 ")
    finally:
        proc.stop()
