"""Logs: one JSON object per line with request and tenant ids, and nothing personal."""

from __future__ import annotations

import io
import logging

import orjson
import pytest
from conftest import SECRET
from demo_source import sign

from gateway import logs

NUMBER = "+4922112345678"


@pytest.fixture
def json_log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def lines(stream: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize("text,hidden", [
    ("call from +49 221 1234-5678 failed", "1234"),
    ("user anna.agentin@example.com logged in", "anna.agentin"),
    ("fetch https://files.example/rec.mp3?sig=abc failed", "rec.mp3"),
    ("refresh with token=abcdef123456 failed", "abcdef123456"),
    ("Authorization: Bearer s3cr3t-value", "s3cr3t-value"),
])
def test_redaction_layer(text, hidden):
    assert hidden not in logs.redact(text)


async def test_webhook_logs_are_json_with_request_and_tenant_ids(demo, json_log):
    body = orjson.dumps({"id": "e1", "call": "c1", "state": "ringing", "from": NUMBER})
    resp = await demo.post_hook("demo", demo.connection_id, body, {
        "Content-Type": "application/json", "X-Demo-Signature": "0" * 64, "X-Request-Id": "req-42"})
    assert resp.status == 401 and resp.headers["X-Request-Id"] == "req-42"
    refused = [line for line in lines(json_log) if line["message"] == "webhook refused"]
    assert refused, json_log.getvalue()
    entry = refused[0]
    assert entry["level"] == "info" and entry["logger"] == "gateway.webhooks"
    assert entry["request_id"] == "req-42" and entry["tenant"] == "acme"
    assert entry["status"] == 401 and entry["plugin"] == "demo"


async def test_a_full_flow_logs_nothing_personal(demo, json_log):
    demo.recorder.fail_times = 2  # retries log too
    for eid, state in (("e1", "ringing"), ("e2", "ended")):
        body = orjson.dumps({"id": eid, "call": "call-secret-id", "state": state, "from": NUMBER})
        await demo.post_hook("demo", demo.connection_id, body, {
            "Content-Type": "application/json", "X-Demo-Signature": sign(SECRET, body)})
    await demo.recorder.wait_for(2)
    text = json_log.getvalue()
    assert "delivery will be retried" in text
    for value in (NUMBER, NUMBER[1:], "2211234", SECRET, "call-secret-id"):
        assert value not in text
